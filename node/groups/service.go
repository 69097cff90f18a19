// Package groups is a personal node's group engine: group chats on MLS
// (crypto/mls), carried by the groups' home relays (node/grouplog, through
// node/mailbox's client keys) and by gossipsub between the members online
// (node/gossip), joined through 1:1 controls between contacts
// (node/messaging). docs/PROTOCOL.md §12 and §13 give the protocol.
//
// Each group has one goroutine that owns its MLS state: it processes what
// arrives (from the topic, from the log), commits, sends, and writes the
// state in the same transaction as what each step produced (messages,
// receipts, the engine's durable work), so that a crash loses nothing
// answered and repeats nothing shown. What it receives it does not wait to
// be durable for (the log has it again after a crash): the goroutine goes
// on once the transaction is committed, and shows, answers and sends what
// depends on it once it is durable; what it encrypts is durable before the
// ciphertext leaves.
//
// What the caller must do: give it the node's messaging service, mailbox
// client and gossip, call Wake when messaging has put a group control in
// the store's group inbox (messaging.Config.OnGroupControl), and Close it
// before them.
package groups

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/mls"
	"github.com/sealpost/sealpost/node/gossip"
	"github.com/sealpost/sealpost/node/internal/clock"
	"github.com/sealpost/sealpost/node/internal/closer"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Errors.
var (
	// ErrClosed: the service was closed.
	ErrClosed = errors.New("groups: closed")
	// ErrUnknownGroup: no group of that ID or name.
	ErrUnknownGroup = errors.New("groups: unknown group")
	// ErrAmbiguous: a name that several groups have (use the ID).
	ErrAmbiguous = errors.New("groups: several groups have that name")
	// ErrNotAdmin: the operation needs an admin of the group.
	ErrNotAdmin = errors.New("groups: not an admin of the group")
	// ErrNotMember: this node is not (or no longer) a member.
	ErrNotMember = errors.New("groups: not a member of the group")
	// ErrNotRequest: the group is not a request to accept or decline.
	ErrNotRequest = errors.New("groups: not a group request")
	// ErrLastAdmin: the only admin of a group with other members cannot
	// leave; promote another first.
	ErrLastAdmin = errors.New("groups: the last admin cannot leave; promote another admin first")
	// ErrTooMany: a limit (groups per node, members per group, admins)
	// would be exceeded.
	ErrTooMany = errors.New("groups: limit reached")
	// ErrNoRelay: a group needs a home relay, and none was given or known
	// (add one with `sealpost relay add`).
	ErrNoRelay = errors.New("groups: no home relay")
	// ErrUnknownContact: a member to add, remove or promote is not a
	// contact (add, promote) or not a member (remove).
	ErrUnknownContact = errors.New("groups: unknown contact or member")
	// ErrUntrustedIdentity: a member's key changed and is not verified
	// yet; sending to the group waits until it is.
	ErrUntrustedIdentity = errors.New("groups: a member's identity key changed; verify it first")
	// ErrEmptyMessage and ErrTooLong: a text that cannot be sent.
	ErrEmptyMessage = errors.New("groups: empty message")
	ErrTooLong      = errors.New("groups: message too long")
	// ErrInvalidName: a group name that breaks the rules of names.
	ErrInvalidName = errors.New("groups: invalid group name")
	// ErrUnknownMessage: no group message of that ID.
	ErrUnknownMessage = errors.New("groups: unknown message")
)

// Limits.
const (
	// MaxMembers bounds a group's members (devices).
	MaxMembers = 1000
	// MaxGroups bounds the groups of a node (requests and groups left
	// included): each joined group is a gossipsub topic.
	MaxGroups = gossip.MaxTopics / 2
	// MaxText bounds a group text, as for 1:1.
	MaxText = protocol.MaxText
	// MaxApplicationBody bounds an application message's MLS body: its
	// content is a Plaintext (at most protocol.MaxPlaintext, as for 1:1),
	// and a PrivateMessage adds under 1 KiB to it (the group ID, epoch,
	// sender data, an Ed25519 signature, padding to 64 bytes, the AEAD
	// tags). A larger one is dropped before any decryption.
	MaxApplicationBody = protocol.MaxPlaintext + 4<<10
	// MaxAhead bounds the messages of a future epoch a group keeps until
	// its commit arrives (the rest is fetched from the log then).
	MaxAhead = 1024
	// MaxInbound bounds the messages from the topic waiting for a group's
	// goroutine (the rest is fetched from the log).
	MaxInbound = 4096
	// MaxOutstanding bounds the appends a group has in flight to each
	// home: below the out-of-order window of its readers (sendOut).
	MaxOutstanding = 64
	// keyPackageLifetime is how long a KeyPackage sent to an inviter is
	// valid (PROTOCOL.md §12.7).
	keyPackageLifetime = 7 * 24 * time.Hour
	// recentHashes is how many message hashes a group remembers to skip a
	// copy it processed before decrypting it again.
	recentHashes = 8192
)

// An append may overtake at most MaxOutstanding-1 others: fewer than the
// skipped keys a reader keeps (this fails to compile otherwise).
const _ = uint(mls.DefaultOutOfOrderWindow - MaxOutstanding)

// Options tune the service; each zero field takes the default next to it.
type Options struct {
	// ReceiptDelay is how long a member gathers the messages it committed
	// before it sends one delivery receipt for them (and a random part
	// of one more per 32 members, so a large group's receipts do not
	// reach their sender at once); a quarter of it bounds how long a
	// sender holds the receipts it gets before it writes them (with its
	// next write, or alone); a sender its receipts failed to reach for 30
	// of it gets them through the group. Default 1 s.
	ReceiptDelay time.Duration
	// FetchGrace is how long a member waits for a message its relay
	// subscription announced to arrive over gossipsub before it fetches it
	// from the log. Default 300 ms.
	FetchGrace time.Duration
	// RetryMin and RetryMax bound the backoff of appends, fetches and
	// subscriptions that failed. Defaults 500 ms and 1 min.
	RetryMin, RetryMax time.Duration
	// Poll is how often a member reads its group's log when neither the
	// topic nor the relay's subscription announced anything (give or take
	// a quarter). Default 1 min.
	Poll time.Duration
	// StateEvery bounds how long a group's MLS state, moved on by
	// messages of others only, waits to be written (only its keys, a few
	// hundred bytes a sender): every member would otherwise write for
	// every message it received. A crash or restart before
	// the write reads those messages again from the log, from the cursor
	// written with the state (stored messages are not stored again, a
	// receipt repeated counts once). Default 1 s.
	StateEvery time.Duration
	// SeenRetention is how long a received message's hash is kept in the
	// seen-set (longer than the relays' TTL). Default 30 days.
	SeenRetention time.Duration
	// Connect is how many member devices a group keeps connected for its
	// topic's mesh. Default DefaultConnect.
	Connect int
	// BreakRules makes a member that commits admin changes without being
	// an admin: a member breaking the group's rules, for tests of the
	// others' defence. Never set outside tests.
	BreakRules bool
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ReceiptDelay, time.Second)
	def(&o.FetchGrace, 300*time.Millisecond)
	def(&o.RetryMin, 500*time.Millisecond)
	def(&o.RetryMax, time.Minute)
	def(&o.Poll, time.Minute)
	def(&o.StateEvery, time.Second)
	def(&o.SeenRetention, 30*24*time.Hour)
	if o.Connect <= 0 {
		o.Connect = DefaultConnect
	}
	return o
}

// DefaultConnect is Options.Connect's default.
const DefaultConnect = 8

// Config is what New needs. Each field documents its zero value.
type Config struct {
	// Host is the device's libp2p host (the gossip's): the engine dials
	// members on it. Required.
	Host host.Host
	// Store holds the groups. Required.
	Store store.Store
	// Messaging sends the 1:1 controls of joining. Required.
	Messaging *messaging.Service
	// Mailbox opens the streams to the home relays. Required.
	Mailbox *mailbox.Client
	// Gossip carries messages between online members. Required.
	Gossip *gossip.Gossip
	// Files takes the pointers of the file messages received (node/files).
	// Zero: a file message shows its caption and its file is not
	// recorded.
	Files Files
	// FindDevice looks a member's device up (node.FindDevice). Zero: only
	// addresses the host knows are dialled.
	FindDevice func(ctx context.Context, p peer.ID) ([]ma.Multiaddr, error)
	// Publish receives the events (EventMessage, EventMember,
	// EventRequest); it must not block. Zero: dropped.
	Publish func(typ string, data any)
	// Logger, Clock and Rand: zero means discarded, the system clock and
	// crypto/rand.
	Logger *slog.Logger
	Clock  clock.Clock
	Rand   io.Reader
	// Registerer gets the metrics. Zero: not registered.
	Registerer prometheus.Registerer
	// ConnHigh is the host's connection manager's high watermark: a
	// connection made only for receipts is closed after them in a group of
	// more members than a third of it, or once the host is connected to
	// more peers than two thirds of it (receipts of a large group would
	// fill the sender's, and its device would refuse what comes next).
	// Zero: such a connection is always closed.
	ConnHigh int
	Options  Options
}

// Files is what the service needs of the attachment service.
type Files interface {
	// ReceivedGroup records the pointer f of the file message id that
	// member from sent to group, in the transaction tx that commits the
	// message. An error aborts the transaction.
	ReceivedGroup(tx *store.Tx, id protocol.MessageID, group protocol.GroupID, from identity.UserID, f *protocol.File, now time.Time) error
	// Wake is called after such a transaction committed.
	Wake()
}

// Service is the group engine of one node. Its methods are safe for
// concurrent use.
type Service struct {
	cfg   Config
	opt   Options
	log   *slog.Logger
	clock clock.Clock
	st    store.Store
	met   *metrics

	randMu sync.Mutex

	self     identity.UserID
	selfPeer peer.ID
	cred     mls.Credential
	sigKey   *mls.SignatureKey
	mlsCfg   mls.Config

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}

	relays *relays

	closing closer.Once

	mu       sync.Mutex
	closed   bool // Close began: start nothing more
	groups   map[protocol.GroupID]*group
	allowed  map[string]map[peer.ID]bool // topic -> member devices
	waiters  map[protocol.MessageID][]chan struct{}
	creating int
}

// New starts the engine: it loads the groups and resumes their work.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Host == nil || cfg.Store == nil || cfg.Messaging == nil || cfg.Mailbox == nil || cfg.Gossip == nil {
		return nil, errors.New("groups: Config.Host, Store, Messaging, Mailbox and Gossip are required")
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
	s := &Service{
		cfg: cfg, opt: cfg.Options.withDefaults(), log: cfg.Logger, clock: cfg.Clock, st: cfg.Store,
		wake:    make(chan struct{}, 1),
		groups:  map[protocol.GroupID]*group{},
		allowed: map[string]map[peer.ID]bool{},
		waiters: map[protocol.MessageID][]chan struct{}{},
	}
	if err := s.loadSelf(ctx); err != nil {
		return nil, err
	}
	var err error
	if s.met, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.relays = newRelays(s)
	var recs []store.Group
	err = s.st.View(ctx, func(tx *store.Tx) error {
		recs, err = tx.Groups().List()
		return err
	})
	if err != nil {
		s.cancel()
		s.met.unregister()
		return nil, fmt.Errorf("groups: load: %w", err)
	}
	for i := range recs {
		if err := s.start(&recs[i]); err != nil {
			s.log.Warn("group not started", "group", recs[i].ID.String(), "err", err)
		}
	}
	s.cfg.Host.SetStreamHandler(libp2pproto.ID(protocol.GroupReceiptProtocol), s.handleReceipt)
	s.spawn(s.inboxLoop)
	s.Wake()
	return s, nil
}

// loadSelf reads the identity, the device record (the credential) and the
// device key (the MLS signature key, PROTOCOL.md §13.2).
func (s *Service) loadSelf(ctx context.Context) error {
	var self store.Self
	err := s.st.View(ctx, func(tx *store.Tx) error {
		var err error
		self, err = tx.Self()
		return err
	})
	if err != nil {
		return fmt.Errorf("groups: load identity: %w", err)
	}
	id, err := identity.ParsePrivate(self.Identity)
	if err != nil {
		return fmt.Errorf("groups: identity: %w", err)
	}
	rec, err := identity.ParseDeviceRecord(self.DeviceRecord)
	if err != nil {
		return fmt.Errorf("groups: device record: %w", err)
	}
	seed, err := deviceSeed(self.DeviceKey)
	if err != nil {
		return err
	}
	s.sigKey, err = mls.NewSignatureKey(mls.DefaultSuite, seed)
	if err != nil {
		return fmt.Errorf("groups: signature key: %w", err)
	}
	if string(s.sigKey.Public()) != string(rec.DeviceKey()) {
		return errors.New("groups: the device record is not for the device key")
	}
	s.self = id.UserID()
	s.selfPeer = peer.ID(rec.DeviceID())
	s.cred = mls.Credential{Type: mls.CredentialBasic, Identity: self.DeviceRecord}
	s.mlsCfg = mls.Config{
		ValidateCredential: validateCredential,
		Extensions:         []mls.ExtensionType{protocol.GroupMetaExtension},
	}
	return nil
}

// Wake tells the service that controls wait in the store's group inbox.
// It does not block.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close stops every group's goroutine and waits for them. It is
// idempotent; a second call waits for the first.
func (s *Service) Close() error {
	return s.closing.Do(func() error {
		s.mu.Lock()
		s.closed = true
		for _, chs := range s.waiters {
			for _, ch := range chs {
				close(ch)
			}
		}
		s.waiters = map[protocol.MessageID][]chan struct{}{}
		s.mu.Unlock()
		s.cfg.Host.RemoveStreamHandler(libp2pproto.ID(protocol.GroupReceiptProtocol))
		s.cancel()
		s.wg.Wait()
		s.relays.close()
		s.met.unregister()
		return nil
	})
}

// spawn runs f in a goroutine Close waits for; false once closed.
func (s *Service) spawn(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// read fills b from the random source.
func (s *Service) read(b []byte) error {
	s.randMu.Lock()
	defer s.randMu.Unlock()
	_, err := io.ReadFull(s.cfg.Rand, b)
	return err
}

// rand is the random source, serialized, for crypto/mls.
func (s *Service) rand() io.Reader { return readerFunc(s.read) }

type readerFunc func([]byte) error

func (f readerFunc) Read(b []byte) (int, error) {
	if err := f(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Allowed reports whether p takes part in topic: a device of a member of
// the topic's epoch (gossip.Config.Allowed).
func (s *Service) Allowed(topic string, p peer.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.allowed[topic][p]
}

func (s *Service) setAllowed(topic string, devices map[peer.ID]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if devices == nil {
		delete(s.allowed, topic)
		return
	}
	s.allowed[topic] = devices
}

// notify wakes the waiters of message id.
func (s *Service) notify(id protocol.MessageID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.waiters[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// publish emits an event.
func (s *Service) publish(typ string, data any) { s.cfg.Publish(typ, data) }
