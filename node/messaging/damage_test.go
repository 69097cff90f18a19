package messaging_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"

	"github.com/sealpost/sealpost/store"
)

// TestDamagedRecord: a node started on a store in which one of bob's
// records does not decode — his session, his contact, or a message to him
// waiting in the outbox — serves carol both ways, reports the damaged
// record (status, log), and never panics or holds the outbox.
func TestDamagedRecord(t *testing.T) {
	for _, table := range []string{"session", "contact", "outbox entry"} {
		t.Run(strings.ReplaceAll(table, " ", "_"), func(t *testing.T) {
			kv := store.NewMemoryBackend()
			alice := newPeer(t, "alice", onBackend(kv), withConfig(tcpOnly))
			bob := newPeer(t, "bob", withConfig(tcpOnly))
			carol := newPeer(t, "carol", onDisk(), withConfig(tcpOnly))
			befriend(t, alice, bob)
			befriend(t, alice, carol)
			wait(t, alice, send(t, alice, "bob", "hi bob"), messaging.StateDelivered)
			wait(t, alice, send(t, alice, "carol", "hi carol"), messaging.StateDelivered)
			wait(t, carol, send(t, carol, "alice", "hi alice"), messaging.StateDelivered)

			bobID := bob.m.UserID()
			prefix := map[string][]byte{
				"session": append([]byte{0x04}, bobID[:]...),
				"contact": append([]byte{0x05}, bobID[:]...),
			}[table]
			var queued protocol.MessageID
			if table == "outbox entry" {
				// Both wait in the outbox; bob's first.
				bob.stop()
				id := send(t, alice, "bob", "while you were out")
				prefix = append([]byte{0x0a}, id[:]...)
				carol.stop()
				queued = send(t, alice, "carol", "queued for carol")
			}
			if err := alice.n.Close(); err != nil {
				t.Fatal(err)
			}
			damaged := 0
			err := kv.Update(context.Background(), func(kv store.KV) error {
				var keys [][]byte
				if err := kv.Scan(prefix, append(bytes.Clone(prefix), 0xff), false, func(k, _ []byte) error {
					keys = append(keys, bytes.Clone(k))
					return nil
				}); err != nil {
					return err
				}
				for _, k := range keys {
					if err := kv.Set(k, []byte{0xee, 1, 2, 3}); err != nil {
						return err
					}
					damaged++
				}
				return nil
			})
			if err != nil || damaged == 0 {
				t.Fatalf("damaging %d records: %v", damaged, err)
			}
			alice.start()
			if table == "outbox entry" {
				carol.restart()
				wait(t, alice, queued, messaging.StateDelivered)
			}

			// Carol is served both ways.
			wait(t, alice, send(t, alice, "carol", "still here"), messaging.StateDelivered)
			wait(t, carol, send(t, carol, "alice", "and me"), messaging.StateDelivered)
			st, err := alice.n.Status(nodetest.Context(t))
			if err != nil {
				t.Fatalf("status: %v", err)
			}
			if len(st.Damaged) == 0 || st.Damaged[0].Table != table || !strings.HasPrefix(st.Damaged[0].Key, hex.EncodeToString(prefix[1:])) {
				t.Errorf("status reports %+v, want the %s %x", st.Damaged, table, prefix[1:])
			}
			switch table {
			case "session":
				// A new session replaces the damaged one.
				wait(t, alice, send(t, alice, "bob", "new session"), messaging.StateDelivered)
			case "contact":
				if _, err := alice.m.Send(nodetest.Context(t), "bob", "to a damaged contact"); err == nil {
					t.Error("a send to the damaged contact went through")
				} else if !strings.Contains(err.Error(), "corrupt") {
					t.Errorf("send to the damaged contact: %v", err)
				}
			}
		})
	}
}
