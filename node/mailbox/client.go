package mailbox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/node/internal/clock"
	"github.com/sealpost/sealpost/node/internal/closer"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Errors.
var (
	// ErrClosed: the client is closed.
	ErrClosed = errors.New("mailbox: closed")
	// ErrUnreachable: the relay could not be connected, or the stream to
	// it failed. The request may succeed later.
	ErrUnreachable = errors.New("mailbox: relay unreachable")
	// ErrBadRelay: the relay answered something that breaks the protocol
	// (a frame that does not decode, a custody receipt that does not
	// verify). The relay is faulty or not a sealpost relay.
	ErrBadRelay = errors.New("mailbox: the relay broke the protocol")
	// ErrBadAddr: a relay address is malformed or lacks /p2p/.
	ErrBadAddr = errors.New("mailbox: bad relay address")
)

// Config is what New needs. Each field documents its zero value.
type Config struct {
	// Store holds the node's own mailboxes (store.Mailboxes): their client
	// keys are loaded at New, and Run fetches and subscribes to each.
	// Required; the client does not close it.
	Store store.Store
	// Logger receives the client's logs (relay peer IDs, mailbox IDs and
	// codes; never keys or envelopes). Zero: discarded.
	Logger *slog.Logger
	// Rand supplies keys, nonces and the ephemeral keys of sealed
	// envelopes; the client reads it from several goroutines, so it must be
	// safe for concurrent use. Zero: crypto/rand.
	Rand io.Reader
	// Clock is the time of receipts, mailbox records and status, and drives
	// the idle-host janitor and the reconnection backoff (network deadlines
	// keep the system clock). Zero: the system clock.
	Clock clock.Clock
	// OnStatus is called when the state of an own mailbox changes
	// (connecting, fetching, subscribed, error), outside the client's
	// locks; it must not block. Zero: not called.
	OnStatus func(Status)
	// Options tune the client.
	Options Options
}

// Options tune a Client. Each field documents its zero value.
type Options struct {
	// Timeout bounds one request (connecting included) when its context
	// has no earlier deadline. Zero: 20 s.
	Timeout time.Duration
	// IdleTimeout is how long the host of a relay where the node keeps no
	// mailbox stays up after its last use. Zero: 5 minutes.
	IdleTimeout time.Duration
	// RetryMin and RetryMax bound the reconnection backoff of Run's
	// subscriptions. Zero: 1 s and 2 minutes.
	RetryMin, RetryMax time.Duration
}

// withDefaults fills the zero fields.
func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Second
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(2*time.Minute, o.RetryMin)
	}
	return o
}

// Client talks to relays for one node. Its methods are safe for
// concurrent use.
type Client struct {
	cfg   Config
	opt   Options
	clock clock.Clock
	log   *slog.Logger

	mu     sync.Mutex
	relays map[connKey]*relayConn
	keys   map[peer.ID]crypto.PrivKey // client keys of the own mailboxes
	status map[protocol.MailboxID]*Status
	closed bool          // set by Close; requests fail with ErrClosed after
	wake   chan struct{} // Refresh
	change chan struct{} // Changed

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closing closer.Once

	badReceipts atomic.Uint64 // BadReceipts
}

// BadReceipts returns how many custody receipts relays signed with a
// stored-until beyond the longest custody a relay may give
// (protocol.MaxCustody): misbehaving relays, whose receipts do not count.
func (c *Client) BadReceipts() uint64 { return c.badReceipts.Load() }

// New returns a client; it loads the client keys of the node's mailboxes
// and starts no connection until asked (Run, or a request).
func New(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Store == nil {
		return nil, errors.New("mailbox: Config.Store is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.System()
	}
	cfg.Options = cfg.Options.withDefaults()
	c := &Client{
		cfg:    cfg,
		opt:    cfg.Options,
		clock:  cfg.Clock,
		log:    cfg.Logger,
		relays: map[connKey]*relayConn{},
		keys:   map[peer.ID]crypto.PrivKey{},
		status: map[protocol.MailboxID]*Status{},
		wake:   make(chan struct{}, 1),
		change: make(chan struct{}, 1),
	}
	boxes, err := c.ownMailboxes(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range boxes {
		if _, err := c.learn(&m); err != nil {
			c.log.Warn("mailbox: a stored mailbox is unusable", "relay", m.Relay, "err", err)
		}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.janitor()
	return c, nil
}

// ownMailboxes reads the node's mailboxes.
func (c *Client) ownMailboxes(ctx context.Context) ([]store.Mailbox, error) {
	var out []store.Mailbox
	err := c.cfg.Store.View(ctx, func(tx *store.Tx) error {
		var err error
		out, err = tx.Mailboxes().List()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mailbox: read mailboxes: %w", err)
	}
	return out, nil
}

// learn records the client key of an own mailbox and returns its relay.
func (c *Client) learn(m *store.Mailbox) (peer.ID, error) {
	id, err := peer.Decode(m.Relay)
	if err != nil {
		return "", fmt.Errorf("%w: relay %q: %v", ErrBadAddr, m.Relay, err)
	}
	key, err := crypto.UnmarshalPrivateKey(m.ClientKey)
	if err != nil {
		return "", fmt.Errorf("mailbox: client key: %w", err)
	}
	var stale *relayConn
	c.mu.Lock()
	if old := c.keys[id]; old == nil || !old.Equals(key) {
		c.keys[id] = key
		if r := c.relays[connKey{id, roleOwner}]; r != nil && !r.key.Equals(key) {
			delete(c.relays, connKey{id, roleOwner})
			stale = r
		}
	}
	c.mu.Unlock()
	if stale != nil {
		stale.close()
	}
	return id, nil
}

// Close stops Run's subscriptions and closes every relay host. It is
// idempotent; a second call waits for the first to finish.
func (c *Client) Close() error {
	return c.closing.Do(func() error {
		c.mu.Lock()
		c.closed = true
		rs := c.relays
		c.relays = map[connKey]*relayConn{}
		c.mu.Unlock()
		c.cancel()
		for _, r := range rs {
			r.close()
		}
		c.wg.Wait()
		return nil
	})
}

// Refresh makes Run read the node's mailboxes again (after one was added
// or removed).
func (c *Client) Refresh() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Changed returns a channel that receives (at most one pending value)
// whenever the status of an own mailbox changes: its state, or a count
// the relay reported.
func (c *Client) Changed() <-chan struct{} { return c.change }

// connKey names a relay connection: the relay, and the role its key
// plays there.
type connKey struct {
	id   peer.ID
	role role
}

// role is what a relay connection's key does: each role has its own key
// towards each relay, so the relay cannot join one role's requests to
// another's.
type role uint8

const (
	// roleDepositor: deposits, card and prekey requests, group logs and
	// blob uploads, under a key made in memory.
	roleDepositor role = iota
	// roleOwner: the own mailbox's operations, under its client key.
	roleOwner
	// roleReader: blob downloads, under another key made in memory.
	roleReader
)

// relayConn is the client side of one relay in one role: its host, under
// the key used for that role towards this relay, and the streams the
// client keeps to it.
type relayConn struct {
	c   *Client
	id  peer.ID
	key crypto.PrivKey
	own bool // the owner's connection (kept across idle periods)

	hostOnce sync.Once
	h        host.Host
	hostErr  error

	ctl streamSlot // owner operations and card fetches, one at a time
	dep streamSlot // deposits, pipelined
	// held counts the long-lived streams open for callers (group logs,
	// blobs), which keep the host from being closed as idle.
	held atomic.Int32
	mu   sync.Mutex
	used time.Time
}

// relay returns the depositor's connection to relay id (deposits, card
// and prekey requests), making it if needed, and adds addrs to what its
// host knows. Its key is made in memory and is never an own mailbox's:
// the relay cannot join the node's own mailbox to the mailboxes it
// deposits into (which would show it who writes to whom).
func (c *Client) relay(id peer.ID, addrs []ma.Multiaddr) (*relayConn, error) {
	return c.conn(connKey{id, roleDepositor}, addrs)
}

// ownerRelay returns the owner's connection to relay id, under the client
// key of the own mailbox there.
func (c *Client) ownerRelay(id peer.ID, addrs []ma.Multiaddr) (*relayConn, error) {
	return c.conn(connKey{id, roleOwner}, addrs)
}

func (c *Client) conn(k connKey, addrs []ma.Multiaddr) (*relayConn, error) {
	id := k.id
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	r := c.relays[k]
	if r == nil {
		var key crypto.PrivKey
		if k.role == roleOwner {
			if key = c.keys[id]; key == nil {
				c.mu.Unlock()
				return nil, fmt.Errorf("mailbox: no own mailbox on relay %s", id)
			}
		} else {
			var err error
			if key, err = newKey(c.cfg.Rand); err != nil {
				c.mu.Unlock()
				return nil, err
			}
		}
		r = &relayConn{c: c, id: id, key: key, own: k.role == roleOwner}
		c.relays[k] = r
	}
	c.mu.Unlock()
	h, err := r.host()
	if err != nil {
		return nil, err
	}
	if len(addrs) > 0 {
		h.Peerstore().AddAddrs(id, addrs, peerstore.PermanentAddrTTL)
	}
	r.touch()
	return r, nil
}

func (r *relayConn) host() (host.Host, error) {
	r.hostOnce.Do(func() { r.h, r.hostErr = newHost(r.key) })
	return r.h, r.hostErr
}

func (r *relayConn) touch() {
	r.mu.Lock()
	r.used = r.c.clock.Now()
	r.mu.Unlock()
}

func (r *relayConn) idleSince() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.used
}

// close closes the relay's streams and host.
func (r *relayConn) close() {
	r.ctl.drop()
	r.dep.drop()
	r.hostOnce.Do(func() { r.hostErr = ErrClosed })
	if r.h != nil {
		r.h.Close()
	}
}

// connect makes sure the relay's host is connected to the relay.
func (r *relayConn) connect(ctx context.Context) error {
	h, err := r.host()
	if err != nil {
		return err
	}
	if len(h.Network().ConnsToPeer(r.id)) > 0 {
		return nil
	}
	if sw, ok := h.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(r.id) // Run has its own backoff
	}
	if err := h.Connect(ctx, peer.AddrInfo{ID: r.id}); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, r.id, err)
	}
	return nil
}

// janitor closes the depositor's hosts that were idle for IdleTimeout
// (the next deposit makes a new key).
func (c *Client) janitor() {
	defer c.wg.Done()
	clock.Tick(c.ctx, c.clock, max(c.opt.IdleTimeout/4, time.Second), func() {
		now := c.clock.Now()
		var idle []*relayConn
		c.mu.Lock()
		for k, r := range c.relays {
			if !r.own && now.Sub(r.idleSince()) > c.opt.IdleTimeout && !r.dep.busy() && !r.ctl.busy() && r.held.Load() == 0 {
				delete(c.relays, k)
				idle = append(idle, r)
			}
		}
		c.mu.Unlock()
		for _, r := range idle {
			r.close()
		}
	})
}

// ParseAddr parses a relay address: a multiaddr that ends in /p2p/<peer
// ID>.
func ParseAddr(s string) (peer.ID, ma.Multiaddr, error) {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return "", nil, fmt.Errorf("%w %q: %v", ErrBadAddr, s, err)
	}
	info, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil || len(info.Addrs) == 0 {
		return "", nil, fmt.Errorf("%w %q: needs a transport address and /p2p/<peer ID>", ErrBadAddr, s)
	}
	return info.ID, info.Addrs[0], nil
}

// timeout returns ctx bounded by the client's request timeout.
func (c *Client) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.opt.Timeout)
}
