package messaging_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
)

// stranger makes from a stranger to p: it adds p from an invite p revoked
// at once, so its messages arrive as a message request.
func stranger(t *testing.T, from, p *tnode) {
	t.Helper()
	inv, err := p.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.m.RevokeInvite(nodetest.Context(t), inv.Link); err != nil {
		t.Fatal(err)
	}
	if _, err := from.m.AddContact(nodetest.Context(t), inv.Link, p.name); err != nil {
		t.Fatal(err)
	}
}

// texts returns the texts of p's conversation with name.
func texts(t *testing.T, p *tnode, name string) []string {
	t.Helper()
	msgs, err := p.m.Page(nodetest.Context(t), name, 0, 0)
	if err != nil {
		t.Fatalf("%s: messages with %s: %v", p.name, name, err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, m.Text)
	}
	return out
}

// TestRequestCaps: a message request keeps its newest messages up to its
// cap, the oldest going first; over the cap of all requests, the oldest
// request goes whole; both are counted. An accepted contact is not capped.
func TestRequestCaps(t *testing.T) {
	bob := newPeer(t, "bob", withConfig(func(c *node.Config) {
		c.Messaging = messaging.Options{RequestMessages: 3, RequestsMessages: 5}
	}))
	alice := newPeer(t, "alice")
	carol := newPeer(t, "carol")
	dave := newPeer(t, "dave")
	for _, p := range []*tnode{alice, carol, dave} {
		stranger(t, p, bob)
	}
	burst := func(p *tnode, n int) []string {
		var sent []string
		for i := range n {
			text := fmt.Sprintf("%s %d", p.name, i+1)
			wait(t, p, send(t, p, "bob", text), messaging.StateSent)
			sent = append(sent, text)
		}
		return sent
	}

	sent := burst(alice, 5)
	if got := texts(t, bob, "alice"); !slices.Equal(got, sent[2:]) {
		t.Errorf("bob keeps %q of alice's request, want the newest three %q", got, sent[2:])
	}
	if m, r := bob.m.RequestDrops(); m != 2 || r != 0 {
		t.Errorf("drops after alice's five: %d messages, %d requests; want 2, 0", m, r)
	}

	// 3 + 2 = 5 messages in requests: at the total cap, nothing goes.
	carolSent := burst(carol, 2)
	if got := texts(t, bob, "carol"); !slices.Equal(got, carolSent) {
		t.Errorf("bob keeps %q of carol's request, want %q", got, carolSent)
	}
	// One more is over it: alice's, the oldest request, goes whole.
	daveSent := burst(dave, 1)
	if _, err := bob.m.Contact(nodetest.Context(t), "alice"); !errors.Is(err, messaging.ErrUnknownContact) {
		t.Errorf("alice's request over the total cap: %v, want it dropped (ErrUnknownContact)", err)
	}
	if got := texts(t, bob, "dave"); !slices.Equal(got, daveSent) {
		t.Errorf("bob keeps %q of dave's request, want %q", got, daveSent)
	}
	if got := texts(t, bob, "carol"); !slices.Equal(got, carolSent) {
		t.Errorf("bob keeps %q of carol's request after alice's went, want %q", got, carolSent)
	}
	for _, m := range inbox(t, bob) {
		if m.FromName == "alice" || m.From == alice.m.UserID().String() {
			t.Errorf("a message of the dropped request is still in bob's inbox: %+v", m)
		}
	}
	if m, r := bob.m.RequestDrops(); m != 5 || r != 1 {
		t.Errorf("drops after dave's: %d messages, %d requests; want 5, 1", m, r)
	}

	// Accepted, carol is not capped any more.
	if _, err := bob.m.Accept(nodetest.Context(t), "carol"); err != nil {
		t.Fatal(err)
	}
	carolSent = append(carolSent, burst(carol, 6)...)
	if got := texts(t, bob, "carol"); !slices.Equal(got, carolSent) {
		t.Errorf("bob keeps %q of accepted carol, want all %q", got, carolSent)
	}
	if m, r := bob.m.RequestDrops(); m != 5 || r != 1 {
		t.Errorf("drops after carol was accepted: %d messages, %d requests; want 5, 1", m, r)
	}
}

// TestDeleteMessages: DeleteMessage deletes one message, either way, and
// refuses an unknown one; DeleteConversation deletes the rest and keeps
// the contact; a conversation goes on after it.
func TestDeleteMessages(t *testing.T) {
	alice := newPeer(t, "alice")
	bob := newPeer(t, "bob")
	befriend(t, alice, bob)
	var ids []string
	for i := range 3 {
		id := send(t, alice, "bob", fmt.Sprintf("to bob %d", i+1))
		wait(t, alice, id, messaging.StateDelivered)
		ids = append(ids, id.String())
	}
	reply := send(t, bob, "alice", "to alice")
	wait(t, bob, reply, messaging.StateDelivered)

	if err := bob.m.DeleteMessage(nodetest.Context(t), ids[1]); err != nil {
		t.Fatal(err)
	}
	if got, want := texts(t, bob, "alice"), []string{"to bob 1", "to bob 3", "to alice"}; !slices.Equal(got, want) {
		t.Errorf("bob's conversation after deleting one: %q, want %q", got, want)
	}
	if err := bob.m.DeleteMessage(nodetest.Context(t), ids[1]); !errors.Is(err, messaging.ErrUnknownMessage) {
		t.Errorf("deleting it again: %v, want ErrUnknownMessage", err)
	}
	if err := bob.m.DeleteMessage(nodetest.Context(t), "not a message"); !errors.Is(err, messaging.ErrUnknownMessage) {
		t.Errorf("deleting a malformed ID: %v, want ErrUnknownMessage", err)
	}
	n, err := bob.m.DeleteConversation(nodetest.Context(t), "alice")
	if err != nil || n != 3 {
		t.Errorf("DeleteConversation: %d, %v; want 3 messages", n, err)
	}
	if got := texts(t, bob, "alice"); len(got) != 0 {
		t.Errorf("bob's conversation after deleting it: %q", got)
	}
	if c, err := bob.m.Contact(nodetest.Context(t), "alice"); err != nil || c.State != "accepted" {
		t.Errorf("alice after her conversation was deleted: %+v, %v; want an accepted contact", c, err)
	}
	if _, err := bob.m.DeleteConversation(nodetest.Context(t), "nobody"); !errors.Is(err, messaging.ErrUnknownContact) {
		t.Errorf("DeleteConversation of an unknown contact: %v, want ErrUnknownContact", err)
	}
	wait(t, alice, send(t, alice, "bob", "still here"), messaging.StateDelivered)
	if got := texts(t, bob, "alice"); !slices.Equal(got, []string{"still here"}) {
		t.Errorf("bob's conversation after a new message: %q", got)
	}
	// Alice deletes her side too: her conversation is hers alone.
	if n, err := alice.m.DeleteConversation(nodetest.Context(t), "bob"); err != nil || n != 5 {
		t.Errorf("alice's DeleteConversation: %d, %v; want 5 messages", n, err)
	}
}
