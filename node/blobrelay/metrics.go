package blobrelay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/store"
)

// metrics are the service's Prometheus collectors; no label names a
// mailbox, blob or peer.
type metrics struct {
	reg        prometheus.Registerer
	own        []prometheus.Collector
	requests   *prometheus.CounterVec
	rejections *prometheus.CounterVec
	streams    prometheus.Gauge
	puts       prometheus.Counter
	putBytes   prometheus.Counter
	dedup      prometheus.Counter
	gets       prometheus.Counter
	getBytes   prometheus.Counter
	removed    prometheus.Counter
	expired    prometheus.Counter
	blobs      prometheus.Gauge
	bytes      prometheus.Gauge
	refs       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_relay_attachment_requests_total", Help: "Blob requests received, by operation.",
		}, []string{"op"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_relay_attachment_rejections_total", Help: "Blob requests and streams refused, by reason (the wire code's name, or too_many_streams).",
		}, []string{"reason"}),
		streams:  g("sealpost_relay_attachment_streams", "Open blob streams."),
		puts:     c("sealpost_relay_attachment_puts_total", "Blob references stored (uploads and links)."),
		putBytes: c("sealpost_relay_attachment_put_bytes_total", "Bytes of the blobs written (a blob stored already counts nothing)."),
		dedup:    c("sealpost_relay_attachment_dedup_total", "References stored for a blob the relay already held."),
		gets:     c("sealpost_relay_attachment_gets_total", "Blobs sent."),
		getBytes: c("sealpost_relay_attachment_get_bytes_total", "Bytes of the blobs sent."),
		removed:  c("sealpost_relay_attachment_removed_total", "Blobs deleted with their last reference."),
		expired:  c("sealpost_relay_attachment_expired_total", "References removed at the end of their TTL."),
		blobs:    g("sealpost_relay_attachment_blobs", "Blobs stored (each once)."),
		bytes:    g("sealpost_relay_attachment_bytes", "Bytes of the blobs stored."),
		refs:     g("sealpost_relay_attachment_refs", "Blob references stored."),
	}
	m.own = []prometheus.Collector{m.requests, m.rejections, m.streams, m.puts, m.putBytes, m.dedup, m.gets,
		m.getBytes, m.removed, m.expired, m.blobs, m.bytes, m.refs}
	if reg != nil {
		for i, col := range m.own {
			if err := reg.Register(col); err != nil {
				for _, done := range m.own[:i] {
					reg.Unregister(done)
				}
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) unregister() {
	if m.reg != nil {
		for _, c := range m.own {
			m.reg.Unregister(c)
		}
	}
}

func (m *metrics) reject(reason string) { m.rejections.WithLabelValues(reason).Inc() }

func (m *metrics) stored(fresh bool, size uint64) {
	m.puts.Inc()
	if fresh {
		m.putBytes.Add(float64(size))
	} else {
		m.dedup.Inc()
	}
}

func (m *metrics) served(size uint64) {
	m.gets.Inc()
	m.getBytes.Add(float64(size))
}

func (m *metrics) setTotals(t store.RelayBlobTotals) {
	m.blobs.Set(float64(t.Blobs))
	m.bytes.Set(float64(t.Bytes))
	m.refs.Set(float64(t.Refs))
}
