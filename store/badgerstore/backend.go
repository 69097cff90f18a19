package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"golang.org/x/sys/unix"

	"github.com/sealpost/sealpost/store"
)

// maxAttempts bounds how often Update runs a transaction that keeps
// conflicting with concurrent ones.
const maxAttempts = 64

// backend is the store.Backend over one badger database.
type backend struct {
	db   *badger.DB
	dir  string
	log  *slog.Logger
	lock *os.File // flock on dir/../lock, held while open

	gcAfterDeletes int64
	deletes        atomic.Int64
	gcKick         chan struct{}
	gcRuns         atomic.Int64 // GCs started by the timer or deletions

	// ring seals values in an encrypted store; nil in an unencrypted one.
	ring        *keyring
	rand        io.Reader
	now         func() time.Time
	epochPeriod time.Duration

	sync  *syncer
	files syncFiles // the sync loop's open files
	space *space
	// Commits and syncs are counted so that a transaction that only reads
	// returns after what it read is durable too (see settle).
	inCommit atomic.Int64
	commits  atomic.Uint64
	synced   atomic.Uint64

	mu       sync.RWMutex // guards closed against new operations
	closed   bool
	inflight sync.WaitGroup

	closing   chan struct{} // closed when Close starts
	stop      chan struct{} // closed when the background goroutines must end
	bg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	timeout   time.Duration
}

func badgerOptions(dir string, dataKey []byte, o Options) badger.Options {
	opt := badger.DefaultOptions(dir)
	opt.Logger = badgerLogger{o.Logger}
	opt.SyncWrites = false // Update syncs, shared by every waiting transaction
	opt.MetricsEnabled = false
	opt.NumGoroutines = 1
	opt.MemTableSize = o.MemTableSize
	opt.NumMemtables = 2
	opt.NumLevelZeroTables = 2
	opt.NumLevelZeroTablesStall = 8
	opt.BaseTableSize = 2 << 20
	opt.BaseLevelSize = 8 << 20
	opt.NumCompactors = 2
	opt.ValueThreshold = o.ValueThreshold
	// A flipped bit in a table block or a value-log entry is an error, not
	// different data. (Sealed values are authenticated as well.)
	opt.ChecksumVerificationMode = options.OnBlockRead
	opt.VerifyValueChecksum = true
	if o.keepVersions > 0 {
		opt.NumVersionsToKeep = o.keepVersions
	}
	opt.ValueLogFileSize = o.vlogFileSize
	opt.Compression = options.None
	opt.BlockCacheSize = o.BlockCacheSize
	opt.IndexCacheSize = o.IndexCacheSize
	opt.CompactL0OnClose = false
	opt.DetectConflicts = true
	if len(dataKey) > 0 {
		// Badger keeps the key for as long as the database is open (it
		// encrypts each new data key with it, every rotation period), so it
		// gets its own copy: the caller clears dataKey when Open returns.
		opt.EncryptionKey = bytes.Clone(dataKey)
		// Sealing adds sealOverhead bytes to every value: the same records
		// stay in the tree as without it.
		opt.ValueThreshold += sealOverhead
		if o.keyRotation > 0 {
			opt.EncryptionKeyRotationDuration = o.keyRotation
		}
	}
	return opt
}

func openBackend(dir string, dataKey []byte, o Options) (*backend, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := lockDir(filepath.Join(filepath.Dir(dir), "lock"))
	if err != nil {
		return nil, err
	}
	bopt := badgerOptions(dir, dataKey, o)
	if err := preflight(dir, bopt); err != nil {
		lock.Close()
		return nil, err
	}
	sp := newSpace(dir, bopt, o.Logger)
	sp.sparse = o.Sparse
	if o.statfs != nil {
		sp.statfs = o.statfs
	}
	if err := sp.prepare(); err != nil {
		lock.Close()
		return nil, err
	}
	db, err := badger.Open(bopt)
	if err != nil {
		lock.Close()
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("%w: %v", store.ErrLocked, err)
		}
		return nil, fmt.Errorf("open badger: %w", translate(err))
	}
	if err := sp.opened(db); err != nil {
		db.Close()
		lock.Close()
		return nil, err
	}
	b := &backend{
		db:             db,
		dir:            dir,
		log:            o.Logger,
		lock:           lock,
		gcAfterDeletes: int64(o.GCAfterDeletes),
		gcKick:         make(chan struct{}, 1),
		closing:        make(chan struct{}),
		stop:           make(chan struct{}),
		timeout:        o.CloseTimeout,
		rand:           o.Rand,
		now:            o.Now,
		epochPeriod:    o.epochPeriod,
		space:          sp,
	}
	if len(dataKey) > 0 {
		empty, sealed, err := b.inventory()
		if err == nil {
			b.ring, err = loadKeyring(filepath.Dir(dir), dataKey, sealed, empty, o.Rand, o.Now())
		}
		if err != nil {
			db.Close()
			lock.Close()
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	b.sync = newSyncer(func() error {
		n := b.commits.Load()
		if err := b.syncAll(); err != nil {
			return err
		}
		b.synced.Store(n)
		return nil
	})
	b.bg.Add(3)
	go func() {
		defer b.bg.Done()
		b.sync.run(b.stop)
	}()
	go func() {
		defer b.bg.Done()
		b.spaceLoop()
	}()
	go func() {
		defer b.bg.Done()
		b.gcLoop(o.GCInterval)
	}()
	if b.ring != nil {
		b.bg.Add(1)
		go func() {
			defer b.bg.Done()
			b.epochLoop(o.epochCheck)
		}()
	}
	return b, nil
}

// inventory reports whether the database is empty and returns a function
// that reports whether it holds a sealed value (a full scan of the keys,
// run only when the epoch file is missing).
func (b *backend) inventory() (bool, func() (bool, error), error) {
	some, err := b.anyItem(func(*badger.Item) bool { return true })
	sealed := func() (bool, error) {
		return b.anyItem(func(it *badger.Item) bool { return it.UserMeta() == metaSealed })
	}
	return !some, sealed, err
}

// anyItem reports whether the newest version of some key satisfies ok.
func (b *backend) anyItem(ok func(*badger.Item) bool) (bool, error) {
	found := false
	err := b.db.View(func(txn *badger.Txn) error {
		opt := badger.DefaultIteratorOptions
		opt.PrefetchValues = false
		it := txn.NewIterator(opt)
		defer it.Close()
		for it.Rewind(); it.Valid() && !found; it.Next() {
			found = ok(it.Item())
		}
		return nil
	})
	return found, translate(err)
}

// epochLoop begins a new epoch when the current one is old and re-seals
// and retires the old ones (rotate), at the start and every interval.
func (b *backend) epochLoop(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := b.rotate(); err != nil && !errors.Is(err, store.ErrClosed) {
			b.log.Warn("epoch key rotation failed", "err", err)
		}
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
	}
}

// rotate begins a new epoch if the current one began epochPeriod ago or
// more, re-seals every live value still sealed under an older epoch (or
// not sealed, in a store written before sealing existed) under the
// current one, and then removes the older epoch keys from the epoch file
// and from memory. What was superseded or deleted before is then
// unreadable. An interrupted rotation resumes at the next call.
func (b *backend) rotate() error {
	if err := b.enter(); err != nil {
		return err
	}
	defer b.inflight.Done()
	r := b.ring
	r.rotMu.Lock()
	defer r.rotMu.Unlock()
	pending, err := r.begin(b.now(), b.epochPeriod, b.rand)
	if err != nil || !pending {
		return err
	}
	r.mu.RLock()
	cur := r.current().n
	r.mu.RUnlock()
	var from []byte
	for {
		select {
		case <-b.closing:
			return store.ErrClosed
		default:
		}
		keys, next, err := b.staleKeys(from, cur)
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := b.reseal(keys); err != nil {
				return err
			}
		}
		if next == nil {
			break
		}
		from = next
	}
	n := len(r.epochs) - 1
	if err := r.retire(); err != nil {
		return err
	}
	b.log.Debug("retired epoch keys", "epochs", n, "current", cur)
	return nil
}

// staleKeys returns up to rotateBatch keys from from on whose value is
// sealed under an epoch other than cur, or not sealed, and the key to
// continue from (nil at the end).
func (b *backend) staleKeys(from []byte, cur uint32) (keys [][]byte, next []byte, err error) {
	b.ring.mu.RLock()
	defer b.ring.mu.RUnlock()
	err = b.db.View(func(txn *badger.Txn) error {
		opt := badger.DefaultIteratorOptions
		opt.PrefetchValues = false
		it := txn.NewIterator(opt)
		defer it.Close()
		for it.Seek(from); it.Valid(); it.Next() {
			item := it.Item()
			if len(keys) == rotateBatch {
				next = item.KeyCopy(nil)
				return nil
			}
			stale := false
			if item.UserMeta() == metaSealed {
				err := item.Value(func(v []byte) error {
					n, _ := epochOf(v)
					stale = n != cur
					return nil
				})
				if err != nil {
					return err
				}
			} else {
				stale = item.ValueSize() > 0
			}
			if stale {
				keys = append(keys, item.KeyCopy(nil))
			}
		}
		return nil
	})
	return keys, next, translate(err)
}

// reseal writes keys' values again, which seals them under the current
// epoch: in one transaction, or one key at a time if that is too big.
func (b *backend) reseal(keys [][]byte) error {
	rewrite := func(keys [][]byte) error {
		return b.Update(context.Background(), func(kv store.KV) error {
			for _, k := range keys {
				v, err := kv.Get(k)
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				if err != nil {
					return fmt.Errorf("re-seal: %w", err)
				}
				if err := kv.Set(k, v); err != nil {
					return err
				}
			}
			return nil
		})
	}
	err := rewrite(keys)
	if !errors.Is(err, store.ErrTxnTooBig) {
		return err
	}
	for _, k := range keys {
		if err := rewrite([][]byte{k}); err != nil {
			return err
		}
	}
	return nil
}

// lockDir takes an exclusive advisory lock on path, so that a second
// process gets store.ErrLocked before touching anything.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", filepath.Dir(path), store.ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// enter registers an operation, or fails if the backend is closed.
func (b *backend) enter() error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return store.ErrClosed
	}
	b.inflight.Add(1)
	return nil
}

func (b *backend) View(ctx context.Context, fn func(store.KV) error) error {
	if err := b.enter(); err != nil {
		return err
	}
	defer b.inflight.Done()
	if err := ctx.Err(); err != nil {
		return err
	}
	b.rlockRing()
	txn := b.db.NewTransaction(false)
	err := fn(&kvTxn{txn: txn, ring: b.ring})
	txn.Discard()
	b.runlockRing()
	if err != nil {
		return err
	}
	return b.settle()
}

func (b *backend) rlockRing() {
	if b.ring != nil {
		b.ring.mu.RLock()
	}
}

func (b *backend) runlockRing() {
	if b.ring != nil {
		b.ring.mu.RUnlock()
	}
}

// settle returns once every transaction committed so far is durable,
// without waiting when none is pending. A transaction that only reads
// calls it before returning, so that it never reports (and its caller
// never acknowledges to a peer) data that a crash could still take back:
// a transaction whose data it saw either had counted its commit already
// (commits > synced until a sync that started after that commit ends) or
// was still inside Commit (inCommit > 0).
func (b *backend) settle() error {
	if b.inCommit.Load() == 0 && b.commits.Load() <= b.synced.Load() {
		return nil
	}
	if err := b.sync.wait(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

func (b *backend) Update(ctx context.Context, fn func(store.KV) error) error {
	if err := b.enter(); err != nil {
		return err
	}
	defer b.inflight.Done()
	var deletes int64
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		// The ring's read lock from the first seal to the commit: no value
		// sealed under an epoch is committed after the switch away from it.
		b.rlockRing()
		txn := b.db.NewTransaction(true)
		kv := &kvTxn{txn: txn, writable: true, ring: b.ring}
		if err := fn(kv); err != nil {
			txn.Discard()
			b.runlockRing()
			return err
		}
		if !kv.dirty {
			txn.Discard()
			b.runlockRing()
			store.Committed(ctx)()
			return b.settle()
		}
		if err := ctx.Err(); err != nil {
			txn.Discard()
			b.runlockRing()
			return err
		}
		if err := b.space.admit(); err != nil {
			txn.Discard()
			b.runlockRing()
			return err
		}
		b.inCommit.Add(1)
		err := txn.Commit()
		if err == nil {
			b.commits.Add(1)
		}
		b.inCommit.Add(-1)
		b.runlockRing()
		if err == nil {
			store.Committed(ctx)()
			deletes = kv.deletes
			break
		}
		if !errors.Is(err, badger.ErrConflict) || attempt == maxAttempts {
			return fmt.Errorf("commit: %w", translate(err))
		}
		// Back off a little, with jitter, so that conflicting writers
		// spread out.
		d := time.Duration(rand.Int64N(int64(10*time.Microsecond) << min(attempt, 7)))
		time.Sleep(d)
	}
	if deletes > 0 && b.deletes.Add(deletes) >= b.gcAfterDeletes {
		b.deletes.Store(0)
		select {
		case b.gcKick <- struct{}{}:
		default:
		}
	}
	if err := b.sync.wait(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

func (b *backend) gcLoop(interval time.Duration) {
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-b.stop:
			return
		case <-tick:
		case <-b.gcKick:
		}
		b.gcRuns.Add(1)
		if _, err := b.runGC(); err != nil {
			b.log.Warn("value log GC failed", "err", err)
		}
	}
}

// spaceLoop looks at the room left on the disk every tickEvery, so that
// the store refuses writes, frees its reserve, and resumes by itself.
func (b *backend) spaceLoop() {
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.space.tick(b.db)
		}
	}
}

// runGC rewrites value-log files while badger finds one at least half
// garbage, at most 16 in a row (or until Close).
func (b *backend) runGC() (int, error) {
	if err := b.enter(); err != nil {
		return 0, err
	}
	defer b.inflight.Done()
	n := 0
	for n < 16 {
		select {
		case <-b.closing:
			return n, nil
		default:
		}
		// GC writes the live values of a file again, which can make badger
		// create a value-log file: only with room for it, and that file is
		// allocated before the next round (space.go).
		if err := b.space.admit(); err != nil {
			return n, nil
		}
		err := b.db.RunValueLogGC(0.5)
		if names, lerr := listDir(b.dir); lerr == nil {
			b.space.observe(names)
		}
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			break
		}
		if err != nil {
			return n, translate(err)
		}
		n++
	}
	if n > 0 {
		b.log.Debug("value log GC", "files", n)
	}
	return n, nil
}

// Close stops new operations, waits for those in flight, the syncer and
// the GC, and closes badger, all within the close timeout. If the timeout
// passes first it returns store.ErrCloseTimeout and lets the close finish
// in the background; every write Update acknowledged is durable already.
//
// If the disk has no room for badger's flush at Close even once the
// reserve is freed (space.go, rule 3), Close leaves badger open, to end
// with the process, and returns a *store.DiskFullError: badger would die
// of SIGBUS flushing, and its synced logs hold every acknowledged write,
// which it replays at the next open.
func (b *backend) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		close(b.closing)
		done := make(chan error, 1)
		go func() {
			b.inflight.Wait()
			close(b.stop)
			b.bg.Wait()
			b.files.close()
			err := b.space.beforeClose()
			open := err != nil // badger stays open, to end with the process
			if open {
				b.log.Warn("store: no room on the disk for the flush at close; closing without it (the store replays its log at the next open)", "err", err)
				err = fmt.Errorf("close without flushing: %w", err)
			} else {
				err = translate(b.db.Close())
			}
			b.space.close()
			if b.ring != nil {
				b.ring.wipe()
			}
			if !open {
				b.lock.Close()
			}
			done <- err
		}()
		t := time.NewTimer(b.timeout)
		defer t.Stop()
		select {
		case b.closeErr = <-done:
		case <-t.C:
			b.closeErr = store.ErrCloseTimeout
		}
	})
	return b.closeErr
}
