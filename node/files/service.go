// Package files is a personal node's attachment service: it sends files
// (encrypted once with crypto/attachment into the node's file directory),
// serves their blobs to recipients over protocol.BlobProtocol, uploads
// them to the recipient's relays when the recipient is offline, downloads
// the files it receives from the sender's device or the relays, checks
// them, and gives their content back to the user (docs/PROTOCOL.md §11).
//
// Files on disk hold ciphertext only (DIR/<message ID>.enc); the key is in
// the pointer, kept in the store (store.Files), so a file at rest is as
// safe as the store. Every step is recorded in the store before it counts:
// a blob received is synced and marked, a blob a relay acknowledged is
// marked, so a transfer resumes after a kill at the blob it stopped at and
// never sends again what was acknowledged.
//
// The message that carries a pointer is messaging's: Send hands the
// pointer to a Messenger (in the node, messaging) and messaging records a
// received pointer as an incoming file (store.File, Pending), which the
// service's engine picks up. A file sent to a group (SendGroup, group.go)
// is encrypted once, its pointer goes through the group service
// (GroupMessenger) and its blobs once to each of the group's home relays,
// under the group's log there.
package files

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node/internal/clock"
	"github.com/sealpost/sealpost/node/internal/closer"
	"github.com/sealpost/sealpost/node/internal/streamset"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Errors.
var (
	// ErrClosed: the service is closed.
	ErrClosed = errors.New("files: closed")
	// ErrTooLarge: the file is over the node's size limit (Options.MaxSize)
	// or the format's.
	ErrTooLarge = errors.New("files: file too large")
	// ErrNoSpace: the disk has no room for the file's ciphertext.
	ErrNoSpace = errors.New("files: not enough disk space")
	// ErrUnknownFile: no file of that ID.
	ErrUnknownFile = errors.New("files: unknown file")
	// ErrNotSaved: the file's content is not here (yet): it is being
	// downloaded, or it failed.
	ErrNotSaved = errors.New("files: file not downloaded")
	// ErrBadInput: a name, media type, caption or size the sender gave is
	// refused.
	ErrBadInput = errors.New("files: bad input")
	// ErrNoSource: the pointer lists no source this node can reach.
	ErrNoSource = errors.New("files: no source has the file")
)

// Recipient is a contact a file goes to, as messaging knows it.
type Recipient struct {
	UserID identity.UserID
	// Device is the contact's device and its known addresses.
	Device peer.ID
	Addrs  []ma.Multiaddr
	// Mailboxes are the contact's relay mailboxes (from its card), with the
	// deposit token this node holds for each.
	Mailboxes []protocol.Mailbox
}

// Messenger is what the service needs of messaging.
type Messenger interface {
	// Recipient resolves a contact a file may be sent to, with the same
	// refusals as sending a text (unknown, identity changed, not
	// accepted).
	Recipient(ctx context.Context, nameOrUserID string) (Recipient, error)
	// SendFile queues the message of kind file that carries f (and
	// caption) to the contact under the message ID id. Queuing the same ID
	// again is a success that queues nothing.
	SendFile(ctx context.Context, to identity.UserID, id protocol.MessageID, caption string, f *protocol.File) error
}

// RelayDialer opens blob streams to relays through the node's relay client
// hosts, never the device's (node/mailbox): an upload stream for mailbox
// mb under the key that deposits into mb go through, download streams
// under another.
type RelayDialer interface {
	BlobStream(ctx context.Context, relay peer.ID, addrs []ma.Multiaddr, upload bool, mb protocol.MailboxID) (network.Stream, error)
}

// Config is what New needs. Each field documents its zero value.
type Config struct {
	// Host is the device's host: it serves the blobs of the files this
	// node sends and dials senders' devices. Required.
	Host host.Host
	// Store keeps the files' records. Required; not closed by Close.
	Store store.Store
	// Dir holds the files' ciphertexts. Required; created if missing.
	Dir string
	// Messenger sends pointers. Zero: Send fails.
	Messenger Messenger
	// Groups sends pointers to groups and says where their blobs go.
	// Zero: SendGroup fails.
	Groups GroupMessenger
	// Relays opens streams to relays. Zero: no relay transfers.
	Relays RelayDialer
	// Logger receives the service's logs (file IDs, sizes, codes; never
	// keys, names or content). Zero: discarded.
	Logger *slog.Logger
	// Clock is the time of records, backoff and the relay fallback. Zero:
	// the system clock.
	Clock clock.Clock
	// Rand supplies file keys, writer secrets and IDs. Zero: crypto/rand.
	Rand io.Reader
	// Publish receives the events (EventProgress, EventState). It must not
	// block. Zero: dropped.
	Publish func(typ string, data any)
	// NoServe leaves the host's blob protocol handler to another service
	// (a relay's blob service on the same host): the device does not
	// serve its files, which then go through the recipient's relays only.
	// Zero: the service serves them.
	NoServe bool
	// Options tune the service; the zero value is the defaults.
	Options Options
}

// Options tune the service. Each zero field takes the default named next
// to it.
type Options struct {
	// MaxSize bounds a file sent or downloaded, in bytes (config.toml
	// [files] max_size). Default 100 MiB; at most attachment.MaxSize.
	MaxSize int64
	// AutoDownload is the largest incoming file downloaded without being
	// asked ([files] auto_download). Default 16 MiB; negative: none.
	AutoDownload int64
	// Relays bounds the recipient's relay mailboxes a file goes to.
	// Default 2.
	Relays int
	// RelayFallback is how long the recipient of a file sent directly has
	// to fetch it before the blobs go to its relays as well. Default 30 s.
	RelayFallback time.Duration
	// DirectTimeout bounds the attempt to reach a device directly.
	// Default 3 s (system time).
	DirectTimeout time.Duration
	// Window bounds the blobs requested (or uploaded) on a stream and not
	// yet answered. Default 4.
	Window int
	// Transfers bounds the files transferred at once. Default 4.
	Transfers int
	// RetryMin and RetryMax bound the transfer retry backoff. Defaults 2 s
	// and 10 min.
	RetryMin, RetryMax time.Duration
	// FailAfter is the attempts after which a transfer shows failed (it is
	// still retried while it can succeed). Default 6.
	FailAfter int
	// IOTimeout bounds each read and write of a blob stream (system time).
	// Default 30 s.
	IOTimeout time.Duration
}

func (o Options) withDefaults() Options {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.MaxSize <= 0 {
		o.MaxSize = 100 << 20
	}
	if o.AutoDownload == 0 {
		o.AutoDownload = 16 << 20
	}
	if o.Relays <= 0 {
		o.Relays = 2
	}
	if o.Window <= 0 {
		o.Window = 4
	}
	if o.Transfers <= 0 {
		o.Transfers = 4
	}
	if o.FailAfter <= 0 {
		o.FailAfter = 6
	}
	def(&o.RelayFallback, 30*time.Second)
	def(&o.DirectTimeout, 3*time.Second)
	def(&o.RetryMin, 2*time.Second)
	def(&o.RetryMax, 10*time.Minute)
	def(&o.IOTimeout, 30*time.Second)
	return o
}

// Event types (Config.Publish).
const (
	// EventProgress: bytes moved in a transfer, at most a few times a
	// second per file. Data: Progress.
	EventProgress = "file.progress"
	// EventState: a file changed state. Data: Info.
	EventState = "file.state"
)

// Service is the attachment service. Its methods are safe for concurrent
// use.
type Service struct {
	cfg   Config
	opt   Options
	log   *slog.Logger
	clock clock.Clock
	self  peer.ID

	randMu sync.Mutex

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}

	closing closer.Once

	mu       sync.Mutex
	running  map[protocol.MessageID]bool
	progress map[protocol.MessageID]*Progress
	served   *streamset.Set // the blob streams this node serves
	clients  *streamset.Set // those it opened
	ptrs     ptrCache
}

// New starts the service: it registers the blob stream handler and
// resumes the transfers the store has pending.
func New(cfg Config) (*Service, error) {
	if cfg.Host == nil || cfg.Store == nil || cfg.Dir == "" {
		return nil, errors.New("files: Config.Host, Store and Dir are required")
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
	cfg.Options = cfg.Options.withDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	if err := removeTemps(cfg.Dir); err != nil {
		return nil, err
	}
	s := &Service{
		cfg:      cfg,
		opt:      cfg.Options,
		log:      cfg.Logger,
		clock:    cfg.Clock,
		self:     cfg.Host.ID(),
		wake:     make(chan struct{}, 1),
		running:  map[protocol.MessageID]bool{},
		progress: map[protocol.MessageID]*Progress{},
		served:   streamset.New(maxServeStreams, maxServeStreamsPerPeer),
		clients:  streamset.New(1<<20, 0),
		ptrs:     newPtrCache(64),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if !cfg.NoServe {
		cfg.Host.SetStreamHandler(libp2pproto.ID(protocol.BlobProtocol), s.serve)
	}
	s.wg.Add(1)
	go s.loop()
	return s, nil
}

// Close stops the transfers (they resume at the next start), waits for
// them and for the streams being served. It is idempotent; a second call
// waits for the first.
func (s *Service) Close() error {
	return s.closing.Do(func() error {
		if !s.cfg.NoServe {
			s.cfg.Host.RemoveStreamHandler(libp2pproto.ID(protocol.BlobProtocol))
		}
		s.cancel()
		s.served.Close()
		s.clients.Close()
		s.wg.Wait()
		return nil
	})
}

// removeTemps deletes the partial files a kill left in dir.
func removeTemps(dir string) error {
	tmps, err := filepath.Glob(filepath.Join(dir, "*"+tmpSuffix))
	if err != nil {
		return fmt.Errorf("files: %w", err)
	}
	for _, t := range tmps {
		if err := os.Remove(t); err != nil {
			return fmt.Errorf("files: %w", err)
		}
	}
	return nil
}

// Suffixes of the file directory: a file's ciphertext, and one being
// written.
const (
	encSuffix = ".enc"
	tmpSuffix = ".tmp"
)

func (s *Service) path(id protocol.MessageID) string { return dataPath(s.cfg.Dir, id) }

// dataPath is where the ciphertext of file id is kept in dir.
func dataPath(dir string, id protocol.MessageID) string {
	return filepath.Join(dir, id.String()+encSuffix)
}

// Wake makes the engine look at the pending files now (messaging calls it
// after it committed a received pointer).
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// loop starts the transfers of the pending files when they are due.
func (s *Service) loop() {
	defer s.wg.Done()
	sem := make(chan struct{}, s.opt.Transfers)
	timer := s.clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := s.startDue(sem)
		d := time.Hour
		if !next.IsZero() {
			d = max(next.Sub(s.clock.Now()), 10*time.Millisecond)
		}
		timer.Reset(d)
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
			if !timer.Stop() {
				select {
				case <-timer.C():
				default:
				}
			}
		case <-timer.C():
		}
	}
}

// startDue starts a transfer for each pending file that is due and not
// running, as the semaphore allows, and returns when the next one is due
// (zero: none waits).
func (s *Service) startDue(sem chan struct{}) time.Time {
	var pending []store.File
	err := s.cfg.Store.View(s.ctx, func(tx *store.Tx) error {
		ids, err := tx.Files().Pending()
		if err != nil {
			return err
		}
		for _, id := range ids {
			f, err := tx.Files().Get(id)
			if err != nil {
				return err
			}
			pending = append(pending, f)
		}
		return nil
	})
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Error("files: read pending transfers", "err", err)
		}
		return s.clock.Now().Add(s.opt.RetryMin)
	}
	now := s.clock.Now()
	var next time.Time
	for _, f := range pending {
		id := f.ID
		if f.NextAttempt.After(now) {
			if next.IsZero() || f.NextAttempt.Before(next) {
				next = f.NextAttempt
			}
			continue
		}
		s.mu.Lock()
		busy := s.running[id]
		s.mu.Unlock()
		if busy {
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			return now.Add(time.Second) // all slots busy: look again soon
		}
		s.mu.Lock()
		s.running[id] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				<-sem
				s.mu.Lock()
				delete(s.running, id)
				s.mu.Unlock()
				s.Wake()
			}()
			s.transfer(id)
		}()
	}
	return next
}

// transfer does the work one pending file has left, and records when to
// try again if it is not done.
func (s *Service) transfer(id protocol.MessageID) {
	f, err := s.record(s.ctx, id)
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Error("files: read file", "file", id, "err", err)
		}
		return
	}
	var terr error
	if f.Outgoing {
		terr = s.sendWork(s.ctx, id)
	} else {
		terr = s.receiveWork(s.ctx, id)
	}
	if s.ctx.Err() != nil {
		return // closing: the transfer resumes at the next start
	}
	if terr != nil {
		s.log.Info("files: transfer attempt failed", "file", id, "err", terr)
	}
}

// record reads file id.
func (s *Service) record(ctx context.Context, id protocol.MessageID) (store.File, error) {
	var f store.File
	err := s.cfg.Store.View(ctx, func(tx *store.Tx) error {
		var err error
		f, err = tx.Files().Get(id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		err = fmt.Errorf("%w: %s", ErrUnknownFile, id)
	}
	return f, err
}

// update applies fn to file id in a transaction and writes it back; the
// state event goes out when the shown state changed.
func (s *Service) update(ctx context.Context, id protocol.MessageID, fn func(f *store.File) error) (store.File, error) {
	var (
		f      store.File
		before store.FileState
		msg    store.MessageState
	)
	err := s.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		var err error
		f, err = tx.Files().Get(id)
		if err != nil {
			return err
		}
		msg = messageState(tx, f.ID)
		before = f.Shown(msg)
		if err := fn(&f); err != nil {
			return err
		}
		f.UpdatedAt = s.clock.Now()
		return tx.Files().Put(&f)
	})
	if err != nil {
		return f, err
	}
	if f.Shown(msg) != before {
		s.cfg.Publish(EventState, s.info(&f, msg))
	}
	return f, nil
}

// messageState returns the state of the message with id (0 if none).
func messageState(tx *store.Tx, id protocol.MessageID) store.MessageState {
	m, err := tx.Messages().Get(id)
	if err != nil {
		return 0
	}
	return m.State
}

// backoff returns how long to wait after the n-th failed attempt.
func (s *Service) backoff(n uint32) time.Duration {
	d := s.opt.RetryMin
	for i := uint32(1); i < n && d < s.opt.RetryMax; i++ {
		d *= 2
	}
	return min(d, s.opt.RetryMax)
}

// retry records a failed attempt of file id: the error, and the next
// attempt after the backoff; after FailAfter attempts the file shows
// failed.
func (s *Service) retry(ctx context.Context, id protocol.MessageID, cause error) {
	_, err := s.update(ctx, id, func(f *store.File) error {
		f.Attempts++
		f.NextAttempt = s.clock.Now().Add(s.backoff(f.Attempts))
		f.Error = reason(cause)
		if int(f.Attempts) >= s.opt.FailAfter && f.State != store.FileSaved {
			if !f.Outgoing || f.State == store.FileQueued {
				f.State = store.FileFailed
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		s.log.Error("files: record failed attempt", "file", id, "err", err)
	}
}

// reason is the stored text of an error, within the store's limit.
func reason(err error) string {
	if err == nil {
		return ""
	}
	r := err.Error()
	if len(r) > store.MaxReasonLen {
		r = r[:store.MaxReasonLen]
	}
	return r
}
