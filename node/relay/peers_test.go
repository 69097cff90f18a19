package relay_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/protocol"
)

// TestRecentPeers: the relay lists the peers it served on mailbox streams
// by kind of work, and nothing else (not a peer merely connected).
func TestRecentPeers(t *testing.T) {
	r := newRelay(t, testResources())
	owner := r.dial(t)
	m := owner.create()
	tok := owner.token(m, 0, 0)
	sender := r.dial(t)
	env := envelope(m.id, 512, 1)
	sender.checkReceipt(sender.deposit(m.id, tok, env), m.id, env)
	idle := r.dial(t) // opens a stream, sends nothing
	asker := r.dial(t)
	asker.refresh() // a challenge only
	cardTaker := r.dial(t)
	cardTaker.call(&protocol.RelayRequest{Op: protocol.RelayGetCard, Mailbox: m.id, Token: tok}, nil)

	// A peer connected to the relay's host without a mailbox stream is in
	// no list.
	bystander, err := libp2p.New(libp2p.NoListenAddrs, libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	defer bystander.Close()
	if err := bystander.Connect(context.Background(), r.info()); err != nil {
		t.Fatal(err)
	}

	ids := func(ps []relay.SeenPeer) []peer.ID {
		var out []peer.ID
		for _, p := range ps {
			id, err := peer.Decode(p.PeerID)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, id)
		}
		return out
	}
	var got relay.RecentPeers
	nodetest.WaitFor(t, 10*time.Second, "every stream recorded", func() bool {
		got = r.srv.RecentPeers()
		return len(got.Streams) == 5
	})
	streams, owners, depositors := ids(got.Streams), ids(got.Owners), ids(got.Depositors)
	for _, c := range []*client{owner, sender, idle, asker, cardTaker} {
		if !slices.Contains(streams, c.h.ID()) {
			t.Errorf("streams lack %s", c.h.ID())
		}
	}
	if slices.Contains(streams, bystander.ID()) {
		t.Errorf("streams hold %s, which opened none", bystander.ID())
	}
	if !slices.Equal(owners, []peer.ID{owner.h.ID()}) {
		t.Errorf("owners %v, want only %s", owners, owner.h.ID())
	}
	if len(depositors) != 2 || !slices.Contains(depositors, sender.h.ID()) || !slices.Contains(depositors, cardTaker.h.ID()) {
		t.Errorf("depositors %v, want %s and %s", depositors, sender.h.ID(), cardTaker.h.ID())
	}
	if got.Limit != relay.MaxRecentPeers {
		t.Errorf("limit %d", got.Limit)
	}
	for i := 1; i < len(got.Streams); i++ {
		if got.Streams[i].LastSeen.After(got.Streams[i-1].LastSeen) {
			t.Errorf("streams not newest first: %v", got.Streams)
		}
	}
}
