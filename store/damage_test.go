package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
)

// TestDamageSkipped: the lists skip a record that does not decode and
// note it once; reading it by its key is ErrCorrupt; a damaged outbox
// entry, ahead of the others, neither hides them nor fails Due and Next.
func TestDamageSkipped(t *testing.T) {
	ctx := context.Background()
	b := NewMemoryBackend()
	st, err := Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var notified []DamagedRecord
	Damage(st).Notify(func(d DamagedRecord) { notified = append(notified, d) })
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a, c := identity.UserID{1}, identity.UserID{2}
	err = st.Update(ctx, func(tx *Tx) error {
		for i, u := range []identity.UserID{a, c} {
			if err := tx.Contacts().Put(Contact{UserID: u, Name: string(rune('a' + i)), Identity: []byte{1}, State: ContactAccepted, CreatedAt: t0, UpdatedAt: t0}); err != nil {
				return err
			}
			if err := tx.Outbox().Put(OutboxEntry{ID: protocol.MessageID{byte(i + 1)}, Peer: u, Device: []byte("d"), Payload: []byte{1}, CreatedAt: t0, NextAttempt: t0.Add(time.Duration(i) * time.Second)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Damage a's contact and the earliest outbox entry.
	err = b.Update(ctx, func(kv KV) error {
		if err := kv.Set(contactKey(a), []byte{0xee}); err != nil {
			return err
		}
		return kv.Set(outboxKey(protocol.MessageID{1}), []byte{0xee, 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		err = st.View(ctx, func(tx *Tx) error {
			cs, err := tx.Contacts().List()
			if err != nil || len(cs) != 1 || cs[0].UserID != c {
				t.Errorf("contacts: %d, %v", len(cs), err)
			}
			if _, err := tx.Contacts().Get(a); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Get of the damaged contact: %v", err)
			}
			due, err := tx.Outbox().Due(t0.Add(time.Hour), 1)
			if err != nil || len(due) != 1 || due[0].Peer != c {
				t.Errorf("due: %+v, %v", due, err)
			}
			next, ok, err := tx.Outbox().Next()
			if err != nil || !ok || !next.Equal(t0.Add(time.Second)) {
				t.Errorf("next: %v %v %v", next, ok, err)
			}
			all, err := tx.Outbox().List()
			if err != nil || len(all) != 1 {
				t.Errorf("outbox: %d, %v", len(all), err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	recs := Damage(st).Records()
	if len(recs) != 2 || recs[0].Table != "contact" || recs[1].Table != "outbox entry" || len(notified) != 2 {
		t.Errorf("damage noted: %+v, notified %d", recs, len(notified))
	}
	// The damaged entry can be deleted.
	if err := st.Update(ctx, func(tx *Tx) error { return tx.Outbox().Delete(protocol.MessageID{1}) }); err != nil {
		t.Errorf("delete the damaged entry: %v", err)
	}
}
