package messaging_test

import (
	"testing"
	"time"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/store"
)

// TestLostSessionOtherKept: the recipient lost the sender's active
// session but keeps an older one the two share, so it refuses a message
// encrypted in the active one (unknown_session); the sender encrypts the
// message again in the older session at once, and it arrives. (The
// message encrypted again was once handed to no delivery loop, because
// the loop that held the refused bytes still owned it, and waited for its
// lease: ten minutes.)
func TestLostSessionOtherKept(t *testing.T) {
	fast := func(c *node.Config) {
		c.Messaging = messaging.Options{RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond}
	}
	mn := nodetest.NewMockNet(t)
	alice := newPeer(t, "alice", onMockNet(mn), withConfig(fast))
	bob := newPeer(t, "bob", onMockNet(mn), withConfig(fast))
	befriend(t, alice, bob)
	wait(t, alice, send(t, alice, "bob", "one"), messaging.StateDelivered)
	wait(t, bob, send(t, bob, "alice", "two"), messaging.StateDelivered)

	// bob loses the one session, s1, and starts another, s2, which
	// alice takes as her active one; she keeps s1.
	s1 := sessionRecords(t, bob, alice)
	if len(s1) != 1 {
		t.Fatalf("bob has %d sessions with alice, want 1", len(s1))
	}
	putSessions(t, bob, alice, nil)
	wait(t, bob, send(t, bob, "alice", "three"), messaging.StateDelivered)
	if n := sessions(t, alice, bob); n != 2 {
		t.Fatalf("alice has %d sessions with bob, want 2", n)
	}
	// Then bob has s1 again, and has lost s2.
	putSessions(t, bob, alice, s1)
	wait(t, alice, send(t, alice, "bob", "four"), messaging.StateDelivered)
}

// sessionRecords returns the sessions p keeps with peer.
func sessionRecords(t *testing.T, p, peer *tnode) []store.Session {
	t.Helper()
	var out []store.Session
	if err := p.st.View(nodetest.Context(t), func(tx *store.Tx) error {
		var err error
		out, err = tx.Sessions().List(peer.m.UserID())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// putSessions makes ss the sessions p keeps with peer.
func putSessions(t *testing.T, p, peer *tnode, ss []store.Session) {
	t.Helper()
	if err := p.st.Update(nodetest.Context(t), func(tx *store.Tx) error {
		all, err := tx.Sessions().List(peer.m.UserID())
		if err != nil {
			return err
		}
		for _, s := range all {
			if err := tx.Sessions().Delete(s.Peer, s.Device, s.ID); err != nil {
				return err
			}
		}
		for _, s := range ss {
			if err := tx.Sessions().Put(s); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
