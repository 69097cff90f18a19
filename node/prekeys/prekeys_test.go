package prekeys

import (
	"context"
	"crypto/ed25519"
	"errors"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/pqxdh"
	"github.com/sealpost/sealpost/crypto/prekey"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

var t0 = time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)

// seeded is a deterministic random source for tests.
type seeded struct{ r *mrand.ChaCha8 }

func newSeeded(b byte) *seeded { return &seeded{mrand.NewChaCha8([32]byte{b})} }

func (s *seeded) Read(p []byte) (int, error) { return s.r.Read(p) }

type party struct {
	id  *identity.Private
	dev *identity.DeviceRecord
}

func newParty(t *testing.T, b byte) party {
	t.Helper()
	r := newSeeded(b)
	id, err := identity.Generate(r)
	if err != nil {
		t.Fatal(err)
	}
	seed := make([]byte, ed25519.SeedSize)
	r.Read(seed)
	key := ed25519.NewKeyFromSeed(seed)
	devID := append([]byte{0, 0x24, 8, 1, 0x12, 0x20}, key.Public().(ed25519.PublicKey)...)
	dev, err := identity.NewDeviceRecord(id, key, devID, t0, 1)
	if err != nil {
		t.Fatal(err)
	}
	return party{id, dev}
}

func newManager(t *testing.T, pol Policy) (*Manager, store.Store, party) {
	t.Helper()
	p := newParty(t, 1)
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	return New(p.id, p.dev, pol, newSeeded(2)), st, p
}

func update(t *testing.T, st store.Store, fn func(tx *store.Tx) error) {
	t.Helper()
	if err := st.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func maintain(t *testing.T, m *Manager, st store.Store, now time.Time) Report {
	t.Helper()
	var r Report
	update(t, st, func(tx *store.Tx) error {
		var err error
		r, err = m.Maintain(tx, now)
		return err
	})
	return r
}

func serve(t *testing.T, m *Manager, st store.Store, pin []byte, now time.Time) (*prekey.Bundle, error) {
	t.Helper()
	var b []byte
	err := st.Update(context.Background(), func(tx *store.Tx) error {
		var err error
		b, err = m.Serve(tx, pin, true, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	bundle, err := prekey.ParseBundle(b)
	if err != nil {
		t.Fatalf("served bundle does not parse: %v", err)
	}
	if err := bundle.Verify(now); err != nil {
		t.Fatalf("served bundle does not verify: %v", err)
	}
	return bundle, nil
}

func TestServeHandsOutEachOneTimeKeyOnce(t *testing.T) {
	m, st, _ := newManager(t, Policy{OneTimeTarget: 5, OneTimeLow: 2})
	update(t, st, func(tx *store.Tx) error {
		if _, err := m.Serve(tx, nil, true, t0); !errors.Is(err, ErrNoPrekeys) {
			t.Errorf("Serve before Maintain: got %v, want ErrNoPrekeys", err)
		}
		return nil
	})
	r := maintain(t, m, st, t0)
	if !r.Rotated || r.Generated != 5 || r.Available != 5 {
		t.Fatalf("first Maintain: %+v", r)
	}
	seen := map[uint32]bool{}
	for range 5 {
		b, err := serve(t, m, st, nil, t0)
		if err != nil {
			t.Fatal(err)
		}
		if b.OneTime == nil {
			t.Fatal("bundle without a one-time prekey while some are available")
		}
		if seen[b.OneTime.ID()] {
			t.Fatalf("one-time prekey %d handed out twice", b.OneTime.ID())
		}
		seen[b.OneTime.ID()] = true
	}
	b, err := serve(t, m, st, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if b.OneTime != nil {
		t.Errorf("bundle with a one-time prekey after all were handed out")
	}
	r = maintain(t, m, st, t0.Add(time.Minute))
	if r.Rotated || r.Generated != 5 || r.Available != 5 {
		t.Errorf("refill: %+v", r)
	}
	b, err = serve(t, m, st, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if b.OneTime == nil || seen[b.OneTime.ID()] {
		t.Errorf("after refill: got %v, want a new one-time prekey", b.OneTime)
	}
}

func TestMaxHandedOut(t *testing.T) {
	m, st, _ := newManager(t, Policy{OneTimeTarget: 10, OneTimeLow: 5, MaxHandedOut: 3})
	maintain(t, m, st, t0)
	for i := range 5 {
		b, err := serve(t, m, st, nil, t0)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := b.OneTime != nil, i < 3; got != want {
			t.Errorf("serve %d: one-time prekey %v, want %v", i, got, want)
		}
	}
}

func TestRotationRetentionAndPins(t *testing.T) {
	pol := Policy{OneTimeTarget: 2, OneTimeLow: 1}
	m, st, _ := newManager(t, pol)
	maintain(t, m, st, t0)
	var v1 *Version
	update(t, st, func(tx *store.Tx) error {
		var err error
		v1, err = m.Current(tx)
		return err
	})
	pin1 := v1.Hash[:16]
	week := m.Policy().RotateEvery
	if r := maintain(t, m, st, t0.Add(week-time.Second)); r.Rotated {
		t.Fatal("rotated before RotateEvery")
	}
	if r := maintain(t, m, st, t0.Add(week)); !r.Rotated {
		t.Fatal("did not rotate after RotateEvery")
	}
	now := t0.Add(week + time.Hour)
	cur, err := serve(t, m, st, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Hash() == v1.Hash {
		t.Fatal("current bundle is still version 1 after rotation")
	}
	old, err := serve(t, m, st, pin1, now)
	if err != nil {
		t.Fatalf("serve the pinned old version: %v", err)
	}
	if old.Hash() != v1.Hash || old.SignedPrekey.ID() != v1.ID {
		t.Errorf("pinned serve returned another version")
	}
	if _, err := serve(t, m, st, []byte("no such pin, 16"), now); !errors.Is(err, ErrExpired) {
		t.Errorf("unknown pin: got %v, want ErrExpired", err)
	}
	// Keep rotating weekly; version 1 stops being served at MaxAge and its
	// keys go Retention after version 2 replaced it.
	for now := t0.Add(2 * week); now.Before(t0.Add(week + m.Policy().Retention() + week)); now = now.Add(week) {
		maintain(t, m, st, now)
	}
	at := t0.Add(prekey.MaxAge)
	if _, err := serve(t, m, st, pin1, at); !errors.Is(err, ErrExpired) {
		t.Errorf("pinned version past MaxAge: got %v, want ErrExpired", err)
	}
	update(t, st, func(tx *store.Tx) error {
		if _, err := tx.Prekeys().Get(store.PrekeySigned, v1.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("version 1 signed prekey still stored after its retention: %v", err)
		}
		if _, err := tx.Prekeys().Get(store.PrekeyLastResort, v1.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("version 1 KEM prekey still stored after its retention: %v", err)
		}
		spks, err := tx.Prekeys().List(store.PrekeySigned)
		if err != nil {
			return err
		}
		// Versions younger than Retention past their replacement stay.
		if want := int(m.Policy().Retention()/week) + 1; len(spks) < want-1 || len(spks) > want+1 {
			t.Errorf("%d signed prekeys retained, want about %d", len(spks), want)
		}
		return nil
	})
}

func TestRetentionBoundary(t *testing.T) {
	m, st, _ := newManager(t, Policy{OneTimeTarget: 1, OneTimeLow: 1})
	maintain(t, m, st, t0)
	week := m.Policy().RotateEvery
	maintain(t, m, st, t0.Add(week)) // version 2 replaces version 1
	keep := t0.Add(week + m.Policy().Retention())
	maintain(t, m, st, keep.Add(-time.Second))
	exists := func() bool {
		ok := false
		update(t, st, func(tx *store.Tx) error {
			_, err := tx.Prekeys().Get(store.PrekeySigned, 1)
			ok = err == nil
			return nil
		})
		return ok
	}
	if !exists() {
		t.Fatal("version 1 deleted before its retention ended")
	}
	maintain(t, m, st, keep)
	if exists() {
		t.Fatal("version 1 kept after its retention ended")
	}
}

func TestResponderAndConsume(t *testing.T) {
	m, st, bob := newManager(t, Policy{OneTimeTarget: 3, OneTimeLow: 1})
	alice := newParty(t, 9)
	maintain(t, m, st, t0)
	for _, withOneTime := range []bool{true, false} {
		var b *prekey.Bundle
		if withOneTime {
			var err error
			if b, err = serve(t, m, st, nil, t0); err != nil {
				t.Fatal(err)
			}
		} else {
			update(t, st, func(tx *store.Tx) error {
				v, err := m.Current(tx)
				b = v.bundle
				return err
			})
		}
		init, err := pqxdh.Initiate(alice.id, alice.dev, b, t0, newSeeded(3))
		if err != nil {
			t.Fatal(err)
		}
		update(t, st, func(tx *store.Tx) error {
			r, err := m.Responder(tx, init.Message)
			if err != nil {
				return err
			}
			res, err := pqxdh.Respond(r, init.Message)
			if err != nil {
				return err
			}
			if res.Secret != init.Secret {
				t.Error("responder derived another secret")
			}
			if res.UsedOneTime != withOneTime {
				t.Errorf("UsedOneTime = %v, want %v", res.UsedOneTime, withOneTime)
			}
			if res.UsedOneTime {
				return m.Consume(tx, res.OneTimeID)
			}
			return nil
		})
		if withOneTime {
			update(t, st, func(tx *store.Tx) error {
				if _, err := m.Responder(tx, init.Message); !errors.Is(err, ErrUnknownPrekey) {
					t.Errorf("Responder after Consume: got %v, want ErrUnknownPrekey", err)
				}
				return nil
			})
		}
	}
	_ = bob
}

func TestOneTimeKeysAgeOut(t *testing.T) {
	m, st, _ := newManager(t, Policy{OneTimeTarget: 4, OneTimeLow: 2})
	maintain(t, m, st, t0)
	if _, err := serve(t, m, st, nil, t0); err != nil { // one handed out
		t.Fatal(err)
	}
	// Available keys are replaced before they are too old to serve.
	week := m.Policy().RotateEvery
	later := t0.Add(prekey.MaxAge - week)
	r := maintain(t, m, st, later)
	if r.Deleted < 3 || r.Available != 4 {
		t.Errorf("Maintain when available keys age out: %+v", r)
	}
	count := func(state store.PrekeyState) int {
		n := 0
		update(t, st, func(tx *store.Tx) error {
			var err error
			n, err = tx.Prekeys().Count(store.PrekeyOneTime, state)
			return err
		})
		return n
	}
	if got := count(store.PrekeyHandedOut); got != 1 {
		t.Errorf("handed-out keys before their retention: %d, want 1", got)
	}
	maintain(t, m, st, t0.Add(m.Policy().Retention()))
	if got := count(store.PrekeyHandedOut); got != 0 {
		t.Errorf("handed-out keys after their retention: %d, want 0", got)
	}
}

func TestVersionBundle(t *testing.T) {
	m, st, _ := newManager(t, Policy{})
	maintain(t, m, st, t0)
	var data []byte
	var v *Version
	update(t, st, func(tx *store.Tx) error {
		var err error
		if v, err = m.Current(tx); err != nil {
			return err
		}
		data, err = v.Bundle()
		return err
	})
	b, err := prekey.ParseBundle(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(t0); err != nil {
		t.Fatal(err)
	}
	if b.OneTime != nil {
		t.Error("the version's bundle holds a one-time prekey")
	}
	if b.Hash() != v.Hash {
		t.Error("the version's bundle does not have the version's hash")
	}
	update(t, st, func(tx *store.Tx) error {
		if p, err := m.Pinned(tx, v.Hash[:16]); err != nil || p.Hash != v.Hash {
			t.Errorf("Pinned: %v", err)
		}
		if _, err := m.Pinned(tx, make([]byte, 16)); !errors.Is(err, ErrExpired) {
			t.Errorf("Pinned of an unknown pin: got %v, want ErrExpired", err)
		}
		return nil
	})
}

func TestForRelay(t *testing.T) {
	m, st, _ := newManager(t, Policy{OneTimeTarget: 3, OneTimeLow: 1})
	alice := newParty(t, 9)
	maintain(t, m, st, t0)
	var keys []*prekey.OneTimePrekey
	var b *prekey.Bundle
	update(t, st, func(tx *store.Tx) error {
		var err error
		if keys, err = m.ForRelay(tx, protocol.MailboxID{1}, uint64(m.Policy().RelayBatch-5), t0); err != nil {
			return err
		}
		v, err := m.Current(tx)
		b = v.bundle
		return err
	})
	if len(keys) != 5 {
		t.Fatalf("ForRelay made %d keys, want 5", len(keys))
	}
	// Disjoint from what the node serves itself.
	for range 3 {
		served, err := serve(t, m, st, nil, t0)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if served.OneTime != nil && served.OneTime.ID() == k.ID() {
				t.Fatalf("the node served relay key %d", k.ID())
			}
		}
	}
	// An initiator with a relay key: the responder finds it, and Consume
	// deletes it.
	rb := *b
	rb.OneTime = keys[0]
	if err := rb.Verify(t0); err != nil {
		t.Fatalf("bundle with a relay key: %v", err)
	}
	init, err := pqxdh.Initiate(alice.id, alice.dev, &rb, t0, newSeeded(3))
	if err != nil {
		t.Fatal(err)
	}
	update(t, st, func(tx *store.Tx) error {
		r, err := m.Responder(tx, init.Message)
		if err != nil {
			return err
		}
		res, err := pqxdh.Respond(r, init.Message)
		if err != nil {
			return err
		}
		if !res.UsedOneTime || res.OneTimeID != keys[0].ID() {
			t.Errorf("responder used one-time key %v %d, want %d", res.UsedOneTime, res.OneTimeID, keys[0].ID())
		}
		return m.Consume(tx, res.OneTimeID)
	})
	// Unused ones go when no initiator may use them any more.
	maintain(t, m, st, t0.Add(prekey.MaxAge+m.Policy().RelayTTL+time.Hour))
	update(t, st, func(tx *store.Tx) error {
		for _, k := range keys[1:] {
			if _, err := tx.Prekeys().Get(store.PrekeyOneTime, k.ID()); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("relay key %d kept past its use: %v", k.ID(), err)
			}
		}
		return nil
	})
}

// TestReplayHashesGoWithTheirPrekey: the replay hashes of first messages
// stay while their signed prekey is kept, however late it was replaced,
// and go when it does; a prekey with more than a transaction's worth of
// hashes is deleted after its last hash, over several Maintains.
func TestReplayHashesGoWithTheirPrekey(t *testing.T) {
	m, st, _ := newManager(t, Policy{OneTimeTarget: 1, OneTimeLow: 1})
	maintain(t, m, st, t0)
	n := maxReleased + 10
	update(t, st, func(tx *store.Tx) error {
		for i := range n {
			if err := tx.Seen().AddFirst([32]byte{byte(i), byte(i >> 8), 1}, 1); err != nil {
				return err
			}
		}
		return nil
	})
	state := func() (spk, first, last bool) {
		update(t, st, func(tx *store.Tx) error {
			_, err := tx.Prekeys().Get(store.PrekeySigned, 1)
			spk = err == nil
			if first, err = tx.Seen().Has([32]byte{0, 0, 1}); err != nil {
				return err
			}
			last, err = tx.Seen().Has([32]byte{byte(n - 1), byte((n - 1) >> 8), 1})
			return err
		})
		return
	}
	// Offline for 60 days: version 2 comes late, and version 1's keys
	// (and its hashes) stay for the retention after that.
	late := t0.Add(60 * 24 * time.Hour)
	maintain(t, m, st, late)
	if spk, first, last := state(); !spk || !first || !last {
		t.Fatalf("after the late rotation: prekey %v, hashes %v %v; want all kept", spk, first, last)
	}
	end := late.Add(m.Policy().Retention())
	maintain(t, m, st, end.Add(-time.Second))
	if spk, first, last := state(); !spk || !first || !last {
		t.Fatalf("before the retention ended: prekey %v, hashes %v %v; want all kept", spk, first, last)
	}
	maintain(t, m, st, end)
	if spk, _, _ := state(); !spk {
		t.Fatal("the prekey went while some of its hashes are still kept")
	}
	maintain(t, m, st, end.Add(time.Second))
	if spk, first, last := state(); spk || first || last {
		t.Fatalf("after the retention: prekey %v, hashes %v %v; want none", spk, first, last)
	}
}

// forRelay runs ForRelay in a transaction and returns how many keys it
// made.
func forRelay(t *testing.T, m *Manager, st store.Store, mb protocol.MailboxID, reported uint64, now time.Time) int {
	t.Helper()
	var n int
	update(t, st, func(tx *store.Tx) error {
		keys, err := m.ForRelay(tx, mb, reported, now)
		n = len(keys)
		return err
	})
	return n
}

// TestRelayKeysApartFromDevice: one-time prekeys made for relays do not
// count against the device's own hand-out limit, so a drain through a
// relay leaves the device's bundles with one-time prekeys.
func TestRelayKeysApartFromDevice(t *testing.T) {
	m, st, _ := newManager(t, Policy{OneTimeTarget: 10, OneTimeLow: 1, MaxHandedOut: 4})
	maintain(t, m, st, t0)
	for i := range 3 {
		if n := forRelay(t, m, st, protocol.MailboxID{byte(i + 1)}, 0, t0); n != m.Policy().RelayBatch {
			t.Fatalf("mailbox %d: ForRelay made %d keys, want %d", i, n, m.Policy().RelayBatch)
		}
	}
	b, err := serve(t, m, st, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if b.OneTime == nil {
		t.Fatal("the device's bundle has no one-time prekey after keys were made for relays")
	}
}

// TestForRelayOwnAccounting: how many keys a mailbox gets comes from the
// node's own accounting of what it made for it and what was used; the
// relay's report only lowers it. A relay that says it has none left (or
// hands keys to takers who never use them) gets nothing more until they
// are used or expire on the relay, and all the keys kept for relays stay
// within MaxRelayHeld.
func TestForRelayOwnAccounting(t *testing.T) {
	m, st, _ := newManager(t, Policy{OneTimeTarget: 1, OneTimeLow: 1, RelayBatch: 8, MaxRelayHeld: 20})
	maintain(t, m, st, t0)
	a, b := protocol.MailboxID{1}, protocol.MailboxID{2}
	steps := []struct {
		what     string
		mb       protocol.MailboxID
		reported uint64
		at       time.Time
		want     int
	}{
		{"a new mailbox", a, 0, t0, 8},
		{"the relay says it has none", a, 0, t0, 0},
		{"the relay says it has 2", a, 2, t0, 0},
		{"the relay says it has more than were made", a, 100, t0, 0},
		{"another mailbox", b, 0, t0, 8},
		{"the relay holds some that were not made (it says 6)", protocol.MailboxID{3}, 6, t0, 2},
	}
	for _, s := range steps {
		if n := forRelay(t, m, st, s.mb, s.reported, s.at); n != s.want {
			t.Fatalf("%s: ForRelay made %d keys, want %d", s.what, n, s.want)
		}
	}
	// Three of a's keys are used: a gets three more, no matter what its
	// relay reports (as long as it is no more than it holds).
	var used []uint32
	update(t, st, func(tx *store.Tx) error {
		ps, err := tx.Prekeys().ListState(store.PrekeyOneTime, store.PrekeyUploaded)
		for _, p := range ps {
			if p.Mailbox == a && len(used) < 3 {
				used = append(used, p.ID)
				if err := m.Consume(tx, p.ID); err != nil {
					return err
				}
			}
		}
		return err
	})
	if n := forRelay(t, m, st, a, 0, t0); n != 3 {
		t.Fatalf("after three were used: ForRelay made %d keys, want 3", n)
	}
	// Once the keys expire on the relay, a new batch, within what may be
	// kept: 18 are held (until their retention), so 2 more.
	later := m.RelayExpiry(t0)
	if n := forRelay(t, m, st, a, 0, later); n != 2 {
		t.Fatalf("after the relay's batch expired: ForRelay made %d keys, want 2 (MaxRelayHeld)", n)
	}
	// After their retention Maintain deletes them, and a mailbox gets a
	// whole batch again.
	maintain(t, m, st, t0.Add(m.Policy().Retention()))
	if n := forRelay(t, m, st, b, 0, t0.Add(m.Policy().Retention())); n != 8 {
		t.Fatalf("after the retention: ForRelay made %d keys, want 8", n)
	}
}
