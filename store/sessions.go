package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
)

// SessionID names one ratchet session with a device. Several sessions with
// the same device exist briefly when both sides initiate at once.
type SessionID = [16]byte

// MaxDeviceIDLen bounds a device ID (a libp2p peer ID in bytes).
const MaxDeviceIDLen = 128

// MaxSessionState bounds a stored ratchet state.
const MaxSessionState = 1 << 20

// MaxInviteSecret bounds a stored invite secret.
const MaxInviteSecret = 64

// Session is a ratchet session with one device of a peer, identified by
// (Peer, Device, ID). State is the ratchet state as crypto/ratchet
// marshals it.
type Session struct {
	Peer          identity.UserID
	Device        []byte
	ID            SessionID
	State         []byte
	CreatedAt     time.Time
	LastDecryptAt time.Time
	LastUsedAt    time.Time
	// Initiated is set when this node started the session (PQXDH
	// initiator).
	Initiated bool
	// Confirmed is set once the peer is known to hold the session: for an
	// initiated session, a message from the peer decrypted in it; for a
	// session the peer started, a message arrived in it without the PQXDH
	// initial message.
	Confirmed bool
	// Prekey is the PQXDH initial message an initiator attaches to its
	// messages until the session is confirmed (then nil).
	Prekey []byte
	// Invite is the invite secret the initiator presents in its first
	// messages when it started the session from an invite (else nil).
	Invite []byte
}

// sessionVersion 2 added Initiated, Confirmed, Prekey and Invite; version
// 1 records decode with them zero.
const sessionVersion = 2

func (s *Session) validate() error {
	if len(s.Device) == 0 || len(s.Device) > MaxDeviceIDLen {
		return fmt.Errorf("session: %w: device ID length %d", ErrInvalid, len(s.Device))
	}
	if len(s.State) > MaxSessionState || len(s.Prekey) > MaxKeyMaterial || len(s.Invite) > MaxInviteSecret {
		return fmt.Errorf("session: %w: field too long", ErrInvalid)
	}
	return nil
}

func (s *Session) marshal() []byte {
	e := newEnc(sessionVersion, 100+len(s.Device)+len(s.State)+len(s.Prekey)+len(s.Invite))
	e.fixed(s.Peer[:])
	e.bytes(s.Device)
	e.fixed(s.ID[:])
	e.bytes(s.State)
	e.time(s.CreatedAt)
	e.time(s.LastDecryptAt)
	e.time(s.LastUsedAt)
	e.bool(s.Initiated)
	e.bool(s.Confirmed)
	e.bytes(s.Prekey)
	e.bytes(s.Invite)
	return e.b
}

func (s *Session) unmarshal(b []byte) error {
	d, v := newDec("session", b, 1, sessionVersion)
	d.fixed(s.Peer[:])
	s.Device = d.bytes(MaxDeviceIDLen)
	d.fixed(s.ID[:])
	s.State = d.bytes(MaxSessionState)
	s.CreatedAt = d.time()
	s.LastDecryptAt = d.time()
	s.LastUsedAt = d.time()
	s.Initiated, s.Confirmed, s.Prekey, s.Invite = false, false, nil, nil
	if v >= 2 {
		s.Initiated = d.bool()
		s.Confirmed = d.bool()
		s.Prekey = d.bytes(MaxKeyMaterial)
		s.Invite = d.bytes(MaxInviteSecret)
	}
	if err := d.finish("session"); err != nil {
		return err
	}
	if len(s.Device) == 0 {
		return fmt.Errorf("decode session: %w: empty device", ErrCorrupt)
	}
	return nil
}

func sessionDevicePrefix(peer identity.UserID, device []byte) []byte {
	return key(tSession, peer[:], []byte{byte(len(device))}, device)
}

func sessionKey(peer identity.UserID, device []byte, id SessionID) []byte {
	return key(tSession, peer[:], []byte{byte(len(device))}, device, id[:])
}

// Sessions is the table of ratchet sessions.
type Sessions struct{ tx *Tx }

// Sessions returns the session table.
func (tx *Tx) Sessions() Sessions { return Sessions{tx} }

// Get returns one session, or ErrNotFound.
func (s Sessions) Get(peer identity.UserID, device []byte, id SessionID) (Session, error) {
	var ses Session
	if len(device) == 0 || len(device) > MaxDeviceIDLen {
		return ses, fmt.Errorf("session: %w: device ID length %d", ErrInvalid, len(device))
	}
	k := sessionKey(peer, device, id)
	b, err := s.tx.get(k)
	if errors.Is(err, ErrNotFound) {
		return ses, notFound("session", id)
	}
	if err != nil {
		return ses, err
	}
	err = ses.unmarshal(b)
	s.tx.skipDamaged(err, "session", k)
	return ses, err
}

// Put creates or replaces a session.
func (s Sessions) Put(ses Session) error {
	if err := ses.validate(); err != nil {
		return err
	}
	return s.tx.set(sessionKey(ses.Peer, ses.Device, ses.ID), ses.marshal())
}

// Delete removes a session; a missing one is not an error.
func (s Sessions) Delete(peer identity.UserID, device []byte, id SessionID) error {
	if len(device) == 0 || len(device) > MaxDeviceIDLen {
		return fmt.Errorf("session: %w: device ID length %d", ErrInvalid, len(device))
	}
	return s.tx.del(sessionKey(peer, device, id))
}

// List returns every session with every device of peer, ordered by device
// and session ID.
func (s Sessions) List(peer identity.UserID) ([]Session, error) {
	return s.list(key(tSession, peer[:]))
}

// ListDevice returns the sessions with one device of peer, by session ID.
func (s Sessions) ListDevice(peer identity.UserID, device []byte) ([]Session, error) {
	if len(device) == 0 || len(device) > MaxDeviceIDLen {
		return nil, fmt.Errorf("session: %w: device ID length %d", ErrInvalid, len(device))
	}
	return s.list(sessionDevicePrefix(peer, device))
}

func (s Sessions) list(prefix []byte) ([]Session, error) {
	var out []Session
	err := s.tx.scanPrefix(prefix, false, func(k, v []byte) error {
		var ses Session
		if err := ses.unmarshal(v); err != nil {
			if s.tx.skipDamaged(err, "session", k) {
				return nil
			}
			return err
		}
		out = append(out, ses)
		return nil
	})
	return out, err
}
