package gossip

import (
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/node/internal/metricset"
)

// metrics are the Gossip's Prometheus collectors. No label names a topic
// or a peer: reasons are a fixed set.
type metrics struct {
	*metricset.Set

	published prometheus.Counter
	delivered prometheus.Counter
	drops     *prometheus.CounterVec // messages dropped by validation, by reason
	refusals  *prometheus.CounterVec // RPCs and subscriptions refused, by reason
	lost      *prometheus.CounterVec // messages pubsub could not queue or deliver
	control   *prometheus.CounterVec // gossipsub control entries received, by kind
	topics    prometheus.Gauge

	// control's counters, by kind
	ihave, iwant, idontwant, graft, prune prometheus.Counter

	// counts kept for Stats and tests
	nDropRPC       atomic.Uint64
	nUndeliverable atomic.Uint64
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealpost_gossip_published_total", Help: "Group messages this node published on a topic.",
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealpost_gossip_delivered_total", Help: "Group messages received on a topic that passed validation.",
		}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_gossip_dropped_total",
			Help: "Group messages dropped before any decryption, by reason (not_member, malformed, rejected, ignored).",
		}, []string{"reason"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_gossip_refused_total",
			Help: "Pubsub RPCs and subscriptions refused, by reason (signed, topic_spam, not_member).",
		}, []string{"reason"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_gossip_queue_drops_total",
			Help: "Pubsub RPCs dropped because a peer's outbound queue was full (rpc), and messages no subscriber could take (undeliverable).",
		}, []string{"what"}),
		control: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_gossip_control_total",
			Help: "Gossipsub control received: message IDs announced (ihave), asked for (iwant) or declined (idontwant), and mesh joins (graft) and leaves (prune).",
		}, []string{"kind"}),
		topics: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sealpost_gossip_topics", Help: "Group topics joined."}),
	}
	m.ihave, m.iwant, m.idontwant = m.control.WithLabelValues("ihave"), m.control.WithLabelValues("iwant"), m.control.WithLabelValues("idontwant")
	m.graft, m.prune = m.control.WithLabelValues("graft"), m.control.WithLabelValues("prune")
	set, err := metricset.Register(reg, m.published, m.delivered, m.drops, m.refusals, m.lost, m.control, m.topics)
	if err != nil {
		return nil, err
	}
	m.Set = set
	return m, nil
}

func (m *metrics) dropped(reason string) { m.drops.WithLabelValues(reason).Inc() }
func (m *metrics) refused(reason string) { m.refusals.WithLabelValues(reason).Inc() }

// Stats are counts of a Gossip's queue drops, for tests and the node's
// status.
type Stats struct {
	// DroppedRPCs are RPCs pubsub dropped because a peer's outbound queue
	// was full; Undeliverable are messages a subscription's buffer could
	// not take.
	DroppedRPCs, Undeliverable uint64
}

// Stats returns the Gossip's queue-drop counts.
func (g *Gossip) Stats() Stats {
	return Stats{DroppedRPCs: g.met.nDropRPC.Load(), Undeliverable: g.met.nUndeliverable.Load()}
}

// tracer counts what pubsub drops for lack of queue space, and the
// control entries that arrive.
type tracer struct{ m *metrics }

var _ pubsub.RawTracer = tracer{}

func (t tracer) DropRPC(*pubsub.RPC, peer.ID) {
	t.m.nDropRPC.Add(1)
	t.m.lost.WithLabelValues("rpc").Inc()
}

func (t tracer) UndeliverableMessage(*pubsub.Message) {
	t.m.nUndeliverable.Add(1)
	t.m.lost.WithLabelValues("undeliverable").Inc()
}

func (t tracer) RecvRPC(rpc *pubsub.RPC) {
	c := rpc.GetControl()
	if c == nil {
		return
	}
	t.m.ihave.Add(float64(countIDs(c.GetIhave())))
	t.m.iwant.Add(float64(countIDs(c.GetIwant())))
	t.m.idontwant.Add(float64(countIDs(c.GetIdontwant())))
	t.m.graft.Add(float64(len(c.GetGraft())))
	t.m.prune.Add(float64(len(c.GetPrune())))
}

// countIDs is the number of message IDs in control entries xs.
func countIDs[T interface{ GetMessageIDs() []string }](xs []T) (n int) {
	for _, x := range xs {
		n += len(x.GetMessageIDs())
	}
	return n
}

func (tracer) AddPeer(peer.ID, libp2pproto.ID)                      {}
func (tracer) RemovePeer(peer.ID)                                   {}
func (tracer) OnNewOutboundStream(peer.ID, libp2pproto.ID)          {}
func (tracer) OnClosedOutboundStream(peer.ID)                       {}
func (tracer) Join(string)                                          {}
func (tracer) Leave(string)                                         {}
func (tracer) Graft(peer.ID, string)                                {}
func (tracer) Prune(peer.ID, string)                                {}
func (tracer) ValidateMessage(*pubsub.Message)                      {}
func (tracer) DeliverMessage(*pubsub.Message)                       {}
func (tracer) RejectMessage(*pubsub.Message, string)                {}
func (tracer) DuplicateMessage(*pubsub.Message)                     {}
func (tracer) ThrottlePeer(peer.ID)                                 {}
func (tracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (tracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
