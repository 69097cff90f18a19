package messaging_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
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

// TestMarkReadLongConversation marks a conversation with more unread
// messages than one transaction marks: every one of them becomes read, the
// oldest included, and their senders get read receipts.
func TestMarkReadLongConversation(t *testing.T) {
	mn := nodetest.NewMockNet(t)
	alice := newPeer(t, "alice", onMockNet(mn))
	bob := newPeer(t, "bob", onMockNet(mn))
	befriend(t, alice, bob)
	var oldest []protocol.MessageID
	for i := range 3 {
		oldest = append(oldest, send(t, alice, "bob", fmt.Sprintf("old %d", i)))
	}
	for _, id := range oldest {
		wait(t, alice, id, messaging.StateDelivered)
	}
	// 9000 newer unread messages, put in bob's store as his node would
	// have received them (receiving them for real takes much longer).
	const newer = 9000
	uid := alice.m.UserID()
	for start := 0; start < newer; start += 1000 {
		err := bob.st.Update(nodetest.Context(t), func(tx *store.Tx) error {
			for i := start; i < start+1000; i++ {
				m := store.Message{Peer: uid, Seq: uint64(4 + i), Kind: uint8(protocol.KindText),
					Body: []byte(fmt.Sprintf("newer %d", i)), SentAt: time.Now(), ReceivedAt: time.Now(),
					State: store.MessageReceived}
				binary.BigEndian.PutUint64(m.ID[:], uint64(i+1))
				if err := tx.Messages().Put(&m); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if c := conversations(t, bob); len(c) != 1 || c[0].Unread != messaging.MaxUnread {
		t.Fatalf("bob's conversations: %+v, want one with %d unread", c, messaging.MaxUnread)
	}
	if err := bob.m.MarkRead(nodetest.Context(t), "alice"); err != nil {
		t.Fatal(err)
	}
	for _, id := range oldest {
		wait(t, alice, id, messaging.StateRead)
	}
	if c := conversations(t, bob); c[0].Unread != 0 {
		t.Errorf("after MarkRead, %d unread", c[0].Unread)
	}
	unread := 0
	err := bob.st.View(nodetest.Context(t), func(tx *store.Tx) error {
		all, err := tx.Messages().List(uid, 0, 0)
		for _, m := range all {
			if !m.Outgoing && m.State != store.MessageRead {
				unread++
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if unread != 0 {
		t.Errorf("after MarkRead, %d of bob's messages from alice are not read", unread)
	}
}
