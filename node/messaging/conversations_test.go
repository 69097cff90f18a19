package messaging_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
)

// TestConversations checks the list of conversations (newest first, with
// the last message and the unread count), MarkRead, and paging back
// through a conversation with MessagesBefore.
func TestConversations(t *testing.T) {
	alice := newPeer(t, "alice")
	bob := newPeer(t, "bob")
	carol := newPeer(t, "carol")
	befriend(t, alice, bob)
	befriend(t, alice, carol)
	wait(t, alice, send(t, alice, "bob", "hi bob"), messaging.StateDelivered)
	wait(t, alice, send(t, alice, "carol", "hi carol"), messaging.StateDelivered)

	var fromBob []protocol.MessageID
	for i := range 3 {
		fromBob = append(fromBob, send(t, bob, "alice", fmt.Sprintf("bob %d", i)))
	}
	for _, id := range fromBob {
		wait(t, bob, id, messaging.StateDelivered)
	}
	wait(t, carol, send(t, carol, "alice", "carol 0"), messaging.StateDelivered)

	convs := conversations(t, alice)
	if len(convs) != 2 {
		t.Fatalf("alice has %d conversations, want 2: %+v", len(convs), convs)
	}
	if c := convs[0]; c.Name != "carol" || c.Kind != messaging.ConversationContact || c.ID != carol.m.UserID().String() ||
		c.Unread != 1 || c.Last == nil || c.Last.Text != "carol 0" || c.Contact == nil || c.Contact.Name != "carol" {
		t.Errorf("first conversation: %+v, want carol's with 1 unread and her message last", c)
	}
	if c := convs[1]; c.Name != "bob" || c.Unread != 3 || c.Last == nil || c.Last.Text != "bob 2" {
		t.Errorf("second conversation: %+v, want bob's with 3 unread", c)
	}

	// Page reads without marking anything read.
	page, err := alice.m.Page(nodetest.Context(t), "bob", 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || page[1].Text != "bob 2" || page[1].State != messaging.StateReceived {
		t.Errorf("Page: %+v, want bob's last two messages, received", page)
	}
	if c := conversations(t, alice)[1]; c.Name != "bob" || c.Unread != 3 {
		t.Errorf("after Page, bob's conversation: %+v, want 3 unread still", c)
	}
	// Marking a conversation read sends the read receipts and clears its count.
	if err := alice.m.MarkRead(nodetest.Context(t), "bob"); err != nil {
		t.Fatal(err)
	}
	for _, id := range fromBob {
		wait(t, bob, id, messaging.StateRead)
	}
	if err := alice.m.MarkRead(nodetest.Context(t), "nobody"); !errors.Is(err, messaging.ErrUnknownContact) {
		t.Errorf("MarkRead of an unknown contact: %v, want ErrUnknownContact", err)
	}
	// Sending moves a conversation to the top.
	send(t, alice, "bob", "bob again")
	convs = conversations(t, alice)
	if convs[0].Name != "bob" || convs[0].Unread != 0 || convs[0].Last.Text != "bob again" || !convs[0].Last.Outgoing {
		t.Errorf("after sending to bob, first conversation: %+v", convs[0])
	}
	if convs[1].Name != "carol" || convs[1].Unread != 1 {
		t.Errorf("after sending to bob, second conversation: %+v", convs[1])
	}

	// Pages back through the conversation give it whole, in order.
	all, err := alice.m.Messages(nodetest.Context(t), "bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("alice's conversation with bob has %d messages, want 5", len(all))
	}
	var paged []messaging.Message
	before := uint64(0)
	for range len(all) + 1 {
		page, err := alice.m.MessagesBefore(nodetest.Context(t), "bob", before, 2)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(page, paged...)
		if len(page) < 2 {
			break
		}
		before = page[0].Cursor
	}
	if len(paged) != len(all) {
		t.Fatalf("paging gave %d messages, want %d", len(paged), len(all))
	}
	for i := range all {
		if paged[i].ID != all[i].ID {
			t.Errorf("paged message %d: %q, want %q", i, paged[i].Text, all[i].Text)
		}
	}
}

func conversations(t *testing.T, p *tnode) []messaging.Conversation {
	t.Helper()
	convs, err := p.m.Conversations(nodetest.Context(t))
	if err != nil {
		t.Fatalf("%s: Conversations: %v", p.name, err)
	}
	return convs
}
