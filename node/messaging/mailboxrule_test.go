package messaging_test

import (
	"errors"
	"testing"

	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
)

// TestKnownMailboxIsNoIdentityChange: a mailbox is not an identity. A
// stranger's invite that lists a contact's mailbox (mailbox IDs are in
// every invite and card their owner gives out, and nothing binds them to
// an identity key) adds the stranger as a contact of its own, and the
// contact whose mailbox it is keeps its state and its messages.
func TestKnownMailboxIsNoIdentityChange(t *testing.T) {
	_, raddr := startRelay(t)
	alice := newPeer(t, "alice")
	bob := newPeer(t, "bob")
	carol := newPeer(t, "carol")
	if _, err := bob.m.AddRelay(nodetest.Context(t), raddr); err != nil {
		t.Fatal(err)
	}
	befriend(t, alice, bob)
	wait(t, alice, send(t, alice, "bob", "hello"), messaging.StateDelivered)
	box := contactMailbox(t, alice, bob.m.UserID())

	inv, err := carol.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := protocol.ParseLink(inv.Link)
	if err != nil {
		t.Fatal(err)
	}
	parsed.Relays = []protocol.InviteRelay{{Peer: box.Relay, Addr: box.RelayAddrs[0], Mailbox: box.ID}}
	link, err := parsed.Link()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.m.AddContact(nodetest.Context(t), link, "carol"); errors.Is(err, messaging.ErrUntrustedIdentity) {
		t.Fatalf("an invite listing bob's mailbox under carol's key: %v", err)
	} else if err != nil {
		t.Fatalf("AddContact: %v", err)
	}
	c, err := alice.m.Contact(nodetest.Context(t), "bob")
	if err != nil || c.IdentityChanged || c.State != "accepted" {
		t.Fatalf("alice's contact bob after carol listed his mailbox: %+v, %v", c, err)
	}
	wait(t, alice, send(t, alice, "bob", "still you"), messaging.StateDelivered)
	wait(t, alice, send(t, alice, "carol", "hi carol"), messaging.StateDelivered)
}
