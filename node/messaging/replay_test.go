package messaging_test

import (
	"testing"
	"time"

	"github.com/sealpost/sealpost/crypto/pqxdh"
	"github.com/sealpost/sealpost/crypto/prekey"
	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// TestFirstMessageReplayOutlivesPrekey: the replay memory of a first
// message lasts as long as the signed prekey it used, even when that
// prekey lives longer than usual because the node was offline when it
// should have rotated. Bob receives Alice's first message, removes her,
// and is offline for 60 days: at his return he rotates, and keeps the old
// signed prekey for its retention from then on. The first message,
// replayed, must start nothing.
func TestFirstMessageReplayOutlivesPrekey(t *testing.T) {
	clk := newFakeClock()
	alice := newPeer(t, "alice", withConfig(tcpOnly))
	bob := newPeer(t, "bob", onDisk(), withConfig(func(c *node.Config) { tcpOnly(c); c.Clock = clk }))
	befriend(t, alice, bob)
	bob.stop()
	id := send(t, alice, "bob", "first")
	e, _ := outboxEntry(t, alice, id)
	var ct protocol.Ciphertext
	if err := ct.Unmarshal(e.Payload); err != nil || len(ct.Prekey) == 0 {
		t.Fatalf("first ciphertext: %v, prekey %d bytes", err, len(ct.Prekey))
	}
	im, err := pqxdh.ParseInitialMessage(ct.Prekey)
	if err != nil {
		t.Fatal(err)
	}
	bob.restart()
	wait(t, alice, id, messaging.StateDelivered)
	if err := bob.m.Remove(nodetest.Context(t), "alice"); err != nil {
		t.Fatal(err)
	}

	bob.stop()
	clk.Advance(60 * 24 * time.Hour)
	bob.restart()
	seen := func(h [32]byte) bool {
		var ok bool
		if err := bob.st.View(nodetest.Context(t), func(tx *store.Tx) error {
			var err error
			ok, err = tx.Seen().Has(h)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	// The maintenance at the start rotates and expires the seen-set.
	nodetest.WaitFor(t, 30*time.Second, "the maintenance after the restart", func() bool { return !seen(ct.SeenKey()) })
	var held bool
	if err := bob.st.View(nodetest.Context(t), func(tx *store.Tx) error {
		_, err := tx.Prekeys().Get(store.PrekeySigned, im.SignedPrekeyID)
		held = err == nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !held {
		t.Fatal("test broken: bob no longer holds the signed prekey of the first message")
	}
	if !seen(im.ReplayHash()) {
		t.Error("the first message's replay hash is gone while its signed prekey is still held")
	}
	codes, err := bob.m.Receive(nodetest.Context(t), []messaging.Incoming{{Identity: identityOf(t, alice), Device: []byte(alice.n.ID()), Ciphertext: e.Payload}})
	if err != nil {
		t.Fatal(err)
	}
	if codes[0] == protocol.CodeOK {
		t.Errorf("the replayed first message was accepted (%v)", codes[0])
	}
	if n := sessions(t, bob, alice); n != 0 {
		t.Errorf("the replayed first message started %d sessions", n)
	}
	// The conversation went with the contact; the replay adds nothing.
	if got := inbox(t, bob); len(got) != 0 {
		t.Errorf("bob's inbox holds %d messages after the replay, want none", len(got))
	}

	// Once the prekey goes, so does the hash.
	clk.Advance(prekey.MaxAge + 15*24*time.Hour)
	nodetest.WaitFor(t, 30*time.Second, "the old signed prekey's deletion", func() bool {
		var gone bool
		bob.st.View(nodetest.Context(t), func(tx *store.Tx) error {
			_, err := tx.Prekeys().Get(store.PrekeySigned, im.SignedPrekeyID)
			gone = err != nil
			return nil
		})
		return gone
	})
	if seen(im.ReplayHash()) {
		t.Error("the replay hash outlived its signed prekey")
	}
}
