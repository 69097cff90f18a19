package messaging_test

import (
	"context"
	"testing"
	"time"

	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/crypto/prekey"
	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// askBundle sends one bundle request with pin (zero: none) from a's host
// and returns the response's code and, if it is ok, the bundle.
func (a *attacker) askBundle(pin protocol.BundlePin) (protocol.Code, *prekey.Bundle) {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := a.h.NewStream(ctx, a.target, libp2pproto.ID(protocol.BundleProtocol))
	if err != nil {
		a.t.Fatalf("open bundle stream: %v", err)
	}
	defer s.Reset()
	s.SetDeadline(time.Now().Add(20 * time.Second))
	if err := protocol.WriteFrame(s, &protocol.BundleRequest{Pin: pin}); err != nil {
		a.t.Fatalf("bundle request: %v", err)
	}
	s.CloseWrite()
	var resp protocol.BundleResponse
	if err := protocol.NewFrameReader(s, protocol.MaxBundleFrame).Read(&resp); err != nil {
		a.t.Fatalf("bundle response: %v", err)
	}
	if resp.Code != protocol.CodeOK {
		return resp.Code, nil
	}
	b, err := prekey.ParseBundle(resp.Bundle)
	if err != nil {
		a.t.Fatalf("served bundle: %v", err)
	}
	return resp.Code, b
}

// availableOneTime is how many one-time prekeys p may still hand out.
func availableOneTime(t *testing.T, p *tnode) int {
	t.Helper()
	var n int
	if err := p.st.View(nodetest.Context(t), func(tx *store.Tx) error {
		var err error
		n, err = tx.Prekeys().Count(store.PrekeyOneTime, store.PrekeyAvailable)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStrangerBundleLimit: bundle requests of peers that are not contacts
// share one bucket, so fresh peer IDs, each well within its own per-peer
// bucket, cannot drain the one-time prekeys: beyond the shared bucket a
// request without a pin is refused, and one with a pin (computed from a
// bundle served before) gets the bundle without a one-time prekey. An
// accepted contact's device is not held back by the strangers.
func TestStrangerBundleLimit(t *testing.T) {
	const burst = 4
	clk := newFakeClock() // no refill while the test runs
	bob := newPeer(t, "bob", withConfig(func(c *node.Config) {
		tcpOnly(c)
		c.Clock = clk
		c.Messaging = messaging.Options{StrangerBundleBurst: burst}
	}))
	alice := newPeer(t, "alice", withConfig(tcpOnly))
	// alice's pinned request, before she is bob's contact, takes one.
	befriend(t, alice, bob)
	wait(t, alice, send(t, alice, "bob", "hello"), messaging.StateDelivered)

	before := availableOneTime(t, bob)
	const strangers = 3 * burst
	var (
		served  int
		limited int
		got     *prekey.Bundle
	)
	for range strangers {
		code, b := newAttacker(t, bob).askBundle(protocol.BundlePin{})
		switch code {
		case protocol.CodeOK:
			served++
			if b.OneTime == nil {
				t.Errorf("a stranger within the shared bucket got a bundle without a one-time prekey")
			}
			got = b
		case protocol.CodeRateLimited:
			limited++
		default:
			t.Fatalf("a stranger's bundle request answered %s", code)
		}
	}
	if served == 0 || served > burst-1 || served+limited != strangers {
		t.Fatalf("%d strangers, one request each: %d served, %d rate limited; want 1 to %d served", strangers, served, limited, burst-1)
	}
	if n := availableOneTime(t, bob); before-n != served {
		t.Errorf("bob handed out %d one-time prekeys to %d strangers served, want one each", before-n, served)
	}

	// A pin is the bundle's hash: anyone who got it once can ask with it.
	// Past the shared bucket that gets the bundle, without a one-time
	// prekey.
	h := got.Hash()
	pin, err := protocol.PinOf(h[:])
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		code, b := newAttacker(t, bob).askBundle(pin)
		if code != protocol.CodeOK || b.OneTime != nil || b.Hash() != h {
			t.Fatalf("a stranger's pinned request: %s, one-time prekey %v; want the pinned bundle without one", code, b != nil && b.OneTime != nil)
		}
	}
	if n := availableOneTime(t, bob); before-n != served {
		t.Errorf("bob handed out %d one-time prekeys, want %d: none for pinned requests past the bucket", before-n, served)
	}

	// alice, a contact, lost her session: her new one starts with a
	// one-time prekey from bob's bundle.
	putSessions(t, alice, bob, nil)
	wait(t, alice, send(t, alice, "bob", "again"), messaging.StateDelivered)
	if n := availableOneTime(t, bob); before-n != served+1 {
		t.Errorf("after alice's new session bob handed out %d one-time prekeys, want %d", before-n, served+1)
	}
}
