// Package blobrelay is a community relay's attachment service: it serves
// protocol.BlobProtocol (docs/PROTOCOL.md §11.4) and keeps attachment
// blobs for the relay's mailboxes, blind to what they are.
//
// A blob is stored once, as a file named by its SHA-256 (store/blobfs);
// each upload of it is a reference in the store (store.RelayBlobs) with its
// own capabilities (the relay keeps only their hashes), the mailbox whose
// blob quota it is charged to (and the quotas of that mailbox's creator:
// its peer and address range), its readers and its expiry (the relay's
// envelope TTL). Uploads need a deposit token of that mailbox, like
// deposits, and the same client keys send them (node/mailbox), so the
// relay learns which mailbox a blob is for, its padded size and when it
// came: not the sender, not the recipient's identity, not the file.
//
// Durability: a PUT is answered ok only once the blob's file is synced and
// renamed into place and its reference committed. A reference is removed
// in a transaction first and the file unlinked after, when no reference is
// left; a crash in between leaves a file without a record, which New
// removes. Operations on one blob hold that blob's lock, so an upload and
// a removal of the same blob never interleave.
package blobrelay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/node/internal/clock"
	"github.com/sealpost/sealpost/node/internal/closer"
	"github.com/sealpost/sealpost/node/internal/streamset"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/blobfs"
)

// ErrClosed is returned by a Server's methods after Close.
var ErrClosed = errors.New("blobrelay: closed")

// Resources are the service's limits: keys of the [relay] section of
// config.toml (node/home), each answered with its own wire code when
// reached (docs/OPERATING.md). Start from DefaultResources.
type Resources struct {
	// MaxBlob bounds one blob, in bytes: at most attachment.MaxBlobSize
	// (16 MiB). Over it: too_large.
	MaxBlob int64
	// MailboxMaxBytes and MailboxMaxCount bound the blob references one
	// mailbox holds at once (each counts its blob's size, even when the
	// blob is stored once for several). Over it: mailbox_quota.
	MailboxMaxBytes uint64
	MailboxMaxCount uint64
	// PeerMaxBytes and SubnetMaxBytes bound the blob bytes the mailboxes
	// made by one peer, and by the peers of one address range, hold
	// together (the relay's creator quotas, node/relay: a mailbox counts
	// in those of the peer and range that created it, whoever uploads
	// into it), so that one client, however many mailboxes it makes,
	// cannot fill the blob store (store_full) for everybody. Over it:
	// mailbox_quota.
	PeerMaxBytes   uint64
	SubnetMaxBytes uint64
	// LogMaxBytes and LogMaxCount bound the blob references one group log
	// holds at once (the blobs of the files sent to a group, uploaded
	// once for all its members), counted as a mailbox's. Over it:
	// quota_exceeded.
	LogMaxBytes uint64
	LogMaxCount uint64
	// StoreMaxBytes bounds the bytes of all blobs (each stored once).
	// Over it: store_full.
	StoreMaxBytes uint64
	// MinFreeDisk is the free space the blob directory's file system
	// keeps: an upload that would leave less is disk_full, so a full disk
	// refuses uploads before a write fails.
	MinFreeDisk uint64
	// TTL is how long a reference is kept when its readers do not
	// acknowledge it: the relay's envelope TTL.
	TTL time.Duration
	// SweepInterval is how often expired references, and those of deleted
	// mailboxes, are removed.
	SweepInterval time.Duration
	// StreamIdle is the read deadline of a stream waiting for a request;
	// WriteTimeout bounds each write and each read of a blob's bytes (a
	// peer that stops sending in the middle of a blob is cut off).
	StreamIdle   time.Duration
	WriteTimeout time.Duration
	// MaxStreamsPerPeer and MaxStreams bound the blob streams open at once.
	MaxStreamsPerPeer int
	MaxStreams        int
	// MaxPending bounds the requests of one stream read but not yet
	// answered (uploads waiting for their commit); the relay stops reading
	// the stream while it is full.
	MaxPending int
}

// DefaultResources are the limits of a relay profile. A device makes one
// mailbox per relay, with a peer of its own: a peer's mailboxes may hold
// what one mailbox may; an address range may hold an eighth of the store.
func DefaultResources() Resources {
	return Resources{
		MaxBlob:           attachment.MaxBlobSize,
		MailboxMaxBytes:   1 << 30,
		MailboxMaxCount:   16384,
		PeerMaxBytes:      1 << 30,
		SubnetMaxBytes:    5 << 29,
		LogMaxBytes:       1 << 30,
		LogMaxCount:       16384,
		StoreMaxBytes:     20 << 30,
		MinFreeDisk:       1 << 30,
		TTL:               14 * 24 * time.Hour,
		SweepInterval:     time.Minute,
		StreamIdle:        2 * time.Minute,
		WriteTimeout:      30 * time.Second,
		MaxStreamsPerPeer: 8,
		MaxStreams:        1024,
		MaxPending:        8,
	}
}

// Validate checks r.
func (r Resources) Validate() error {
	switch {
	case r.MaxBlob <= 0 || r.MaxBlob > attachment.MaxBlobSize:
		return fmt.Errorf("blobrelay: max blob %d, want 1 to %d", r.MaxBlob, attachment.MaxBlobSize)
	case r.MailboxMaxBytes == 0 || r.MailboxMaxCount == 0 || r.LogMaxBytes == 0 || r.LogMaxCount == 0 || r.StoreMaxBytes == 0:
		return errors.New("blobrelay: zero quota")
	case r.PeerMaxBytes < uint64(r.MaxBlob) || r.SubnetMaxBytes < uint64(r.MaxBlob):
		return fmt.Errorf("blobrelay: peer and subnet blob bytes %d and %d, want at least the largest blob (%d)", r.PeerMaxBytes, r.SubnetMaxBytes, r.MaxBlob)
	case r.TTL <= 0 || r.SweepInterval <= 0 || r.StreamIdle <= 0 || r.WriteTimeout <= 0:
		return errors.New("blobrelay: zero duration")
	case r.MaxStreamsPerPeer <= 0 || r.MaxStreams < r.MaxStreamsPerPeer || r.MaxPending <= 0:
		return errors.New("blobrelay: stream limits must be positive, the total at least the per-peer one")
	}
	return nil
}

// Config is what New needs. Each field documents its zero value.
type Config struct {
	// Host serves the protocol. Required.
	Host host.Host
	// Store holds the references (and the relay's mailboxes and tokens,
	// which uploads are checked against). Required; not closed by Close.
	Store store.Store
	// Blobs holds the blobs' bytes. Required.
	Blobs *blobfs.Dir
	// Resources are the limits. Zero: DefaultResources.
	Resources Resources
	// Logger receives the service's logs (codes and sizes; never a hash,
	// capability, token or mailbox ID). Zero: discarded.
	Logger *slog.Logger
	// Clock is the time of expiries and the sweep. Zero: the system clock.
	Clock clock.Clock
	// Registerer gets the Prometheus metrics. Zero: not registered.
	Registerer prometheus.Registerer
	// QuotaRefused is called with the name of the creator quota
	// (blob_peer_bytes, blob_subnet_bytes) of each upload refused for
	// it: a node passes its relay's (node/relay.Server.QuotaRefused),
	// which counts it with the envelopes' in one metric. Zero: counted
	// only in the service's rejections (mailbox_quota).
	QuotaRefused func(quota string)
}

// Server is the relay's blob service. Its methods are safe for concurrent
// use.
type Server struct {
	cfg   Config
	res   Resources
	log   *slog.Logger
	clock clock.Clock
	met   *metrics

	locks [64]sync.Mutex // by a blob hash's first byte: see lock

	// sweeping is held through a Sweep, so that one returns only after
	// the files of the references it found gone are removed: a second
	// sweep running beside it (the timer's, or an explicit one) would
	// not find those references and could return before the first
	// removed their files.
	sweeping sync.Mutex

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	streams *streamset.Set

	closing closer.Once
}

// New removes the blob files no reference holds (a crash's leftovers),
// registers the stream handler and starts the sweep.
func New(cfg Config) (*Server, error) {
	if cfg.Host == nil || cfg.Store == nil || cfg.Blobs == nil {
		return nil, errors.New("blobrelay: Config.Host, Store and Blobs are required")
	}
	if cfg.Resources == (Resources{}) {
		cfg.Resources = DefaultResources()
	}
	if err := cfg.Resources.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.System()
	}
	s := &Server{cfg: cfg, res: cfg.Resources, log: cfg.Logger, clock: cfg.Clock,
		streams: streamset.New(cfg.Resources.MaxStreams, cfg.Resources.MaxStreamsPerPeer)}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s.met = met
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.removeOrphans(); err != nil {
		s.cancel()
		met.unregister()
		return nil, err
	}
	if err := s.refreshTotals(s.ctx); err != nil {
		s.cancel()
		met.unregister()
		return nil, err
	}
	cfg.Host.SetStreamHandler(libp2pproto.ID(protocol.BlobProtocol), s.handle)
	s.wg.Add(1)
	go s.sweepLoop()
	return s, nil
}

// Close stops serving, waits for the streams being served and the sweep,
// and returns. It is idempotent; a second call waits for the first.
func (s *Server) Close() error {
	return s.closing.Do(func() error {
		s.cfg.Host.RemoveStreamHandler(libp2pproto.ID(protocol.BlobProtocol))
		s.cancel()
		s.streams.Close()
		s.wg.Wait()
		s.met.unregister()
		return nil
	})
}

// lock takes the lock of blob h.
func (s *Server) lock(h attachment.Hash) func() {
	m := &s.locks[h[0]%byte(len(s.locks))]
	m.Lock()
	return m.Unlock
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

// removeOrphans deletes the blob files that no reference holds.
func (s *Server) removeOrphans() error {
	var orphans []attachment.Hash
	err := s.cfg.Blobs.Walk(func(h [32]byte, _ int64) error {
		return s.cfg.Store.View(s.ctx, func(tx *store.Tx) error {
			ok, err := tx.RelayBlobs().HasBlob(h)
			if err == nil && !ok {
				orphans = append(orphans, h)
			}
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("blobrelay: look for orphaned blobs: %w", err)
	}
	for _, h := range orphans {
		if err := s.cfg.Blobs.Remove(h); err != nil {
			return err
		}
	}
	if len(orphans) > 0 {
		s.log.Info("blobrelay: removed blobs left without a reference", "count", len(orphans))
	}
	return nil
}

// refreshTotals reads the totals for the metrics.
func (s *Server) refreshTotals(ctx context.Context) error {
	return s.cfg.Store.View(ctx, func(tx *store.Tx) error {
		t, err := tx.RelayBlobs().Totals()
		if err == nil {
			s.met.setTotals(t)
		}
		return err
	})
}

// Totals returns the blob totals.
func (s *Server) Totals(ctx context.Context) (store.RelayBlobTotals, error) {
	var t store.RelayBlobTotals
	err := s.cfg.Store.View(ctx, func(tx *store.Tx) error {
		var err error
		t, err = tx.RelayBlobs().Totals()
		return err
	})
	return t, err
}

// remove deletes reference k (ack: one reader's acknowledgement), and the
// blob's file once no reference holds it.
func (s *Server) remove(ctx context.Context, k store.BlobRefKey, ack bool) error {
	unlock := s.lock(k.Hash)
	defer unlock()
	var last bool
	err := s.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		var err error
		if ack {
			_, last, err = tx.RelayBlobs().AckBlobRef(k)
		} else {
			last, err = tx.RelayBlobs().RemoveBlobRef(k)
		}
		return err
	})
	if err != nil {
		return err
	}
	if last {
		s.met.removed.Inc()
		return s.cfg.Blobs.Remove(k.Hash)
	}
	return nil
}

// sweepBatch bounds the references one sweep transaction removes.
const sweepBatch = 256

func (s *Server) sweepLoop() {
	defer s.wg.Done()
	t := s.clock.NewTimer(s.res.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C():
		}
		if err := s.Sweep(s.ctx); err != nil && s.ctx.Err() == nil {
			s.log.Warn("blobrelay: sweep", "err", err)
		}
		t.Reset(s.res.SweepInterval)
	}
}

// Sweep removes the references past their expiry and those charged to
// mailboxes or group logs that no longer exist (and the blobs left
// without one). A Sweep called while another runs waits for it, then
// sweeps.
func (s *Server) Sweep(ctx context.Context) error {
	s.sweeping.Lock()
	defer s.sweeping.Unlock()
	for {
		var refs []store.BlobRefKey
		err := s.cfg.Store.View(ctx, func(tx *store.Tx) error {
			var err error
			refs, err = tx.RelayBlobs().ExpiredRefs(s.clock.Now(), sweepBatch)
			return err
		})
		if err != nil {
			return err
		}
		for _, k := range refs {
			if err := s.remove(ctx, k, false); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			s.met.expired.Inc()
		}
		if len(refs) < sweepBatch {
			break
		}
	}
	var after protocol.MailboxID
	for {
		var boxes, gone []protocol.MailboxID
		err := s.cfg.Store.View(ctx, func(tx *store.Tx) error {
			var err error
			boxes, err = tx.RelayBlobs().Mailboxes(after, sweepBatch)
			for _, mb := range boxes {
				if err != nil {
					break
				}
				var m store.RelayMailbox
				m, err = tx.Relay().Mailbox(mb)
				if errors.Is(err, store.ErrNotFound) || (err == nil && m.Deleting) {
					gone, err = append(gone, mb), nil
				}
			}
			return err
		})
		if err != nil {
			return err
		}
		for _, mb := range gone {
			if err := s.dropMailbox(ctx, mb); err != nil {
				return err
			}
		}
		if len(boxes) < sweepBatch {
			break
		}
		after = boxes[len(boxes)-1]
	}
	if err := s.sweepLogs(ctx); err != nil {
		return err
	}
	return s.refreshTotals(ctx)
}

// sweepLogs removes the references charged to group logs that no longer
// exist (deleted, or idle past the group relay's idle TTL).
func (s *Server) sweepLogs(ctx context.Context) error {
	var after protocol.GroupLogID
	for {
		var logs, gone []protocol.GroupLogID
		err := s.cfg.Store.View(ctx, func(tx *store.Tx) error {
			var err error
			logs, err = tx.RelayBlobs().Logs(after, sweepBatch)
			for _, id := range logs {
				if err != nil {
					break
				}
				var l store.RelayGroupLog
				l, err = tx.RelayGroups().Log(id)
				if errors.Is(err, store.ErrNotFound) || (err == nil && l.Deleting) {
					gone, err = append(gone, id), nil
				}
			}
			return err
		})
		if err != nil {
			return err
		}
		for _, id := range gone {
			if err := s.dropRefs(ctx, func(tx *store.Tx) ([]store.BlobRefKey, error) {
				return tx.RelayBlobs().LogRefs(id, sweepBatch)
			}); err != nil {
				return err
			}
		}
		if len(logs) < sweepBatch {
			return nil
		}
		after = logs[len(logs)-1]
	}
}

// dropMailbox removes every reference charged to mailbox mb.
func (s *Server) dropMailbox(ctx context.Context, mb protocol.MailboxID) error {
	return s.dropRefs(ctx, func(tx *store.Tx) ([]store.BlobRefKey, error) {
		return tx.RelayBlobs().MailboxRefs(mb, sweepBatch)
	})
}

// dropRefs removes the references next lists, batch after batch, until it
// lists none.
func (s *Server) dropRefs(ctx context.Context, next func(tx *store.Tx) ([]store.BlobRefKey, error)) error {
	for {
		var refs []store.BlobRefKey
		err := s.cfg.Store.View(ctx, func(tx *store.Tx) error {
			var err error
			refs, err = next(tx)
			return err
		})
		if err != nil || len(refs) == 0 {
			return err
		}
		for _, k := range refs {
			if err := s.remove(ctx, k, false); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
	}
}
