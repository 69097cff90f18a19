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
	// RelayHosts bounds the hosts of keys made in memory (a depositor's
	// for each mailbox written to, group logs', blob downloads') open
	// towards one relay at once, each one connection. Past it a new one
	// closes the least recently used one not in use (its delivery run
	// ends), or waits for one to be released. Zero: 6, which with the
	// own mailbox's connection stays under the 8 connections from one
	// IPv4 address a libp2p relay accepts by default.
	RelayHosts int
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
	if o.RelayHosts <= 0 {
		o.RelayHosts = 6
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
	// freed is closed, and replaced, when a relay host of a key made in
	// memory is released or closed while someone waits for room (waiting).
	freed   chan struct{}
	waiting int

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
		freed:  make(chan struct{}),
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
		if r := c.relays[connKey{id: id, role: roleOwner}]; r != nil && !r.key.Equals(key) {
			delete(c.relays, connKey{id: id, role: roleOwner})
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
	// mailbox is, for a depositor, the mailbox it deposits into (zero: the
	// depositor's work that names no mailbox, group logs).
	mailbox protocol.MailboxID
}

// role is what a relay connection's key does: each role has its own key
// towards each relay, and a depositor one towards each mailbox, so the
// relay cannot join one role's requests to another's, nor one mailbox's
// depositor to another's.
type role uint8

const (
	// roleDepositor: deposits, card and prekey requests and blob uploads,
	// under a key made in memory for each mailbox written to; group logs
	// under one more.
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
	// users counts the callers between conn and release, who keep the
	// host from being closed as idle or to make room.
	users atomic.Int32
	mu    sync.Mutex
	used  time.Time
}

// relay returns the depositor's connection to relay id for mailbox mb
// (deposits, card and prekey requests and blob uploads for mb; zero: group
// logs), making it if needed, and adds addrs to what its host knows; the
// caller releases it when done. Its key is made in memory, one for each
// mailbox, and is never an own mailbox's: the relay cannot join the
// node's own mailbox to the mailboxes it deposits into, nor two mailboxes
// it deposits into to each other (which would show it who writes to
// whom). The janitor closes the connection after IdleTimeout without use,
// and conn to make room, so each delivery run into a mailbox comes under a
// new key.
func (c *Client) relay(ctx context.Context, id peer.ID, mb protocol.MailboxID, addrs []ma.Multiaddr) (*relayConn, error) {
	return c.conn(ctx, connKey{id: id, role: roleDepositor, mailbox: mb}, addrs)
}

// ownerRelay returns the owner's connection to relay id, under the client
// key of the own mailbox there (kept, never waited for).
func (c *Client) ownerRelay(id peer.ID, addrs []ma.Multiaddr) (*relayConn, error) {
	return c.conn(context.Background(), connKey{id: id, role: roleOwner}, addrs)
}

// conn returns the connection k, making it if needed, and adds addrs to
// what its host knows. A connection of a key made in memory counts a user
// until the caller releases it; making one when Options.RelayHosts of them
// are open towards the relay closes the least recently used one that is
// not in use, or waits (within ctx and the request timeout) for one to be.
func (c *Client) conn(ctx context.Context, k connKey, addrs []ma.Multiaddr) (*relayConn, error) {
	id := k.id
	var victim *relayConn
	c.mu.Lock()
	for {
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		if c.relays[k] != nil || k.role == roleOwner {
			break
		}
		var ok bool
		if victim, ok = c.roomLocked(id); ok {
			break
		}
		freed := c.freed
		c.waiting++
		c.mu.Unlock()
		err := c.waitRoom(ctx, freed)
		c.mu.Lock()
		c.waiting--
		if err != nil {
			c.mu.Unlock()
			return nil, fmt.Errorf("%w: %s: %d hosts towards it in use: %v", ErrUnreachable, id, c.opt.RelayHosts, err)
		}
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
	if !r.own {
		r.users.Add(1)
	}
	c.mu.Unlock()
	if victim != nil {
		victim.close()
	}
	h, err := r.host()
	if err != nil {
		r.release()
		return nil, err
	}
	if len(addrs) > 0 {
		h.Peerstore().AddAddrs(id, addrs, peerstore.PermanentAddrTTL)
	}
	r.touch()
	return r, nil
}

// roomLocked reports whether a host of a key made in memory may be made
// towards relay id, and the one taken out of c.relays to make room (the
// least recently used of those not in use), for the caller to close.
func (c *Client) roomLocked(id peer.ID) (*relayConn, bool) {
	n := 0
	var lru *relayConn
	var lruKey connKey
	for k, r := range c.relays {
		if k.id != id || r.own {
			continue
		}
		n++
		if r.inUse() {
			continue
		}
		if lru == nil || r.idleSince().Before(lru.idleSince()) {
			lru, lruKey = r, k
		}
	}
	if n < c.opt.RelayHosts {
		return nil, true
	}
	if lru == nil {
		return nil, false
	}
	delete(c.relays, lruKey)
	return lru, true
}

// waitRoom waits until freed is closed, ctx or the request timeout ends,
// or the client closes.
func (c *Client) waitRoom(ctx context.Context, freed <-chan struct{}) error {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	select {
	case <-freed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClosed
	}
}

// freeRoom wakes the callers waiting for room towards a relay.
func (c *Client) freeRoom() {
	c.mu.Lock()
	if c.waiting > 0 {
		close(c.freed)
		c.freed = make(chan struct{})
	}
	c.mu.Unlock()
}

// release ends a use of r that conn began.
func (r *relayConn) release() {
	if r.own {
		return
	}
	r.touch()
	if r.users.Add(-1) == 0 {
		r.c.freeRoom()
	}
}

// inUse reports whether r has a caller, a request or a long-lived stream.
func (r *relayConn) inUse() bool {
	return r.users.Load() > 0 || r.held.Load() > 0 || r.dep.busy() || r.ctl.busy()
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
			if !r.own && now.Sub(r.idleSince()) > c.opt.IdleTimeout && !r.inUse() {
				delete(c.relays, k)
				idle = append(idle, r)
			}
		}
		c.mu.Unlock()
		for _, r := range idle {
			r.close()
		}
		if len(idle) > 0 {
			c.freeRoom()
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
