package store

import (
	"errors"
	"time"
)

// SeenSet remembers hashes until a time: envelope hashes (checked before
// any decryption, kept longer than the relay TTL) and the hashes of first
// messages' (base key, KEM ciphertext) pairs (kept for the signed prekey's
// lifetime). Entries are indexed by expiry so Expire does not scan them all.
type SeenSet struct{ tx *Tx }

// Seen returns the seen-set.
func (tx *Tx) Seen() SeenSet { return SeenSet{tx} }

func seenKey(h [32]byte) []byte { return key(tSeen, h[:]) }

func seenExpiryKey(until time.Time, h [32]byte) []byte {
	t := timeKey(until)
	return key(tSeenExpiry, t[:], h[:])
}

func encodeUntil(t time.Time) []byte {
	e := newEnc(1, 12)
	e.time(t)
	return e.b
}

func decodeUntil(b []byte) (time.Time, error) {
	d, _ := newDec("seen entry", b, 1)
	t := d.time()
	return t, d.finish("seen entry")
}

// Add remembers h until until. If h is already present, the later of the
// two times is kept.
func (s SeenSet) Add(h [32]byte, until time.Time) error {
	old, ok, err := s.until(h)
	if err != nil {
		return err
	}
	if ok {
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

// Has reports whether h is present (and not yet removed by Expire).
func (s SeenSet) Has(h [32]byte) (bool, error) {
	_, ok, err := s.until(h)
	return ok, err
}

func (s SeenSet) until(h [32]byte) (time.Time, bool, error) {
	b, err := s.tx.get(seenKey(h))
	if errors.Is(err, ErrNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	t, err := decodeUntil(b)
	return t, err == nil, err
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
		u, ok, err := s.until(h)
		if err != nil {
			return 0, err
		}
		if ok && !u.After(now) {
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
