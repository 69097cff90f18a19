package messaging_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
)

// dialCount is an apartGate that counts the dials it is asked about.
type dialCount struct {
	apartGate
	dials atomic.Int32
}

func (g *dialCount) InterceptPeerDial(p peer.ID) bool {
	g.dials.Add(1)
	return g.apartGate.InterceptPeerDial(p)
}

// TestUnreachedGoesToMailboxes: once a direct attempt to a contact that
// has mailboxes failed (as behind a symmetric NAT, where every attempt
// ends after RelayAfter), the next messages within a minute go straight
// to the contact's mailboxes, without another attempt; they still arrive.
func TestUnreachedGoesToMailboxes(t *testing.T) {
	_, raddr := startRelay(t)
	g := &dialCount{}
	s := newPeer(t, "sam", withConfig(func(c *node.Config) { c.ConnGater = g }))
	r := newPeer(t, "rita")
	for _, p := range []*tnode{s, r} {
		if _, err := p.m.AddRelay(nodetest.Context(t), raddr); err != nil {
			t.Fatalf("AddRelay: %v", err)
		}
	}
	befriend(t, s, r)
	wait(t, s, send(t, s, "rita", "hello"), messaging.StateDelivered)
	contactMailbox(t, s, r.m.UserID())
	g.keepApart(r.n.ID())
	s.n.Disconnect(r.n.ID())

	wait(t, s, send(t, s, "rita", "through the mailbox"), messaging.StateDelivered)
	tried := g.dials.Load()
	if tried == 0 {
		t.Fatal("no direct attempt before the first deposit")
	}
	for _, text := range []string{"straight 1", "straight 2"} {
		wait(t, s, send(t, s, "rita", text), messaging.StateDelivered)
	}
	if n := g.dials.Load(); n != tried {
		t.Errorf("%d more dials of the contact within a minute of a failed one, want none", n-tried)
	}
	nodetest.WaitFor(t, 10*time.Second, "rita's inbox", func() bool { return len(inbox(t, r)) == 4 })
}
