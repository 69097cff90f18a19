package node

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the node's own Prometheus collectors. None has a per-peer or
// per-contact label.
//
// libp2p registers its collectors in the same registry; they are
// package-level in libp2p, so with several nodes in one process their
// values are the sum over the nodes.
type metrics struct {
	reg       Registry
	own       []prometheus.Collector // what this node registered, for Close
	publishes *prometheus.CounterVec
	lookups   *prometheus.CounterVec
}

func newMetrics(n *Node) (*metrics, error) {
	m := &metrics{
		reg: n.cfg.Registry,
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_addr_record_publish_total",
			Help: "Publications of the device's address record in the DHT, by result (ok, error).",
		}, []string{"result"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_addr_record_lookup_total",
			Help: "Address record lookups in the DHT, by result (ok, not_found, error).",
		}, []string{"result"}),
	}
	for _, r := range []string{"ok", "error"} {
		m.publishes.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "not_found", "error"} {
		m.lookups.WithLabelValues(r)
	}
	cs := []prometheus.Collector{
		m.publishes,
		m.lookups,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sealpost_peers",
			Help: "Peers the node is connected to.",
		}, func() float64 { return float64(len(n.host.Network().Peers())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sealpost_dht_routing_table_peers",
			Help: "Peers in the DHT routing table.",
		}, func() float64 { return float64(n.dht.RoutingTable().Size()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sealpost_event_subscribers",
			Help: "Open event stream subscriptions.",
		}, func() float64 { return float64(n.events.count()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sealpost_event_subscriber_overflows_total",
			Help: "Event subscribers dropped because they fell behind.",
		}, func() float64 { return float64(n.events.overflows.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sealpost_request_messages_dropped_total",
			Help: "Messages of message requests dropped, the oldest first, over the caps on what one request or all of them hold (those of requests dropped whole included).",
		}, func() float64 {
			if n.msg == nil {
				return 0
			}
			m, _ := n.msg.RequestDrops()
			return float64(m)
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sealpost_requests_dropped_total",
			Help: "Message requests dropped whole, the oldest first, over the caps on what all requests hold.",
		}, func() float64 {
			if n.msg == nil {
				return 0
			}
			_, r := n.msg.RequestDrops()
			return float64(r)
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sealpost_relay_bad_receipts_total",
			Help: "Custody receipts refused because a relay promised to keep an envelope longer than any relay may (a misbehaving relay).",
		}, func() float64 {
			if n.mb == nil {
				return 0
			}
			return float64(n.mb.BadReceipts())
		}),
	}
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			m.unregister()
			return nil, fmt.Errorf("node: register metrics: %w", err)
		}
		m.own = append(m.own, c)
	}
	// The Go and process collectors are process-wide: register them unless
	// the registry has them already (another node, or the caller).
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		err := m.reg.Register(c)
		var already prometheus.AlreadyRegisteredError
		switch {
		case err == nil:
			m.own = append(m.own, c)
		case !errors.As(err, &already):
			m.unregister()
			return nil, fmt.Errorf("node: register metrics: %w", err)
		}
	}
	return m, nil
}

// unregister removes what this node registered.
func (m *metrics) unregister() {
	for _, c := range m.own {
		m.reg.Unregister(c)
	}
	m.own = nil
}
