// Package badgerstore is the store.Store on disk, in badger v4. It is the
// only package that imports badger.
//
// A store lives in a directory: the key file "key" (see Mode), the epoch
// file "epochs" of an encrypted store, and the badger database in "data/".
// Create makes one, Open opens it. Open needs the passphrase of a
// ModePassphrase store; ReadMode says whether one is needed, and
// ChangePassphrase rewraps the data key without re-encrypting anything.
//
// # Forward-secure deletion
//
// In an encrypted store every value is also sealed under an epoch key kept
// in the epoch file, not in the database; a new epoch begins every 12
// hours, live records are re-sealed under it, and the old key is then
// destroyed, so what was replaced or deleted cannot be read back from the
// files, even with the passphrase, within 24 hours. Sealing also
// authenticates each value with its key: a damaged value is
// store.ErrCorrupt, never another record. See epochs.go.
//
// # Durability
//
// Update returns when the transaction is on disk. Badger runs with
// SyncWrites off; after a transaction commits, its Update waits for a
// shared sync that one goroutine runs for every Update waiting at that
// moment (group commit), so concurrent Updates share fsyncs. A transaction
// that only reads also returns only once everything it could have seen is
// durable, so nothing is acknowledged on the strength of a write that a
// crash could still take back.
//
// The sync is not badger's DB.Sync. In badger v4.9.6 DB.Sync msyncs the
// active memtable's write-ahead log and then the newest value-log file;
// but a transaction that landed in a memtable rotated out since (waiting
// to be flushed) is in an older log that DB.Sync does not touch, and stays
// unsynced until the flush. So the syncer fdatasyncs, in parallel, every
// memtable log on disk and the newest value-log file. Older value-log
// files are msynced by badger when it rotates them, and a memtable's log
// is deleted only after its table was written, msynced and recorded in the
// synced manifest.
//
// # A full disk
//
// Badger writes through memory maps of sparse files, where a write that
// finds no free block is a SIGBUS that kills the process. The store
// allocates those files in full, keeps a reserve file for badger's flush
// at Close, and refuses writes (store.DiskFullError, wrapping
// store.ErrDiskFull) while the disk lacks room for the files badger may
// create next; reads go on, and writes resume by themselves once there is
// room. Open refuses to start without that room. See space.go.
//
// # Memory
//
// The options are chosen for small resident memory rather than badger's
// defaults (which use hundreds of megabytes): small memtables, values of
// ValueThreshold bytes or more in the value log, small block and index
// caches, two compactors, value-log files of 16 MiB so that opening (which
// re-reads the newest one) stays fast. The value log is garbage-collected
// on a timer and soon after many deletions.
package badgerstore

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

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/y"

	"github.com/sealpost/sealpost/store"
)

// Options configure Create and Open. The zero value is usable.
type Options struct {
	// Passphrase unlocks a ModePassphrase store (Open) or protects a new one
	// (Create with ModePassphrase). Not kept after Open returns.
	Passphrase []byte
	// KDF are the Argon2id parameters for a new passphrase (Create); zero:
	// DefaultKDF. Open reads them from the key file.
	KDF KDFParams
	// Rand is the source of the data key, salt and nonce (Create); nil:
	// crypto/rand.
	Rand io.Reader
	// Logger receives badger's messages (its info messages at debug level)
	// and the store's own; nil: discarded.
	Logger *slog.Logger
	// GCInterval is how often the value log is garbage-collected; zero: 10
	// minutes; negative: only after deletions.
	GCInterval time.Duration
	// GCAfterDeletes starts a value-log GC once this many keys were deleted
	// since the last one; zero: 10000.
	GCAfterDeletes int
	// CloseTimeout bounds Close; zero: 10 s.
	CloseTimeout time.Duration
	// MemTableSize is badger's memtable size; zero: 8 MiB. It bounds the
	// writes of one transaction to about 15% of it (store.ErrTxnTooBig).
	MemTableSize int64
	// ValueThreshold: values of this many bytes or more go to the value
	// log; zero: 64.
	ValueThreshold int64
	// BlockCacheSize and IndexCacheSize size badger's caches; zero: 1 MiB
	// each (an encrypted badger needs an index cache about the size of its
	// table indexes, or reads get much slower).
	BlockCacheSize int64
	IndexCacheSize int64

	// Now is the clock that decides when a new epoch key begins (see
	// epochs.go); nil: time.Now.
	Now func() time.Time

	// MarkerDir is the directory that keeps the store's rollback marker: it
	// must be outside the store's directory (a restored copy of the store
	// must not bring its marker along), such as the user's state
	// directory. Empty: no marker, and a rollback is not detected (see
	// marker.go).
	MarkerDir string

	// Sparse leaves badger's files sparse and keeps no reserve file, for
	// many stores on one disk (a test network), where allocating tens of
	// MiB per store adds up; a full disk is then noticed by the room left
	// alone (see space.go). False: every file badger maps is allocated in
	// full, and a reserve kept.
	Sparse bool

	// epochPeriod overrides how long an epoch key seals new values, and
	// epochCheck how often the store looks, in tests.
	epochPeriod time.Duration
	epochCheck  time.Duration
	// keepVersions makes badger keep this many versions of every key, so
	// that tests can look at superseded values.
	keepVersions int
	// vlogFileSize overrides the value-log file size in tests.
	vlogFileSize int64
	// keyRotation overrides how often badger makes a new data key (10
	// days), in tests.
	keyRotation time.Duration
	// statfs overrides how the store learns the room left on its disk, in
	// tests.
	statfs func(dir string) (int64, error)
}

func (o Options) withDefaults() Options {
	if o.KDF == (KDFParams{}) {
		o.KDF = DefaultKDF
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.GCInterval == 0 {
		o.GCInterval = 10 * time.Minute
	}
	if o.GCAfterDeletes == 0 {
		o.GCAfterDeletes = 10000
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = 10 * time.Second
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 8 << 20
	}
	if o.ValueThreshold == 0 {
		o.ValueThreshold = 64
	}
	if o.BlockCacheSize == 0 {
		o.BlockCacheSize = 1 << 20
	}
	if o.IndexCacheSize == 0 {
		o.IndexCacheSize = 1 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.epochPeriod == 0 {
		o.epochPeriod = defaultEpochPeriod
	}
	if o.epochCheck == 0 {
		o.epochCheck = 10 * time.Minute
	}
	if o.vlogFileSize == 0 {
		o.vlogFileSize = 16 << 20
	}
	return o
}

// dataDirName is the badger directory inside a store's directory.
const dataDirName = "data"

// Store is a store.Store in a badger database.
type Store struct {
	store.Store
	b      *backend
	marker *marker // nil without Options.MarkerDir
	log    *slog.Logger

	closeOnce sync.Once
	closeErr  error
}

// Close closes the store. With a marker (Options.MarkerDir), it first
// raises the store's generation a last time and writes the marker (see
// marker.go).
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.marker != nil {
			s.marker.close(s.log)
		}
		s.closeErr = s.Store.Close()
	})
	return s.closeErr
}

// Create makes a new store in dir (created with mode 0700 if missing),
// protected as mode says, and returns it open. It fails with
// store.ErrExists if dir already holds a store.
func Create(ctx context.Context, dir string, mode Mode, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create store: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, keyFileName)); err == nil {
		return nil, fmt.Errorf("create store in %s: %w", dir, store.ErrExists)
	}
	if entries, err := os.ReadDir(filepath.Join(dir, dataDirName)); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("create store in %s: database without a key file: %w", dir, store.ErrExists)
	}
	var k *keyFile
	var dk []byte
	switch mode {
	case ModePassphrase:
		if len(opts.Passphrase) == 0 {
			return nil, fmt.Errorf("create store: %w", store.ErrPassphraseRequired)
		}
		dk = make([]byte, dataKeySize)
		if _, err := io.ReadFull(opts.Rand, dk); err != nil {
			return nil, fmt.Errorf("create store: read random key: %w", err)
		}
		var err error
		if k, err = wrap(dk, opts.Passphrase, opts.KDF, opts.Rand); err != nil {
			return nil, fmt.Errorf("create store: %w", err)
		}
	case ModeKeyFile:
		dk = make([]byte, dataKeySize)
		if _, err := io.ReadFull(opts.Rand, dk); err != nil {
			return nil, fmt.Errorf("create store: read random key: %w", err)
		}
		k = &keyFile{mode: ModeKeyFile, dataKey: dk}
	case ModeUnencrypted:
		k = &keyFile{mode: ModeUnencrypted}
	default:
		return nil, fmt.Errorf("create store: %w: mode %d", store.ErrInvalid, mode)
	}
	defer clear(dk)
	// The database first, then the key file: a crash in between leaves a
	// database without a key, which Create refuses and Open reports, rather
	// than a key file that Open would take for a complete store.
	s, err := open(ctx, dir, dk, opts)
	if err != nil {
		return nil, err
	}
	if err := writeKeyFile(dir, k, nil); err != nil {
		s.Close()
		return nil, fmt.Errorf("create store: %w", err)
	}
	return s, nil
}

// Open opens the store in dir. It fails with store.ErrNotFound if there is
// none, store.ErrPassphraseRequired or store.ErrWrongPassphrase for a
// passphrase store opened without the right one, store.ErrLocked if
// another process has it open, and store.ErrSchemaTooNew if a newer
// program wrote it.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	k, err := readKeyFile(dir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	removeTemps(dir, keyFileName)
	var dk []byte
	switch k.mode {
	case ModePassphrase:
		if dk, err = k.unwrap(opts.Passphrase); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		defer clear(dk)
	case ModeKeyFile:
		dk = k.dataKey
		defer clear(dk)
	}
	return open(ctx, dir, dk, opts)
}

func open(ctx context.Context, dir string, dataKey []byte, opts Options) (*Store, error) {
	b, err := openBackend(filepath.Join(dir, dataDirName), dataKey, opts)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	st, err := store.Open(ctx, b) // its errors say "open store"
	if err != nil {
		b.Close()
		return nil, err
	}
	s := &Store{Store: st, b: b, log: opts.Logger}
	if opts.MarkerDir != "" {
		if err := s.startMarker(ctx, dir, dataKey, opts); err != nil {
			st.Close()
			return nil, err
		}
	}
	return s, nil
}

// Backend returns the ordered key-value engine under the store's typed
// records. Writes through it bypass the records' encodings and checks: it
// is there to measure the engine and its group commit alone (the storage
// figures of `sealpost bench`), under a table byte the records do not use.
func (s *Store) Backend() store.Backend { return s.b }

// Syncs returns how many group-commit syncs the store has run since it was
// opened; every durable Update in between shared one of them.
func (s *Store) Syncs() int64 { return s.b.sync.rounds.Load() }

// DiskFull returns the *DiskFullError writes get now (the disk holding
// the store has too little room), or nil.
func (s *Store) DiskFull() error { return s.b.space.fullErr() }

// RunGC garbage-collects the value log now (it also runs on a timer and
// after deletions) and returns how many value-log files it rewrote.
func (s *Store) RunGC() (int, error) { return s.b.runGC() }

// translate maps badger's errors to the store's sentinels.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return store.ErrNotFound
	case errors.Is(err, badger.ErrConflict):
		return fmt.Errorf("%w: %v", store.ErrConflict, err)
	case errors.Is(err, badger.ErrTxnTooBig):
		return fmt.Errorf("%w: %v", store.ErrTxnTooBig, err)
	case errors.Is(err, badger.ErrDBClosed), errors.Is(err, badger.ErrBlockedWrites):
		return fmt.Errorf("%w: %v", store.ErrClosed, err)
	case errors.Is(err, badger.ErrEmptyKey), errors.Is(err, badger.ErrInvalidKey):
		return fmt.Errorf("%w: %v", store.ErrInvalid, err)
	case errors.Is(err, y.ErrChecksumMismatch):
		return fmt.Errorf("%w: %v (damaged on disk)", store.ErrCorrupt, err)
	case errors.Is(err, badger.ErrEncryptionKeyMismatch):
		return fmt.Errorf("%w: the key does not open this database: %v", store.ErrCorrupt, err)
	}
	return err
}

// Unwrap returns the store.Store over the badger backend (store.Damage
// finds its damage log through it).
func (s *Store) Unwrap() store.Store { return s.Store }
