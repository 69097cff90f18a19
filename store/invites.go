package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/protocol"
)

// Invite is an invite this node made: whoever presents Secret in the first
// message of a session was given the invite. It is valid until ExpiresAt
// (the pinned bundle's maximum age) unless deleted (revoked) first.
type Invite struct {
	Secret protocol.InviteSecret
	// Pin is the bundle pin the invite carries (the first bytes of the
	// bundle hash), at most 32 bytes.
	Pin       []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

const inviteVersion = 1

// MaxPinLen bounds Invite.Pin.
const MaxPinLen = 32

func (v *Invite) validate() error {
	if v.Secret == (protocol.InviteSecret{}) {
		return fmt.Errorf("invite: %w: zero secret", ErrInvalid)
	}
	if len(v.Pin) > MaxPinLen {
		return fmt.Errorf("invite: %w: pin too long", ErrInvalid)
	}
	return nil
}

func (v *Invite) marshal() []byte {
	e := newEnc(inviteVersion, 64+len(v.Pin))
	e.fixed(v.Secret[:])
	e.bytes(v.Pin)
	e.time(v.CreatedAt)
	e.time(v.ExpiresAt)
	return e.b
}

func (v *Invite) unmarshal(b []byte) error {
	d, _ := newDec("invite", b, inviteVersion)
	d.fixed(v.Secret[:])
	v.Pin = d.bytes(MaxPinLen)
	v.CreatedAt = d.time()
	v.ExpiresAt = d.time()
	return d.finish("invite")
}

func inviteKey(s protocol.InviteSecret) []byte { return key(tInvite, s[:]) }

// Invites is the table of the invites this node made.
type Invites struct{ tx *Tx }

// Invites returns the invite table.
func (tx *Tx) Invites() Invites { return Invites{tx} }

// Get returns the invite with secret s, or ErrNotFound.
func (s Invites) Get(secret protocol.InviteSecret) (Invite, error) {
	var v Invite
	b, err := s.tx.get(inviteKey(secret))
	if errors.Is(err, ErrNotFound) {
		return v, fmt.Errorf("invite: %w", ErrNotFound)
	}
	if err != nil {
		return v, err
	}
	err = v.unmarshal(b)
	return v, err
}

// Put creates or replaces an invite.
func (s Invites) Put(v Invite) error {
	if err := v.validate(); err != nil {
		return err
	}
	return s.tx.set(inviteKey(v.Secret), v.marshal())
}

// Delete removes (revokes) an invite; a missing one is not an error.
func (s Invites) Delete(secret protocol.InviteSecret) error {
	return s.tx.del(inviteKey(secret))
}

// List returns every invite, by secret.
func (s Invites) List() ([]Invite, error) {
	var out []Invite
	err := s.tx.scanPrefix([]byte{tInvite}, false, func(_, v []byte) error {
		var inv Invite
		if err := inv.unmarshal(v); err != nil {
			return err
		}
		out = append(out, inv)
		return nil
	})
	return out, err
}

// Expire deletes up to limit invites whose ExpiresAt is not after now
// (limit <= 0: all) and returns how many it deleted. Invites are few (each
// is made by the user), so it scans them all.
func (s Invites) Expire(now time.Time, limit int) (int, error) {
	all, err := s.List()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, v := range all {
		if limit > 0 && n >= limit {
			break
		}
		if v.ExpiresAt.After(now) {
			continue
		}
		if err := s.Delete(v.Secret); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
