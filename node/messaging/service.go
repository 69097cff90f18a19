package messaging

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node/internal/clock"
	"github.com/sealpost/sealpost/node/internal/closer"
	"github.com/sealpost/sealpost/node/internal/ratelimit"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/node/prekeys"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Clock is the service's source of time for its own decisions (retry
// backoff, prekey rotation, expiry, rate limits). Network deadlines use the
// system clock. It is node.Clock.
type Clock = clock.Clock

// Timer is a one-shot timer of a Clock.
type Timer = clock.Timer

// Config is what New needs. Each field documents its zero value.
type Config struct {
	// Host is the device's libp2p host. Required. The service registers
	// its stream handlers on it and removes them in Close.
	Host host.Host
	// Store holds the identity (store.Self) and everything the service
	// keeps. Required; the service does not close it.
	Store store.Store
	// Logger receives the service's logs (never plaintext, keys or whole
	// ciphertexts). Zero: discarded.
	Logger *slog.Logger
	// Clock is the source of time. Zero: the system clock.
	Clock Clock
	// Rand supplies keys, message IDs and backoff jitter. Zero:
	// crypto/rand.
	Rand io.Reader
	// Publish receives the service's events (EventMessageReceived, ...)
	// with their data. It must not block. Zero: events are dropped.
	Publish func(typ string, data any)
	// FindDevice looks a device up in the DHT (node.FindDevice). Zero: only
	// known addresses are dialled.
	FindDevice func(ctx context.Context, p peer.ID) ([]ma.Multiaddr, error)
	// Mailbox is the relay client (node/mailbox) the service receives
	// through and deposits with; the service runs its receive loop and
	// does not close it. Zero: no relays (AddRelay returns ErrNoRelays).
	Mailbox *mailbox.Client
	// Files takes the pointers of the file messages received (node/files,
	// through the node). Zero: a file message is committed and shown with
	// its caption, and nothing downloads its file.
	Files Files
	// OnGroupControl is called (it must not block) after a contact's group
	// control (a KindGroup plaintext) was committed to store.Groups'
	// inbox, for the group engine to handle. Zero: the controls wait in
	// the inbox.
	OnGroupControl func()
	// Options tune the service; the zero value is the defaults.
	Options Options
}

// Files is what the service needs of the attachment service.
type Files interface {
	// Received records the pointer f of the file message id from a
	// contact, in the transaction tx that commits the message; auto says
	// whether the file may download without being asked (not for a
	// message request). An error aborts the transaction.
	Received(tx *store.Tx, id protocol.MessageID, from identity.UserID, f *protocol.File, now time.Time, auto bool) error
	// Wake is called after such a transaction committed.
	Wake()
	// Delete deletes the file of message id (a message without one is no
	// error) in the transaction tx that deletes the message, and returns
	// what to do after the commit (nil: nothing), such as removing its
	// data. An error aborts the transaction.
	Delete(tx *store.Tx, id protocol.MessageID) (func(), error)
}

// Options tune the service. Each zero field takes the default named next
// to it.
type Options struct {
	// Prekeys is the prekey schedule (prekeys.DefaultPolicy).
	Prekeys prekeys.Policy
	// RetryMin and RetryMax bound the delivery retry backoff: the n-th
	// retry waits RetryMin·2^(n-1), at most RetryMax, with jitter (between
	// half and all of it). Defaults 1 s and 10 min.
	RetryMin, RetryMax time.Duration
	// FailAfter is the number of failed attempts after which an outgoing
	// message shows the state failed (it is still retried). Default 6.
	FailAfter int
	// MaxBatch bounds the frames a receiver commits in one transaction and
	// the jobs the writer commits together; 1 turns batching off. Default
	// 256.
	MaxBatch int
	// MaxInflight bounds the messages sent on a stream and not yet
	// acknowledged. Default 4096.
	MaxInflight int
	// PeerRate and PeerBurst are the per-peer token bucket of incoming
	// message frames (frames per second and bucket size). Defaults 20000
	// and 40000.
	PeerRate, PeerBurst float64
	// BundleRate and BundleBurst are the per-peer token bucket of bundle
	// requests. Defaults 1 per second and 20.
	BundleRate, BundleBurst float64
	// StrangerBundleRate and StrangerBundleBurst are the one token bucket
	// shared by the bundle requests of every peer that is not an accepted
	// contact's device; beyond it a request without a pin is refused and
	// one with a pin gets no one-time prekey. Defaults 1 a minute and 20.
	StrangerBundleRate, StrangerBundleBurst float64
	// SessionRate and SessionBurst are the per-device token bucket of
	// first messages that start a session (each costs about a millisecond
	// of CPU; a device starts one session at a time). Defaults 5 per
	// second and 20.
	SessionRate, SessionBurst float64
	// Penalty is how long a peer that sent bad input is refused; it
	// doubles with each offence, up to 64 times. Default 10 s.
	Penalty time.Duration
	// KeptSessions bounds the sessions kept per peer device (the active
	// one and older ones that late messages may still need). Default 5.
	KeptSessions int
	// SeenRetention is how long a received ciphertext's hash is kept to
	// recognise a duplicate (longer than the relay TTL). Default 30 days.
	SeenRetention time.Duration
	// MaintainEvery is the period of prekey maintenance and expiry.
	// Default 1 hour.
	MaintainEvery time.Duration
	// DialTimeout bounds connecting a peer; AckTimeout how long a sender
	// waits for acknowledgements before it resets the stream (an idle
	// stream is closed after it too); IdleTimeout how long a receiver
	// keeps an idle stream. Defaults 15 s, 30 s, 5 min (system time).
	DialTimeout, AckTimeout, IdleTimeout time.Duration
	// RelayAfter bounds the direct connection attempt to a contact that
	// lists relay mailboxes; after it the messages go to the mailboxes.
	// Default 3 s (system time).
	RelayAfter time.Duration
	// FailAfterRedeposits is how many times a text message may be
	// deposited again on a relay (its custody receipt ran out before its
	// delivery receipt came) before it shows the state failed, with the
	// reason; it is still deposited again until delivered or removed.
	// Default 2 (with the default relay TTL, four weeks undelivered).
	FailAfterRedeposits int
	// RenewEvery bounds how often this node starts a new session with a
	// contact because a message of that contact's, taken from a relay,
	// decrypted in no session here. Default 1 hour.
	RenewEvery time.Duration
	// RequestMessages and RequestBytes cap what one message request (a
	// stranger's contact, not accepted) holds: beyond either, its oldest
	// messages are dropped. Defaults 100 and 256 KiB (at least one
	// message of MaxText).
	RequestMessages, RequestBytes int
	// RequestsMessages and RequestsBytes cap what all message requests
	// hold together (a request counts as at least one message): beyond
	// either, the oldest requests are dropped whole. Defaults 2000 and
	// 8 MiB (at least the caps of one request).
	RequestsMessages, RequestsBytes int
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.RetryMin, time.Second)
	def(&o.RetryMax, 10*time.Minute)
	o.RetryMax = max(o.RetryMax, o.RetryMin)
	if o.FailAfter <= 0 {
		o.FailAfter = 6
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 4096
	}
	if o.PeerRate <= 0 {
		o.PeerRate = 20000
	}
	if o.PeerBurst <= 0 {
		o.PeerBurst = 2 * o.PeerRate
	}
	if o.BundleRate <= 0 {
		o.BundleRate = 1
	}
	if o.BundleBurst <= 0 {
		o.BundleBurst = 20
	}
	if o.StrangerBundleRate <= 0 {
		o.StrangerBundleRate = 1.0 / 60
	}
	if o.StrangerBundleBurst <= 0 {
		o.StrangerBundleBurst = 20
	}
	if o.SessionRate <= 0 {
		o.SessionRate = 5
	}
	if o.SessionBurst <= 0 {
		o.SessionBurst = 20
	}
	def(&o.Penalty, 10*time.Second)
	if o.KeptSessions <= 0 {
		o.KeptSessions = 5
	}
	def(&o.SeenRetention, 30*24*time.Hour)
	def(&o.MaintainEvery, time.Hour)
	def(&o.DialTimeout, 15*time.Second)
	def(&o.AckTimeout, 30*time.Second)
	def(&o.IdleTimeout, 5*time.Minute)
	def(&o.RelayAfter, 3*time.Second)
	if o.FailAfterRedeposits <= 0 {
		o.FailAfterRedeposits = 2
	}
	def(&o.RenewEvery, time.Hour)
	if o.RequestMessages <= 0 {
		o.RequestMessages = 100
	}
	if o.RequestBytes <= 0 {
		o.RequestBytes = 256 << 10
	}
	o.RequestBytes = max(o.RequestBytes, MaxText+messageOverhead)
	if o.RequestsMessages <= 0 {
		o.RequestsMessages = 2000
	}
	if o.RequestsBytes <= 0 {
		o.RequestsBytes = 8 << 20
	}
	o.RequestsMessages = max(o.RequestsMessages, o.RequestMessages)
	o.RequestsBytes = max(o.RequestsBytes, o.RequestBytes)
	return o
}

// Service is the messaging engine of one node. Its methods are safe for
// concurrent use.
type Service struct {
	cfg   Config
	opt   Options
	log   *slog.Logger
	clock Clock
	rand  *lockedReader
	host  host.Host
	st    store.Store

	self    *identity.Private
	selfPub []byte
	uid     identity.UserID
	device  *identity.DeviceRecord
	devRec  []byte
	name    string
	pk      *prekeys.Manager

	cardMu sync.Mutex
	card   *protocol.Card // the own card attached to first messages

	w *store.Batcher[*job] // the writer (commit.go)

	out     *outbox
	msgLim  *ratelimit.Limiter[peer.ID]
	bundLim *ratelimit.Limiter[peer.ID]
	// strangerLim is the one bucket of the bundle requests of peers that
	// are not accepted contacts' devices.
	strangerLim *ratelimit.Limiter[struct{}]
	firstLim    *ratelimit.Limiter[peer.ID] // new sessions per device
	waiters     *waiters

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	spawnMu  sync.Mutex
	stopping bool
	streams  map[network.Stream]struct{}
	// inStreams counts the incoming message streams per peer; inTotal
	// all of them (under spawnMu).
	inStreams map[peer.ID]int
	inTotal   int
	// unreached is when a direct attempt to a device with mailboxes last
	// failed (deliverer.go: directRetry), under unreachedMu.
	unreachedMu sync.Mutex
	unreached   map[peer.ID]time.Time
	maintain    chan struct{}
	sub         event.Subscription

	// Relays (relay.go): the mailbox client, and the reconciler that
	// keeps the relays in line with the tokens (nil without a client).
	mb    *mailbox.Client
	recon *reconciler

	// dropMsgs and dropReqs count what the caps on message requests
	// dropped (requests.go).
	dropMsgs, dropReqs atomic.Uint64

	// rolledBack is what New did about a rolled-back store (rollback.go).
	rolledBack *RollbackNotice

	closing closer.Once
}

// New starts the messaging service on cfg.Host: it loads the identity,
// makes or refreshes the prekeys, registers the stream handlers and
// resumes the outbox. It is complete when it returns; Close stops it.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Host == nil || cfg.Store == nil {
		return nil, errors.New("messaging: Config.Host and Config.Store are required")
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
	if cfg.Publish == nil {
		cfg.Publish = func(string, any) {}
	}
	if cfg.OnGroupControl == nil {
		cfg.OnGroupControl = func() {}
	}
	s := &Service{
		cfg:       cfg,
		opt:       cfg.Options.withDefaults(),
		log:       cfg.Logger,
		clock:     cfg.Clock,
		rand:      &lockedReader{r: cfg.Rand},
		host:      cfg.Host,
		st:        cfg.Store,
		streams:   map[network.Stream]struct{}{},
		inStreams: map[peer.ID]int{},
		unreached: map[peer.ID]time.Time{},
		maintain:  make(chan struct{}, 1),
		waiters:   newWaiters(),
		mb:        cfg.Mailbox,
	}
	if s.mb != nil {
		s.recon = newReconciler(s)
	}
	s.msgLim = ratelimit.New[peer.ID](s.clock, s.opt.PeerRate, s.opt.PeerBurst, s.opt.Penalty, maxLimited)
	s.bundLim = ratelimit.New[peer.ID](s.clock, s.opt.BundleRate, s.opt.BundleBurst, s.opt.Penalty, maxLimited)
	s.strangerLim = ratelimit.New[struct{}](s.clock, s.opt.StrangerBundleRate, s.opt.StrangerBundleBurst, 0, 1)
	s.firstLim = ratelimit.New[peer.ID](s.clock, s.opt.SessionRate, s.opt.SessionBurst, s.opt.Penalty, maxLimited)
	s.out = newOutbox(s)
	if err := s.loadSelf(ctx); err != nil {
		return nil, err
	}
	s.pk = prekeys.New(s.self, s.device, s.opt.Prekeys, s.rand)
	// A rolled-back store's sessions end before anything is sent
	// (rollback.go); prekeys and the own card exist before the first
	// invite or bundle.
	now := s.clock.Now()
	err := s.st.Update(ctx, func(tx *store.Tx) error {
		var err error
		if s.rolledBack, err = resetAfterRollback(tx); err != nil {
			return err
		}
		if _, err := s.pk.Maintain(tx, now); err != nil {
			return err
		}
		_, err = s.refreshCard(tx, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("messaging: prepare prekeys: %w", err)
	}
	if n := s.rolledBack; n != nil {
		s.log.Warn("messaging: the store went back to an older state (a restored copy of the home, or lost writes): its sessions were ended so that no message key is used twice; messages sent or received after that state may be missing",
			"detected_at", n.DetectedAt, "sessions", n.Sessions, "contacts", n.Contacts)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.sub, err = s.host.EventBus().Subscribe(new(event.EvtLocalAddressesUpdated), eventbus.Name("sealpost-messaging"))
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("messaging: subscribe to address changes: %w", err)
	}
	s.out.conns, err = s.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged),
		eventbus.Name("sealpost-messaging-outbox"), eventbus.BufSize(256))
	if err != nil {
		s.sub.Close()
		s.cancel()
		return nil, fmt.Errorf("messaging: subscribe to connections: %w", err)
	}
	s.w = s.newWriter()
	s.host.SetStreamHandler(libp2pproto.ID(protocol.MsgProtocol), s.handleMsgStream)
	s.host.SetStreamHandler(libp2pproto.ID(protocol.BundleProtocol), s.handleBundleStream)
	s.spawn(s.maintainLoop)
	s.spawn(s.out.scheduleLoop)
	if s.mb != nil {
		s.recon.start()
		s.spawn(func() { s.mb.Run(s.ctx, s.receiveRelayed) })
	}
	return s, nil
}

// loadSelf reads the identity and the device record from the store.
func (s *Service) loadSelf(ctx context.Context) error {
	var self store.Self
	err := s.st.View(ctx, func(tx *store.Tx) error {
		var err error
		self, err = tx.Self()
		return err
	})
	if err != nil {
		return fmt.Errorf("messaging: load identity: %w", err)
	}
	if s.self, err = identity.ParsePrivate(self.Identity); err != nil {
		return fmt.Errorf("messaging: stored identity: %w", err)
	}
	s.uid = s.self.UserID()
	s.selfPub, _ = s.self.Public().MarshalBinary()
	if len(self.DeviceRecord) == 0 {
		return errors.New("messaging: the store holds no device record")
	}
	if s.device, err = identity.ParseDeviceRecord(self.DeviceRecord); err != nil {
		return fmt.Errorf("messaging: stored device record: %w", err)
	}
	if err := s.device.Verify(); err != nil {
		return fmt.Errorf("messaging: stored device record: %w", err)
	}
	if s.device.Identity() != s.uid || string(s.device.DeviceID()) != string(s.host.ID()) {
		return errors.New("messaging: the stored device record is for another identity or device")
	}
	s.devRec = self.DeviceRecord
	s.name = self.Name
	return nil
}

// Close stops the service: it removes the stream handlers, resets open
// streams, waits for every goroutine, and finishes or fails the store
// work in progress. It is idempotent; a second call waits for the first.
// Every message acknowledged to a peer was committed before its
// acknowledgement; nothing in the outbox is lost.
func (s *Service) Close() error {
	return s.closing.Do(func() error {
		s.host.RemoveStreamHandler(libp2pproto.ID(protocol.MsgProtocol))
		s.host.RemoveStreamHandler(libp2pproto.ID(protocol.BundleProtocol))
		s.spawnMu.Lock()
		s.stopping = true
		for str := range s.streams {
			str.Reset()
		}
		s.spawnMu.Unlock()
		s.cancel()
		s.sub.Close()
		s.out.conns.Close()
		s.w.Close()
		s.wg.Wait()
		if s.recon != nil {
			s.recon.wait()
		}
		s.waiters.close()
		return nil
	})
}

// spawn runs f in a goroutine that Close waits for; false once Close began.
func (s *Service) spawn(f func()) bool {
	s.spawnMu.Lock()
	defer s.spawnMu.Unlock()
	if s.stopping {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// track registers a stream so that Close resets it, and counts its
// handler as a goroutine Close waits for; false once Close began.
func (s *Service) track(str network.Stream) bool {
	s.spawnMu.Lock()
	defer s.spawnMu.Unlock()
	if s.stopping {
		return false
	}
	s.streams[str] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Service) untrack(str network.Stream) {
	s.spawnMu.Lock()
	delete(s.streams, str)
	s.spawnMu.Unlock()
	s.wg.Done()
}

// watch registers a stream this service opened so that Close resets it.
func (s *Service) watch(str network.Stream) bool {
	s.spawnMu.Lock()
	defer s.spawnMu.Unlock()
	if s.stopping {
		return false
	}
	s.streams[str] = struct{}{}
	return true
}

func (s *Service) unwatch(str network.Stream) {
	s.spawnMu.Lock()
	delete(s.streams, str)
	s.spawnMu.Unlock()
}

// maintainLoop runs the prekey maintenance, the expiry of seen-set entries
// and invites, and the card check every MaintainEvery, and soon after a
// bundle was served or the addresses changed.
func (s *Service) maintainLoop() {
	t := s.clock.NewTimer(s.opt.MaintainEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C():
			t.Reset(s.opt.MaintainEvery)
		case <-s.maintain:
		case _, ok := <-s.sub.Out():
			if !ok {
				return
			}
		}
		if err := s.runMaintenance(s.ctx); err != nil && s.ctx.Err() == nil {
			s.log.Warn("messaging: maintenance failed", "err", err)
		}
	}
}

// poke asks for maintenance soon (after a bundle was served).
func (s *Service) poke() {
	select {
	case s.maintain <- struct{}{}:
	default:
	}
}

// maxLimited bounds the peers each rate limiter remembers.
const maxLimited = 4096

// maxExpire bounds the seen-set entries one transaction expires.
const maxExpire = 4096

// runMaintenance does one round of maintenance.
func (s *Service) runMaintenance(ctx context.Context) error {
	var changed bool
	err := s.do(ctx, true, func(w *work) error {
		rep, err := s.pk.Maintain(w.tx, w.now)
		if err != nil {
			return err
		}
		if rep.Rotated {
			// Contacts' bundle blobs on the relays hold the old version.
			w.after(s.recon.poke)
		}
		if _, err := w.tx.Invites().Expire(w.now.Add(-protocolTolerance), 0); err != nil {
			return err
		}
		changed, err = s.refreshCard(w.tx, w.now)
		if err != nil || !changed {
			return err
		}
		return w.announceCard()
	})
	if err != nil {
		return err
	}
	for {
		var n int
		err := s.do(ctx, true, func(w *work) error {
			var err error
			n, err = w.tx.Seen().Expire(w.now, maxExpire)
			return err
		})
		if err != nil || n < maxExpire {
			return err
		}
	}
}

// protocolTolerance is the clock tolerance of DESIGN.md §7.
const protocolTolerance = 5 * time.Minute

// lockedReader serializes reads of a random source that may not be safe
// for concurrent use (an injected test source).
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return io.ReadFull(l.r, p)
}

// uint64 returns a random number.
func (l *lockedReader) uint64() uint64 {
	var b [8]byte
	if _, err := l.Read(b[:]); err != nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b[:])
}

// UserID returns the user ID of this node's identity.
func (s *Service) UserID() identity.UserID { return s.uid }
