package store

import (
	"encoding/hex"
	"errors"
	"slices"
	"sync"
)

// A record that does not decode (a flipped bit, a torn or foreign write:
// ErrCorrupt) must not stop what the other records are for: the lists of
// sessions, contacts and outbox entries skip it and note it here, so that
// the node keeps serving every other contact and reports the damaged one
// (log and status). Reading the damaged record by its key still fails with
// ErrCorrupt, and is noted too.

// maxDamaged bounds the damaged records a store remembers.
const maxDamaged = 256

// DamagedRecord is a record a list skipped because it does not decode.
type DamagedRecord struct {
	// Table names the record's kind: "session", "contact", "outbox entry"
	// or "outbox index".
	Table string `json:"table"`
	// Key is the record's key after its table byte, in hex (a session's
	// peer, a contact's user ID, an outbox entry's message ID first).
	Key string `json:"key"`
	// Err says what is wrong with it.
	Err string `json:"error"`
}

// DamageLog is the damaged records a store's lists have skipped since it
// was opened. Its methods are safe for concurrent use.
type DamageLog struct {
	mu     sync.Mutex
	recs   []DamagedRecord
	notify func(DamagedRecord)
}

// Records returns the damaged records seen, in the order they were found.
func (l *DamageLog) Records() []DamagedRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

// Notify has fn called, once, for each damaged record seen so far and
// each one found later (outside any lock of the store: fn may log, not use
// the store).
func (l *DamageLog) Notify(fn func(DamagedRecord)) {
	l.mu.Lock()
	l.notify = fn
	seen := slices.Clone(l.recs)
	l.mu.Unlock()
	for _, r := range seen {
		fn(r)
	}
}

func (l *DamageLog) add(r DamagedRecord) {
	l.mu.Lock()
	if len(l.recs) >= maxDamaged || slices.ContainsFunc(l.recs, func(o DamagedRecord) bool { return o.Table == r.Table && o.Key == r.Key }) {
		l.mu.Unlock()
		return
	}
	l.recs = append(l.recs, r)
	fn := l.notify
	l.mu.Unlock()
	if fn != nil {
		fn(r)
	}
}

// Damage returns the damage log of st: the records its lists skipped.
func Damage(st Store) *DamageLog {
	if d, ok := st.(interface{ damage() *DamageLog }); ok {
		return d.damage()
	}
	if u, ok := st.(interface{ Unwrap() Store }); ok {
		return Damage(u.Unwrap())
	}
	return &DamageLog{}
}

func (d *db) damage() *DamageLog { return &d.dmg }

// skipDamaged reports whether err is a record's ErrCorrupt that a list
// may skip; if so it notes the record (key with its table byte) in the
// transaction's store.
func (tx *Tx) skipDamaged(err error, table string, key []byte) bool {
	if !errors.Is(err, ErrCorrupt) {
		return false
	}
	if tx.dmg != nil {
		tx.dmg.add(DamagedRecord{Table: table, Key: hex.EncodeToString(key[1:]), Err: err.Error()})
	}
	return true
}
