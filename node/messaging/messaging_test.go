package messaging_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// libp2p and badger keep process-wide workers.
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/badger/v4.(*DB).monitorCache"),
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}

func TestTwoNodesExchangeMessages(t *testing.T) {
	alice := newPeer(t, "alice")
	bob := newPeer(t, "bob")
	befriend(t, alice, bob)

	id := send(t, alice, "bob", "hello bob")
	wait(t, alice, id, messaging.StateDelivered)
	got := inbox(t, bob)
	if len(got) != 1 {
		t.Fatalf("bob's inbox holds %d messages, want 1", len(got))
	}
	m := got[0]
	if m.Text != "hello bob" || m.From != alice.m.UserID().String() || m.FromName != "alice" || m.Seq != 1 || m.Request {
		t.Errorf("bob's inbox: %+v", m)
	}
	c, err := bob.m.Contact(ctxT(t), "alice")
	if err != nil {
		t.Fatalf("bob has no contact alice: %v", err)
	}
	if c.State != "accepted" || c.UserID != alice.m.UserID().String() || c.Verified {
		t.Errorf("bob's contact alice: %+v", c)
	}
	// Accepting an accepted contact does nothing.
	if _, err := bob.m.Accept(ctxT(t), alice.m.UserID().String()); err != nil {
		t.Errorf("Accept of an accepted contact: %v", err)
	}

	reply := send(t, bob, "alice", "hello alice")
	wait(t, bob, reply, messaging.StateDelivered)
	conv, err := alice.m.Messages(ctxT(t), "bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(conv) != 2 || conv[0].Text != "hello bob" || !conv[0].Outgoing || conv[1].Text != "hello alice" ||
		conv[1].From != bob.m.UserID().String() || conv[1].State != messaging.StateRead {
		t.Fatalf("alice's conversation: %+v", conv)
	}
	// Opening the conversation sent a read receipt.
	wait(t, bob, reply, messaging.StateRead)

	// Both ways, several messages, in order.
	var ids []messaging.MessageID
	for i := range 20 {
		ids = append(ids, send(t, alice, "bob", fmt.Sprintf("a%d", i)))
		send(t, bob, "alice", fmt.Sprintf("b%d", i))
	}
	wait(t, alice, ids[len(ids)-1], messaging.StateDelivered)
	conv, err = bob.m.Messages(ctxT(t), "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(conv) != 42 {
		t.Fatalf("bob's conversation has %d messages, want 42", len(conv))
	}
	var seq uint64
	for _, m := range conv {
		if m.Outgoing {
			continue
		}
		if m.Seq <= seq || m.Gap != 0 {
			t.Errorf("received message %q: seq %d after %d, gap %d", m.Text, m.Seq, seq, m.Gap)
		}
		seq = m.Seq
	}
}

func TestSendRefusals(t *testing.T) {
	alice := newPeer(t, "alice")
	if _, err := alice.m.Send(ctxT(t), "nobody", "hi"); !errors.Is(err, messaging.ErrUnknownContact) {
		t.Errorf("Send to an unknown contact: got %v, want ErrUnknownContact", err)
	}
	if _, err := alice.m.Send(ctxT(t), "nobody", ""); !errors.Is(err, messaging.ErrEmptyMessage) {
		t.Errorf("Send of nothing: got %v, want ErrEmptyMessage", err)
	}
	long := make([]byte, messaging.MaxText+1)
	for i := range long {
		long[i] = 'x'
	}
	if _, err := alice.m.Send(ctxT(t), "nobody", string(long)); !errors.Is(err, messaging.ErrTooLong) {
		t.Errorf("Send of a long text: got %v, want ErrTooLong", err)
	}
	inv, err := alice.m.Invite(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Link) > 300 {
		t.Errorf("invite link of %d characters, want at most 300: %s", len(inv.Link), inv.Link)
	}
	if _, err := alice.m.AddContact(ctxT(t), inv.Link, "me"); !errors.Is(err, messaging.ErrInvalidLink) {
		t.Errorf("AddContact of the own invite: got %v, want ErrInvalidLink", err)
	}
	if _, err := alice.m.AddContact(ctxT(t), "sealpost://garbage", "x"); !errors.Is(err, messaging.ErrInvalidLink) {
		t.Errorf("AddContact of a bad link: got %v, want ErrInvalidLink", err)
	}
}

func TestMessageRequest(t *testing.T) {
	alice := newPeer(t, "alice")
	bob := newPeer(t, "bob")
	events := bob.n.Subscribe(ctxT(t))
	inv, err := bob.m.Invite(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	// A revoked invite still leads to the device, but its secret no longer
	// makes alice a contact: she is a stranger.
	if err := bob.m.RevokeInvite(ctxT(t), inv.Link); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.m.AddContact(ctxT(t), inv.Link, "bob"); err != nil {
		t.Fatal(err)
	}
	id := send(t, alice, "bob", "hello, do you remember me?")
	wait(t, alice, id, messaging.StateSent)
	var req messaging.ContactEvent
	for e := range events {
		if e.Type == messaging.EventContactRequest {
			req = e.Data.(messaging.ContactEvent)
			break
		}
	}
	if req.Name != "alice" || req.UserID != alice.m.UserID().String() {
		t.Errorf("contact.request event: %+v", req)
	}
	got := inbox(t, bob)
	if len(got) != 1 || !got[0].Request || got[0].Text != "hello, do you remember me?" {
		t.Fatalf("bob's inbox: %+v", got)
	}
	c, err := bob.m.Contact(ctxT(t), alice.m.UserID().String())
	if err != nil || c.State != "request" {
		t.Fatalf("bob's contact for alice: %+v, %v", c, err)
	}
	if _, err := bob.m.Send(ctxT(t), "alice", "hi"); !errors.Is(err, messaging.ErrNotAccepted) {
		t.Errorf("Send to a request: got %v, want ErrNotAccepted", err)
	}
	// No receipt went back: the message is still only sent.
	conv, err := alice.m.Messages(ctxT(t), "bob", 0)
	if err != nil || len(conv) != 1 || conv[0].State != messaging.StateSent {
		t.Fatalf("alice's conversation before accept: %+v, %v", conv, err)
	}
	if _, err := bob.m.Accept(ctxT(t), "alice"); err != nil {
		t.Fatal(err)
	}
	wait(t, alice, id, messaging.StateDelivered)
	reply := send(t, bob, "alice", "of course")
	wait(t, bob, reply, messaging.StateDelivered)
	if got := inbox(t, alice); len(got) != 1 || got[0].Text != "of course" || got[0].Request {
		t.Errorf("alice's inbox: %+v", got)
	}
}

// outboxEntry reads an outbox entry from p's store.
func outboxEntry(t *testing.T, p *peer, id messaging.MessageID) (store.OutboxEntry, bool) {
	t.Helper()
	var e store.OutboxEntry
	found := false
	err := p.st.View(ctxT(t), func(tx *store.Tx) error {
		var err error
		e, err = tx.Outbox().Get(store.MessageID(id))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return e, found
}

func tcpOnly(c *node.Config) { c.Listen = []string{"/ip4/127.0.0.1/tcp/0"} }

func TestRetryWithBackoff(t *testing.T) {
	clk := newFakeClock()
	opts := messaging.Options{RetryMin: time.Second, RetryMax: 8 * time.Second, FailAfter: 3}
	alice := newPeer(t, "alice", withConfig(func(c *node.Config) {
		tcpOnly(c)
		c.Clock = clk
		c.Messaging = opts
	}))
	bob := newPeer(t, "bob", onDisk(), withConfig(tcpOnly))
	befriend(t, alice, bob)
	wait(t, alice, send(t, alice, "bob", "one"), messaging.StateDelivered)

	bob.stop()
	id := send(t, alice, "bob", "while you were out")
	attempts := func() uint32 {
		e, ok := outboxEntry(t, alice, id)
		if !ok {
			t.Fatal("the message left the outbox while its recipient was down")
		}
		return e.Attempts
	}
	eventually(t, 30*time.Second, "the first attempt to fail", func() bool { return attempts() >= 1 })
	e, _ := outboxEntry(t, alice, id)
	if d := e.NextAttempt.Sub(clk.Now()); d < opts.RetryMin/2 || d > opts.RetryMin {
		t.Errorf("first retry in %s, want between %s and %s", d, opts.RetryMin/2, opts.RetryMin)
	}
	// Each step of the clock past the backoff makes one more attempt; the
	// message shows failed after FailAfter attempts and is still retried.
	for n := uint32(2); n <= uint32(opts.FailAfter)+1; n++ {
		clk.Advance(opts.RetryMax)
		eventually(t, 30*time.Second, fmt.Sprintf("attempt %d", n), func() bool { return attempts() >= n })
	}
	e, _ = outboxEntry(t, alice, id)
	if e.LastError == "" {
		t.Error("the outbox entry has no error after failed attempts")
	}
	conv, err := alice.m.Messages(ctxT(t), "bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	if last := conv[len(conv)-1]; last.State != messaging.StateFailed || last.Reason == "" {
		t.Errorf("after %d failed attempts: state %q reason %q, want failed with a reason", opts.FailAfter, last.State, last.Reason)
	}

	bob.restart()
	clk.Advance(opts.RetryMax)
	wait(t, alice, id, messaging.StateDelivered)
	if got := inbox(t, bob); len(got) != 2 || got[1].Text != "while you were out" {
		t.Errorf("bob's inbox after the retry: %+v", got)
	}
}
