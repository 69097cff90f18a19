package messaging_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/store"
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

// burst sends n texts from p to bob, each once p's node calls it sent
// (bob's acknowledged it), and returns them.
func burst(t *testing.T, p *tnode, n int) []string {
	t.Helper()
	var sent []string
	for i := range n {
		text := fmt.Sprintf("%s %d", p.name, i+1)
		wait(t, p, send(t, p, "bob", text), messaging.StateSent)
		sent = append(sent, text)
	}
	return sent
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
	sent := burst(t, alice, 5)
	if got := texts(t, bob, "alice"); !slices.Equal(got, sent[2:]) {
		t.Errorf("bob keeps %q of alice's request, want the newest three %q", got, sent[2:])
	}
	if m, r := bob.m.RequestDrops(); m != 2 || r != 0 {
		t.Errorf("drops after alice's five: %d messages, %d requests; want 2, 0", m, r)
	}

	// 3 + 2 = 5 messages in requests: at the total cap, nothing goes.
	carolSent := burst(t, carol, 2)
	if got := texts(t, bob, "carol"); !slices.Equal(got, carolSent) {
		t.Errorf("bob keeps %q of carol's request, want %q", got, carolSent)
	}
	// One more is over it: alice's, the oldest request, goes whole.
	daveSent := burst(t, dave, 1)
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
	carolSent = append(carolSent, burst(t, carol, 6)...)
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

// seenCount returns how many hashes p's seen-set holds.
func seenCount(t *testing.T, p *tnode) int {
	t.Helper()
	var n int
	err := p.st.View(nodetest.Context(t), func(tx *store.Tx) error {
		var err error
		n, err = tx.Seen().Count()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRequestSeenBounded: what a stranger makes a node remember of its
// ciphertexts (the seen-set, kept for weeks) is bounded as what it makes
// it store: a request keeps the entries of its latest RequestMessages
// ciphertexts, and a dropped request only that of its first message (kept
// as long as the signed prekey it used). Before, every ciphertext a
// stranger sent stayed remembered, however many were dropped.
func TestRequestSeenBounded(t *testing.T) {
	bob := newPeer(t, "bob", withConfig(func(c *node.Config) {
		c.Messaging = messaging.Options{RequestMessages: 3, RequestsMessages: 5}
	}))
	alice := newPeer(t, "alice")
	carol := newPeer(t, "carol")
	stranger(t, alice, bob)
	stranger(t, carol, bob)
	// Alice's eight ciphertexts: the latest three, and her first
	// message's replay hash.
	burst(t, alice, 8)
	if n := seenCount(t, bob); n != 3+1 {
		t.Errorf("bob remembers %d hashes after alice's request of 8 messages capped at 3, want 4", n)
	}
	// Carol's three are over the total: alice's request goes whole, and
	// only her first message's replay hash stays.
	burst(t, carol, 3)
	if _, err := bob.m.Contact(nodetest.Context(t), "alice"); !errors.Is(err, messaging.ErrUnknownContact) {
		t.Fatalf("alice's request over the total cap: %v, want it dropped", err)
	}
	if n := seenCount(t, bob); n != 1+3+1 {
		t.Errorf("bob remembers %d hashes after alice's request was dropped, want 5 (alice's first, carol's three and her first)", n)
	}
	// Accepted, carol's ciphertexts are remembered as a contact's, all of
	// them, and removing her later leaves them until they expire.
	if _, err := bob.m.Accept(nodetest.Context(t), "carol"); err != nil {
		t.Fatal(err)
	}
	burst(t, carol, 4)
	if n := seenCount(t, bob); n != 5+4 {
		t.Errorf("bob remembers %d hashes after accepted carol's four more, want 9", n)
	}
	if got := texts(t, bob, "carol"); len(got) != 7 {
		t.Errorf("bob keeps %d of carol's messages, want 7: %q", len(got), got)
	}
}
