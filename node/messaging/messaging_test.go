package messaging_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

func TestMain(m *testing.M) { nodetest.VerifyTestMain(m) }

func TestTwoNodesExchangeMessages(t *testing.T) {
	mn := nodetest.NewMockNet(t)
	alice := newPeer(t, "alice", onMockNet(mn))
	bob := newPeer(t, "bob", onMockNet(mn))
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
	c, err := bob.m.Contact(nodetest.Context(t), "alice")
	if err != nil {
		t.Fatalf("bob has no contact alice: %v", err)
	}
	if c.State != "accepted" || c.UserID != alice.m.UserID().String() || c.Verified {
		t.Errorf("bob's contact alice: %+v", c)
	}
	// Accepting an accepted contact does nothing.
	if _, err := bob.m.Accept(nodetest.Context(t), alice.m.UserID().String()); err != nil {
		t.Errorf("Accept of an accepted contact: %v", err)
	}

	reply := send(t, bob, "alice", "hello alice")
	wait(t, bob, reply, messaging.StateDelivered)
	conv, err := alice.m.Messages(nodetest.Context(t), "bob", 0)
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
	var ids []protocol.MessageID
	for i := range 20 {
		ids = append(ids, send(t, alice, "bob", fmt.Sprintf("a%d", i)))
		send(t, bob, "alice", fmt.Sprintf("b%d", i))
	}
	wait(t, alice, ids[len(ids)-1], messaging.StateDelivered)
	conv, err = bob.m.Messages(nodetest.Context(t), "alice", 0)
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
	// A window of the conversation is its end.
	last, err := bob.m.Messages(nodetest.Context(t), "alice", 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(last) != 5 {
		t.Fatalf("Messages with limit 5: %d messages", len(last))
	}
	for i, m := range last {
		if want := conv[len(conv)-5+i]; m.ID != want.ID {
			t.Errorf("Messages with limit 5, message %d: %q, want %q", i, m.Text, want.Text)
		}
	}
	// Paging through the inbox gives the whole inbox, in order.
	all := inbox(t, bob)
	var paged []messaging.Message
	cursor := uint64(0)
	for {
		page, next, err := bob.m.Inbox(nodetest.Context(t), cursor, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		cursor = next
	}
	if len(paged) != len(all) || len(all) != 21 {
		t.Fatalf("paged inbox: %d messages, whole inbox %d, want 21", len(paged), len(all))
	}
	for i := range all {
		if paged[i].ID != all[i].ID {
			t.Errorf("paged inbox message %d: %q, want %q", i, paged[i].Text, all[i].Text)
		}
	}
}

func TestSendRefusals(t *testing.T) {
	alice := newPeer(t, "alice", onMockNet(nodetest.NewMockNet(t)))
	if _, err := alice.m.Send(nodetest.Context(t), "nobody", "hi"); !errors.Is(err, messaging.ErrUnknownContact) {
		t.Errorf("Send to an unknown contact: got %v, want ErrUnknownContact", err)
	}
	if _, err := alice.m.Send(nodetest.Context(t), "nobody", ""); !errors.Is(err, messaging.ErrEmptyMessage) {
		t.Errorf("Send of nothing: got %v, want ErrEmptyMessage", err)
	}
	long := make([]byte, messaging.MaxText+1)
	for i := range long {
		long[i] = 'x'
	}
	if _, err := alice.m.Send(nodetest.Context(t), "nobody", string(long)); !errors.Is(err, messaging.ErrTooLong) {
		t.Errorf("Send of a long text: got %v, want ErrTooLong", err)
	}
	inv, err := alice.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Link) > 300 {
		t.Errorf("invite link of %d characters, want at most 300: %s", len(inv.Link), inv.Link)
	}
	if _, err := alice.m.AddContact(nodetest.Context(t), inv.Link, "me"); !errors.Is(err, messaging.ErrInvalidLink) {
		t.Errorf("AddContact of the own invite: got %v, want ErrInvalidLink", err)
	}
	if _, err := alice.m.AddContact(nodetest.Context(t), "sealpost://garbage", "x"); !errors.Is(err, messaging.ErrInvalidLink) {
		t.Errorf("AddContact of a bad link: got %v, want ErrInvalidLink", err)
	}
}

func TestMessageRequest(t *testing.T) {
	alice := newPeer(t, "alice")
	bob := newPeer(t, "bob")
	events := bob.n.Subscribe(nodetest.Context(t))
	inv, err := bob.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	// A revoked invite still leads to the device, but its secret no longer
	// makes alice a contact: she is a stranger.
	if err := bob.m.RevokeInvite(nodetest.Context(t), inv.Link); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.m.AddContact(nodetest.Context(t), inv.Link, "bob"); err != nil {
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
	c, err := bob.m.Contact(nodetest.Context(t), alice.m.UserID().String())
	if err != nil || c.State != "request" {
		t.Fatalf("bob's contact for alice: %+v, %v", c, err)
	}
	if _, err := bob.m.Send(nodetest.Context(t), "alice", "hi"); !errors.Is(err, messaging.ErrNotAccepted) {
		t.Errorf("Send to a request: got %v, want ErrNotAccepted", err)
	}
	// No receipt went back: the message is still only sent.
	conv, err := alice.m.Messages(nodetest.Context(t), "bob", 0)
	if err != nil || len(conv) != 1 || conv[0].State != messaging.StateSent {
		t.Fatalf("alice's conversation before accept: %+v, %v", conv, err)
	}
	if _, err := bob.m.Accept(nodetest.Context(t), "alice"); err != nil {
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
func outboxEntry(t *testing.T, p *tnode, id protocol.MessageID) (store.OutboxEntry, bool) {
	t.Helper()
	var e store.OutboxEntry
	found := false
	err := p.st.View(nodetest.Context(t), func(tx *store.Tx) error {
		var err error
		e, err = tx.Outbox().Get(id)
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
	nodetest.WaitFor(t, 30*time.Second, "the first attempt to fail", func() bool { return attempts() >= 1 })
	e, _ := outboxEntry(t, alice, id)
	if d := e.NextAttempt.Sub(clk.Now()); d < opts.RetryMin/2 || d > opts.RetryMin {
		t.Errorf("first retry in %s, want between %s and %s", d, opts.RetryMin/2, opts.RetryMin)
	}
	// Each step of the clock past the backoff makes one more attempt; the
	// message shows failed after FailAfter attempts and is still retried.
	for n := uint32(2); n <= uint32(opts.FailAfter)+1; n++ {
		clk.Advance(opts.RetryMax)
		nodetest.WaitFor(t, 30*time.Second, fmt.Sprintf("attempt %d", n), func() bool { return attempts() >= n })
	}
	e, _ = outboxEntry(t, alice, id)
	if e.LastError == "" {
		t.Error("the outbox entry has no error after failed attempts")
	}
	conv, err := alice.m.Messages(nodetest.Context(t), "bob", 0)
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

// identityOf returns p's public identity encoding.
func identityOf(t *testing.T, p *tnode) []byte {
	t.Helper()
	var self store.Self
	err := p.st.View(nodetest.Context(t), func(tx *store.Tx) error {
		var err error
		self, err = tx.Self()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.ParsePrivate(self.Identity)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := id.Public().MarshalBinary()
	return b
}

// sessions counts p's sessions with other.
func sessions(t *testing.T, p, other *tnode) int {
	t.Helper()
	return len(sessionRecords(t, p, other))
}

func TestDuplicatesAndReplays(t *testing.T) {
	fast := func(c *node.Config) {
		tcpOnly(c)
		c.Messaging = messaging.Options{RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	}
	alice := newPeer(t, "alice", withConfig(fast))
	bob := newPeer(t, "bob", onDisk(), withConfig(tcpOnly))
	befriend(t, alice, bob)
	// Both first messages carry the PQXDH initial message: bob is down
	// and nothing confirmed the session yet.
	bob.stop()
	id1 := send(t, alice, "bob", "first")
	id2 := send(t, alice, "bob", "second")
	e1, _ := outboxEntry(t, alice, id1)
	var ct1 protocol.Ciphertext
	if err := ct1.Unmarshal(e1.Payload); err != nil || len(ct1.Prekey) == 0 {
		t.Fatalf("first ciphertext: %v, prekey %d bytes", err, len(ct1.Prekey))
	}
	bob.restart()
	wait(t, alice, id1, messaging.StateDelivered)
	wait(t, alice, id2, messaging.StateDelivered)

	from := identityOf(t, alice)
	dev := []byte(alice.n.ID())
	receive := func(cts ...[]byte) []protocol.Code {
		t.Helper()
		var items []messaging.Incoming
		for _, c := range cts {
			items = append(items, messaging.Incoming{Identity: from, Device: dev, Ciphertext: c})
		}
		codes, err := bob.m.Receive(nodetest.Context(t), items)
		if err != nil {
			t.Fatal(err)
		}
		return codes
	}
	encode := func(c protocol.Ciphertext) []byte {
		b, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tampered := ct1
	tampered.Ratchet = append([]byte(nil), ct1.Ratchet...)
	tampered.Ratchet[40] ^= 1 // in the encrypted header
	stripped := protocol.Ciphertext{Ratchet: ct1.Ratchet}

	// The same ciphertext twice (in one batch, and again), and with its
	// initial message stripped: acknowledged, nothing new.
	if codes := receive(e1.Payload, e1.Payload, encode(stripped)); codes[0] != protocol.CodeOK ||
		codes[1] != protocol.CodeOK || codes[2] != protocol.CodeOK {
		t.Errorf("duplicates: codes %v, want ok", codes)
	}
	// The initial message with another ratchet message: refused, and no
	// second session.
	if codes := receive(encode(tampered)); codes[0] == protocol.CodeOK {
		t.Errorf("a forged message in the session: code %v", codes[0])
	}
	if n := sessions(t, bob, alice); n != 1 {
		t.Errorf("bob has %d sessions with alice after the replays, want 1", n)
	}
	if got := inbox(t, bob); len(got) != 2 {
		t.Fatalf("bob's inbox holds %d messages after the replays, want 2", len(got))
	}

	// After the contact and its sessions are removed, a replayed first
	// message creates neither a contact nor a session.
	if err := bob.m.Remove(nodetest.Context(t), "alice"); err != nil {
		t.Fatal(err)
	}
	if codes := receive(e1.Payload); codes[0] != protocol.CodeOK {
		t.Errorf("replayed first message: code %v, want ok (a duplicate)", codes[0])
	}
	if codes := receive(encode(tampered)); codes[0] != protocol.CodeDecryptFailed {
		t.Errorf("replayed initial message with a new ratchet message: code %v, want decrypt_failed", codes[0])
	}
	if n := sessions(t, bob, alice); n != 0 {
		t.Errorf("bob has %d sessions with alice after replays to a removed contact, want 0", n)
	}
	if _, err := bob.m.Contact(nodetest.Context(t), alice.m.UserID().String()); !errors.Is(err, messaging.ErrUnknownContact) {
		t.Errorf("a replay made a contact: %v", err)
	}
	if got := inbox(t, bob); len(got) != 0 {
		t.Errorf("bob's inbox holds %d messages after the contact was removed and the replays, want none", len(got))
	}
}

// activeSession returns the active session p holds with other.
func activeSession(t *testing.T, p, other *tnode) store.SessionID {
	t.Helper()
	var c store.Contact
	err := p.st.View(nodetest.Context(t), func(tx *store.Tx) error {
		var err error
		c, err = tx.Contacts().Get(other.m.UserID())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return c.Session
}

// TestSimultaneousInitiation ports the idea of libsignal's simultaneous
// initiation tests: both users add each other's invites, so each starts a
// session, and both send at once, for several rounds. Both must end in one
// conversation (the same active session) with every message delivered
// once.
func TestSimultaneousInitiation(t *testing.T) {
	mn := nodetest.NewMockNet(t)
	alice := newPeer(t, "alice", onMockNet(mn))
	bob := newPeer(t, "bob", onMockNet(mn))
	invA, err := alice.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	invB, err := bob.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.m.AddContact(nodetest.Context(t), invB.Link, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.m.AddContact(nodetest.Context(t), invA.Link, "alice"); err != nil {
		t.Fatal(err)
	}
	if activeSession(t, alice, bob) == activeSession(t, bob, alice) {
		t.Fatal("both sides started the same session")
	}
	const rounds, perRound = 4, 3
	var all []string
	for r := range rounds {
		var ids [2][]protocol.MessageID
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range perRound {
				r, err := bob.m.Send(nodetest.Context(t), "alice", fmt.Sprintf("b%d.%d", r, i))
				if err != nil {
					t.Errorf("bob: Send: %v", err)
					return
				}
				id, _ := messaging.ParseMessageID(r.ID)
				ids[1] = append(ids[1], id)
			}
		}()
		for i := range perRound {
			ids[0] = append(ids[0], send(t, alice, "bob", fmt.Sprintf("a%d.%d", r, i)))
			all = append(all, fmt.Sprintf("a%d.%d", r, i), fmt.Sprintf("b%d.%d", r, i))
		}
		<-done
		for _, id := range ids[0] {
			wait(t, alice, id, messaging.StateDelivered)
		}
		for _, id := range ids[1] {
			wait(t, bob, id, messaging.StateDelivered)
		}
		if a, b := activeSession(t, alice, bob), activeSession(t, bob, alice); a != b {
			t.Errorf("round %d: alice's active session %x, bob's %x", r, a[:4], b[:4])
		}
	}
	for _, p := range []*tnode{alice, bob} {
		got := map[string]int{}
		for _, m := range inbox(t, p) {
			got[m.Text]++
		}
		for _, text := range all {
			if (text[0] == 'a') == (p == bob) && got[text] != 1 {
				t.Errorf("%s received %q %d times, want once", p.name, text, got[text])
			}
		}
		if len(got) != rounds*perRound {
			t.Errorf("%s received %d distinct messages, want %d", p.name, len(got), rounds*perRound)
		}
	}
	// One more exchange goes through the converged session.
	wait(t, alice, send(t, alice, "bob", "after"), messaging.StateDelivered)
	wait(t, bob, send(t, bob, "alice", "after"), messaging.StateDelivered)
	if a, b := activeSession(t, alice, bob), activeSession(t, bob, alice); a != b {
		t.Errorf("after the rounds: alice's active session %x, bob's %x", a[:4], b[:4])
	}
}

// gate is a connection gater that refuses every connection while closed.
type gate struct{ closed atomic.Bool }

func (g *gate) InterceptPeerDial(peer.ID) bool               { return !g.closed.Load() }
func (g *gate) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return !g.closed.Load() }
func (g *gate) InterceptAccept(network.ConnMultiaddrs) bool  { return !g.closed.Load() }
func (g *gate) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return !g.closed.Load(), 0
}
func (g *gate) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return !g.closed.Load()
}

// TestSimultaneousInitiationPartitioned makes the crossing certain: both
// sides start a session and queue their first messages while they cannot
// reach each other, so each side's first flight arrives after it sent its
// own.
func TestSimultaneousInitiationPartitioned(t *testing.T) {
	var ga, gb gate
	cfg := func(g *gate) func(*node.Config) {
		return func(c *node.Config) {
			tcpOnly(c)
			c.ConnGater = g
			c.Messaging = messaging.Options{RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond}
		}
	}
	alice := newPeer(t, "alice", onDisk(), withConfig(cfg(&ga)))
	bob := newPeer(t, "bob", onDisk(), withConfig(cfg(&gb)))
	invA, err := alice.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	invB, err := bob.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.m.AddContact(nodetest.Context(t), invB.Link, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.m.AddContact(nodetest.Context(t), invA.Link, "alice"); err != nil {
		t.Fatal(err)
	}
	// Restart both behind closed gates: no connection survives.
	ga.closed.Store(true)
	gb.closed.Store(true)
	alice.restart()
	bob.restart()
	for round := range 3 {
		var ids [2][]protocol.MessageID
		for i := range 3 {
			ids[0] = append(ids[0], send(t, alice, "bob", fmt.Sprintf("a%d.%d", round, i)))
			ids[1] = append(ids[1], send(t, bob, "alice", fmt.Sprintf("b%d.%d", round, i)))
		}
		ga.closed.Store(false)
		gb.closed.Store(false)
		for _, id := range ids[0] {
			wait(t, alice, id, messaging.StateDelivered)
		}
		for _, id := range ids[1] {
			wait(t, bob, id, messaging.StateDelivered)
		}
		if a, b := activeSession(t, alice, bob), activeSession(t, bob, alice); a != b {
			t.Errorf("round %d: alice's active session %x, bob's %x", round, a[:4], b[:4])
		}
		if na, nb := sessions(t, alice, bob), sessions(t, bob, alice); round == 0 && (na != 2 || nb != 2) {
			t.Errorf("after the crossing: %d and %d sessions, want both sessions on both sides", na, nb)
		}
		// Partition again for the next round.
		ga.closed.Store(true)
		gb.closed.Store(true)
		alice.restart()
		bob.restart()
	}
	for _, p := range []*tnode{alice, bob} {
		seen := map[string]bool{}
		for _, m := range inbox(t, p) {
			if seen[m.Text] {
				t.Errorf("%s received %q twice", p.name, m.Text)
			}
			seen[m.Text] = true
		}
		if len(seen) != 9 {
			t.Errorf("%s received %d messages, want 9", p.name, len(seen))
		}
	}
}

// TestReceiverRestartMidStream restarts the receiver while messages
// stream in: nothing it acknowledged is lost, nothing is stored twice.
func TestReceiverRestartMidStream(t *testing.T) {
	fast := func(c *node.Config) {
		tcpOnly(c)
		c.Messaging = messaging.Options{RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond}
	}
	alice := newPeer(t, "alice", withConfig(fast))
	bob := newPeer(t, "bob", onDisk(), withConfig(fast))
	befriend(t, alice, bob)
	const n = 300
	ids := make([]protocol.MessageID, 0, n)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range n {
			r, err := alice.m.Send(nodetest.Context(t), "bob", fmt.Sprintf("m%03d", i))
			if err != nil {
				t.Errorf("Send: %v", err)
				return
			}
			id, _ := messaging.ParseMessageID(r.ID)
			ids = append(ids, id)
		}
	}()
	nodetest.WaitFor(t, 30*time.Second, "bob to receive some messages", func() bool { return len(inbox(t, bob)) >= n/4 })
	// What alice saw acknowledged before the restart must survive it.
	var acked []protocol.MessageID
	conv, err := alice.m.Messages(nodetest.Context(t), "bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range conv {
		if m.State != messaging.StateQueued && m.State != messaging.StateFailed {
			id, _ := messaging.ParseMessageID(m.ID)
			acked = append(acked, id)
		}
	}
	bob.restart()
	<-sent
	for _, id := range ids {
		wait(t, alice, id, messaging.StateDelivered)
	}
	got := map[string]int{}
	byID := map[string]bool{}
	for _, m := range inbox(t, bob) {
		got[m.Text]++
		byID[m.ID] = true
	}
	for i := range n {
		if text := fmt.Sprintf("m%03d", i); got[text] != 1 {
			t.Errorf("bob holds %q %d times, want once", text, got[text])
		}
	}
	for _, id := range acked {
		if !byID[id.String()] {
			t.Errorf("message %s was acknowledged before the restart and is gone", id)
		}
	}
	conv, err = bob.m.Messages(nodetest.Context(t), "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for _, m := range conv {
		if m.Seq <= last || m.Gap != 0 {
			t.Fatalf("bob's conversation out of order or with a gap at %q: seq %d after %d, gap %d", m.Text, m.Seq, last, m.Gap)
		}
		last = m.Seq
	}
}

// TestAddContactNames: an invite of another identity under a contact's
// name is a name clash, not an identity change (nothing is marked); an
// invite of a contact again keeps an accepted contact's name and names a
// request.
func TestAddContactNames(t *testing.T) {
	mn := nodetest.NewMockNet(t)
	alice := newPeer(t, "alice", onMockNet(mn))
	bob := newPeer(t, "bob", onMockNet(mn))
	carol := newPeer(t, "carol", onMockNet(mn))
	befriend(t, alice, bob)
	wait(t, alice, send(t, alice, "bob", "before"), messaging.StateDelivered)

	inv, err := carol.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.m.AddContact(nodetest.Context(t), inv.Link, "bob"); !errors.Is(err, messaging.ErrNameTaken) {
		t.Fatalf("AddContact of carol's invite under the name bob: got %v, want ErrNameTaken", err)
	}
	c, err := alice.m.Contact(nodetest.Context(t), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if c.IdentityChanged || c.UserID != bob.m.UserID().String() {
		t.Fatalf("bob after the name clash: %+v", c)
	}
	wait(t, alice, send(t, alice, "bob", "still bob"), messaging.StateDelivered)
	if _, err := alice.m.AddContact(nodetest.Context(t), inv.Link, "carol"); err != nil {
		t.Fatalf("AddContact of carol's invite under her name: %v", err)
	}

	// bob's invite again: under his name, or none, it changes nothing;
	// under another name it is refused, and bob keeps his.
	binv, err := bob.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bob", ""} {
		if c, err := alice.m.AddContact(nodetest.Context(t), binv.Link, name); err != nil || c.Name != "bob" {
			t.Errorf("AddContact of bob's invite again as %q: %+v, %v", name, c, err)
		}
	}
	if _, err := alice.m.AddContact(nodetest.Context(t), binv.Link, "robert"); !errors.Is(err, messaging.ErrContactExists) {
		t.Errorf("AddContact of bob's invite as robert: got %v, want ErrContactExists", err)
	}
	if _, err := alice.m.Contact(nodetest.Context(t), "bob"); err != nil {
		t.Errorf("bob lost his name: %v", err)
	}

	// A request is accepted, and named, by adding its invite.
	dave := newPeer(t, "dave", onMockNet(mn))
	ainv, err := alice.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.m.RevokeInvite(nodetest.Context(t), ainv.Link); err != nil {
		t.Fatal(err)
	}
	if _, err := dave.m.AddContact(nodetest.Context(t), ainv.Link, "alice"); err != nil {
		t.Fatal(err)
	}
	wait(t, dave, send(t, dave, "alice", "hello"), messaging.StateSent)
	if c, err := alice.m.Contact(nodetest.Context(t), dave.m.UserID().String()); err != nil || c.State != "request" {
		t.Fatalf("alice's contact for dave after his message: %+v, %v; want a request", c, err)
	}
	dinv, err := dave.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := alice.m.AddContact(nodetest.Context(t), dinv.Link, "david"); err != nil || c.Name != "david" || c.State != "accepted" {
		t.Errorf("AddContact of a request's invite as david: %+v, %v", c, err)
	}
}

// TestRemovedContactWritesAgain: bob removes alice (and their sessions);
// alice's next message cannot be decrypted there, so alice's node drops
// the session, makes a new one from bob's bundle, and encrypts the
// message again: it arrives, as a message request.
func TestRemovedContactWritesAgain(t *testing.T) {
	fast := func(c *node.Config) {
		c.Messaging = messaging.Options{RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond}
	}
	alice := newPeer(t, "alice", withConfig(fast))
	bob := newPeer(t, "bob", withConfig(fast))
	befriend(t, alice, bob)
	wait(t, alice, send(t, alice, "bob", "one"), messaging.StateDelivered)
	wait(t, bob, send(t, bob, "alice", "two"), messaging.StateDelivered)
	if err := bob.m.Remove(nodetest.Context(t), "alice"); err != nil {
		t.Fatal(err)
	}
	// The conversation went with the contact.
	if got := inbox(t, bob); len(got) != 0 {
		t.Errorf("bob's inbox after he removed alice: %+v, want nothing", got)
	}
	var left int
	if err := bob.st.View(nodetest.Context(t), func(tx *store.Tx) error {
		msgs, err := tx.Messages().Oldest(alice.m.UserID(), 0, 0)
		left = len(msgs)
		return err
	}); err != nil || left != 0 {
		t.Errorf("bob's store holds %d messages with alice after he removed her (%v), want none", left, err)
	}
	id := send(t, alice, "bob", "are you there?")
	nodetest.WaitFor(t, 30*time.Second, "the message to arrive as a request", func() bool {
		for _, m := range inbox(t, bob) {
			if m.Text == "are you there?" {
				return m.Request
			}
		}
		return false
	})
	if _, err := bob.m.Accept(nodetest.Context(t), alice.m.UserID().String()); err != nil {
		t.Fatal(err)
	}
	wait(t, alice, id, messaging.StateDelivered)
	if got := texts(t, bob, alice.m.UserID().String()); !slices.Equal(got, []string{"are you there?"}) {
		t.Errorf("bob's conversation with alice after she wrote again: %q, want only the new message", got)
	}
}

// TestIdentityChangeOnKnownDevice: a first message from a known device
// under another identity key is refused (the sender keeps it) and marks
// the contact; once the user verifies the new key, the message arrives.
func TestIdentityChangeOnKnownDevice(t *testing.T) {
	fast := func(c *node.Config) {
		c.Messaging = messaging.Options{RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond}
	}
	alice := newPeer(t, "alice", withConfig(fast))
	bob := newPeer(t, "bob", onDisk(), withConfig(fast))
	befriend(t, alice, bob)
	wait(t, alice, send(t, alice, "bob", "hello"), messaging.StateDelivered)

	// bob's device comes back with a new identity: the same libp2p key
	// and addresses, a new identity key and device record.
	var self store.Self
	if err := bob.st.View(nodetest.Context(t), func(tx *store.Tx) error {
		var err error
		self, err = tx.Self()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	bob.stop()
	key, err := crypto.UnmarshalPrivateKey(self.DeviceKey)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := key.Raw()
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := peer.IDFromPrivateKey(key)
	rec, err := identity.NewDeviceRecord(id, ed25519.PrivateKey(raw), []byte(pid), time.Now(), 1)
	if err != nil {
		t.Fatal(err)
	}
	bob2 := &tnode{t: t, name: "bob", st: store.NewMemory(), listen: bob.listen, mod: fast}
	self.Identity, _ = id.MarshalBinary()
	self.DeviceRecord, _ = rec.MarshalBinary()
	self.Card = nil
	if err := bob2.st.Update(nodetest.Context(t), func(tx *store.Tx) error { return tx.PutSelf(self) }); err != nil {
		t.Fatal(err)
	}
	bob2.start()
	t.Cleanup(bob2.close)
	if bob2.n.ID() != bob.n.ID() {
		t.Fatal("the new identity runs on another device")
	}
	events := alice.n.Subscribe(nodetest.Context(t))
	befriend(t, bob2, alice)
	mid := send(t, bob2, "alice", "it is me, with a new key")
	for e := range events {
		if e.Type == messaging.EventIdentityChanged {
			break
		}
	}
	c, err := alice.m.Contact(nodetest.Context(t), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if !c.IdentityChanged || c.PendingUserID != bob2.m.UserID().String() {
		t.Fatalf("alice's contact bob: %+v", c)
	}
	for _, m := range inbox(t, alice) {
		if m.Text == "it is me, with a new key" {
			t.Fatal("a message of the changed identity was committed before the user verified it")
		}
	}
	if _, err := alice.m.Verify(nodetest.Context(t), "bob", ""); err != nil {
		t.Fatal(err)
	}
	wait(t, bob2, mid, messaging.StateDelivered)
	conv, err := alice.m.Messages(nodetest.Context(t), "bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(conv) != 2 || conv[1].Text != "it is me, with a new key" || conv[1].From != bob2.m.UserID().String() {
		t.Errorf("alice's conversation after the verification: %+v", conv)
	}
}

// TestLargeMessages sends many texts of the largest size at once between
// badger stores: batches stay inside what one transaction may hold.
func TestLargeMessages(t *testing.T) {
	alice := newPeer(t, "alice", onDisk(), withConfig(tcpOnly))
	bob := newPeer(t, "bob", onDisk(), withConfig(tcpOnly))
	befriend(t, alice, bob)
	const n = 60
	ids := make(chan protocol.MessageID, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			text := strings.Repeat(string(rune('a'+i%26)), messaging.MaxText)
			r, err := alice.m.Send(nodetest.Context(t), "bob", text)
			if err != nil {
				t.Errorf("Send: %v", err)
				return
			}
			id, _ := messaging.ParseMessageID(r.ID)
			ids <- id
		}()
	}
	wg.Wait()
	close(ids)
	for id := range ids {
		wait(t, alice, id, messaging.StateDelivered)
	}
	got := inbox(t, bob)
	if len(got) != n {
		t.Fatalf("bob received %d messages, want %d", len(got), n)
	}
	for _, m := range got {
		if len(m.Text) != messaging.MaxText {
			t.Errorf("a message of %d bytes, want %d", len(m.Text), messaging.MaxText)
		}
	}
}

// TestInviteAcrossRotation: an invite keeps working after the signed
// prekey it pins was rotated, and expires (with a clear error) once the
// pinned version is too old.
func TestInviteAcrossRotation(t *testing.T) {
	clk := newFakeClock()
	shared := withConfig(func(c *node.Config) { c.Clock = clk })
	mn := nodetest.NewMockNet(t)
	bob := newPeer(t, "bob", onMockNet(mn), shared)
	inv, err := bob.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	signed := func() int {
		n := 0
		err := bob.st.View(nodetest.Context(t), func(tx *store.Tx) error {
			var err error
			n, err = tx.Prekeys().Count(store.PrekeySigned, store.PrekeyAvailable)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	clk.Advance(8 * 24 * time.Hour)
	nodetest.WaitFor(t, 30*time.Second, "the weekly rotation", func() bool { return signed() == 2 })
	alice := newPeer(t, "alice", onMockNet(mn), shared)
	if _, err := alice.m.AddContact(nodetest.Context(t), inv.Link, "bob"); err != nil {
		t.Fatalf("AddContact with an invite made before the rotation: %v", err)
	}
	wait(t, alice, send(t, alice, "bob", "hi"), messaging.StateDelivered)
	if c, err := bob.m.Contact(nodetest.Context(t), "alice"); err != nil || c.State != "accepted" {
		t.Errorf("bob's contact alice: %+v, %v", c, err)
	}

	clk.Advance(23 * 24 * time.Hour) // version 1 is 31 days old
	carol := newPeer(t, "carol", onMockNet(mn), shared)
	if _, err := carol.m.AddContact(nodetest.Context(t), inv.Link, "bob"); !errors.Is(err, messaging.ErrInviteExpired) {
		t.Errorf("AddContact with an invite past its bundle's age: got %v, want ErrInviteExpired", err)
	}
	fresh, err := bob.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.m.AddContact(nodetest.Context(t), fresh.Link, "bob"); err != nil {
		t.Errorf("AddContact with a new invite: %v", err)
	}
}
