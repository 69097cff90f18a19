package messaging_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
)

// startRelay runs a relay server on a loopback host with an in-memory
// store and returns its host and address with /p2p/.
func startRelay(t testing.TB) (host.Host, string) {
	t.Helper()
	r := nodetest.StartRelay(t, nodetest.RelayOptions{})
	return r.Host, r.Addr
}

// TestRelayOfflineDelivery: the recipient adds a relay, invites the
// sender and goes offline; the sender's messages are sent (custody
// receipts); the recipient comes back, fetches them in order, once, and
// the sender learns they were delivered.
func TestRelayOfflineDelivery(t *testing.T) {
	rh, raddr := startRelay(t)
	s := newPeer(t, "sam")
	r := newPeer(t, "rita", onDisk())
	if _, err := r.m.AddRelay(nodetest.Context(t), raddr); err != nil {
		t.Fatalf("AddRelay: %v", err)
	}
	if _, err := r.m.AddRelay(nodetest.Context(t), raddr); err == nil {
		t.Error("adding the same relay twice succeeded")
	}
	befriend(t, s, r)
	r.stop()

	var ids []protocol.MessageID
	var texts []string
	for i := range 10 {
		texts = append(texts, fmt.Sprintf("offline %d", i))
		ids = append(ids, send(t, s, "rita", texts[i]))
	}
	for _, id := range ids {
		wait(t, s, id, messaging.StateSent)
	}
	// The device never talked to the relay on a mailbox stream: the relay
	// sees only the mailbox clients' keys.
	for _, p := range rh.Network().Peers() {
		if p == s.n.ID() || p == r.n.ID() {
			t.Errorf("the relay is connected to device %s", p)
		}
	}

	st, err := badgerstore.Open(nodetest.Context(t), r.dir, badgerstore.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	r.st = st
	r.start()
	nodetest.WaitFor(t, 20*time.Second, "all messages received", func() bool { return len(inbox(t, r)) >= len(texts) })
	// Once the relay holds nothing, every envelope it had was committed
	// before it was acknowledged, copies included: the inbox is final.
	nodetest.WaitFor(t, 10*time.Second, "the relay emptied", func() bool {
		rs, _ := r.m.Relays(nodetest.Context(t))
		return len(rs) == 1 && rs[0].State == "subscribed" && rs[0].Stored == 0
	})
	got := inbox(t, r)
	var gotTexts []string
	for _, m := range got {
		gotTexts = append(gotTexts, m.Text)
	}
	if !slices.Equal(gotTexts, texts) {
		t.Errorf("received %q, want %q", gotTexts, texts)
	}
	for _, id := range ids {
		wait(t, s, id, messaging.StateDelivered)
	}
	relays, err := r.m.Relays(nodetest.Context(t))
	if err != nil || len(relays) != 1 {
		t.Fatalf("Relays: %v, %v", relays, err)
	}
	if err := r.m.RemoveRelay(nodetest.Context(t), relays[0].ID); err != nil {
		t.Fatalf("RemoveRelay: %v", err)
	}
	if rs, _ := r.m.Relays(nodetest.Context(t)); len(rs) != 0 {
		t.Errorf("after RemoveRelay: %v", rs)
	}
}

// TestRelayFirstContactOffline: the sender adds the recipient while the
// recipient's device is offline: the bundle comes from the invite's card
// blob on the relay, with a one-time prekey the relay hands out.
func TestRelayFirstContactOffline(t *testing.T) {
	_, raddr := startRelay(t)
	s := newPeer(t, "sam")
	r := newPeer(t, "rita", onDisk())
	if _, err := r.m.AddRelay(nodetest.Context(t), raddr); err != nil {
		t.Fatalf("AddRelay: %v", err)
	}
	var before uint64
	nodetest.WaitFor(t, 20*time.Second, "one-time prekeys on the relay", func() bool {
		rs, _ := r.m.Relays(nodetest.Context(t))
		if len(rs) == 1 {
			before = rs[0].Prekeys
		}
		return before > 0
	})
	inv, err := r.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	r.stop()
	if _, err := s.m.AddContact(nodetest.Context(t), inv.Link, "rita"); err != nil {
		t.Fatalf("AddContact with the inviter offline: %v", err)
	}
	id := send(t, s, "rita", "first contact, offline")
	wait(t, s, id, messaging.StateSent)

	st, err := badgerstore.Open(nodetest.Context(t), r.dir, badgerstore.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	r.st = st
	r.start()
	nodetest.WaitFor(t, 20*time.Second, "the message received", func() bool { return len(inbox(t, r)) == 1 })
	if m := inbox(t, r)[0]; m.Text != "first contact, offline" || m.From != s.m.UserID().String() || m.Request {
		t.Errorf("received %+v", m)
	}
	wait(t, s, id, messaging.StateDelivered)
	nodetest.WaitFor(t, 20*time.Second, "the relay's prekey count", func() bool {
		rs, _ := r.m.Relays(nodetest.Context(t))
		return len(rs) == 1 && rs[0].State == "subscribed" && rs[0].Prekeys == before-1
	})
}

// TestRelayTokens: an accepted contact gets a personal token in a card
// update; removing the contact revokes it on the relay.
func TestRelayTokens(t *testing.T) {
	_, raddr := startRelay(t)
	s := newPeer(t, "sam")
	r := newPeer(t, "rita")
	befriend(t, s, r)
	wait(t, s, send(t, s, "rita", "hello"), messaging.StateDelivered)
	// A relay added later reaches the existing contact in a card.
	if _, err := r.m.AddRelay(nodetest.Context(t), raddr); err != nil {
		t.Fatal(err)
	}
	var box protocol.Mailbox
	nodetest.WaitFor(t, 20*time.Second, "sam holds rita's mailbox", func() bool {
		err := s.st.View(nodetest.Context(t), func(tx *store.Tx) error {
			c, err := tx.Contacts().Get(r.m.UserID())
			if err != nil {
				return err
			}
			var card protocol.Card
			if card.Unmarshal(c.Card) == nil && len(card.Mailboxes) == 1 {
				box = card.Mailboxes[0]
			}
			return nil
		})
		return err == nil && len(box.Token) > 0
	})
	mst := store.NewMemory()
	defer mst.Close()
	mb, err := mailbox.New(nodetest.Context(t), mailbox.Config{Store: mst})
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	from, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	deposit := func() ([]mailbox.Result, error) {
		return mb.Deposit(nodetest.Context(t), &box, from.Public(), []byte("x"), [][]byte{[]byte("y")})
	}
	nodetest.WaitFor(t, 20*time.Second, "the token registered", func() bool {
		res, err := deposit()
		return err == nil && res[0].Err == nil
	})
	if err := r.m.Remove(nodetest.Context(t), "sam"); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, 20*time.Second, "the token revoked", func() bool {
		res, err := deposit()
		return err == nil && errors.Is(res[0].Err, protocol.ErrTokenRefused)
	})
}

// TestRelayDepositAgain: a message whose custody receipt runs out before
// it was delivered is deposited again; the recipient takes it once.
func TestRelayDepositAgain(t *testing.T) {
	res := relay.DefaultResources()
	res.TTL = time.Minute
	rl := nodetest.StartRelay(t, nodetest.RelayOptions{Resources: res})
	srv, raddr := rl.Server, rl.Addr
	fc := newFakeClock()
	s := newPeer(t, "sam", withConfig(func(c *node.Config) { c.Clock = fc }))
	r := newPeer(t, "rita", onDisk())
	if _, err := r.m.AddRelay(nodetest.Context(t), raddr); err != nil {
		t.Fatal(err)
	}
	befriend(t, s, r)
	r.stop()
	id := send(t, s, "rita", "kept until delivered")
	wait(t, s, id, messaging.StateSent)
	if n := srv.Stats().Envelopes; n != 1 {
		t.Fatalf("the relay holds %d envelopes, want 1", n)
	}
	// Past half the receipt's time (the relay's TTL is under the clock
	// tolerance): deposited again.
	fc.Advance(40 * time.Second)
	nodetest.WaitFor(t, 20*time.Second, "a second deposit", func() bool { return srv.Stats().Envelopes == 2 })

	st, err := badgerstore.Open(nodetest.Context(t), r.dir, badgerstore.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	r.st = st
	r.start()
	nodetest.WaitFor(t, 20*time.Second, "the message received", func() bool { return len(inbox(t, r)) == 1 })
	nodetest.WaitFor(t, 20*time.Second, "both copies taken", func() bool { return srv.Stats().Envelopes == 0 })
	if got := inbox(t, r); len(got) != 1 {
		t.Errorf("received %d messages, want 1", len(got))
	}
}

// forgetSessions stops p, deletes its sessions with peer (as if it had
// lost them) and starts it again (badger only).
func forgetSessions(t *testing.T, p *tnode, peer identity.UserID) {
	t.Helper()
	p.stop()
	st, err := badgerstore.Open(nodetest.Context(t), p.dir, badgerstore.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(nodetest.Context(t), func(tx *store.Tx) error {
		all, err := tx.Sessions().List(peer)
		if err != nil {
			return err
		}
		if len(all) == 0 {
			return errors.New("no session to forget")
		}
		for _, s := range all {
			if err := tx.Sessions().Delete(s.Peer, s.Device, s.ID); err != nil {
				return err
			}
		}
		c, err := tx.Contacts().Get(peer)
		if err != nil {
			return err
		}
		c.Session = store.SessionID{}
		return tx.Contacts().Put(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	p.st = st
	p.start()
}

// contactMailbox waits until p holds a card of peer that lists a mailbox
// with a prekey key (card version 2) and returns it.
func contactMailbox(t *testing.T, p *tnode, peer identity.UserID) protocol.Mailbox {
	t.Helper()
	var box protocol.Mailbox
	nodetest.WaitFor(t, 20*time.Second, p.name+" holds a mailbox with a prekey key", func() bool {
		err := p.st.View(nodetest.Context(t), func(tx *store.Tx) error {
			c, err := tx.Contacts().Get(peer)
			if err != nil {
				return err
			}
			var card protocol.Card
			if card.Unmarshal(c.Card) == nil && len(card.Mailboxes) == 1 {
				box = card.Mailboxes[0]
			}
			return nil
		})
		return err == nil && !box.PrekeyKey.IsZero()
	})
	return box
}

// TestRelayNewSessionOffline: an accepted contact that lost its sessions
// starts a new one while the other side's device is offline: the bundle
// comes from the bundle blob under its token on the relay, with a one-time
// prekey the relay hands out (the card's prekey key reads both).
func TestRelayNewSessionOffline(t *testing.T) {
	rl := nodetest.StartRelay(t, nodetest.RelayOptions{})
	srv, raddr := rl.Server, rl.Addr
	s := newPeer(t, "sam", onDisk())
	r := newPeer(t, "rita", onDisk())
	if _, err := r.m.AddRelay(nodetest.Context(t), raddr); err != nil {
		t.Fatal(err)
	}
	befriend(t, s, r)
	wait(t, s, send(t, s, "rita", "hello"), messaging.StateDelivered)
	contactMailbox(t, s, r.m.UserID())
	// The invite's card blob and the bundle blob of sam's token.
	nodetest.WaitFor(t, 20*time.Second, "the bundle blob on the relay", func() bool { return srv.Stats().Cards >= 2 })
	var before uint64
	nodetest.WaitFor(t, 20*time.Second, "one-time prekeys on the relay", func() bool {
		before = srv.Stats().Prekeys
		return before > 0
	})
	r.stop()
	forgetSessions(t, s, r.m.UserID())

	id := send(t, s, "rita", "a new session, offline")
	wait(t, s, id, messaging.StateSent)
	if got := srv.Stats().Prekeys; got != before-1 {
		t.Errorf("the relay holds %d one-time prekeys, want %d (one taken)", got, before-1)
	}

	r.restart()
	nodetest.WaitFor(t, 20*time.Second, "the message received", func() bool {
		for _, m := range inbox(t, r) {
			if m.Text == "a new session, offline" {
				return true
			}
		}
		return false
	})
	wait(t, s, id, messaging.StateDelivered)
}

// apartGate is a connection gater that refuses connections with the
// peers it is told to keep apart (as between two devices behind NATs that
// only relays connect).
type apartGate struct {
	mu    sync.Mutex
	apart map[peer.ID]bool
}

func (g *apartGate) keepApart(ids ...peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.apart == nil {
		g.apart = map[peer.ID]bool{}
	}
	for _, id := range ids {
		g.apart[id] = true
	}
}

func (g *apartGate) allowed(p peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.apart[p]
}

func (g *apartGate) InterceptPeerDial(p peer.ID) bool                                { return g.allowed(p) }
func (g *apartGate) InterceptAddrDial(peer.ID, ma.Multiaddr) bool                    { return true }
func (g *apartGate) InterceptAccept(network.ConnMultiaddrs) bool                     { return true }
func (g *apartGate) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
func (g *apartGate) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.allowed(p)
}

// TestRelayUndecryptableRenews: the recipient lost its sessions with the
// sender, whose messages wait on the recipient's relay, and the two
// devices can reach each other only through their relays. The messages
// decrypt nowhere, so the recipient starts a new session (from the
// sender's bundle blob on the sender's relay) and deposits its card in
// it; the sender, seeing the session it had confirmed replaced, encrypts
// them again in the new one. They arrive, once, and the sender learns they
// were delivered.
func TestRelayUndecryptableRenews(t *testing.T) {
	rl := nodetest.StartRelay(t, nodetest.RelayOptions{})
	srv, raddr := rl.Server, rl.Addr
	g := new(apartGate)
	withGate := withConfig(func(c *node.Config) { c.ConnGater = g })
	s := newPeer(t, "sam", onDisk(), withGate)
	r := newPeer(t, "rita", onDisk(), withGate)
	for _, p := range []*tnode{s, r} {
		if _, err := p.m.AddRelay(nodetest.Context(t), raddr); err != nil {
			t.Fatal(err)
		}
	}
	befriend(t, s, r)
	wait(t, s, send(t, s, "rita", "hello"), messaging.StateDelivered)
	contactMailbox(t, s, r.m.UserID())
	contactMailbox(t, r, s.m.UserID())
	// Rita's invite's card blob, and the bundle blobs of the two contacts'
	// tokens.
	nodetest.WaitFor(t, 20*time.Second, "the bundle blobs on the relay", func() bool { return srv.Stats().Cards >= 3 })
	r.stop()
	g.keepApart(s.n.ID(), r.n.ID())
	s.n.Disconnect(r.n.ID())

	var ids []protocol.MessageID
	texts := []string{"lost 1", "lost 2", "lost 3"}
	for _, text := range texts {
		ids = append(ids, send(t, s, "rita", text))
	}
	for _, id := range ids {
		wait(t, s, id, messaging.StateSent)
	}
	forgetSessions(t, r, s.m.UserID())

	for _, id := range ids {
		wait(t, s, id, messaging.StateDelivered)
	}
	n := 0
	for _, m := range inbox(t, r) {
		if slices.Contains(texts, m.Text) {
			n++
		}
	}
	if n != len(texts) {
		t.Errorf("received %d of the messages, want %d once each", n, len(texts))
	}
	for _, p := range s.n.Peers() {
		if p.PeerID == r.n.ID().String() {
			t.Error("the devices are connected")
		}
	}
}

// TestRelayFailAfterRedeposits: a message that relays held for their
// whole TTL again and again without a delivery receipt shows failed, with
// the reason, after Options.FailAfterRedeposits deposits again; it is still
// deposited again, and delivered when the recipient comes back.
func TestRelayFailAfterRedeposits(t *testing.T) {
	rl := nodetest.StartRelay(t, nodetest.RelayOptions{})
	srv, raddr := rl.Server, rl.Addr
	fc := newFakeClock()
	s := newPeer(t, "sam", withConfig(func(c *node.Config) {
		c.Clock = fc
		c.Messaging.FailAfterRedeposits = 2
	}))
	r := newPeer(t, "rita", onDisk())
	if _, err := r.m.AddRelay(nodetest.Context(t), raddr); err != nil {
		t.Fatal(err)
	}
	befriend(t, s, r)
	r.stop()
	id := send(t, s, "rita", "kept until delivered")
	wait(t, s, id, messaging.StateSent)
	if n := srv.Stats().Envelopes; n != 1 {
		t.Fatalf("the relay holds %d envelopes, want 1", n)
	}
	state := func() (string, string) {
		ms, err := s.m.Messages(nodetest.Context(t), "rita", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.ID == id.String() {
				return m.State, m.Reason
			}
		}
		t.Fatal("the message is gone")
		return "", ""
	}
	// Each round: move the sender's clock to the entry's next attempt (the
	// receipt is about to run out) and wait for the deposit.
	for round := 1; round <= 3; round++ {
		var next time.Time
		err := s.st.View(nodetest.Context(t), func(tx *store.Tx) error {
			e, err := tx.Outbox().Get(id)
			next = e.NextAttempt
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		fc.Advance(next.Sub(fc.Now()) + time.Second)
		nodetest.WaitFor(t, 20*time.Second, fmt.Sprintf("deposit %d", round+1), func() bool { return srv.Stats().Envelopes == uint64(round+1) })
		nodetest.WaitFor(t, 20*time.Second, "the receipt committed", func() bool {
			var e store.OutboxEntry
			s.st.View(nodetest.Context(t), func(tx *store.Tx) error {
				e, _ = tx.Outbox().Get(id)
				return nil
			})
			return e.Redeposits == uint32(round)
		})
		st, why := state()
		switch {
		case round < 2 && st != messaging.StateSent:
			t.Errorf("after %d deposits again: %s (%s), want sent", round, st, why)
		case round >= 2 && (st != messaging.StateFailed || !strings.Contains(why, "no delivery receipt")):
			t.Errorf("after %d deposits again: %s (%q), want failed with the reason", round, st, why)
		}
	}

	r.restart()
	wait(t, s, id, messaging.StateDelivered)
	if got := inbox(t, r); len(got) != 1 || got[0].Text != "kept until delivered" {
		t.Errorf("received %+v, want the message once", got)
	}
}
