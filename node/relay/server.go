package relay

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/node/internal/clock"
	"github.com/sealpost/sealpost/node/internal/closer"
	"github.com/sealpost/sealpost/node/internal/ratelimit"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// ErrClosed is returned by a Server's methods after Close.
var ErrClosed = errors.New("relay: closed")

// Clock is the relay's source of time: TTLs, challenges, rate limits and
// the sweep read it, so that tests can move time. It is node.Clock.
type Clock = clock.Clock

// Timer is a one-shot timer of a Clock.
type Timer = clock.Timer

// Config is what a relay is built from. Each optional field documents
// its zero value.
type Config struct {
	// Host serves protocol.RelayProtocol; its key must be Ed25519 (custody
	// receipts are verified against the key inlined in the relay's peer
	// ID). Required.
	Host host.Host
	// Store holds the mailboxes. Required; it must stay open until Close
	// returns, and the relay does not close it.
	Store store.Store
	// Resources are the limits. Zero: DefaultResources.
	Resources Resources
	// Logger receives the relay's logs (never an envelope, token, key or
	// mailbox ID). Zero: discarded.
	Logger *slog.Logger
	// Clock is the relay's time. Zero: the system clock.
	Clock Clock
	// Rand is the source of challenges and mailbox IDs; a cryptographic
	// source outside tests. Zero: crypto/rand.Reader.
	Rand io.Reader
	// Registerer gets the relay's Prometheus metrics (no per-mailbox
	// labels). Zero: not registered.
	Registerer prometheus.Registerer
}

// Server is the relay service: it serves protocol.RelayProtocol on its
// host and keeps mailboxes in its store. Its methods are safe for
// concurrent use.
type Server struct {
	h     host.Host
	st    store.Store
	res   Resources
	log   *slog.Logger
	clock Clock
	self  []byte             // the relay's peer ID bytes
	key   ed25519.PrivateKey // the host's key: signs custody receipts
	met   *metrics

	quotaSecret []byte // derives the store's names of creator quotas (quota.go)

	randMu sync.Mutex
	rand   io.Reader

	ctx      context.Context
	cancel   context.CancelFunc
	w        *store.Batcher[*job] // the writer (writer.go)
	wg       sync.WaitGroup       // the sweeper, stream handlers, subscriptions
	notifiee *network.NotifyBundle

	closeOnce closer.Once

	mu      sync.Mutex
	closing bool // Close began: admit nothing more
	streams map[*stream]struct{}
	perPeer map[peer.ID]int
	subPeer map[peer.ID]int // running subscriptions per peer (protect)
	conns   map[string]*connState
	subs    map[protocol.MailboxID]*subscription
	tokens  *ratelimit.Limiter[protocol.TokenHash]
	penalty *ratelimit.Limiter[peer.ID]

	seen *recentPeers // the peers served on mailbox streams (RecentPeers)
}

// maxLimited bounds the keys (deposit tokens, peers) each rate limiter
// remembers.
const maxLimited = 16384

// connState is what the relay counts per connection.
type connState struct {
	deposits  ratelimit.Bucket
	mailboxes int
}

// New starts the relay service on cfg.Host: it registers the stream
// handler of protocol.RelayProtocol and starts the store writer and the
// sweep.
func New(cfg Config) (*Server, error) {
	if cfg.Host == nil || cfg.Store == nil {
		return nil, errors.New("relay: Config.Host and Store are required")
	}
	if cfg.Resources == (Resources{}) {
		cfg.Resources = DefaultResources()
	}
	if err := cfg.Resources.Validate(); err != nil {
		return nil, err
	}
	h, st, res := cfg.Host, cfg.Store, cfg.Resources
	priv := h.Peerstore().PrivKey(h.ID())
	if priv == nil || priv.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("relay: the host's key must be Ed25519")
	}
	raw, err := priv.Raw()
	if err != nil || len(raw) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("relay: host key: %v", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.System()
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	s := &Server{
		h:           h,
		st:          st,
		res:         res,
		log:         cfg.Logger,
		clock:       cfg.Clock,
		self:        []byte(h.ID()),
		key:         ed25519.PrivateKey(raw),
		quotaSecret: newQuotaSecret(ed25519.PrivateKey(raw).Seed()),
		rand:        cfg.Rand,
		streams:     map[*stream]struct{}{},
		perPeer:     map[peer.ID]int{},
		subPeer:     map[peer.ID]int{},
		conns:       map[string]*connState{},
		subs:        map[protocol.MailboxID]*subscription{},
		tokens:      ratelimit.New[protocol.TokenHash](cfg.Clock, res.TokenRate, float64(res.TokenBurst), 0, maxLimited),
		penalty:     ratelimit.New[peer.ID](cfg.Clock, 1, 1, res.Penalty, maxLimited),
		seen:        newRecentPeers(MaxRecentPeers),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.met, err = newMetrics(s, cfg.Registerer); err != nil {
		return nil, err
	}
	var t store.RelayTotals
	if err := st.View(s.ctx, func(tx *store.Tx) error {
		var err error
		t, err = tx.Relay().Totals()
		return err
	}); err != nil {
		s.met.unregister()
		return nil, fmt.Errorf("relay: read totals: %w", err)
	}
	s.met.setTotals(t)
	s.notifiee = &network.NotifyBundle{DisconnectedF: func(_ network.Network, c network.Conn) {
		s.mu.Lock()
		delete(s.conns, c.ID())
		s.mu.Unlock()
	}}
	h.Network().Notify(s.notifiee)
	s.w = s.newWriter()
	s.wg.Add(1)
	go s.sweepLoop()
	h.SetStreamHandler(libp2pproto.ID(protocol.RelayProtocol), s.handle)
	s.log.Info("relay service started", "ttl", res.TTL.String(), "store_max_bytes", res.StoreMaxBytes)
	return s, nil
}

// Close stops the service: it removes the stream handler, resets the open
// relay streams, lets the writer finish the transaction under way, and
// waits for every goroutine it started. Every deposit answered with a
// receipt is durable. Close is idempotent; a second call waits for the
// first.
func (s *Server) Close() error {
	return s.closeOnce.Do(func() error {
		s.mu.Lock()
		s.closing = true
		open := make([]*stream, 0, len(s.streams))
		for c := range s.streams {
			open = append(open, c)
		}
		s.mu.Unlock()
		s.h.RemoveStreamHandler(libp2pproto.ID(protocol.RelayProtocol))
		s.h.Network().StopNotify(s.notifiee)
		for _, c := range open {
			c.str.Reset()
		}
		s.cancel()
		s.w.Close()
		s.wg.Wait()
		s.met.unregister()
		s.log.Info("relay service stopped")
		return nil
	})
}

// Addrs returns the relay's multiaddrs with /p2p/, for operators.
func (s *Server) Addrs() []string {
	var out []string
	p2p, err := ma.NewComponent("p2p", s.h.ID().String())
	if err != nil {
		return nil
	}
	for _, a := range s.h.Addrs() {
		out = append(out, a.Encapsulate(p2p.Multiaddr()).String())
	}
	return out
}

// newChallenge reads a fresh challenge.
func (s *Server) newChallenge() (protocol.Challenge, error) {
	var c protocol.Challenge
	err := s.readRandom(c[:])
	return c, err
}

func (s *Server) readRandom(b []byte) error {
	s.randMu.Lock()
	defer s.randMu.Unlock()
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return fmt.Errorf("relay: random source: %w", err)
	}
	return nil
}

// admit counts a new stream of p, or refuses it (closing, penalized, or
// over a stream limit).
func (s *Server) admit(c *stream) bool {
	if s.penalty.Refused(c.peer) {
		s.met.reject("penalized")
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || len(s.streams) >= s.res.MaxStreams || s.perPeer[c.peer] >= s.res.MaxStreamsPerPeer {
		if !s.closing {
			s.met.reject("too_many_streams")
		}
		return false
	}
	s.streams[c] = struct{}{}
	s.perPeer[c.peer]++
	if s.conns[c.connID] == nil {
		s.conns[c.connID] = &connState{deposits: ratelimit.NewBucket(float64(s.res.DepositBurst), s.clock.Now())}
	}
	s.wg.Add(1)
	return true
}

func (s *Server) release(c *stream) {
	s.mu.Lock()
	delete(s.streams, c)
	if s.perPeer[c.peer]--; s.perPeer[c.peer] <= 0 {
		delete(s.perPeer, c.peer)
	}
	if c.str.Conn().IsClosed() {
		// The disconnect notification may have come before admit made
		// the entry.
		delete(s.conns, c.connID)
	}
	s.mu.Unlock()
	s.wg.Done()
}

// takeDeposit takes one deposit from the connection's bucket.
func (s *Server) takeDeposit(connID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.conns[connID]
	if cs == nil {
		return false
	}
	return cs.deposits.Take(s.clock.Now(), s.res.DepositRate, float64(s.res.DepositBurst), 1) == 1
}

// countMailbox counts a mailbox created on the connection, or refuses it.
func (s *Server) countMailbox(connID string, n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.conns[connID]
	if cs == nil || cs.mailboxes+n > s.res.MailboxesPerConn {
		return false
	}
	cs.mailboxes += n
	return true
}
