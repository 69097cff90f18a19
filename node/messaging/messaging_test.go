package messaging_test

import (
	"errors"
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/sealpost/sealpost/node/messaging"
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
