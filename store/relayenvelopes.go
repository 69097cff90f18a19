package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/protocol"
)

// The relay's envelopes: deposit under the quotas, listing, acknowledgement
// and expiry (the tables are described in relay.go).

// AddEnvelope stores e.Envelope in mailbox e.Mailbox under token e.Token
// until e.StoredUntil, counts it in the mailbox, the token and the totals,
// and returns its sequence number. ErrNotFound: no such mailbox (or it is
// being deleted), or no such token. check, if not nil, sees the mailbox,
// the token and the totals as they are before the envelope is added (what
// a quota check needs, read once); if it returns an error, nothing is
// written and AddEnvelope returns that error.
func (r Relay) AddEnvelope(e RelayEnvelope, check func(m *RelayMailbox, t *RelayToken, tot *RelayTotals) error) (uint64, error) {
	if len(e.Envelope) == 0 || len(e.Envelope) > MaxRelayEnvelope {
		return 0, fmt.Errorf("relay envelope: %w: %d bytes", ErrInvalid, len(e.Envelope))
	}
	m, err := r.live(e.Mailbox)
	if err != nil {
		return 0, err
	}
	t, err := r.Token(e.Mailbox, e.Token)
	if err != nil {
		return 0, err
	}
	tot, err := r.Totals()
	if err != nil {
		return 0, err
	}
	if check != nil {
		if err := check(&m, &t, &tot); err != nil {
			return 0, err
		}
	}
	n := uint64(len(e.Envelope))
	m.LastSeq++
	m.Count++
	m.Bytes += n
	e.Seq = m.LastSeq
	t.Count++
	t.Bytes += n
	tot.Envelopes++
	tot.EnvelopeBytes += n
	if err := r.tx.set(relayEnvelopeKey(e.Mailbox, e.Seq), e.marshal()); err != nil {
		return 0, err
	}
	if err := r.tx.set(relayExpiryKey(e.StoredUntil, e.Mailbox, e.Seq), nil); err != nil {
		return 0, err
	}
	if err := r.putMailbox(&m); err != nil {
		return 0, err
	}
	if err := r.changeQuotas(&m, 0, int64(n)); err != nil {
		return 0, err
	}
	if err := r.tx.set(relayTokenKey(e.Mailbox, t.Hash), t.marshal()); err != nil {
		return 0, err
	}
	return e.Seq, r.tx.set(relayTotalsKey, tot.marshal())
}

// Envelopes calls fn for the envelopes of mailbox mb with a sequence
// number above after, in order, at most limit of them (limit <= 0: all).
// Envelopes past their StoredUntil that the sweep has not removed yet are
// included; the caller skips them if it wants.
func (r Relay) Envelopes(mb protocol.MailboxID, after uint64, limit int, fn func(e RelayEnvelope) error) error {
	lo := relayEnvelopeKey(mb, after+1)
	if after == ^uint64(0) {
		return nil
	}
	hi := prefixEnd(key(tRelayEnvelope, mb[:]))
	n := 0
	return r.tx.scan(lo, hi, false, func(k, v []byte) error {
		if len(k) != 1+32+8 {
			return fmt.Errorf("relay envelope key: %w", ErrCorrupt)
		}
		e := RelayEnvelope{Mailbox: mb, Seq: binary.BigEndian.Uint64(k[33:])}
		if err := e.unmarshal(v); err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
		n++
		if limit > 0 && n >= limit {
			return errStop
		}
		return nil
	})
}

// DeleteEnvelope removes envelope seq of mailbox mb and takes it off the
// counts; it reports whether there was one.
func (r Relay) DeleteEnvelope(mb protocol.MailboxID, seq uint64) (bool, error) {
	b, err := r.tx.get(relayEnvelopeKey(mb, seq))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	e := RelayEnvelope{Mailbox: mb, Seq: seq}
	if err := e.unmarshal(b); err != nil {
		return false, err
	}
	n := uint64(len(e.Envelope))
	if err := r.tx.del(relayEnvelopeKey(mb, seq)); err != nil {
		return false, err
	}
	if err := r.tx.del(relayExpiryKey(e.StoredUntil, mb, seq)); err != nil {
		return false, err
	}
	m, err := r.Mailbox(mb)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return false, err
	}
	if err == nil {
		sub(&m.Count, 1)
		sub(&m.Bytes, n)
		if err := r.putMailbox(&m); err != nil {
			return false, err
		}
		if err := r.changeQuotas(&m, 0, -int64(n)); err != nil {
			return false, err
		}
	}
	t, err := r.Token(mb, e.Token)
	switch {
	case err == nil:
		sub(&t.Count, 1)
		sub(&t.Bytes, n)
		if err := r.tx.set(relayTokenKey(mb, t.Hash), t.marshal()); err != nil {
			return false, err
		}
	case !errors.Is(err, ErrNotFound):
		return false, err
	}
	return true, r.changeTotals(func(tt *RelayTotals) {
		sub(&tt.Envelopes, 1)
		sub(&tt.EnvelopeBytes, n)
	})
}

// EnvelopeRef names a stored envelope.
type EnvelopeRef struct {
	Mailbox protocol.MailboxID
	Seq     uint64
}

// ExpiredEnvelopes returns up to limit envelopes whose StoredUntil is not
// after now, earliest first (limit <= 0: all).
func (r Relay) ExpiredEnvelopes(now time.Time, limit int) ([]EnvelopeRef, error) {
	keys, err := r.tx.expired(tRelayExpiry, now, limit, 1+8+32+8, "relay expiry index")
	out := make([]EnvelopeRef, len(keys))
	for i, k := range keys {
		out[i] = EnvelopeRef{Mailbox: protocol.MailboxID(k[9:41]), Seq: binary.BigEndian.Uint64(k[41:])}
	}
	return out, err
}
