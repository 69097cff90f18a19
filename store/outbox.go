package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
)

// MaxPayloadLen bounds an outbox payload (an encrypted message).
const MaxPayloadLen = 1 << 20

// MaxReceipts bounds the custody receipts kept for one outbox entry.
const MaxReceipts = 64

// MaxReceiptLen bounds one signed custody receipt.
const MaxReceiptLen = 4 << 10

// Receipt is a relay's custody receipt for an outbox entry: the relay
// stores the envelope until StoredUntil. Signed is the receipt as the relay
// signed it (opaque), kept as evidence.
type Receipt struct {
	Relay       string
	StoredUntil time.Time
	Signed      []byte
}

// OutboxEntry is a message waiting for delivery: encrypted once, when it
// was queued, and sent as the same bytes on every attempt. It is removed
// when the message is delivered (or the user deletes it).
type OutboxEntry struct {
	// ID is the message ID.
	ID      protocol.MessageID
	Peer    identity.UserID
	Device  []byte
	Payload []byte
	// CreatedAt is when the message was queued.
	CreatedAt   time.Time
	Attempts    uint32
	NextAttempt time.Time
	LastError   string
	Receipts    []Receipt
	// Session is the session the payload was encrypted in (zero: not
	// recorded), so that a sender can re-encrypt what a peer that lost the
	// session refuses.
	Session SessionID
	// Redeposits counts how often the payload was deposited on a relay
	// again because that relay's custody receipt ran out before the
	// delivery receipt came (zero when it is encrypted again).
	Redeposits uint32
}

// outboxVersion 2 added Session, 3 Redeposits; older records decode with
// them zero.
const outboxVersion = 3

func (o *OutboxEntry) validate() error {
	if len(o.Device) > MaxDeviceIDLen || len(o.Payload) > MaxPayloadLen ||
		len(o.LastError) > MaxReasonLen || len(o.Receipts) > MaxReceipts {
		return fmt.Errorf("outbox: %w: field too long", ErrInvalid)
	}
	for _, r := range o.Receipts {
		if len(r.Relay) > MaxRelayLen || len(r.Signed) > MaxReceiptLen {
			return fmt.Errorf("outbox: %w: receipt too long", ErrInvalid)
		}
	}
	return nil
}

func (o *OutboxEntry) marshal() []byte {
	n := 112 + len(o.Device) + len(o.Payload) + len(o.LastError)
	for _, r := range o.Receipts {
		n += 24 + len(r.Relay) + len(r.Signed)
	}
	e := newEnc(outboxVersion, n)
	e.fixed(o.ID[:])
	e.fixed(o.Peer[:])
	e.bytes(o.Device)
	e.bytes(o.Payload)
	e.time(o.CreatedAt)
	e.uvarint(uint64(o.Attempts))
	e.time(o.NextAttempt)
	e.str(o.LastError)
	e.uvarint(uint64(len(o.Receipts)))
	for _, r := range o.Receipts {
		e.str(r.Relay)
		e.time(r.StoredUntil)
		e.bytes(r.Signed)
	}
	e.fixed(o.Session[:])
	e.uvarint(uint64(o.Redeposits))
	return e.b
}

func (o *OutboxEntry) unmarshal(b []byte) error {
	d, v := newDec("outbox entry", b, 1, 2, outboxVersion)
	d.fixed(o.ID[:])
	d.fixed(o.Peer[:])
	o.Device = d.bytes(MaxDeviceIDLen)
	o.Payload = d.bytes(MaxPayloadLen)
	o.CreatedAt = d.time()
	o.Attempts = d.u32()
	o.NextAttempt = d.time()
	o.LastError = d.str(MaxReasonLen)
	// A receipt takes at least 4 bytes: empty relay, time (2), empty signature.
	n := d.count(MaxReceipts, 4)
	if n > 0 {
		o.Receipts = make([]Receipt, n)
		for i := range o.Receipts {
			o.Receipts[i].Relay = d.str(MaxRelayLen)
			o.Receipts[i].StoredUntil = d.time()
			o.Receipts[i].Signed = d.bytes(MaxReceiptLen)
		}
	} else {
		o.Receipts = nil
	}
	o.Session = SessionID{}
	if v >= 2 {
		d.fixed(o.Session[:])
	}
	o.Redeposits = 0
	if v >= 3 {
		o.Redeposits = d.u32()
	}
	return d.finish("outbox entry")
}

func outboxKey(id protocol.MessageID) []byte { return key(tOutbox, id[:]) }

func outboxDueKey(next time.Time, id protocol.MessageID) []byte {
	t := timeKey(next)
	return key(tOutboxDue, t[:], id[:])
}

// Outbox is the table of messages waiting for delivery, indexed by
// NextAttempt.
type Outbox struct{ tx *Tx }

// Outbox returns the outbox table.
func (tx *Tx) Outbox() Outbox { return Outbox{tx} }

// Get returns the entry for message id, or ErrNotFound.
func (s Outbox) Get(id protocol.MessageID) (OutboxEntry, error) {
	var o OutboxEntry
	b, err := s.tx.get(outboxKey(id))
	if errors.Is(err, ErrNotFound) {
		return o, notFound("outbox entry", id)
	}
	if err != nil {
		return o, err
	}
	err = o.unmarshal(b)
	s.tx.skipDamaged(err, "outbox entry", outboxKey(id))
	return o, err
}

// Put creates or replaces an entry.
func (s Outbox) Put(o OutboxEntry) error {
	if err := o.validate(); err != nil {
		return err
	}
	old, err := s.Get(o.ID)
	switch {
	case err == nil:
		if !old.NextAttempt.Equal(o.NextAttempt) {
			if err := s.tx.del(outboxDueKey(old.NextAttempt, o.ID)); err != nil {
				return err
			}
		}
	case !errors.Is(err, ErrNotFound):
		return err
	}
	if err := s.tx.set(outboxDueKey(o.NextAttempt, o.ID), nil); err != nil {
		return err
	}
	return s.tx.set(outboxKey(o.ID), o.marshal())
}

// Delete removes the entry for message id; a missing one is not an error,
// and a damaged one is removed (its index key, which names its time, is
// left for the lists to skip).
func (s Outbox) Delete(id protocol.MessageID) error {
	old, err := s.Get(id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if errors.Is(err, ErrCorrupt) {
		return s.tx.del(outboxKey(id))
	}
	if err != nil {
		return err
	}
	if err := s.tx.del(outboxDueKey(old.NextAttempt, id)); err != nil {
		return err
	}
	return s.tx.del(outboxKey(id))
}

// Due returns up to limit entries whose NextAttempt is not after now,
// earliest first (limit <= 0: no limit).
func (s Outbox) Due(now time.Time, limit int) ([]OutboxEntry, error) {
	return s.byNextAttempt(now, limit)
}

// Next returns the earliest NextAttempt of any entry, and false if the
// outbox is empty; a sender sleeps until then.
func (s Outbox) Next() (time.Time, bool, error) {
	es, err := s.byNextAttempt(maxKeyTime, 1)
	if err != nil || len(es) == 0 {
		return time.Time{}, false, err
	}
	return es[0].NextAttempt, true, nil
}

func (s Outbox) byNextAttempt(now time.Time, limit int) ([]OutboxEntry, error) {
	t := timeKey(now)
	var out []OutboxEntry
	// Every index key (t, id) with t <= now sorts before (now, 0xff...).
	hi := key(tOutboxDue, t[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	err := s.tx.scan([]byte{tOutboxDue}, hi, false, func(k, _ []byte) error {
		if len(k) != 1+8+16 {
			return fmt.Errorf("outbox index: %w", ErrCorrupt)
		}
		o, err := s.Get(protocol.MessageID(k[9:]))
		if errors.Is(err, ErrNotFound) {
			// An index key without its entry: skip it as damage.
			err = fmt.Errorf("%w: outbox index without its entry", ErrCorrupt)
			if s.tx.skipDamaged(err, "outbox index", k) {
				return nil
			}
		}
		if errors.Is(err, ErrCorrupt) {
			return nil // noted by Get
		}
		if err != nil {
			return fmt.Errorf("outbox index: %w", err)
		}
		out = append(out, o)
		if limit > 0 && len(out) >= limit {
			return errStop
		}
		return nil
	})
	return out, err
}

// List returns every entry, by message ID.
func (s Outbox) List() ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := s.tx.scanPrefix([]byte{tOutbox}, false, func(k, v []byte) error {
		var o OutboxEntry
		if err := o.unmarshal(v); err != nil {
			if s.tx.skipDamaged(err, "outbox entry", k) {
				return nil
			}
			return err
		}
		out = append(out, o)
		return nil
	})
	return out, err
}
