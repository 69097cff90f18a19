package messaging_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/sealpost/sealpost/crypto/prekey"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/store"
)

// TestStoredSessionHoldsNoSignedPrekey: the session a first message
// creates is stored without the private key of the signed prekey it used,
// which the prekey's retention must be able to delete, even while the
// responder never answers in it (a message request gets no receipt).
func TestStoredSessionHoldsNoSignedPrekey(t *testing.T) {
	alice := newPeer(t, "alice", withConfig(tcpOnly))
	bob := newPeer(t, "bob", withConfig(tcpOnly))
	inv, err := bob.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.m.RevokeInvite(nodetest.Context(t), inv.Link); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.m.AddContact(nodetest.Context(t), inv.Link, "bob"); err != nil {
		t.Fatal(err)
	}
	wait(t, alice, send(t, alice, "bob", "first"), messaging.StateSent)
	nodetest.WaitFor(t, 30*time.Second, "the message request", func() bool { return len(inbox(t, bob)) == 1 })
	var spks [][]byte
	var states [][]byte
	err = bob.st.View(nodetest.Context(t), func(tx *store.Tx) error {
		all, err := tx.Prekeys().List(store.PrekeySigned)
		if err != nil {
			return err
		}
		for _, p := range all {
			k, err := prekey.ParseSignedPrekeyPrivate(p.Private)
			if err != nil {
				return err
			}
			spks = append(spks, k.PrivateKey().Bytes())
		}
		ss, err := tx.Sessions().List(alice.m.UserID())
		for _, s := range ss {
			states = append(states, s.State)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(spks) == 0 || len(states) == 0 {
		t.Fatalf("test broken: %d signed prekeys, %d sessions", len(spks), len(states))
	}
	for _, st := range states {
		for _, k := range spks {
			if bytes.Contains(st, k) {
				t.Error("bob's stored session with alice holds his signed prekey's private key")
			}
		}
	}
}
