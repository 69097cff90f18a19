package relay

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// metrics are the relay's Prometheus collectors and the figures of Stats.
// No collector has a per-mailbox, per-token or per-peer label: ops and
// reasons are fixed sets.
type metrics struct {
	reg prometheus.Registerer
	own []prometheus.Collector

	requests      *prometheus.CounterVec
	rejections    *prometheus.CounterVec
	quotas        *prometheus.CounterVec
	deposits      prometheus.Counter
	depositBytes  prometheus.Counter
	pushed        prometheus.Counter
	expired       prometheus.Counter
	prekeysTaken  prometheus.Counter
	streams       prometheus.Gauge
	subscriptions prometheus.Gauge
	batch         prometheus.Histogram
	commit        prometheus.Histogram

	totals atomic.Pointer[store.RelayTotals]
	// totalsMu orders the totals the writer's batches report: a batch
	// reads them inside its transaction, in commit order (seq), but two
	// batches may finish their fsyncs in either order, and the totals of
	// the earlier one must not replace the later one's.
	totalsMu  sync.Mutex
	totalsSeq uint64
	batchSeq  atomic.Uint64
	nDeposits atomic.Uint64
	nFetched  atomic.Uint64
	depRate   *window
	fetchRate *window

	rejMu   sync.Mutex
	rejects map[string]uint64
	quotaN  map[string]uint64
}

// counter and gauge make the relay's unlabelled collectors.
func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

func newMetrics(s *Server, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_relay_requests_total",
			Help: "Relay requests received, by operation.",
		}, []string{"op"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_relay_rejections_total",
			Help: "Relay requests refused, by reason (the wire code's name, or penalized / too_many_streams for refused streams).",
		}, []string{"reason"}),
		quotas: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_relay_quota_refusals_total",
			Help: "Mailbox creations, deposits, cards, prekeys and blob uploads refused for a quota of the mailbox's creator: peer_mailboxes, subnet_mailboxes (too_many_mailboxes), peer_bytes, subnet_bytes, blob_peer_bytes, blob_subnet_bytes (mailbox_quota); group log creations and appends for a quota of the log's creator: group_peer_logs, group_subnet_logs (too_many_logs), group_peer_bytes, group_subnet_bytes (quota_exceeded).",
		}, []string{"quota"}),
		deposits:      counter("sealpost_relay_deposits_total", "Envelopes stored (each answered with a custody receipt)."),
		depositBytes:  counter("sealpost_relay_deposit_bytes_total", "Bytes of the envelopes stored."),
		pushed:        counter("sealpost_relay_fetched_total", "Envelopes sent to mailbox owners (fetches and subscriptions)."),
		expired:       counter("sealpost_relay_expired_total", "Envelopes removed unacknowledged at the end of their TTL."),
		prekeysTaken:  counter("sealpost_relay_prekeys_taken_total", "One-time prekey blobs handed out."),
		streams:       gauge("sealpost_relay_streams", "Open relay streams."),
		subscriptions: gauge("sealpost_relay_subscriptions", "Mailbox subscriptions open."),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sealpost_relay_commit_batch",
			Help:    "Jobs (deposits and other writes) per store transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7),
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sealpost_relay_commit_seconds",
			Help:    "Time of one store transaction, until durable.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 12),
		}),
		depRate:   newWindow(s.clock),
		fetchRate: newWindow(s.clock),
		rejects:   map[string]uint64{},
		quotaN:    map[string]uint64{},
	}
	m.totals.Store(&store.RelayTotals{})
	total := func(name, help string, f func(t *store.RelayTotals) uint64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return float64(f(m.totals.Load())) })
	}
	cs := []prometheus.Collector{
		m.requests, m.rejections, m.quotas, m.deposits, m.depositBytes, m.pushed, m.expired, m.prekeysTaken,
		m.streams, m.subscriptions, m.batch, m.commit,
		total("sealpost_relay_mailboxes", "Mailboxes held.", func(t *store.RelayTotals) uint64 { return t.Mailboxes }),
		total("sealpost_relay_envelopes", "Envelopes stored.", func(t *store.RelayTotals) uint64 { return t.Envelopes }),
		total("sealpost_relay_envelope_bytes", "Bytes of the envelopes stored.", func(t *store.RelayTotals) uint64 { return t.EnvelopeBytes }),
		total("sealpost_relay_blob_bytes", "Bytes of the card and prekey blobs stored.", func(t *store.RelayTotals) uint64 { return t.BlobBytes }),
		total("sealpost_relay_tokens", "Deposit-token hashes registered.", func(t *store.RelayTotals) uint64 { return t.Tokens }),
		total("sealpost_relay_prekeys", "One-time prekey blobs held.", func(t *store.RelayTotals) uint64 { return t.Prekeys }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sealpost_relay_store_max_bytes",
			Help: "The relay's total store quota (store_max_bytes).",
		}, func() float64 { return float64(s.res.StoreMaxBytes) }),
	}
	if reg != nil {
		for _, c := range cs {
			if err := reg.Register(c); err != nil {
				m.unregister()
				return nil, err
			}
			m.own = append(m.own, c)
		}
	}
	return m, nil
}

func (m *metrics) unregister() {
	for _, c := range m.own {
		m.reg.Unregister(c)
	}
	m.own = nil
}

func (m *metrics) request(op protocol.RelayOp) {
	if op.Request() {
		m.requests.WithLabelValues(op.String()).Inc()
	}
}

func (m *metrics) reject(reason string) {
	m.rejections.WithLabelValues(reason).Inc()
	m.rejMu.Lock()
	m.rejects[reason]++
	m.rejMu.Unlock()
}

// QuotaRefused counts a refusal for the creator quota named q: the
// relay's own (quota.go), those of the attachment blobs its mailboxes
// hold (node/blobrelay: blob_peer_bytes, blob_subnet_bytes) and those of
// the group logs (node/grouprelay: group_peer_logs, group_subnet_logs,
// group_peer_bytes, group_subnet_bytes), in
// sealpost_relay_quota_refusals_total and Stats.
func (s *Server) QuotaRefused(q string) { s.met.quotaRefused(q) }

func (m *metrics) quotaRefused(q string) {
	m.quotas.WithLabelValues(q).Inc()
	m.rejMu.Lock()
	m.quotaN[q]++
	m.rejMu.Unlock()
}

func (m *metrics) deposited(size int) {
	m.deposits.Inc()
	m.depositBytes.Add(float64(size))
	m.nDeposits.Add(1)
	m.depRate.add(1)
}

func (m *metrics) fetched(n int) {
	if n == 0 {
		return
	}
	m.pushed.Add(float64(n))
	m.nFetched.Add(uint64(n))
	m.fetchRate.add(uint64(n))
}

func (m *metrics) setTotals(t store.RelayTotals) { m.totals.Store(&t) }

// nextBatch numbers a batch's transaction: the writer runs them one after
// another, so the numbers follow the order of their commits.
func (m *metrics) nextBatch() uint64 { return m.batchSeq.Add(1) }

// committed records a batch of jobs that committed in d, with the totals
// its transaction (numbered seq by nextBatch) left, unless a later
// transaction's totals are known already.
func (m *metrics) committed(jobs int, d time.Duration, t store.RelayTotals, seq uint64) {
	m.batch.Observe(float64(jobs))
	m.commit.Observe(d.Seconds())
	m.totalsMu.Lock()
	defer m.totalsMu.Unlock()
	if seq > m.totalsSeq {
		m.totalsSeq = seq
		m.setTotals(t)
	}
}

// window counts events over the last minute, in one-second buckets of the
// relay's clock.
type window struct {
	clock Clock
	mu    sync.Mutex
	n     [60]uint64
	sec   [60]int64
}

func newWindow(c Clock) *window { return &window{clock: c} }

func (w *window) add(n uint64) {
	now := w.clock.Now().Unix()
	i := int(uint64(now) % 60)
	w.mu.Lock()
	if w.sec[i] != now {
		w.sec[i], w.n[i] = now, 0
	}
	w.n[i] += n
	w.mu.Unlock()
}

// lastMinute returns the events of the last 60 seconds.
func (w *window) lastMinute() uint64 {
	now := w.clock.Now().Unix()
	w.mu.Lock()
	defer w.mu.Unlock()
	var sum uint64
	for i := range w.n {
		if now-w.sec[i] < 60 && now >= w.sec[i] {
			sum += w.n[i]
		}
	}
	return sum
}

// Stats is what `sealpost relay stats` shows: what the relay holds, its
// traffic of the last minute, and its refusals by reason since it started.
// Nothing in it names a mailbox, token or peer.
type Stats struct {
	Mailboxes     uint64 `json:"mailboxes"`
	Envelopes     uint64 `json:"envelopes"`
	EnvelopeBytes uint64 `json:"envelope_bytes"`
	BlobBytes     uint64 `json:"blob_bytes"`
	Tokens        uint64 `json:"tokens"`
	Cards         uint64 `json:"cards"`
	Prekeys       uint64 `json:"prekeys"`
	// StoreMaxBytes is the total quota EnvelopeBytes + BlobBytes may reach.
	StoreMaxBytes uint64 `json:"store_max_bytes"`
	// DepositsPerMinute and FetchesPerMinute count the envelopes stored,
	// and sent to their owners, in the last 60 seconds.
	DepositsPerMinute uint64 `json:"deposits_per_minute"`
	FetchesPerMinute  uint64 `json:"fetches_per_minute"`
	// Deposits and Fetches count them since the relay started.
	Deposits uint64 `json:"deposits"`
	Fetches  uint64 `json:"fetches"`
	// Rejections counts refused requests by reason (wire code names)
	// since the relay started.
	Rejections map[string]uint64 `json:"rejections"`
	// QuotaRefusals counts, of those and of the attachment blob uploads
	// and group log requests refused, the ones for a quota of a mailbox's
	// or group log's creator (peer_mailboxes, subnet_mailboxes,
	// peer_bytes, subnet_bytes, blob_peer_bytes, blob_subnet_bytes,
	// group_peer_logs, group_subnet_logs, group_peer_bytes,
	// group_subnet_bytes).
	QuotaRefusals map[string]uint64 `json:"quota_refusals"`
	Streams       int               `json:"streams"`
	Subscriptions int               `json:"subscriptions"`
	TTLSeconds    int64             `json:"ttl_seconds"`
}

// Stats returns the relay's figures now.
func (s *Server) Stats() Stats {
	m := s.met
	t := m.totals.Load()
	m.rejMu.Lock()
	rej, quota := maps.Clone(m.rejects), maps.Clone(m.quotaN)
	m.rejMu.Unlock()
	s.mu.Lock()
	streams, subs := len(s.streams), len(s.subs)
	s.mu.Unlock()
	return Stats{
		Mailboxes: t.Mailboxes, Envelopes: t.Envelopes, EnvelopeBytes: t.EnvelopeBytes, BlobBytes: t.BlobBytes,
		Tokens: t.Tokens, Cards: t.Cards, Prekeys: t.Prekeys, StoreMaxBytes: s.res.StoreMaxBytes,
		DepositsPerMinute: m.depRate.lastMinute(), FetchesPerMinute: m.fetchRate.lastMinute(),
		Deposits: m.nDeposits.Load(), Fetches: m.nFetched.Load(),
		Rejections: rej, QuotaRefusals: quota, Streams: streams, Subscriptions: subs, TTLSeconds: int64(s.res.TTL / time.Second),
	}
}
