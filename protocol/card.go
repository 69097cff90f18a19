package protocol

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/sealpost/sealpost/protocol/internal/pb"
)

// CardVersion is the newest card version this package encodes and
// decodes. Version 2 added Mailbox.PrekeyKey. A card is encoded at the
// lowest version that holds it: version 1 unless a mailbox carries a
// prekey key, so that a node that speaks only version 1 reads every card
// it can. Decoding accepts versions 1 and 2, and only the canonical one:
// a version-1 card with a prekey key, or a version-2 card without one, is
// malformed (one value, one encoding).
const CardVersion = 2

// Card is what a user tells a contact about themself: who they are, where
// their device listens, and which relay mailboxes the contact may deposit
// into. Cards travel only inside the ratchet (a KindCard plaintext, or
// attached to another kind), so they need no signature of their own; the
// identity and device record they carry are signed by crypto/identity.
type Card struct {
	// Identity is the public identity (crypto/identity encoding). A card
	// whose identity differs from the one pinned for the contact is an
	// identity change.
	Identity []byte
	// Device is the signed device record (crypto/identity encoding).
	Device []byte
	// Name is the display name the user chose; optional.
	Name string
	// Addrs are the device's binary multiaddrs (without /p2p/).
	Addrs [][]byte
	// Mailboxes are relay mailboxes for this contact (docs/PROTOCOL.md §10).
	Mailboxes []Mailbox
	// UpdatedAt is when the card was made, Unix milliseconds (a claim).
	UpdatedAt int64
	// Seq numbers the user's cards, from 1; a card with a higher Seq
	// replaces one with a lower Seq, whatever the times say.
	Seq uint64
}

// Mailbox is one relay mailbox in a card: where to deposit envelopes for the
// card's owner and with what.
type Mailbox struct {
	// Relay is the relay's peer ID.
	Relay []byte
	// RelayAddrs are binary multiaddrs of the relay; at least one.
	RelayAddrs [][]byte
	// ID is the mailbox ID.
	ID MailboxID
	// SealingKey is the X25519 key envelopes for the mailbox are sealed to.
	SealingKey SealingKey
	// Token is the deposit token for this contact.
	Token []byte
	// PrekeyKey is the mailbox's K_pk (card version 2; zero: absent): the
	// key the one-time prekeys the owner keeps on the relay, and the
	// bundle blob under Token, are encrypted with (node/mailbox). With it
	// a contact can start a session while the owner's device is offline.
	PrekeyKey PrekeyKey
}

// PrekeyKey is a mailbox's K_pk (32 bytes), carried in card version 2.
type PrekeyKey [32]byte

// IsZero reports whether k is all zero (absent).
func (k PrekeyKey) IsZero() bool { return k == PrekeyKey{} }

// version is the card version that holds c: 2 if a mailbox carries a
// prekey key, else 1.
func (c *Card) version() uint32 {
	for i := range c.Mailboxes {
		if !c.Mailboxes[i].PrekeyKey.IsZero() {
			return 2
		}
	}
	return Version
}

// Validate checks c's fields against their limits.
func (c *Card) Validate() error {
	if err := checkBytes(c.Identity, 1, MaxIdentity, "card: identity"); err != nil {
		return err
	}
	if err := checkBytes(c.Device, 1, MaxDeviceRecord, "card: device record"); err != nil {
		return err
	}
	if err := checkName(c.Name, MaxName, "card: name"); err != nil {
		return err
	}
	if err := checkAddrs(c.Addrs, 0, MaxCardAddrs, "card: addrs"); err != nil {
		return err
	}
	if len(c.Mailboxes) > MaxMailboxes {
		return fmt.Errorf("%w: card: %d mailboxes, limit %d", ErrTooLarge, len(c.Mailboxes), MaxMailboxes)
	}
	for i := range c.Mailboxes {
		if err := c.Mailboxes[i].validate(i); err != nil {
			return err
		}
	}
	if err := checkTime(c.UpdatedAt, "card: updated_at"); err != nil {
		return err
	}
	if c.Seq == 0 {
		return fmt.Errorf("%w: card: seq missing", ErrMalformed)
	}
	return nil
}

func (m *Mailbox) validate(i int) error {
	what := func(f string) string { return fmt.Sprintf("card: mailbox[%d]: %s", i, f) }
	if err := checkPeerID(m.Relay, what("relay")); err != nil {
		return err
	}
	if err := checkAddrs(m.RelayAddrs, 1, MaxMailboxAddrs, what("relay addrs")); err != nil {
		return err
	}
	if err := checkRequired(m.ID[:], what("id")); err != nil {
		return err
	}
	if err := checkRequired(m.SealingKey[:], what("sealing key")); err != nil {
		return err
	}
	return checkBytes(m.Token, MinToken, MaxToken, what("token"))
}

// Marshal returns the canonical encoding of c.
func (c *Card) Marshal() ([]byte, error) { return encode(nil, c) }

// Unmarshal decodes and validates b into c.
func (c *Card) Unmarshal(b []byte) error {
	var p pb.Card
	if err := decodeVersions(b, c.limit(), c.kind(), CardVersion, &p); err != nil {
		return err
	}
	v, err := cardFromPB(&p)
	if err != nil {
		return err
	}
	if err := v.Validate(); err != nil {
		return err
	}
	*c = *v
	return nil
}

func (c *Card) wire() proto.Message { return c.wireCard() }

func (c *Card) wireCard() *pb.Card {
	p := &pb.Card{
		Version:   c.version(),
		Identity:  c.Identity,
		Device:    c.Device,
		Name:      c.Name,
		Addrs:     c.Addrs,
		UpdatedAt: uint64(c.UpdatedAt),
		Seq:       c.Seq,
	}
	for i := range c.Mailboxes {
		m := &c.Mailboxes[i]
		p.Mailboxes = append(p.Mailboxes, &pb.Mailbox{
			Relay:      m.Relay,
			RelayAddrs: m.RelayAddrs,
			Id:         m.ID[:],
			SealingKey: m.SealingKey[:],
			Token:      m.Token,
			PrekeyKey:  optional(m.PrekeyKey[:]),
		})
	}
	return p
}

// cardFromPB converts a decoded card (inside a Plaintext, too); the caller
// validates the result.
func cardFromPB(p *pb.Card) (*Card, error) {
	if p.Version < 1 || p.Version > CardVersion {
		// Only reachable for a card inside a Plaintext: decodeVersions
		// checks the version of a top-level card.
		if p.Version == 0 {
			return nil, fmt.Errorf("%w: card: version missing", ErrMalformed)
		}
		return nil, fmt.Errorf("%w: card version %d (this node speaks up to %d)", ErrUnsupportedVersion, p.Version, CardVersion)
	}
	c := &Card{
		Identity:  p.Identity,
		Device:    p.Device,
		Name:      p.Name,
		Addrs:     p.Addrs,
		UpdatedAt: timeFromWire(p.UpdatedAt),
		Seq:       p.Seq,
	}
	if len(p.Mailboxes) > MaxMailboxes {
		return nil, fmt.Errorf("%w: card: %d mailboxes, limit %d", ErrTooLarge, len(p.Mailboxes), MaxMailboxes)
	}
	for i, pm := range p.Mailboxes {
		m := Mailbox{Relay: pm.Relay, RelayAddrs: pm.RelayAddrs, Token: pm.Token}
		if err := fixed(m.ID[:], pm.Id, false, fmt.Sprintf("card: mailbox[%d]: id", i)); err != nil {
			return nil, err
		}
		if err := fixed(m.SealingKey[:], pm.SealingKey, false, fmt.Sprintf("card: mailbox[%d]: sealing key", i)); err != nil {
			return nil, err
		}
		if err := fixed(m.PrekeyKey[:], pm.PrekeyKey, true, fmt.Sprintf("card: mailbox[%d]: prekey key", i)); err != nil {
			return nil, err
		}
		c.Mailboxes = append(c.Mailboxes, m)
	}
	if v := c.version(); v != p.Version {
		// Version 1 has no prekey key; version 2 is only for a card with
		// one, so that each card has one encoding.
		return nil, fmt.Errorf("%w: card: version %d for a card of version %d", ErrMalformed, p.Version, v)
	}
	return c, nil
}

func (c *Card) limit() int   { return MaxCard }
func (c *Card) kind() string { return "card" }
