// Package grouprelay is a community relay's group log service: it serves
// protocol.GroupLogProtocol (docs/PROTOCOL.md §12.3) and keeps, for groups
// it cannot identify, their ciphertext logs for its TTL, in the order it
// gives them, and orders their commits: per epoch, the first commit
// appended wins and closes the epoch; later ones are refused with
// wrong_epoch.
//
// A log is read and appended to with the token of an epoch, which every
// member of the group derives and which the relay keeps only as a hash;
// a token reads only its own epoch. Members reach the relay through client
// keys of their own (node/mailbox), so the relay learns an opaque log ID,
// epochs, entry sizes and times: not the members, not who reads or writes,
// not the content.
//
// Durability: an append is answered only once its transaction is durable.
// Appends from all streams go through one store.Batcher (one fsync per
// batch). Every change of a log is a transaction of the store
// (store.RelayGroups), so a kill at any moment loses nothing answered.
package grouprelay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/sealpost/sealpost/node/internal/clock"
	"github.com/sealpost/sealpost/node/internal/closer"
	"github.com/sealpost/sealpost/node/internal/jobs"
	"github.com/sealpost/sealpost/node/internal/ratelimit"
	"github.com/sealpost/sealpost/node/internal/streamset"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// ErrClosed is returned by a Server's methods after Close.
var ErrClosed = errors.New("grouprelay: closed")

// Resources are the service's limits: keys of the [relay] section of
// config.toml (node/home), each answered with its own wire code when
// reached (docs/OPERATING.md). Start from DefaultResources.
type Resources struct {
	// MaxEntry bounds one entry, in bytes: at most protocol.MaxGroupEntry.
	// Over it: too_large.
	MaxEntry int
	// TTL is how long an entry is kept: the relay's envelope TTL.
	TTL time.Duration
	// IdleTTL is how long a log is kept without an append; then it is
	// deleted with all it holds (its members see unknown_log and create
	// it again).
	IdleTTL time.Duration
	// LogMaxCount and LogMaxBytes bound the entries one log holds at once.
	// Over it: quota_exceeded.
	LogMaxCount uint64
	LogMaxBytes uint64
	// StoreMaxBytes bounds the bytes of all entries of all logs; MaxLogs
	// the logs held. Over either: store_full.
	StoreMaxBytes uint64
	MaxLogs       uint64
	// PeerMaxLogs and SubnetMaxLogs bound the logs that the peer, and the
	// peers of the address range, that created them hold while they exist
	// (the relay's creator quotas, as for mailboxes: Config.Quotas);
	// over them a CREATE is refused too_many_logs. PeerMaxBytes and
	// SubnetMaxBytes bound the bytes of those logs' entries, whoever
	// appends them; over them an APPEND is refused quota_exceeded. So one
	// client, however many connections and peer IDs it uses from one
	// range, cannot fill the relay (store_full) for every group.
	PeerMaxLogs    uint64
	SubnetMaxLogs  uint64
	PeerMaxBytes   uint64
	SubnetMaxBytes uint64
	// CreateRate and CreateBurst bound the logs one connection creates
	// (per second, and at once). Over it: rate_limited.
	CreateRate  float64
	CreateBurst int
	// AppendRate and AppendBurst bound one connection's appends. Over it:
	// rate_limited.
	AppendRate  float64
	AppendBurst int
	// CommitRate and CommitBurst bound one log's commits, so that a
	// member cannot churn a group's epochs (and with them every member's
	// work). Over it: rate_limited.
	CommitRate  float64
	CommitBurst int
	// FetchLimit is the entries a FETCH without a limit gets (at most
	// protocol.MaxFetchLimit).
	FetchLimit int
	// SweepInterval is how often expired entries and idle logs are
	// removed.
	SweepInterval time.Duration
	// StreamIdle is the read deadline of a stream without subscriptions;
	// WriteTimeout bounds each write.
	StreamIdle   time.Duration
	WriteTimeout time.Duration
	// MaxStreams and MaxStreamsPerPeer bound the streams open at once;
	// MaxSubscriptions the subscriptions of one stream (a member keeps one
	// per group on one stream). Over them: the stream is reset, or
	// rate_limited.
	MaxStreams        int
	MaxStreamsPerPeer int
	MaxSubscriptions  int
	// MaxPending bounds the requests of one stream read but not yet
	// answered; the relay stops reading the stream while it is full.
	MaxPending int
	// MaxPendingBytes bounds the bytes of the requests of one stream read
	// and not yet done with (an append's entry until its transaction
	// ends), and MaxPendingBytesTotal those of all streams: a frame is
	// counted from its length, before it is read. Over either the relay
	// stops reading the stream (backpressure: the client's writes wait)
	// until enough of what it holds is stored. MaxPendingBytes is at
	// least one largest frame (protocol.MaxGroupLogFrame),
	// MaxPendingBytesTotal at least MaxPendingBytes.
	MaxPendingBytes      int
	MaxPendingBytesTotal int
	// MaxQueuedBytes bounds the bytes of the entries that one stream's
	// FETCHes read for their answers and did not write yet (its client
	// has not read them), and MaxQueuedBytesTotal those of all streams;
	// a push counts its entry and 64 bytes. A FETCH waits for room for a
	// page of entries (one largest frame, protocol.MaxGroupLogFrame)
	// before it reads its first, and ends with more at the first entry
	// that does not fit after that: its client fetches the rest once it
	// has read these. MaxQueuedBytes is at least one largest frame,
	// MaxQueuedBytesTotal at least MaxQueuedBytes.
	MaxQueuedBytes      int
	MaxQueuedBytesTotal int
	// MaxBatch is the weight (one per entry, one per KiB) committed in one
	// transaction.
	MaxBatch int
}

// The default bounds of the bytes of requests held, and of answers
// queued (Resources): a stream holds at most four of the largest entries
// at once, and all streams together 64 of them, of each.
const (
	DefaultMaxPendingBytes      = 4 * protocol.MaxGroupLogFrame
	DefaultMaxPendingBytesTotal = 64 * protocol.MaxGroupLogFrame
	DefaultMaxQueuedBytes       = 4 * protocol.MaxGroupLogFrame
	DefaultMaxQueuedBytesTotal  = 64 * protocol.MaxGroupLogFrame
)

// DefaultResources are the limits of a relay profile.
func DefaultResources() Resources {
	return Resources{
		MaxEntry:             protocol.MaxGroupEntry,
		TTL:                  14 * 24 * time.Hour,
		IdleTTL:              56 * 24 * time.Hour,
		LogMaxCount:          100_000,
		LogMaxBytes:          512 << 20,
		StoreMaxBytes:        10 << 30,
		MaxLogs:              100_000,
		PeerMaxLogs:          512,
		SubnetMaxLogs:        12_500,
		PeerMaxBytes:         1 << 30,
		SubnetMaxBytes:       5 << 28,
		CreateRate:           1.0 / 60,
		CreateBurst:          64,
		AppendRate:           200,
		AppendBurst:          1000,
		CommitRate:           1,
		CommitBurst:          20,
		FetchLimit:           256,
		SweepInterval:        time.Minute,
		StreamIdle:           2 * time.Minute,
		WriteTimeout:         30 * time.Second,
		MaxStreams:           4096,
		MaxStreamsPerPeer:    8,
		MaxSubscriptions:     1024,
		MaxPending:           256,
		MaxPendingBytes:      DefaultMaxPendingBytes,
		MaxPendingBytesTotal: DefaultMaxPendingBytesTotal,
		MaxQueuedBytes:       DefaultMaxQueuedBytes,
		MaxQueuedBytesTotal:  DefaultMaxQueuedBytesTotal,
		MaxBatch:             256,
	}
}

// Validate checks r.
func (r Resources) Validate() error {
	switch {
	case r.MaxEntry <= 0 || r.MaxEntry > protocol.MaxGroupEntry:
		return fmt.Errorf("grouprelay: max entry %d, want 1 to %d", r.MaxEntry, protocol.MaxGroupEntry)
	case r.LogMaxCount == 0 || r.LogMaxBytes == 0 || r.StoreMaxBytes == 0 || r.MaxLogs == 0 || r.PeerMaxLogs == 0 || r.SubnetMaxLogs == 0:
		return errors.New("grouprelay: zero quota")
	case r.PeerMaxBytes < uint64(r.MaxEntry) || r.SubnetMaxBytes < uint64(r.MaxEntry):
		return fmt.Errorf("grouprelay: peer and subnet bytes %d and %d, want at least the largest entry (%d)", r.PeerMaxBytes, r.SubnetMaxBytes, r.MaxEntry)
	case r.TTL <= 0 || r.IdleTTL < r.TTL || r.SweepInterval <= 0 || r.StreamIdle <= 0 || r.WriteTimeout <= 0:
		return errors.New("grouprelay: durations must be positive, the idle TTL at least the TTL")
	case r.CreateRate <= 0 || r.CreateBurst <= 0 || r.AppendRate <= 0 || r.AppendBurst <= 0 || r.CommitRate <= 0 || r.CommitBurst <= 0:
		return errors.New("grouprelay: rates and bursts must be positive")
	case r.FetchLimit <= 0 || r.FetchLimit > protocol.MaxFetchLimit:
		return fmt.Errorf("grouprelay: fetch limit %d, want 1 to %d", r.FetchLimit, protocol.MaxFetchLimit)
	case r.MaxStreamsPerPeer <= 0 || r.MaxStreams < r.MaxStreamsPerPeer || r.MaxSubscriptions <= 0 || r.MaxPending <= 0 || r.MaxBatch <= 0:
		return errors.New("grouprelay: stream limits must be positive, the total at least the per-peer one")
	case r.MaxPendingBytes < protocol.MaxGroupLogFrame || r.MaxPendingBytesTotal < r.MaxPendingBytes:
		return fmt.Errorf("grouprelay: pending bytes %d per stream and %d in all, want at least one frame (%d) and the total at least the per-stream bound", r.MaxPendingBytes, r.MaxPendingBytesTotal, protocol.MaxGroupLogFrame)
	case r.MaxQueuedBytes < pageBytes || r.MaxQueuedBytesTotal < r.MaxQueuedBytes:
		return fmt.Errorf("grouprelay: queued bytes %d per stream and %d in all, want at least one frame (%d) and the total at least the per-stream bound", r.MaxQueuedBytes, r.MaxQueuedBytesTotal, pageBytes)
	}
	return nil
}

// Config is what New needs. Each field documents its zero value.
type Config struct {
	// Host serves the protocol. Required.
	Host host.Host
	// Store holds the logs. Required; not closed by Close.
	Store store.Store
	// Resources are the limits. Zero: DefaultResources.
	Resources Resources
	// Logger receives the service's logs (codes, sizes, epochs; never a
	// token, log ID or entry). Zero: discarded.
	Logger *slog.Logger
	// Clock is the time of expiries, rates and the sweep. Zero: the
	// system clock.
	Clock clock.Clock
	// Registerer gets the Prometheus metrics (no per-log label). Zero:
	// not registered.
	Registerer prometheus.Registerer
	// Quotas returns the keys of the creator quotas of a peer on a
	// connection from remote: a node passes its relay's
	// (node/relay.Server.CreatorQuotas), so that a creator's group logs
	// count in the quotas its mailboxes count in (store.RelayQuota). Zero:
	// logs count in no creator quota.
	Quotas func(p peer.ID, remote ma.Multiaddr) [2]store.RelayQuotaKey
	// QuotaRefused is called with the name of the creator quota
	// (group_peer_logs, group_subnet_logs, group_peer_bytes,
	// group_subnet_bytes) of each request refused for it: a node passes
	// its relay's (node/relay.Server.QuotaRefused), which counts it in
	// sealpost_relay_quota_refusals_total. Zero: counted only in the
	// service's rejections (too_many_logs, quota_exceeded).
	QuotaRefused func(quota string)
}

// Server is the relay's group log service. Its methods are safe for
// concurrent use.
type Server struct {
	cfg   Config
	res   Resources
	log   *slog.Logger
	clock clock.Clock
	met   *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	w      *jobs.Writer

	streams *streamset.Set
	pending *semaphore.Weighted                     // the bytes of requests held, all streams (MaxPendingBytesTotal)
	queued  *budget                                 // the bytes of answers queued, all streams (MaxQueuedBytesTotal)
	creates *ratelimit.Limiter[string]              // by connection
	appends *ratelimit.Limiter[string]              // by connection
	commits *ratelimit.Limiter[protocol.GroupLogID] // by log

	subsMu sync.Mutex
	subs   map[protocol.GroupLogID]map[*subscription]struct{}

	closing closer.Once
}

// maxLimited bounds the keys each rate limiter remembers.
const maxLimited = 16384

// New registers the stream handler and starts the writer and the sweep.
func New(cfg Config) (*Server, error) {
	if cfg.Host == nil || cfg.Store == nil {
		return nil, errors.New("grouprelay: Config.Host and Store are required")
	}
	if cfg.Resources == (Resources{}) {
		cfg.Resources = DefaultResources()
	}
	res := cfg.Resources
	if err := res.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.System()
	}
	s := &Server{
		cfg: cfg, res: res, log: cfg.Logger, clock: cfg.Clock,
		streams: streamset.New(res.MaxStreams, res.MaxStreamsPerPeer),
		pending: semaphore.NewWeighted(int64(res.MaxPendingBytesTotal)),
		queued:  newBudget(res.MaxQueuedBytesTotal),
		creates: ratelimit.New[string](cfg.Clock, res.CreateRate, float64(res.CreateBurst), 0, maxLimited),
		appends: ratelimit.New[string](cfg.Clock, res.AppendRate, float64(res.AppendBurst), 0, maxLimited),
		commits: ratelimit.New[protocol.GroupLogID](cfg.Clock, res.CommitRate, float64(res.CommitBurst), 0, maxLimited),
		subs:    map[protocol.GroupLogID]map[*subscription]struct{}{},
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s.met = met
	s.ctx, s.cancel = context.WithCancel(context.Background())
	var t store.RelayGroupTotals
	if err := cfg.Store.View(s.ctx, func(tx *store.Tx) error {
		var err error
		t, err = tx.RelayGroups().Totals()
		return err
	}); err != nil {
		s.cancel()
		met.Unregister()
		return nil, fmt.Errorf("grouprelay: read totals: %w", err)
	}
	met.setTotals(t)
	s.w = jobs.New(cfg.Store, jobs.Options{MaxBatch: res.MaxBatch, Clock: cfg.Clock,
		Finish: func(tx *store.Tx) error {
			t, err := tx.RelayGroups().Totals()
			if err == nil {
				s.met.setTotals(t)
			}
			return err
		},
		Done: func(_ int, took time.Duration, err error) {
			switch {
			case err == nil:
				s.met.commit.Observe(took.Seconds())
			case !errors.Is(err, jobs.ErrClosed):
				s.log.Error("grouprelay: store transaction failed", "err", err)
			}
		}})
	cfg.Host.SetStreamHandler(libp2pproto.ID(protocol.GroupLogProtocol), s.handle)
	s.wg.Add(1)
	go s.sweepLoop()
	return s, nil
}

// Close stops serving, resets the open streams, lets the writer finish
// the batches under way (every append answered is durable), waits for
// every goroutine it started, and returns. It is idempotent; a second
// call waits for the first.
func (s *Server) Close() error {
	return s.closing.Do(func() error {
		s.cfg.Host.RemoveStreamHandler(libp2pproto.ID(protocol.GroupLogProtocol))
		s.cancel()
		s.streams.Close()
		s.w.Close()
		s.wg.Wait()
		s.met.Unregister()
		return nil
	})
}

func (s *Server) handle(str network.Stream) {
	if !s.streams.Add(str) {
		s.met.reject("too_many_streams")
		str.Reset()
		return
	}
	defer s.streams.Release(str)
	s.met.streams.Inc()
	defer s.met.streams.Dec()
	newStream(s, str).serve()
}

// Totals returns the group log totals.
func (s *Server) Totals(ctx context.Context) (store.RelayGroupTotals, error) {
	var t store.RelayGroupTotals
	err := s.cfg.Store.View(ctx, func(tx *store.Tx) error {
		var err error
		t, err = tx.RelayGroups().Totals()
		return err
	})
	return t, err
}

// idleUntil is a log's idle deadline after an append at now, rounded up to
// the hour so that a busy log rewrites its index entry once an hour, not
// on every append.
func (s *Server) idleUntil(now time.Time) time.Time {
	return now.Add(s.res.IdleTTL).Truncate(time.Hour).Add(time.Hour)
}
