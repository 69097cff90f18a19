package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
)

// SeenSet remembers hashes: envelope hashes until a time (checked before
// any decryption, kept longer than the relay TTL), and the hashes of first
// messages' (base key, KEM ciphertext) pairs as long as the signed prekey
// they used is kept (AddFirst, ReleasePrekey), so that no replay of a first
// message finds its prekey still there and its hash gone. Timed entries
// are indexed by expiry so Expire does not scan them all, the others by
// prekey. The timed entries of a message request's ciphertexts are also
// noted under the request's user (AddRequest), so that they can go with
// the request's messages (ForgetRequest): what a stranger makes a node
// remember is bounded like what it makes it store.
//
//	tSeen        hash(32)                    -> 0x01 || until (time), or
//	                                            0x02 || uvarint(prekey ID)
//	tSeenExpiry  until(8) hash(32)           -> ""
//	tSeenPrekey  prekey(4) hash(32)          -> ""
//	tSeenRequest user(32) until(8) hash(32) -> ""
type SeenSet struct{ tx *Tx }

// Seen returns the seen-set.
func (tx *Tx) Seen() SeenSet { return SeenSet{tx} }

func seenKey(h [32]byte) []byte { return key(tSeen, h[:]) }

func seenExpiryKey(until time.Time, h [32]byte) []byte {
	t := timeKey(until)
	return key(tSeenExpiry, t[:], h[:])
}

func seenPrekeyKey(prekey uint32, h [32]byte) []byte {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], prekey)
	return key(tSeenPrekey, p[:], h[:])
}

// Seen entry versions: a time, or a prekey ID.
const (
	seenUntil  = 1
	seenPrekey = 2
)

func encodeUntil(t time.Time) []byte {
	e := newEnc(seenUntil, 12)
	e.time(t)
	return e.b
}

// seenEntry is a decoded seen value: a time, or (bound) a prekey ID.
type seenEntry struct {
	until  time.Time
	bound  bool
	prekey uint32
}

func decodeSeen(b []byte) (seenEntry, error) {
	d, v := newDec("seen entry", b, seenUntil, seenPrekey)
	var e seenEntry
	if v == seenPrekey {
		e.bound, e.prekey = true, d.u32()
	} else {
		e.until = d.time()
	}
	return e, d.finish("seen entry")
}

// Add remembers h until until. If h is already present, the later of the
// two times is kept (and an entry kept for a prekey stays so).
func (s SeenSet) Add(h [32]byte, until time.Time) error {
	cur, ok, err := s.entry(h)
	if err != nil {
		return err
	}
	if ok && cur.bound {
		return nil
	}
	if ok {
		old := cur.until
		if !until.After(old) {
			return nil
		}
		if err := s.tx.del(seenExpiryKey(old, h)); err != nil {
			return err
		}
	}
	if err := s.tx.set(seenExpiryKey(until, h), nil); err != nil {
		return err
	}
	return s.tx.set(seenKey(h), encodeUntil(until))
}

// AddFirst remembers h, the replay hash of a first message that used
// the signed prekey with ID prekey, until ReleasePrekey(prekey): as long as
// that prekey can decrypt it. A timed entry for h becomes one of the
// prekey's.
func (s SeenSet) AddFirst(h [32]byte, prekey uint32) error {
	cur, ok, err := s.entry(h)
	if err != nil {
		return err
	}
	if ok && cur.bound && cur.prekey == prekey {
		return nil
	}
	if ok && !cur.bound {
		if err := s.tx.del(seenExpiryKey(cur.until, h)); err != nil {
			return err
		}
	}
	if err := s.tx.set(seenPrekeyKey(prekey, h), nil); err != nil {
		return err
	}
	e := newEnc(seenPrekey, 5)
	e.uvarint(uint64(prekey))
	return s.tx.set(seenKey(h), e.b)
}

// ReleasePrekey forgets up to limit hashes kept for the signed prekey with
// ID prekey (limit <= 0: all), once the prekey is deleted, and returns how
// many it forgot; call it again while it returns limit.
func (s SeenSet) ReleasePrekey(prekey uint32, limit int) (int, error) {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], prekey)
	var keys [][]byte
	err := s.tx.scanPrefix(key(tSeenPrekey, p[:]), false, func(k, _ []byte) error {
		if len(k) != 1+4+32 {
			return fmt.Errorf("seen prekey index: %w", ErrCorrupt)
		}
		keys = append(keys, append([]byte(nil), k...))
		if limit > 0 && len(keys) >= limit {
			return errStop
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		h := [32]byte(k[5:])
		if err := s.tx.del(k); err != nil {
			return 0, err
		}
		cur, ok, err := s.entry(h)
		if err != nil {
			return 0, err
		}
		if ok && cur.bound && cur.prekey == prekey {
			if err := s.tx.del(seenKey(h)); err != nil {
				return 0, err
			}
		}
	}
	return len(keys), nil
}

// AddRequest remembers h until until, as Add does, and notes it under the
// message request of uid.
func (s SeenSet) AddRequest(uid identity.UserID, h [32]byte, until time.Time) error {
	if err := s.Add(h, until); err != nil {
		return err
	}
	t := timeKey(until)
	return s.tx.set(key(tSeenRequest, uid[:], t[:], h[:]), nil)
}

// ForgetRequest forgets the entries noted under the message request of uid
// but the keep latest (keep <= 0: all), with their notes, and returns how
// many it forgot. An entry that became a first message's (AddFirst) or
// was added again for longer stays in the set. With keep > 0 it reads at
// most keep entries more than it forgets.
func (s SeenSet) ForgetRequest(uid identity.UserID, keep int) (int, error) {
	keys, err := s.requestNotes(uid, keep)
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		if err := s.tx.del(k); err != nil {
			return 0, err
		}
		h := [32]byte(k[1+32+8:])
		cur, ok, err := s.entry(h)
		if err != nil {
			return 0, err
		}
		if !ok || cur.bound || timeKey(cur.until) != [8]byte(k[1+32:1+32+8]) {
			continue
		}
		if err := s.tx.del(seenExpiryKey(cur.until, h)); err != nil {
			return 0, err
		}
		if err := s.tx.del(seenKey(h)); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// KeepRequest drops the notes of the message request of uid (accepted: its
// entries stay until they expire) and returns how many it dropped.
func (s SeenSet) KeepRequest(uid identity.UserID) (int, error) {
	keys, err := s.requestNotes(uid, 0)
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		if err := s.tx.del(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// requestNotes returns the keys of the notes under uid but the keep latest.
func (s SeenSet) requestNotes(uid identity.UserID, keep int) ([][]byte, error) {
	var keys [][]byte
	n := 0
	err := s.tx.scanPrefix(key(tSeenRequest, uid[:]), true, func(k, _ []byte) error {
		if len(k) != 1+32+8+32 {
			return fmt.Errorf("seen request index: %w", ErrCorrupt)
		}
		if n++; n > keep || keep <= 0 {
			keys = append(keys, append([]byte(nil), k...))
		}
		return nil
	})
	return keys, err
}

// Count returns how many hashes the set holds.
func (s SeenSet) Count() (int, error) {
	n := 0
	err := s.tx.scanPrefix([]byte{tSeen}, false, func(_, _ []byte) error {
		n++
		return nil
	})
	return n, err
}

// Has reports whether h is present (and not yet removed by Expire or
// ReleasePrekey).
func (s SeenSet) Has(h [32]byte) (bool, error) {
	_, ok, err := s.entry(h)
	return ok, err
}

func (s SeenSet) entry(h [32]byte) (seenEntry, bool, error) {
	b, err := s.tx.get(seenKey(h))
	if errors.Is(err, ErrNotFound) {
		return seenEntry{}, false, nil
	}
	if err != nil {
		return seenEntry{}, false, err
	}
	e, err := decodeSeen(b)
	return e, err == nil, err
}

// Expire removes up to limit entries whose time is not after now (limit
// <= 0: all) and returns how many it removed; call it again while it
// returns limit.
func (s SeenSet) Expire(now time.Time, limit int) (int, error) {
	index, err := s.tx.expired(tSeenExpiry, now, limit, 1+8+32, "seen index")
	if err != nil {
		return 0, err
	}
	for _, k := range index {
		h := [32]byte(k[9:])
		if err := s.tx.del(k); err != nil {
			return 0, err
		}
		cur, ok, err := s.entry(h)
		if err != nil {
			return 0, err
		}
		if ok && !cur.bound && !cur.until.After(now) {
			if err := s.tx.del(seenKey(h)); err != nil {
				return 0, err
			}
		}
	}
	return len(index), nil
}

// allFF is a suffix greater than any 32-byte hash, for scan bounds.
var allFF = [33]byte{
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
}
