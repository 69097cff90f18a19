package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Errors returned by stores. Backends translate their own errors into these
// at the boundary, so callers compare with errors.Is and never see a
// backend's error types.
var (
	// ErrNotFound: the record does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: a record that must be new already exists (for example
	// creating a store in a directory that holds one).
	ErrExists = errors.New("store: already exists")
	// ErrNameTaken: another contact already uses this name.
	ErrNameTaken = errors.New("store: contact name already in use")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrReadOnly: a write was attempted inside View.
	ErrReadOnly = errors.New("store: write in a read-only transaction")
	// ErrConflict: a transaction kept conflicting with concurrent ones and
	// was given up after a bounded number of attempts.
	ErrConflict = errors.New("store: transaction conflict")
	// ErrTxnTooBig: the transaction holds more writes than the backend can
	// commit at once; split the work (the bulk methods take a limit).
	ErrTxnTooBig = errors.New("store: transaction too big")
	// ErrTooLarge: a key or value exceeds MaxKeySize or MaxValueSize.
	ErrTooLarge = errors.New("store: record too large")
	// ErrInvalid: a record handed to the store fails validation (zero ID,
	// unknown state, a name too long, ...).
	ErrInvalid = errors.New("store: invalid record")
	// ErrCorrupt: a stored record or key does not decode.
	ErrCorrupt = errors.New("store: corrupt record")
	// ErrSchemaTooNew: the data was written by a newer version of sealpost.
	ErrSchemaTooNew = errors.New("store: schema is newer than this program")
	// ErrWrongPassphrase: the passphrase does not unlock the data key.
	ErrWrongPassphrase = errors.New("store: wrong passphrase")
	// ErrPassphraseRequired: the store is protected by a passphrase and none
	// was given.
	ErrPassphraseRequired = errors.New("store: passphrase required")
	// ErrLocked: another process has the store open.
	ErrLocked = errors.New("store: in use by another process")
	// ErrCloseTimeout: Close gave up waiting for the backend; every write
	// that Update acknowledged is durable regardless.
	ErrCloseTimeout = errors.New("store: close timed out")
	// ErrDiskFull: the disk holding the store has too little room to
	// write safely; nothing was written. Reads go on, and writes succeed
	// again by themselves once there is room.
	ErrDiskFull = errors.New("store: the disk is full")
)

// DiskFullError is the error of a write refused because the disk holding
// the store has too little room left for the engine to write safely (or
// of an Open that would not have the room to start). It wraps ErrDiskFull.
type DiskFullError struct {
	// Dir is the store's directory.
	Dir string
	// Free is the room left on its file system, Need the room the store
	// keeps free to write (or needs to open), in bytes.
	Free, Need int64
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf("store: the disk holding %s is full: %s free, the store needs %s free", e.Dir, MiB(e.Free), MiB(e.Need))
}

func (e *DiskFullError) Unwrap() error { return ErrDiskFull }

// MiB formats n bytes in MiB, with one decimal.
func MiB(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(max(n, 0))/(1<<20))
}

// Size limits enforced on every write (and relied on by decoders).
const (
	// MaxKeySize bounds a backend key.
	MaxKeySize = 1024
	// MaxValueSize bounds an encoded record.
	MaxValueSize = 4 << 20
)

// Store is a transactional store of typed records.
//
// View runs fn in a read-only snapshot. Update runs fn in a read-write
// transaction and returns only when the transaction is durable (fsynced);
// concurrent Updates share one fsync (group commit), so a caller that needs
// many small durable writes per second issues them concurrently. Both
// return only once everything fn could have read is durable, so a caller
// may acknowledge what it read (a duplicate found in the seen-set, say)
// as soon as View or Update returns.
//
// fn may run more than once: a backend with optimistic concurrency control
// (badger) retries a transaction that conflicted with a concurrent one, a
// bounded number of times, before returning ErrConflict. fn must therefore
// have no effects outside tx that a rerun would repeat or lose, and must
// not keep tx, or anything read through it, after it returns (decoded
// records are copies and may be kept). If fn returns an error, nothing it
// wrote is committed and Update returns that error.
//
// ctx is checked before fn runs and before the commit; once the commit has
// begun Update waits for durability regardless of ctx, so that a nil error
// always means durable and a non-nil error after the commit began is never
// a lie about an uncommitted write (it is ErrClosed or an I/O error).
//
// Do not call View or Update from inside fn.
type Store interface {
	View(ctx context.Context, fn func(tx *Tx) error) error
	Update(ctx context.Context, fn func(tx *Tx) error) error
	Close() error
}

// WithCommitted returns a copy of ctx under which Update calls committed
// once its transaction has committed — is visible to every transaction
// begun afterwards — and before it waits for durability. An Update that
// fails before its commit never calls it; one that returns an error after
// calling it committed, and the error is about durability. A caller that
// must keep its transactions in order without giving up group commit (the
// relay's writer, which runs two batches at once) begins the next one
// after this call instead of after the previous Update returns.
func WithCommitted(ctx context.Context, committed func()) context.Context {
	return context.WithValue(ctx, committedKey{}, committed)
}

// Committed returns the function WithCommitted put in ctx, or a function
// that does nothing. Backends call it; see WithCommitted.
func Committed(ctx context.Context) func() {
	if f, ok := ctx.Value(committedKey{}).(func()); ok && f != nil {
		return f
	}
	return func() {}
}

type committedKey struct{}

// Backend is an ordered, transactional key-value store: the only thing a
// storage engine implements. The typed layer (Tx and the record stores) is
// written once over it.
//
// Update commits durably before it returns nil and retries conflicting
// transactions itself (calling fn again); once it has committed it calls
// Committed(ctx) (see WithCommitted). View and Update return nil only
// once every write fn could have seen is durable. Both propagate fn's error
// unchanged. Errors of the engine are translated to this package's
// sentinels (ErrNotFound, ErrClosed, ErrConflict, ErrTxnTooBig, ...).
type Backend interface {
	View(ctx context.Context, fn func(kv KV) error) error
	Update(ctx context.Context, fn func(kv KV) error) error
	Close() error
}

// KV is one transaction of a Backend. Keys are compared bytewise. Slices
// passed to Set may not be modified by the caller afterwards; slices
// returned by Get are the caller's; slices passed to a Scan callback are
// valid only during the call.
type KV interface {
	// Get returns the value of key, or ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Set writes key.
	Set(key, value []byte) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(key []byte) error
	// Scan calls fn for every key k with lo <= k < hi (hi nil: no upper
	// bound), in ascending order, or descending if reverse. It sees the
	// transaction's own writes. It stops at, and returns, the first error
	// fn returns.
	Scan(lo, hi []byte, reverse bool, fn func(key, value []byte) error) error
}

// Open runs the schema migrations on b (or initializes an empty backend to
// the current schema) and returns the Store over it. Closing the Store
// closes b; if Open fails, b is left open.
func Open(ctx context.Context, b Backend) (Store, error) {
	if err := migrate(ctx, b, migrations); err != nil {
		return nil, err
	}
	return &db{b: b}, nil
}

// db is the Store over a Backend.
type db struct {
	b         Backend
	dmg       DamageLog
	closeOnce sync.Once
	closeErr  error
}

func (d *db) View(ctx context.Context, fn func(tx *Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.b.View(ctx, func(kv KV) error {
		return fn(&Tx{kv: kv, dmg: &d.dmg})
	})
}

func (d *db) Update(ctx context.Context, fn func(tx *Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.b.Update(ctx, func(kv KV) error {
		return fn(&Tx{kv: kv, writable: true, dmg: &d.dmg})
	})
}

func (d *db) Close() error {
	d.closeOnce.Do(func() { d.closeErr = d.b.Close() })
	return d.closeErr
}

// Tx is one transaction. It hands out the typed stores; it is valid only
// inside the function it was passed to and is not safe for concurrent use.
type Tx struct {
	kv       KV
	writable bool
	dmg      *DamageLog // where lists note the records they skip (damage.go)
}

// Writable reports whether tx belongs to Update.
func (tx *Tx) Writable() bool { return tx.writable }

func (tx *Tx) get(key []byte) ([]byte, error) { return tx.kv.Get(key) }

func (tx *Tx) set(key, value []byte) error {
	if !tx.writable {
		return ErrReadOnly
	}
	if len(key) > MaxKeySize || len(value) > MaxValueSize {
		return ErrTooLarge
	}
	return tx.kv.Set(key, value)
}

func (tx *Tx) del(key []byte) error {
	if !tx.writable {
		return ErrReadOnly
	}
	return tx.kv.Delete(key)
}

// errStop ends a scan early without an error.
var errStop = errors.New("store: stop scan")

// scan iterates [lo, hi) and treats errStop as a normal end.
func (tx *Tx) scan(lo, hi []byte, reverse bool, fn func(key, value []byte) error) error {
	err := tx.kv.Scan(lo, hi, reverse, fn)
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// scanPrefix iterates every key that starts with prefix.
func (tx *Tx) scanPrefix(prefix []byte, reverse bool, fn func(key, value []byte) error) error {
	return tx.scan(prefix, prefixEnd(prefix), reverse, fn)
}

// delRange deletes every key in [lo, hi): the keys are collected by one scan,
// then deleted (a scan's callback does not write).
func (tx *Tx) delRange(lo, hi []byte) error {
	var keys [][]byte
	err := tx.scan(lo, hi, false, func(k, _ []byte) error {
		keys = append(keys, append([]byte(nil), k...))
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := tx.del(k); err != nil {
			return err
		}
	}
	return nil
}

// expired returns up to limit keys (limit <= 0: all), earliest first, of
// the expiry index whose tag is tag and whose keys are tag, an 8-byte time
// key and what names the record: those due at or before now. Each key is
// size bytes long, or the index is corrupt; what names the index in that
// error.
func (tx *Tx) expired(tag byte, now time.Time, limit, size int, what string) ([][]byte, error) {
	t := timeKey(now)
	var keys [][]byte
	err := tx.scan([]byte{tag}, key(tag, t[:], allFF[:]), false, func(k, _ []byte) error {
		if len(k) != size {
			return fmt.Errorf("%s: %w", what, ErrCorrupt)
		}
		keys = append(keys, append([]byte(nil), k...))
		if limit > 0 && len(keys) >= limit {
			return errStop
		}
		return nil
	})
	return keys, err
}

// getRecord reads key into r and reports whether it was there (a missing
// key leaves r as it was and is no error).
func (tx *Tx) getRecord(key []byte, r interface{ unmarshal([]byte) error }) (bool, error) {
	b, err := tx.kv.Get(key)
	switch {
	case errors.Is(err, ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, r.unmarshal(b)
}

// exists reports whether key is present.
func (tx *Tx) exists(key []byte) (bool, error) {
	_, err := tx.kv.Get(key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil if there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// notFound wraps ErrNotFound with what was looked for.
func notFound(what string, id any) error {
	return fmt.Errorf("%s %x: %w", what, id, ErrNotFound)
}
