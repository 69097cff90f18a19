package grouprelay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/node/internal/metricset"

	"github.com/sealpost/sealpost/store"
)

// metrics are the service's Prometheus collectors; no label names a log
// or a peer.
type metrics struct {
	*metricset.Set
	requests      *prometheus.CounterVec
	rejections    *prometheus.CounterVec
	streams       prometheus.Gauge
	subscriptions prometheus.Gauge
	created       prometheus.Counter
	appends       prometheus.Counter
	commits       prometheus.Counter
	appendBytes   prometheus.Counter
	nFetched      prometheus.Counter
	expired       prometheus.Counter
	idle          prometheus.Counter
	commit        prometheus.Histogram
	logs          prometheus.Gauge
	entries       prometheus.Gauge
	bytes         prometheus.Gauge
	pendingBytes  prometheus.Gauge
	pendingWaits  *prometheus.CounterVec
	queuedBytes   prometheus.Gauge
	queuedWaits   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_relay_group_requests_total", Help: "Group log requests received, by operation.",
		}, []string{"op"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_relay_group_rejections_total", Help: "Group log requests and streams refused, by reason (the wire code's name, or too_many_streams); wrong_epoch counts the commits that lost.",
		}, []string{"reason"}),
		streams:       g("sealpost_relay_group_streams", "Open group log streams."),
		subscriptions: g("sealpost_relay_group_subscriptions", "Group log subscriptions open."),
		created:       c("sealpost_relay_group_logs_created_total", "Group logs created."),
		appends:       c("sealpost_relay_group_appends_total", "Entries appended (commits included)."),
		commits:       c("sealpost_relay_group_commits_total", "Commits accepted (each closes an epoch)."),
		appendBytes:   c("sealpost_relay_group_append_bytes_total", "Bytes of the entries appended."),
		nFetched:      c("sealpost_relay_group_fetched_total", "Entries sent to fetches."),
		expired:       c("sealpost_relay_group_expired_total", "Entries removed at the end of their TTL."),
		idle:          c("sealpost_relay_group_idle_deleted_total", "Logs deleted after their idle time."),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sealpost_relay_group_commit_seconds", Help: "Time of one store transaction of the group log writer, until durable.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 12),
		}),
		logs:         g("sealpost_relay_group_logs", "Group logs held."),
		entries:      g("sealpost_relay_group_entries", "Group log entries stored."),
		bytes:        g("sealpost_relay_group_bytes", "Bytes of the group log entries stored."),
		pendingBytes: g("sealpost_relay_group_pending_bytes", "Bytes of group log requests read and held (appends until stored), all streams."),
		pendingWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_relay_group_pending_waits_total", Help: "Times a group log stream was not read because the pending bytes were full, by bound (stream, relay).",
		}, []string{"bound"}),
		queuedBytes: g("sealpost_relay_group_queued_bytes", "Bytes of group log entries read for fetches and not yet written to their streams, all streams."),
		queuedWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_relay_group_queued_waits_total", Help: "Times a group log fetch waited for its answer's room because the queued bytes were full, by bound (stream, relay).",
		}, []string{"bound"}),
	}
	set, err := metricset.Register(reg, m.requests, m.rejections, m.streams, m.subscriptions, m.created, m.appends, m.commits,
		m.appendBytes, m.nFetched, m.expired, m.idle, m.commit, m.logs, m.entries, m.bytes, m.pendingBytes, m.pendingWaits,
		m.queuedBytes, m.queuedWaits)
	if err != nil {
		return nil, err
	}
	m.Set = set
	return m, nil
}

func (m *metrics) reject(reason string) { m.rejections.WithLabelValues(reason).Inc() }

func (m *metrics) appended(size int, commit bool) {
	m.appends.Inc()
	m.appendBytes.Add(float64(size))
	if commit {
		m.commits.Inc()
	}
}

func (m *metrics) fetched(n int) { m.nFetched.Add(float64(n)) }

func (m *metrics) setTotals(t store.RelayGroupTotals) {
	m.logs.Set(float64(t.Logs))
	m.entries.Set(float64(t.Entries))
	m.bytes.Set(float64(t.Bytes))
}
