package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A store rolled back.
//
// Restoring an older copy of a store (a backup, a VM snapshot), or losing
// its latest writes (a damaged write-ahead log that the engine cuts short
// at the damage), puts the ratchet sessions back to an older state, and a
// session sending from an older state would use its message keys a second
// time. An engine that can tell (badgerstore, with a marker kept outside
// the store) raises the store's generation as it writes, remembers the
// newest generation it made durable somewhere a restored copy does not
// bring back, and, finding the store behind it at Open, records a
// Rollback for the node to act on. The node resets its sessions and
// deletes the Rollback in the same transaction, so that an interruption
// leaves the notice to act on at the next start.

var (
	generationKey = key(tMeta, []byte("generation"))
	rollbackKey   = key(tMeta, []byte("rollback"))
)

// Generation returns the store's generation: 0 if none was ever set.
func (tx *Tx) Generation() (uint64, error) {
	b, err := tx.get(generationKey)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("generation: %w: %d bytes", ErrCorrupt, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// SetGeneration records the store's generation.
func (tx *Tx) SetGeneration(g uint64) error {
	return tx.set(generationKey, binary.BigEndian.AppendUint64(nil, g))
}

// Rollback is the notice that the store was found older than its engine
// last knew it: restored from an older copy, or its latest writes lost.
type Rollback struct {
	// DetectedAt is when the store was opened and found behind.
	DetectedAt time.Time
	// Found is the store's generation then; Expected the newest one the
	// engine had made durable before.
	Found, Expected uint64
}

const rollbackVersion = 1

func (r *Rollback) marshal() []byte {
	e := newEnc(rollbackVersion, 32)
	e.time(r.DetectedAt)
	e.uvarint(r.Found)
	e.uvarint(r.Expected)
	return e.b
}

func (r *Rollback) unmarshal(b []byte) error {
	d, _ := newDec("rollback", b, rollbackVersion)
	r.DetectedAt = d.time()
	r.Found = d.uvarint()
	r.Expected = d.uvarint()
	return d.finish("rollback")
}

// Rollback returns the rollback notice, or ErrNotFound if there is none.
func (tx *Tx) Rollback() (Rollback, error) {
	var r Rollback
	ok, err := tx.getRecord(rollbackKey, &r)
	if err == nil && !ok {
		err = fmt.Errorf("rollback: %w", ErrNotFound)
	}
	return r, err
}

// PutRollback records a rollback notice, replacing one not yet acted on
// (the older detection is kept: it covers more).
func (tx *Tx) PutRollback(r Rollback) error {
	var old Rollback
	ok, err := tx.getRecord(rollbackKey, &old)
	if err != nil {
		return err
	}
	if ok && old.DetectedAt.Before(r.DetectedAt) {
		old.Expected = max(old.Expected, r.Expected)
		r = old
	}
	return tx.set(rollbackKey, r.marshal())
}

// DeleteRollback removes the rollback notice: the node has acted on it.
func (tx *Tx) DeleteRollback() error { return tx.del(rollbackKey) }
