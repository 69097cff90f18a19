package store

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
)

// ContactState is how far a contact relationship has come.
type ContactState uint8

const (
	// ContactRequest: the peer wrote first and the user has not accepted.
	ContactRequest ContactState = 1
	// ContactAccepted: added or accepted by the user.
	ContactAccepted ContactState = 2
	// ContactBlocked: refused by the user.
	ContactBlocked ContactState = 3
)

func (s ContactState) valid() bool { return s >= ContactRequest && s <= ContactBlocked }

func (s ContactState) String() string {
	switch s {
	case ContactRequest:
		return "request"
	case ContactAccepted:
		return "accepted"
	case ContactBlocked:
		return "blocked"
	}
	return fmt.Sprintf("ContactState(%d)", uint8(s))
}

// MaxNameLen bounds a contact's local name and a display name, in bytes.
const MaxNameLen = 128

// MaxCardLen bounds a stored contact card.
const MaxCardLen = 64 << 10

// Contact is a peer the user knows, identified by UserID. Name is the
// user's local name for the contact, unique among contacts (compared
// bytewise: normalize before storing); an empty Name is allowed (a message
// request not yet named) and is not indexed.
type Contact struct {
	UserID identity.UserID
	Name   string
	// Identity is the pinned public identity, as crypto/identity marshals it.
	Identity []byte
	// Card is the latest contact card received, opaque.
	Card     []byte
	State    ContactState
	Verified bool
	// IdentityChanged is set when the peer presented a different identity
	// (kept in PendingIdentity) until the user re-verifies.
	IdentityChanged bool
	PendingIdentity []byte
	// SendSeq is the last sequence number this node sent in the
	// conversation; RecvSeq the highest received from the peer.
	SendSeq   uint64
	RecvSeq   uint64
	CreatedAt time.Time
	UpdatedAt time.Time
	// Device is the peer's device ID (libp2p peer ID bytes) and
	// DeviceRecord its signed device record (crypto/identity encoding).
	Device       []byte
	DeviceRecord []byte
	// Addrs are the device's known binary multiaddrs (from its card or an
	// invite), at most MaxAddrs of at most MaxAddrLen bytes.
	Addrs [][]byte
	// CardSeq is the sequence number of the newest card received from the
	// peer (0: none yet).
	CardSeq uint64
	// Session is the ID of the active session with Device (zero: none).
	Session SessionID
	// PendingCard goes with PendingIdentity: what the new identity
	// presented (opaque), kept until the user re-verifies.
	PendingCard []byte
	// RequestMessages and RequestBytes are what a message request holds:
	// the messages received from it while it is one and their size,
	// counted against the node's caps on message requests (zero once it
	// is accepted).
	RequestMessages uint64
	RequestBytes    uint64
}

// contactVersion 2 added Device, DeviceRecord, Addrs, CardSeq, Session
// and PendingCard, version 3 RequestMessages and RequestBytes; older
// records decode with them zero.
const contactVersion = 3

func (c *Contact) validate() error {
	if !c.State.valid() {
		return fmt.Errorf("contact: %w: state %d", ErrInvalid, c.State)
	}
	if len(c.Name) > MaxNameLen || len(c.Identity) > MaxKeyMaterial ||
		len(c.PendingIdentity) > MaxKeyMaterial || len(c.Card) > MaxCardLen ||
		len(c.Device) > MaxDeviceIDLen || len(c.DeviceRecord) > MaxKeyMaterial ||
		len(c.Addrs) > MaxAddrs || len(c.PendingCard) > MaxCardLen {
		return fmt.Errorf("contact: %w: field too long", ErrInvalid)
	}
	for _, a := range c.Addrs {
		if len(a) > MaxAddrLen {
			return fmt.Errorf("contact: %w: address too long", ErrInvalid)
		}
	}
	return nil
}

func (c *Contact) marshal() []byte {
	n := 160 + len(c.Name) + len(c.Identity) + len(c.Card) + len(c.PendingIdentity) +
		len(c.Device) + len(c.DeviceRecord) + len(c.PendingCard)
	for _, a := range c.Addrs {
		n += 2 + len(a)
	}
	e := newEnc(contactVersion, n)
	e.fixed(c.UserID[:])
	e.str(c.Name)
	e.bytes(c.Identity)
	e.bytes(c.Card)
	e.u8(uint8(c.State))
	e.bool(c.Verified)
	e.bool(c.IdentityChanged)
	e.bytes(c.PendingIdentity)
	e.uvarint(c.SendSeq)
	e.uvarint(c.RecvSeq)
	e.time(c.CreatedAt)
	e.time(c.UpdatedAt)
	e.bytes(c.Device)
	e.bytes(c.DeviceRecord)
	e.uvarint(uint64(len(c.Addrs)))
	for _, a := range c.Addrs {
		e.bytes(a)
	}
	e.uvarint(c.CardSeq)
	e.fixed(c.Session[:])
	e.bytes(c.PendingCard)
	e.uvarint(c.RequestMessages)
	e.uvarint(c.RequestBytes)
	return e.b
}

func (c *Contact) unmarshal(b []byte) error {
	d, v := newDec("contact", b, 1, contactVersion)
	d.fixed(c.UserID[:])
	c.Name = d.str(MaxNameLen)
	c.Identity = d.bytes(MaxKeyMaterial)
	c.Card = d.bytes(MaxCardLen)
	c.State = ContactState(d.u8())
	c.Verified = d.bool()
	c.IdentityChanged = d.bool()
	c.PendingIdentity = d.bytes(MaxKeyMaterial)
	c.SendSeq = d.uvarint()
	c.RecvSeq = d.uvarint()
	c.CreatedAt = d.time()
	c.UpdatedAt = d.time()
	c.Device, c.DeviceRecord, c.Addrs, c.CardSeq, c.Session, c.PendingCard = nil, nil, nil, 0, SessionID{}, nil
	c.RequestMessages, c.RequestBytes = 0, 0
	if v >= 2 {
		c.Device = d.bytes(MaxDeviceIDLen)
		c.DeviceRecord = d.bytes(MaxKeyMaterial)
		// An address takes at least one byte (its length).
		if n := d.count(MaxAddrs, 1); n > 0 {
			c.Addrs = make([][]byte, n)
			for i := range c.Addrs {
				c.Addrs[i] = d.bytes(MaxAddrLen)
			}
		}
		c.CardSeq = d.uvarint()
		d.fixed(c.Session[:])
		c.PendingCard = d.bytes(MaxCardLen)
	}
	if v >= 3 {
		c.RequestMessages = d.uvarint()
		c.RequestBytes = d.uvarint()
	}
	if err := d.finish("contact"); err != nil {
		return err
	}
	if !c.State.valid() {
		return fmt.Errorf("decode contact: %w: state %d", ErrCorrupt, c.State)
	}
	return nil
}

func contactKey(id identity.UserID) []byte { return key(tContact, id[:]) }
func contactNameKey(name string) []byte    { return key(tContactName, []byte(name)) }

// Contacts is the table of contacts, with a unique index on Name.
type Contacts struct{ tx *Tx }

// Contacts returns the contact table.
func (tx *Tx) Contacts() Contacts { return Contacts{tx} }

// Get returns the contact with user ID id, or ErrNotFound.
func (s Contacts) Get(id identity.UserID) (Contact, error) {
	var c Contact
	b, err := s.tx.get(contactKey(id))
	if errors.Is(err, ErrNotFound) {
		return c, notFound("contact", id)
	}
	if err != nil {
		return c, err
	}
	err = c.unmarshal(b)
	s.tx.skipDamaged(err, "contact", contactKey(id))
	return c, err
}

// ByName returns the contact named name, or ErrNotFound.
func (s Contacts) ByName(name string) (Contact, error) {
	if name == "" || len(name) > MaxNameLen {
		return Contact{}, fmt.Errorf("contact %q: %w", name, ErrNotFound)
	}
	b, err := s.tx.get(contactNameKey(name))
	if errors.Is(err, ErrNotFound) {
		return Contact{}, fmt.Errorf("contact %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Contact{}, err
	}
	if len(b) != len(identity.UserID{}) {
		return Contact{}, fmt.Errorf("contact name index: %w", ErrCorrupt)
	}
	return s.Get(identity.UserID(b))
}

// Put creates or replaces a contact. It returns ErrNameTaken if another
// contact has c.Name.
func (s Contacts) Put(c Contact) error {
	if err := c.validate(); err != nil {
		return err
	}
	old, err := s.Get(c.UserID)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if !exists || old.Name != c.Name {
		if c.Name != "" {
			taken, err := s.tx.exists(contactNameKey(c.Name))
			if err != nil {
				return err
			}
			if taken {
				return fmt.Errorf("contact %q: %w", c.Name, ErrNameTaken)
			}
			if err := s.tx.set(contactNameKey(c.Name), bytes.Clone(c.UserID[:])); err != nil {
				return err
			}
		}
		if exists && old.Name != "" {
			if err := s.tx.del(contactNameKey(old.Name)); err != nil {
				return err
			}
		}
	}
	return s.tx.set(contactKey(c.UserID), c.marshal())
}

// Rename gives contact id the name name (empty: no name); ErrNameTaken if
// another contact has it, ErrNotFound if there is no such contact.
func (s Contacts) Rename(id identity.UserID, name string, now time.Time) error {
	c, err := s.Get(id)
	if err != nil {
		return err
	}
	if c.Name == name {
		return nil
	}
	c.Name = name
	c.UpdatedAt = now
	return s.Put(c)
}

// Delete removes a contact and its name; a missing one is not an error.
// It leaves sessions and messages alone.
func (s Contacts) Delete(id identity.UserID) error {
	c, err := s.Get(id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.Name != "" {
		if err := s.tx.del(contactNameKey(c.Name)); err != nil {
			return err
		}
	}
	return s.tx.del(contactKey(id))
}

// List returns every contact, ordered by name (unnamed ones last) and then
// by user ID.
func (s Contacts) List() ([]Contact, error) {
	var out []Contact
	err := s.tx.scanPrefix([]byte{tContact}, false, func(k, v []byte) error {
		var c Contact
		if err := c.unmarshal(v); err != nil {
			if s.tx.skipDamaged(err, "contact", k) {
				return nil
			}
			return err
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Name, out[j].Name
		if (a == "") != (b == "") {
			return b == ""
		}
		return a < b
	})
	return out, nil
}
