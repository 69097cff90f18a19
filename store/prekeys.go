package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/protocol"
)

// PrekeyKind says which kind of prekey a record holds.
type PrekeyKind uint8

const (
	// PrekeySigned is a signed X25519 prekey (rotated weekly).
	PrekeySigned PrekeyKind = 1
	// PrekeyLastResort is the signed last-resort ML-KEM-768 key.
	PrekeyLastResort PrekeyKind = 2
	// PrekeyOneTime is a one-time prekey (X25519 + ML-KEM-768).
	PrekeyOneTime PrekeyKind = 3
)

func (k PrekeyKind) valid() bool { return k >= PrekeySigned && k <= PrekeyOneTime }

func (k PrekeyKind) String() string {
	switch k {
	case PrekeySigned:
		return "signed"
	case PrekeyLastResort:
		return "last-resort"
	case PrekeyOneTime:
		return "one-time"
	}
	return fmt.Sprintf("PrekeyKind(%d)", uint8(k))
}

// PrekeyState is where a prekey is in its life.
type PrekeyState uint8

const (
	// PrekeyAvailable: not yet given to anyone.
	PrekeyAvailable PrekeyState = 1
	// PrekeyHandedOut: served in a bundle by this node; kept until a message
	// using it decrypts (then deleted) or it ages out.
	PrekeyHandedOut PrekeyState = 2
	// PrekeyUploaded: a one-time prekey uploaded to the relay mailbox
	// Prekey.Mailbox, which hands it out; kept until a message using it
	// decrypts (then deleted) or it ages out.
	PrekeyUploaded PrekeyState = 3
)

func (s PrekeyState) valid() bool { return s >= PrekeyAvailable && s <= PrekeyUploaded }

func (s PrekeyState) String() string {
	switch s {
	case PrekeyAvailable:
		return "available"
	case PrekeyHandedOut:
		return "handed-out"
	case PrekeyUploaded:
		return "uploaded"
	}
	return fmt.Sprintf("PrekeyState(%d)", uint8(s))
}

// Prekey is one of the node's own prekeys, identified by (Kind, ID).
// Private and Public are the bytes crypto/prekey marshals.
type Prekey struct {
	Kind      PrekeyKind
	ID        uint32
	CreatedAt time.Time
	Private   []byte
	Public    []byte
	State     PrekeyState
	// Mailbox is the relay mailbox that hands it out when State is
	// PrekeyUploaded (zero otherwise).
	Mailbox        protocol.MailboxID
	StateChangedAt time.Time
}

const prekeyVersion = 1

// MaxRelayLen bounds a relay peer ID string.
const MaxRelayLen = 128

func (p *Prekey) validate() error {
	if !p.Kind.valid() || !p.State.valid() {
		return fmt.Errorf("prekey: %w: kind %d state %d", ErrInvalid, p.Kind, p.State)
	}
	if len(p.Private) > MaxKeyMaterial || len(p.Public) > MaxKeyMaterial {
		return fmt.Errorf("prekey: %w: field too long", ErrInvalid)
	}
	return nil
}

func (p *Prekey) marshal() []byte {
	e := newEnc(prekeyVersion, 80+len(p.Private)+len(p.Public))
	e.u8(uint8(p.Kind))
	e.uvarint(uint64(p.ID))
	e.time(p.CreatedAt)
	e.bytes(p.Private)
	e.bytes(p.Public)
	e.u8(uint8(p.State))
	// The mailbox goes where version 1 had a relay's name, which nothing
	// wrote: as a string, empty for none.
	if p.Mailbox != (protocol.MailboxID{}) {
		e.bytes(p.Mailbox[:])
	} else {
		e.bytes(nil)
	}
	e.time(p.StateChangedAt)
	return e.b
}

func (p *Prekey) unmarshal(b []byte) error {
	d, _ := newDec("prekey", b, prekeyVersion)
	p.Kind = PrekeyKind(d.u8())
	p.ID = d.u32()
	p.CreatedAt = d.time()
	p.Private = d.bytes(MaxKeyMaterial)
	p.Public = d.bytes(MaxKeyMaterial)
	p.State = PrekeyState(d.u8())
	switch mb := d.bytes(len(p.Mailbox)); len(mb) {
	case 0:
	case len(p.Mailbox):
		copy(p.Mailbox[:], mb)
	default:
		d.fail("prekey", "mailbox of the wrong size")
	}
	p.StateChangedAt = d.time()
	if err := d.finish("prekey"); err != nil {
		return err
	}
	if !p.Kind.valid() || !p.State.valid() {
		return fmt.Errorf("decode prekey: %w: kind %d state %d", ErrCorrupt, p.Kind, p.State)
	}
	return nil
}

func prekeyKey(kind PrekeyKind, id uint32) []byte {
	var b [5]byte
	b[0] = byte(kind)
	binary.BigEndian.PutUint32(b[1:], id)
	return key(tPrekey, b[:])
}

func prekeyStateKey(kind PrekeyKind, state PrekeyState, id uint32) []byte {
	var b [6]byte
	b[0] = byte(kind)
	b[1] = byte(state)
	binary.BigEndian.PutUint32(b[2:], id)
	return key(tPrekeyState, b[:])
}

// Prekeys is the table of the node's own prekeys, with an index by
// (kind, state) so TakeAvailable and Count do not scan every key.
type Prekeys struct{ tx *Tx }

// Prekeys returns the prekey table.
func (tx *Tx) Prekeys() Prekeys { return Prekeys{tx} }

// Get returns the prekey (kind, id), or ErrNotFound.
func (s Prekeys) Get(kind PrekeyKind, id uint32) (Prekey, error) {
	var p Prekey
	b, err := s.tx.get(prekeyKey(kind, id))
	if errors.Is(err, ErrNotFound) {
		return p, fmt.Errorf("prekey %s %d: %w", kind, id, ErrNotFound)
	}
	if err != nil {
		return p, err
	}
	err = p.unmarshal(b)
	return p, err
}

// Put creates or replaces a prekey.
func (s Prekeys) Put(p Prekey) error {
	if err := p.validate(); err != nil {
		return err
	}
	old, err := s.Get(p.Kind, p.ID)
	switch {
	case err == nil:
		if old.State != p.State {
			if err := s.tx.del(prekeyStateKey(old.Kind, old.State, old.ID)); err != nil {
				return err
			}
		}
	case !errors.Is(err, ErrNotFound):
		return err
	}
	if err := s.tx.set(prekeyStateKey(p.Kind, p.State, p.ID), nil); err != nil {
		return err
	}
	return s.tx.set(prekeyKey(p.Kind, p.ID), p.marshal())
}

// Delete removes a prekey (a one-time prekey once a message using it has
// decrypted; an old signed prekey once it has aged out). Deleting a missing
// prekey is not an error.
func (s Prekeys) Delete(kind PrekeyKind, id uint32) error {
	old, err := s.Get(kind, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.tx.del(prekeyStateKey(kind, old.State, id)); err != nil {
		return err
	}
	return s.tx.del(prekeyKey(kind, id))
}

// List returns every prekey of kind, by ascending ID.
func (s Prekeys) List(kind PrekeyKind) ([]Prekey, error) {
	var out []Prekey
	err := s.tx.scanPrefix(key(tPrekey, []byte{byte(kind)}), false, func(_, v []byte) error {
		var p Prekey
		if err := p.unmarshal(v); err != nil {
			return err
		}
		out = append(out, p)
		return nil
	})
	return out, err
}

// ListState returns the prekeys of kind in state, by ascending ID.
func (s Prekeys) ListState(kind PrekeyKind, state PrekeyState) ([]Prekey, error) {
	var ids []uint32
	err := s.tx.scanPrefix(key(tPrekeyState, []byte{byte(kind), byte(state)}), false, func(k, _ []byte) error {
		if len(k) != 7 {
			return fmt.Errorf("prekey index: %w", ErrCorrupt)
		}
		ids = append(ids, binary.BigEndian.Uint32(k[3:]))
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Prekey, 0, len(ids))
	for _, id := range ids {
		p, err := s.Get(kind, id)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// TakeAvailable marks the available prekey of kind with the lowest ID as
// handed out (StateChangedAt = now) and returns it; ErrNotFound if none is
// available. Inside one Update it is atomic: concurrent callers never get
// the same key.
func (s Prekeys) TakeAvailable(kind PrekeyKind, now time.Time) (Prekey, error) {
	var id uint32
	found := false
	err := s.tx.scanPrefix(key(tPrekeyState, []byte{byte(kind), byte(PrekeyAvailable)}), false, func(k, _ []byte) error {
		if len(k) != 7 {
			return fmt.Errorf("prekey index: %w", ErrCorrupt)
		}
		id = binary.BigEndian.Uint32(k[3:])
		found = true
		return errStop
	})
	if err != nil {
		return Prekey{}, err
	}
	if !found {
		return Prekey{}, fmt.Errorf("available %s prekey: %w", kind, ErrNotFound)
	}
	p, err := s.Get(kind, id)
	if err != nil {
		return Prekey{}, err
	}
	p.State = PrekeyHandedOut
	p.StateChangedAt = now
	if err := s.Put(p); err != nil {
		return Prekey{}, err
	}
	return p, nil
}

// Count returns the number of prekeys of kind in state.
func (s Prekeys) Count(kind PrekeyKind, state PrekeyState) (int, error) {
	n := 0
	err := s.tx.scanPrefix(key(tPrekeyState, []byte{byte(kind), byte(state)}), false, func(_, _ []byte) error {
		n++
		return nil
	})
	return n, err
}
