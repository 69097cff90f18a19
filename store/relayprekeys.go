package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/protocol"
)

// The relay's prekey cards and one-time prekeys, held for a mailbox's owner
// and taken by depositors (the tables are described in relay.go).

// PutCard stores the card blob of token hash h of mailbox mb, replacing
// one stored before. ErrNotFound: no such mailbox or token.
func (r Relay) PutCard(mb protocol.MailboxID, h protocol.TokenHash, blob []byte) error {
	if len(blob) == 0 || len(blob) > MaxRelayBlob {
		return fmt.Errorf("relay card: %w: %d bytes", ErrInvalid, len(blob))
	}
	m, err := r.live(mb)
	if err != nil {
		return err
	}
	t, err := r.Token(mb, h)
	if err != nil {
		return err
	}
	old, err := r.Card(mb, h)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if err := r.tx.set(relayCardKey(mb, h), append([]byte(nil), blob...)); err != nil {
		return err
	}
	if !t.HasCard {
		t.HasCard = true
		if err := r.tx.set(relayTokenKey(mb, h), t.marshal()); err != nil {
			return err
		}
	}
	if err := r.chargeKeys(&m, int64(len(blob))-int64(len(old))); err != nil {
		return err
	}
	if err := r.putMailbox(&m); err != nil {
		return err
	}
	return r.changeTotals(func(tt *RelayTotals) {
		if old == nil {
			tt.Cards++
		}
		sub(&tt.BlobBytes, uint64(len(old)))
		tt.BlobBytes += uint64(len(blob))
	})
}

// Card returns the card blob of token hash h of mailbox mb, or ErrNotFound.
func (r Relay) Card(mb protocol.MailboxID, h protocol.TokenHash) ([]byte, error) {
	b, err := r.tx.get(relayCardKey(mb, h))
	if errors.Is(err, ErrNotFound) {
		return nil, notFound("relay card", h[:4])
	}
	return b, err
}

func (r Relay) deleteCard(mb protocol.MailboxID, h protocol.TokenHash) error {
	old, err := r.Card(mb, h)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := r.tx.del(relayCardKey(mb, h)); err != nil {
		return err
	}
	m, err := r.Mailbox(mb)
	if err != nil {
		return err
	}
	if err := r.chargeKeys(&m, -int64(len(old))); err != nil {
		return err
	}
	if err := r.putMailbox(&m); err != nil {
		return err
	}
	return r.changeTotals(func(tt *RelayTotals) {
		sub(&tt.Cards, 1)
		sub(&tt.BlobBytes, uint64(len(old)))
	})
}

// AddPrekeys stores prekey blobs for mailbox mb, handed out until
// expires. ErrNotFound: no such mailbox.
func (r Relay) AddPrekeys(mb protocol.MailboxID, blobs [][]byte, expires time.Time) error {
	m, err := r.live(mb)
	if err != nil {
		return err
	}
	var size uint64
	for _, b := range blobs {
		if len(b) == 0 || len(b) > MaxRelayBlob {
			return fmt.Errorf("relay prekey: %w: %d bytes", ErrInvalid, len(b))
		}
		m.PrekeySeq++
		if err := r.tx.set(relayPrekeyKey(mb, expires, m.PrekeySeq), encodePrekeyBlob(b)); err != nil {
			return err
		}
		if err := r.tx.set(relayPrekeyExpKey(expires, mb, m.PrekeySeq), nil); err != nil {
			return err
		}
		size += uint64(len(b))
	}
	m.Prekeys += uint64(len(blobs))
	if err := r.chargeKeys(&m, int64(size)); err != nil {
		return err
	}
	if err := r.putMailbox(&m); err != nil {
		return err
	}
	return r.changeTotals(func(tt *RelayTotals) {
		tt.Prekeys += uint64(len(blobs))
		tt.BlobBytes += size
	})
}

// encodePrekeyBlob stores a blob with a version byte, like every record.
func encodePrekeyBlob(b []byte) []byte {
	e := newEnc(1, len(b)+3)
	e.bytes(b)
	return e.b
}

func decodePrekeyBlob(v []byte) ([]byte, error) {
	d, _ := newDec("relay prekey", v, 1)
	b := d.bytes(MaxRelayBlob)
	return b, d.finish("relay prekey")
}

// TakePrekey removes and returns one prekey blob of mailbox mb that has not
// expired at now: the one that expires first; ok is false when none is
// left. Expired blobs it passes are removed too (so commit the transaction
// even when ok is false). ErrNotFound: no such mailbox. Two transactions
// that take from one mailbox at once conflict on the mailbox's record, so
// a blob is handed out once.
func (r Relay) TakePrekey(mb protocol.MailboxID, now time.Time) (blob []byte, ok bool, err error) {
	m, err := r.live(mb)
	if err != nil {
		return nil, false, err
	}
	type found struct {
		key     []byte
		expires [8]byte
		blob    []byte
	}
	var expired []found
	var take *found
	limit := timeKey(now)
	err = r.tx.scanPrefix(key(tRelayPrekey, mb[:]), false, func(k, v []byte) error {
		if len(k) != 1+32+8+8 {
			return fmt.Errorf("relay prekey key: %w", ErrCorrupt)
		}
		f := found{key: append([]byte(nil), k...), expires: [8]byte(k[33:41])}
		b, err := decodePrekeyBlob(v)
		if err != nil {
			return err
		}
		f.blob = b
		if string(f.expires[:]) <= string(limit[:]) {
			expired = append(expired, f)
			if len(expired) >= maxExpiredPerTake {
				return errStop
			}
			return nil
		}
		take = &f
		return errStop
	})
	if err != nil {
		return nil, false, err
	}
	gone := expired
	if take != nil {
		gone = append(gone, *take)
	}
	var size uint64
	for _, f := range gone {
		if err := r.tx.del(f.key); err != nil {
			return nil, false, err
		}
		if err := r.tx.del(key(tRelayPrekeyExp, f.expires[:], mb[:], f.key[41:])); err != nil {
			return nil, false, err
		}
		size += uint64(len(f.blob))
	}
	if len(gone) > 0 {
		sub(&m.Prekeys, uint64(len(gone)))
		if err := r.chargeKeys(&m, -int64(size)); err != nil {
			return nil, false, err
		}
		if err := r.putMailbox(&m); err != nil {
			return nil, false, err
		}
		if err := r.changeTotals(func(tt *RelayTotals) {
			sub(&tt.Prekeys, uint64(len(gone)))
			sub(&tt.BlobBytes, size)
		}); err != nil {
			return nil, false, err
		}
	}
	if take == nil {
		return nil, false, nil
	}
	return take.blob, true, nil
}

// maxExpiredPerTake bounds the expired blobs one TakePrekey removes (the
// sweep removes the rest), so that a take stays a small transaction.
const maxExpiredPerTake = 256

// ExpirePrekeys removes up to limit prekey blobs that expired at now
// (limit <= 0: all) and returns how many it removed.
func (r Relay) ExpirePrekeys(now time.Time, limit int) (int, error) {
	index, err := r.tx.expired(tRelayPrekeyExp, now, limit, 1+8+32+8, "relay prekey index")
	if err != nil {
		return 0, err
	}
	type held struct{ n, size uint64 }
	perMailbox := map[protocol.MailboxID]held{}
	var size uint64
	for _, k := range index {
		mb := protocol.MailboxID(k[9:41])
		pk := key(tRelayPrekey, mb[:], k[1:9], k[41:])
		v, err := r.tx.get(pk)
		switch {
		case err == nil:
			b, err := decodePrekeyBlob(v)
			if err != nil {
				return 0, err
			}
			size += uint64(len(b))
			h := perMailbox[mb]
			h.n++
			h.size += uint64(len(b))
			perMailbox[mb] = h
			if err := r.tx.del(pk); err != nil {
				return 0, err
			}
		case !errors.Is(err, ErrNotFound):
			return 0, err
		}
		if err := r.tx.del(k); err != nil {
			return 0, err
		}
	}
	var total uint64
	for mb, h := range perMailbox {
		total += h.n
		m, err := r.Mailbox(mb)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		sub(&m.Prekeys, h.n)
		if err := r.chargeKeys(&m, -int64(h.size)); err != nil {
			return 0, err
		}
		if err := r.putMailbox(&m); err != nil {
			return 0, err
		}
	}
	if total > 0 {
		if err := r.changeTotals(func(tt *RelayTotals) {
			sub(&tt.Prekeys, total)
			sub(&tt.BlobBytes, size)
		}); err != nil {
			return 0, err
		}
	}
	return len(index), nil
}
