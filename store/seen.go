package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// SeenSet remembers hashes: envelope hashes until a time (checked before
// any decryption, kept longer than the relay TTL), and the hashes of first
// messages' (base key, KEM ciphertext) pairs as long as the signed prekey
// they used is kept (AddFirst, ReleasePrekey), so that no replay of a first
// message finds its prekey still there and its hash gone. Timed entries
// are indexed by expiry so Expire does not scan them all, the others by
// prekey.
//
//	tSeen        hash(32)           -> 0x01 || until (time), or
//	                                   0x02 || uvarint(prekey ID)
//	tSeenExpiry  until(8) hash(32)  -> ""
//	tSeenPrekey  prekey(4) hash(32) -> ""
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
