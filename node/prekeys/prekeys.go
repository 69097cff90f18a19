// Package prekeys keeps a device's own prekeys in the store: it generates
// and signs them (crypto/prekey), rotates the signed prekey, refills the
// one-time prekeys, assembles the bundle the device serves, and finds the
// private keys a PQXDH initial message names.
//
// # Versions and lifetimes
//
// The signed X25519 prekey and the last-resort ML-KEM-768 key rotate
// together: rotation n makes the signed prekey with key ID n and the KEM
// key with key ID n, and the pair is a bundle version. An invite pins a
// version by its bundle hash (without a one-time prekey). A version is
// served, for a pin or as the current one, while its records are younger
// than prekey.MaxAge (an initiator refuses older ones), and its private keys
// are kept until prekey.MaxAge plus the relay TTL after the next version
// replaced it (DESIGN.md §3), so that a late first message still decrypts.
//
// One-time prekeys are generated in batches up to Policy.OneTimeTarget when
// fewer than Policy.OneTimeLow are available. Serve hands each out once
// (state PrekeyHandedOut); Consume deletes it when a first message that used
// it has decrypted. A handed-out key that is never used is deleted once no
// initiator may use it any more (created more than MaxAge plus the relay
// TTL ago); an available one stops being served a rotation period before it
// is too old and is deleted then. When none is available, or more than
// Policy.MaxHandedOut are out (someone is draining them), the bundle goes
// out without one and initiators use the last-resort KEM key. Keys made
// for relays (ForRelay) are a set of their own, counted apart (state
// PrekeyUploaded, Policy.MaxRelayHeld), made from the node's own
// accounting of what each mailbox still holds.
//
// What the caller must do: run Maintain in a store transaction when the
// node starts, after Serve (to refill), and about hourly; serialize calls
// per store transaction as usual; commit Consume in the same transaction as
// the session its first message created, and remember the first message's
// replay hash with store.SeenSet.AddFirst under its signed prekey's ID:
// Maintain forgets those hashes when it deletes the prekey, never before.
package prekeys

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/pqxdh"
	"github.com/sealpost/sealpost/crypto/prekey"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Errors.
var (
	// ErrExpired: the pinned bundle version is no longer served (its
	// records are too old or its keys are gone): the invite has expired.
	ErrExpired = errors.New("prekeys: bundle version expired")
	// ErrUnknownPrekey: an initial message names a prekey this device does
	// not hold (never made, consumed, or deleted after its lifetime).
	ErrUnknownPrekey = errors.New("prekeys: unknown prekey")
	// ErrNoPrekeys: Maintain has not made the first version yet.
	ErrNoPrekeys = errors.New("prekeys: no signed prekey yet")
)

// Counter names in the store.
const (
	rotationCounter = "prekeys.rotation"
	oneTimeCounter  = "prekeys.onetime"
)

// Policy sets the schedule. The zero value of each field takes the default
// of DefaultPolicy.
type Policy struct {
	// RotateEvery is the age at which the signed prekey and the last-resort
	// KEM key are replaced. Default one week.
	RotateEvery time.Duration
	// RelayTTL is how long a relay may hold a first message; the private
	// keys are kept this long past prekey.MaxAge. Default 14 days.
	RelayTTL time.Duration
	// OneTimeTarget is how many one-time prekeys Maintain keeps available;
	// OneTimeLow is the count below which it refills. Defaults 100 and 25.
	OneTimeTarget int
	OneTimeLow    int
	// MaxHandedOut bounds the one-time prekeys this device handed out and
	// that are not yet used; beyond it bundles go out without one. Default
	// 1000.
	MaxHandedOut int
	// RelayBatch is the most one-time prekeys one relay mailbox holds at
	// once. Default protocol.MaxPrekeyBatch.
	RelayBatch int
	// MaxRelayHeld bounds the private one-time prekeys kept for keys made
	// for relays (ForRelay), all mailboxes together, until a message uses
	// them or they age out; beyond it no more are made. Separate from
	// MaxHandedOut: a drain through a relay never starves the device's
	// own bundles. Default 256 (two batches for each of
	// protocol.MaxMailboxes mailboxes).
	MaxRelayHeld int
}

// DefaultPolicy returns the default schedule.
func DefaultPolicy() Policy {
	return Policy{
		RotateEvery:   7 * 24 * time.Hour,
		RelayTTL:      14 * 24 * time.Hour,
		OneTimeTarget: 100,
		OneTimeLow:    25,
		MaxHandedOut:  1000,
		RelayBatch:    protocol.MaxPrekeyBatch,
		MaxRelayHeld:  2 * protocol.MaxMailboxes * protocol.MaxPrekeyBatch,
	}
}

func (p Policy) withDefaults() Policy {
	d := DefaultPolicy()
	if p.RotateEvery <= 0 {
		p.RotateEvery = d.RotateEvery
	}
	if p.RelayTTL <= 0 {
		p.RelayTTL = d.RelayTTL
	}
	if p.OneTimeTarget <= 0 {
		p.OneTimeTarget = d.OneTimeTarget
	}
	p.OneTimeTarget = min(p.OneTimeTarget, prekey.MaxOneTimeBatch)
	if p.OneTimeLow <= 0 || p.OneTimeLow > p.OneTimeTarget {
		p.OneTimeLow = min(d.OneTimeLow, p.OneTimeTarget)
	}
	if p.MaxHandedOut <= 0 {
		p.MaxHandedOut = d.MaxHandedOut
	}
	if p.RelayBatch <= 0 {
		p.RelayBatch = d.RelayBatch
	}
	p.RelayBatch = min(p.RelayBatch, protocol.MaxPrekeyBatch)
	if p.MaxRelayHeld <= 0 {
		p.MaxRelayHeld = d.MaxRelayHeld
	}
	return p
}

// Retention is how long a replaced signed prekey's private key is kept:
// prekey.MaxAge plus the relay TTL.
func (p Policy) Retention() time.Duration { return prekey.MaxAge + p.withDefaults().RelayTTL }

// Manager keeps one device's prekeys. It holds no state of its own besides
// its keys and policy; everything lives in the store, so it is safe for
// concurrent use (each call in its own transaction).
type Manager struct {
	id     *identity.Private
	pub    []byte // the public identity's encoding
	device *identity.DeviceRecord
	pol    Policy
	rand   io.Reader
}

// New returns a Manager for the identity id on the device whose record is
// device. rand supplies all key material.
func New(id *identity.Private, device *identity.DeviceRecord, pol Policy, rand io.Reader) *Manager {
	pub, _ := id.Public().MarshalBinary()
	return &Manager{id: id, pub: pub, device: device, pol: pol.withDefaults(), rand: rand}
}

// Policy returns the schedule in effect (defaults filled).
func (m *Manager) Policy() Policy { return m.pol }

// Report says what Maintain did.
type Report struct {
	// Rotated: a new bundle version was made.
	Rotated bool
	// Generated one-time prekeys; Deleted prekeys of all kinds.
	Generated, Deleted int
	// Available one-time prekeys afterwards.
	Available int
}

// Maintain brings the prekeys in tx up to date as of now: it makes the
// first version or rotates an old one, deletes private keys past their
// lifetime, and refills one-time prekeys.
func (m *Manager) Maintain(tx *store.Tx, now time.Time) (Report, error) {
	var r Report
	spks, err := tx.Prekeys().List(store.PrekeySigned)
	if err != nil {
		return r, err
	}
	if len(spks) == 0 || now.Sub(spks[len(spks)-1].CreatedAt) >= m.pol.RotateEvery {
		if err := m.rotate(tx, now); err != nil {
			return r, err
		}
		r.Rotated = true
		if spks, err = tx.Prekeys().List(store.PrekeySigned); err != nil {
			return r, err
		}
	}
	// A version is replaced when the next one is made; its keys go
	// Retention later, and with them the replay hashes of the first
	// messages that used it (store.SeenSet.AddFirst), which must outlive
	// the signed prekey: a prekey with many is deleted after its hashes,
	// over several calls.
	for i := 0; i+1 < len(spks); i++ {
		if now.Sub(spks[i+1].CreatedAt) < m.pol.Retention() {
			continue
		}
		if n, err := tx.Seen().ReleasePrekey(spks[i].ID, maxReleased); err != nil {
			return r, err
		} else if n == maxReleased {
			continue
		}
		if err := tx.Prekeys().Delete(store.PrekeySigned, spks[i].ID); err != nil {
			return r, err
		}
		if err := tx.Prekeys().Delete(store.PrekeyLastResort, spks[i].ID); err != nil {
			return r, err
		}
		r.Deleted += 2
	}
	// One-time prekeys: drop handed-out and uploaded ones no initiator
	// may still use, and available ones about to be too old to serve.
	handed, err := tx.Prekeys().ListState(store.PrekeyOneTime, store.PrekeyHandedOut)
	if err != nil {
		return r, err
	}
	uploaded, err := tx.Prekeys().ListState(store.PrekeyOneTime, store.PrekeyUploaded)
	if err != nil {
		return r, err
	}
	for _, p := range append(handed, uploaded...) {
		if now.Sub(p.CreatedAt) >= m.pol.Retention() {
			if err := tx.Prekeys().Delete(store.PrekeyOneTime, p.ID); err != nil {
				return r, err
			}
			r.Deleted++
		}
	}
	avail, err := tx.Prekeys().ListState(store.PrekeyOneTime, store.PrekeyAvailable)
	if err != nil {
		return r, err
	}
	n := 0
	for _, p := range avail {
		if !m.servable(p.CreatedAt, now) {
			if err := tx.Prekeys().Delete(store.PrekeyOneTime, p.ID); err != nil {
				return r, err
			}
			r.Deleted++
			continue
		}
		n++
	}
	if n < m.pol.OneTimeLow {
		made, err := m.refill(tx, m.pol.OneTimeTarget-n, now)
		if err != nil {
			return r, err
		}
		r.Generated = made
		n += made
	}
	r.Available = n
	return r, nil
}

// maxReleased bounds the replay hashes one Maintain forgets per signed
// prekey, so that its transaction stays small.
const maxReleased = 4096

// servable reports whether a one-time prekey made at created may still be
// handed out: an initiator must be able to use it for a while yet.
func (m *Manager) servable(created, now time.Time) bool {
	return now.Sub(created) < prekey.MaxAge-m.pol.RotateEvery
}

// rotate makes the next bundle version.
func (m *Manager) rotate(tx *store.Tx, now time.Time) error {
	n, err := tx.Counters().Next(rotationCounter)
	if err != nil {
		return err
	}
	if n > 1<<32-1 {
		return fmt.Errorf("prekeys: rotation counter exhausted")
	}
	id := uint32(n)
	spk, err := prekey.NewSignedPrekey(m.id, id, pqxdh.SupportedVersions(), now, m.rand)
	if err != nil {
		return fmt.Errorf("prekeys: signed prekey: %w", err)
	}
	kem, err := prekey.NewKEMPrekey(m.id, id, now, m.rand)
	if err != nil {
		return fmt.Errorf("prekeys: KEM prekey: %w", err)
	}
	spkPriv, _ := spk.MarshalBinary()
	spkPub, _ := spk.Public().MarshalBinary()
	kemPriv, _ := kem.MarshalBinary()
	kemPub, _ := kem.Public().MarshalBinary()
	for _, p := range []store.Prekey{
		{Kind: store.PrekeySigned, ID: id, CreatedAt: now, Private: spkPriv, Public: spkPub,
			State: store.PrekeyAvailable, StateChangedAt: now},
		{Kind: store.PrekeyLastResort, ID: id, CreatedAt: now, Private: kemPriv, Public: kemPub,
			State: store.PrekeyAvailable, StateChangedAt: now},
	} {
		if err := tx.Prekeys().Put(p); err != nil {
			return err
		}
	}
	return nil
}

// refill makes n one-time prekeys (at most prekey.MaxOneTimeBatch).
func (m *Manager) refill(tx *store.Tx, n int, now time.Time) (int, error) {
	keys, err := m.newOneTime(tx, n, now, store.PrekeyAvailable, protocol.MailboxID{})
	return len(keys), err
}

// ForRelay makes the one-time prekeys relay mailbox mb is missing, for
// it to hand out: a set disjoint from the node's own, stored as uploaded
// to mb (the node never serves them, Consume deletes one when a message
// that used it decrypts, and Maintain deletes the rest once no initiator
// may use them, prekey.MaxAge plus the relay TTL after they were made).
// Upload them as a batch that expires when they stop being servable
// (RelayExpiry), before that.
//
// How many comes from the node's own accounting: Policy.RelayBatch less
// the keys made for mb that are still on the relay (neither used nor
// expired there). reported, the count the relay says it holds, may only
// lower that, never raise it: a relay that says it has none left, or
// hands keys to takers who never use them, gets no more until its keys
// are used or expire. And all the keys kept for relays stay within
// Policy.MaxRelayHeld.
func (m *Manager) ForRelay(tx *store.Tx, mb protocol.MailboxID, reported uint64, now time.Time) ([]*prekey.OneTimePrekey, error) {
	uploaded, err := tx.Prekeys().ListState(store.PrekeyOneTime, store.PrekeyUploaded)
	if err != nil {
		return nil, err
	}
	var onRelay uint64
	for _, p := range uploaded {
		if p.Mailbox == mb && m.servable(p.CreatedAt, now) {
			onRelay++
		}
	}
	n := m.pol.RelayBatch - int(min(max(onRelay, reported), uint64(m.pol.RelayBatch)))
	n = min(n, m.pol.MaxRelayHeld-len(uploaded))
	if n <= 0 {
		return nil, nil
	}
	keys, err := m.newOneTime(tx, n, now, store.PrekeyUploaded, mb)
	out := make([]*prekey.OneTimePrekey, len(keys))
	for i, k := range keys {
		out[i] = k.Public()
	}
	return out, err
}

// RelayExpiry is when a relay should stop handing out one-time prekeys
// made at created (ForRelay): when the node would stop serving them, a
// rotation period before they get too old for an initiator.
func (m *Manager) RelayExpiry(created time.Time) time.Time {
	return created.Add(prekey.MaxAge - m.pol.RotateEvery)
}

// newOneTime makes up to n one-time prekeys in state (uploaded to mb).
func (m *Manager) newOneTime(tx *store.Tx, n int, now time.Time, state store.PrekeyState, mb protocol.MailboxID) ([]*prekey.OneTimePrekeyPrivate, error) {
	n = min(n, prekey.MaxOneTimeBatch)
	if n <= 0 {
		return nil, nil
	}
	first, err := tx.Counters().Get(oneTimeCounter)
	if err != nil {
		return nil, err
	}
	if first+uint64(n) > 1<<32-1 {
		return nil, fmt.Errorf("prekeys: one-time prekey IDs exhausted")
	}
	keys, err := prekey.NewOneTimePrekeys(m.id, uint32(first+1), n, now, m.rand)
	if err != nil {
		return nil, fmt.Errorf("prekeys: one-time prekeys: %w", err)
	}
	for _, k := range keys {
		priv, _ := k.MarshalBinary()
		pub, _ := k.Public().MarshalBinary()
		err := tx.Prekeys().Put(store.Prekey{Kind: store.PrekeyOneTime, ID: k.Public().ID(), CreatedAt: now,
			Private: priv, Public: pub, State: state, Mailbox: mb, StateChangedAt: now})
		if err != nil {
			return nil, err
		}
		if _, err := tx.Counters().Next(oneTimeCounter); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// Version is one bundle version: a signed prekey and a last-resort KEM key.
type Version struct {
	// ID is the key ID of both records.
	ID uint32
	// Hash is the bundle hash (prekey.Bundle.Hash), what an invite pins.
	Hash [prekey.HashSize]byte
	// CreatedAt is when the version was made; ExpiresAt when initiators
	// start refusing it (CreatedAt + prekey.MaxAge).
	CreatedAt, ExpiresAt time.Time

	bundle *prekey.Bundle
}

// Bundle returns the encoded bundle of the version without a one-time
// prekey: what a relay keeps for an invite that pins it (its hash is
// v.Hash).
func (v *Version) Bundle() ([]byte, error) { return v.bundle.MarshalBinary() }

// Current returns the newest bundle version, or ErrNoPrekeys.
func (m *Manager) Current(tx *store.Tx) (*Version, error) {
	vs, err := m.versions(tx)
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		return nil, ErrNoPrekeys
	}
	return vs[len(vs)-1], nil
}

// Pinned returns the retained bundle version whose hash begins with pin,
// or ErrExpired.
func (m *Manager) Pinned(tx *store.Tx, pin []byte) (*Version, error) {
	vs, err := m.versions(tx)
	if err != nil {
		return nil, err
	}
	for _, v := range vs {
		if len(pin) > 0 && len(pin) <= len(v.Hash) && string(v.Hash[:len(pin)]) == string(pin) {
			return v, nil
		}
	}
	return nil, ErrExpired
}

// versions returns the retained bundle versions, oldest first.
func (m *Manager) versions(tx *store.Tx) ([]*Version, error) {
	spks, err := tx.Prekeys().List(store.PrekeySigned)
	if err != nil {
		return nil, err
	}
	out := make([]*Version, 0, len(spks))
	for _, s := range spks {
		k, err := tx.Prekeys().Get(store.PrekeyLastResort, s.ID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		spk, err := prekey.ParseSignedPrekey(s.Public)
		if err != nil {
			return nil, fmt.Errorf("prekeys: stored signed prekey %d: %w", s.ID, err)
		}
		kem, err := prekey.ParseKEMPrekey(k.Public)
		if err != nil {
			return nil, fmt.Errorf("prekeys: stored KEM prekey %d: %w", s.ID, err)
		}
		b := &prekey.Bundle{Identity: m.id.Public(), Device: m.device, SignedPrekey: spk, KEMPrekey: kem}
		created := spk.CreatedAt()
		out = append(out, &Version{ID: s.ID, Hash: b.Hash(), CreatedAt: created,
			ExpiresAt: created.Add(prekey.MaxAge), bundle: b})
	}
	return out, nil
}

// Serve returns the encoded bundle to hand to a requester as of now: the
// version whose hash begins with pin (nil or empty: the current version),
// with a one-time prekey taken for this request alone if oneTime is set and
// one may be handed out. It returns ErrExpired when no served version
// matches the pin.
func (m *Manager) Serve(tx *store.Tx, pin []byte, oneTime bool, now time.Time) ([]byte, error) {
	vs, err := m.versions(tx)
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		return nil, ErrNoPrekeys
	}
	var v *Version
	if len(pin) == 0 {
		v = vs[len(vs)-1]
	} else {
		for _, c := range vs {
			if len(pin) <= len(c.Hash) && string(c.Hash[:len(pin)]) == string(pin) {
				v = c
			}
		}
	}
	if v == nil || !now.Before(v.ExpiresAt) {
		return nil, ErrExpired
	}
	b := *v.bundle
	if oneTime {
		otk, err := m.takeOneTime(tx, now)
		if err != nil {
			return nil, err
		}
		b.OneTime = otk
	}
	return b.MarshalBinary()
}

// takeOneTime hands out a one-time prekey, or returns nil when none may be.
func (m *Manager) takeOneTime(tx *store.Tx, now time.Time) (*prekey.OneTimePrekey, error) {
	out, err := tx.Prekeys().Count(store.PrekeyOneTime, store.PrekeyHandedOut)
	if err != nil || out >= m.pol.MaxHandedOut {
		return nil, err
	}
	for {
		p, err := tx.Prekeys().TakeAvailable(store.PrekeyOneTime, now)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if !m.servable(p.CreatedAt, now) {
			// Too old to be of use: Maintain would have deleted it.
			if err := tx.Prekeys().Delete(store.PrekeyOneTime, p.ID); err != nil {
				return nil, err
			}
			continue
		}
		k, err := prekey.ParseOneTimePrekey(p.Public)
		if err != nil {
			return nil, fmt.Errorf("prekeys: stored one-time prekey %d: %w", p.ID, err)
		}
		return k, nil
	}
}

// Responder returns the keys the initial message msg names, for
// pqxdh.Respond, or an error wrapping ErrUnknownPrekey when this device does
// not hold them.
func (m *Manager) Responder(tx *store.Tx, msg *pqxdh.InitialMessage) (*pqxdh.Responder, error) {
	r := &pqxdh.Responder{Identity: m.id, Device: m.device}
	s, err := tx.Prekeys().Get(store.PrekeySigned, msg.SignedPrekeyID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: signed prekey %d", ErrUnknownPrekey, msg.SignedPrekeyID)
	}
	if err != nil {
		return nil, err
	}
	if r.SignedPrekey, err = prekey.ParseSignedPrekeyPrivate(s.Private); err != nil {
		return nil, fmt.Errorf("prekeys: stored signed prekey %d: %w", s.ID, err)
	}
	if msg.OneTime {
		p, err := tx.Prekeys().Get(store.PrekeyOneTime, msg.PrekeyID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: one-time prekey %d", ErrUnknownPrekey, msg.PrekeyID)
		}
		if err != nil {
			return nil, err
		}
		if r.OneTime, err = prekey.ParseOneTimePrekeyPrivate(p.Private); err != nil {
			return nil, fmt.Errorf("prekeys: stored one-time prekey %d: %w", p.ID, err)
		}
		return r, nil
	}
	k, err := tx.Prekeys().Get(store.PrekeyLastResort, msg.PrekeyID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: KEM prekey %d", ErrUnknownPrekey, msg.PrekeyID)
	}
	if err != nil {
		return nil, err
	}
	if r.KEMPrekey, err = prekey.ParseKEMPrekeyPrivate(k.Private); err != nil {
		return nil, fmt.Errorf("prekeys: stored KEM prekey %d: %w", k.ID, err)
	}
	return r, nil
}

// Consume deletes the one-time prekey id, once a first message that used
// it has decrypted (in the same transaction as the new session).
func (m *Manager) Consume(tx *store.Tx, id uint32) error {
	return tx.Prekeys().Delete(store.PrekeyOneTime, id)
}

// Available returns the number of one-time prekeys that may be handed out.
func (m *Manager) Available(tx *store.Tx) (int, error) {
	return tx.Prekeys().Count(store.PrekeyOneTime, store.PrekeyAvailable)
}
