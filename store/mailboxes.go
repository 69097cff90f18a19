package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
)

// TokenID is a deposit token: 16 random bytes.
type TokenID = [16]byte

// MaxAddrs bounds the relay addresses kept with a mailbox.
const MaxAddrs = 32

// MaxAddrLen bounds one address (a multiaddr string).
const MaxAddrLen = 512

// Mailbox is one of this node's own mailboxes on a relay (the owner's
// side; what a relay holds for others is not in this table). The keys are
// the bytes their owner packages marshal.
type Mailbox struct {
	ID protocol.MailboxID
	// Relay is the relay's peer ID string; Addrs its known multiaddrs.
	Relay string
	Addrs []string
	// AuthKey authenticates the owner to the relay; SealingKey is the
	// private X25519 key envelopes to this mailbox are sealed to.
	AuthKey    []byte
	SealingKey []byte
	// ClientKey is the separate libp2p private key this node uses towards
	// this relay (never the device key).
	ClientKey []byte
	CreatedAt time.Time
}

const mailboxVersion = 1

func (m *Mailbox) validate() error {
	if m.Relay == "" || len(m.Relay) > MaxRelayLen || len(m.Addrs) > MaxAddrs ||
		len(m.AuthKey) > MaxKeyMaterial || len(m.SealingKey) > MaxKeyMaterial || len(m.ClientKey) > MaxKeyMaterial {
		return fmt.Errorf("mailbox: %w: field empty or too long", ErrInvalid)
	}
	for _, a := range m.Addrs {
		if len(a) > MaxAddrLen {
			return fmt.Errorf("mailbox: %w: address too long", ErrInvalid)
		}
	}
	return nil
}

func (m *Mailbox) marshal() []byte {
	n := 64 + len(m.Relay) + len(m.AuthKey) + len(m.SealingKey) + len(m.ClientKey)
	for _, a := range m.Addrs {
		n += 2 + len(a)
	}
	e := newEnc(mailboxVersion, n)
	e.fixed(m.ID[:])
	e.str(m.Relay)
	e.uvarint(uint64(len(m.Addrs)))
	for _, a := range m.Addrs {
		e.str(a)
	}
	e.bytes(m.AuthKey)
	e.bytes(m.SealingKey)
	e.bytes(m.ClientKey)
	e.time(m.CreatedAt)
	return e.b
}

func (m *Mailbox) unmarshal(b []byte) error {
	d, _ := newDec("mailbox", b, mailboxVersion)
	d.fixed(m.ID[:])
	m.Relay = d.str(MaxRelayLen)
	if n := d.count(MaxAddrs, 1); n > 0 {
		m.Addrs = make([]string, n)
		for i := range m.Addrs {
			m.Addrs[i] = d.str(MaxAddrLen)
		}
	} else {
		m.Addrs = nil
	}
	m.AuthKey = d.bytes(MaxKeyMaterial)
	m.SealingKey = d.bytes(MaxKeyMaterial)
	m.ClientKey = d.bytes(MaxKeyMaterial)
	m.CreatedAt = d.time()
	return d.finish("mailbox")
}

// Mailboxes is the table of this node's own mailboxes on relays.
type Mailboxes struct{ tx *Tx }

// Mailboxes returns the mailbox table.
func (tx *Tx) Mailboxes() Mailboxes { return Mailboxes{tx} }

func mailboxKey(id protocol.MailboxID) []byte { return key(tMailbox, id[:]) }

// Get returns mailbox id, or ErrNotFound.
func (s Mailboxes) Get(id protocol.MailboxID) (Mailbox, error) {
	var m Mailbox
	b, err := s.tx.get(mailboxKey(id))
	if errors.Is(err, ErrNotFound) {
		return m, notFound("mailbox", id)
	}
	if err != nil {
		return m, err
	}
	err = m.unmarshal(b)
	return m, err
}

// Put creates or replaces a mailbox.
func (s Mailboxes) Put(m Mailbox) error {
	if err := m.validate(); err != nil {
		return err
	}
	return s.tx.set(mailboxKey(m.ID), m.marshal())
}

// Delete removes mailbox id; a missing one is not an error. The mailbox's
// deposit tokens are left for the caller to revoke and delete.
func (s Mailboxes) Delete(id protocol.MailboxID) error { return s.tx.del(mailboxKey(id)) }

// List returns every mailbox, by ID.
func (s Mailboxes) List() ([]Mailbox, error) {
	var out []Mailbox
	err := s.tx.scanPrefix([]byte{tMailbox}, false, func(_, v []byte) error {
		var m Mailbox
		if err := m.unmarshal(v); err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

// DepositToken is a token this node registered (as a hash) with a relay
// for one of its mailboxes: one per invite (Contact zero) and one per
// accepted contact, each revocable alone.
type DepositToken struct {
	Token   TokenID
	Relay   string
	Mailbox protocol.MailboxID
	// Contact is the contact the token was given to; zero for an invite
	// token.
	Contact identity.UserID
	// Invite is the secret of the invite an invite token was derived from
	// (the card blob on the relay is encrypted under a key derived from
	// it); zero for a contact's token.
	Invite    protocol.InviteSecret
	CreatedAt time.Time
	// ExpiresAt is when an invite token stops being useful (its invite
	// expires); zero: never.
	ExpiresAt time.Time
	// Registered: the relay confirmed that it holds the token's hash.
	// Revoked: the token is withdrawn; the record stays until the relay
	// confirmed the revocation.
	Registered bool
	Revoked    bool
	// CardSeq says what the blob uploaded under the token holds (zero:
	// none uploaded yet): for an invite token, the sequence number of the
	// own card in it; for a contact's token, the version of the bundle in
	// it (node/prekeys Version.ID).
	CardSeq uint64
}

// tokenVersion 2 added Invite, ExpiresAt, Registered and CardSeq; version
// 1 records decode with them zero.
const tokenVersion = 2

func (t *DepositToken) marshal() []byte {
	e := newEnc(tokenVersion, 140+len(t.Relay))
	e.fixed(t.Token[:])
	e.str(t.Relay)
	e.fixed(t.Mailbox[:])
	e.fixed(t.Contact[:])
	e.time(t.CreatedAt)
	e.bool(t.Revoked)
	e.fixed(t.Invite[:])
	e.time(t.ExpiresAt)
	e.bool(t.Registered)
	e.uvarint(t.CardSeq)
	return e.b
}

func (t *DepositToken) unmarshal(b []byte) error {
	d, v := newDec("deposit token", b, 1, tokenVersion)
	d.fixed(t.Token[:])
	t.Relay = d.str(MaxRelayLen)
	d.fixed(t.Mailbox[:])
	d.fixed(t.Contact[:])
	t.CreatedAt = d.time()
	t.Revoked = d.bool()
	t.Invite, t.ExpiresAt, t.Registered, t.CardSeq = protocol.InviteSecret{}, time.Time{}, false, 0
	if v >= 2 {
		d.fixed(t.Invite[:])
		t.ExpiresAt = d.time()
		t.Registered = d.bool()
		t.CardSeq = d.uvarint()
	}
	return d.finish("deposit token")
}

// DepositTokens is the table of deposit tokens this node handed out.
type DepositTokens struct{ tx *Tx }

// DepositTokens returns the deposit token table.
func (tx *Tx) DepositTokens() DepositTokens { return DepositTokens{tx} }

func tokenKey(t TokenID) []byte { return key(tToken, t[:]) }

// Get returns token t, or ErrNotFound.
func (s DepositTokens) Get(t TokenID) (DepositToken, error) {
	var tok DepositToken
	b, err := s.tx.get(tokenKey(t))
	if errors.Is(err, ErrNotFound) {
		return tok, notFound("deposit token", t)
	}
	if err != nil {
		return tok, err
	}
	err = tok.unmarshal(b)
	return tok, err
}

// Put creates or replaces a token (revoking is a Put with Revoked set).
func (s DepositTokens) Put(t DepositToken) error {
	if len(t.Relay) > MaxRelayLen {
		return fmt.Errorf("deposit token: %w: relay too long", ErrInvalid)
	}
	return s.tx.set(tokenKey(t.Token), t.marshal())
}

// Delete removes token t; a missing one is not an error.
func (s DepositTokens) Delete(t TokenID) error { return s.tx.del(tokenKey(t)) }

// List returns every token, by token.
func (s DepositTokens) List() ([]DepositToken, error) {
	var out []DepositToken
	err := s.tx.scanPrefix([]byte{tToken}, false, func(_, v []byte) error {
		var t DepositToken
		if err := t.unmarshal(v); err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	return out, err
}
