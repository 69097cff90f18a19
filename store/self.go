package store

import (
	"errors"
	"fmt"
	"time"
)

// Self is the node's own record: who this node is. The key material is
// stored as the bytes its owner package marshals (crypto/identity for the
// identity, libp2p for the device key); the store does not interpret it.
type Self struct {
	// Name is the user's display name (at most MaxNameLen bytes).
	Name string
	// Identity is the private identity, as crypto/identity marshals it.
	Identity []byte
	// DeviceKey is the device's libp2p private key, as libp2p marshals it.
	DeviceKey []byte
	// DeviceRecord is the signed device record.
	DeviceRecord []byte
	CreatedAt    time.Time
	// Card is the user's own newest contact card as sent to contacts
	// (opaque to the store; nil until one is made).
	Card []byte
}

// selfVersion 2 added Card; version 1 records decode with it nil.
const selfVersion = 2

// MaxKeyMaterial bounds a stored key, identity or device record.
const MaxKeyMaterial = 16 << 10

func (s *Self) validate() error {
	if len(s.Name) > MaxNameLen || len(s.Identity) > MaxKeyMaterial ||
		len(s.DeviceKey) > MaxKeyMaterial || len(s.DeviceRecord) > MaxKeyMaterial || len(s.Card) > MaxCardLen {
		return fmt.Errorf("self: %w: field too long", ErrInvalid)
	}
	if len(s.Identity) == 0 || len(s.DeviceKey) == 0 {
		return fmt.Errorf("self: %w: identity and device key are required", ErrInvalid)
	}
	return nil
}

func (s *Self) marshal() []byte {
	e := newEnc(selfVersion, 72+len(s.Name)+len(s.Identity)+len(s.DeviceKey)+len(s.DeviceRecord)+len(s.Card))
	e.str(s.Name)
	e.bytes(s.Identity)
	e.bytes(s.DeviceKey)
	e.bytes(s.DeviceRecord)
	e.time(s.CreatedAt)
	e.bytes(s.Card)
	return e.b
}

func (s *Self) unmarshal(b []byte) error {
	d, v := newDec("self", b, 1, selfVersion)
	s.Name = d.str(MaxNameLen)
	s.Identity = d.bytes(MaxKeyMaterial)
	s.DeviceKey = d.bytes(MaxKeyMaterial)
	s.DeviceRecord = d.bytes(MaxKeyMaterial)
	s.CreatedAt = d.time()
	s.Card = nil
	if v >= 2 {
		s.Card = d.bytes(MaxCardLen)
	}
	return d.finish("self")
}

var selfKey = []byte{tSelf}

// Self returns the node's own record, or ErrNotFound before it is created.
func (tx *Tx) Self() (Self, error) {
	var s Self
	b, err := tx.get(selfKey)
	if errors.Is(err, ErrNotFound) {
		return s, fmt.Errorf("self: %w", ErrNotFound)
	}
	if err != nil {
		return s, err
	}
	err = s.unmarshal(b)
	return s, err
}

// PutSelf creates or replaces the node's own record.
func (tx *Tx) PutSelf(s Self) error {
	if err := s.validate(); err != nil {
		return err
	}
	return tx.set(selfKey, s.marshal())
}
