package node

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
)

// countingStream counts the streams a WrapStream hook saw, by protocol.
type countingStream struct {
	network.Stream
}

func TestWrapStreamSeesMessagingStreams(t *testing.T) {
	nodetest.CheckLeaks(t)
	var wrapped atomic.Int32
	wrap := func(s network.Stream) network.Stream {
		wrapped.Add(1)
		return countingStream{s}
	}
	a := newTestNode(t, func(c *Config) { c.WrapStream = wrap })
	defer a.Close()
	b := newTestNode(t, nil)
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	inv, err := b.Messaging().Invite(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// AddContact fetches b's bundle on a stream a opens.
	if _, err := a.Messaging().AddContact(ctx, inv.Link, "b"); err != nil {
		t.Fatal(err)
	}
	if wrapped.Load() == 0 {
		t.Fatal("WrapStream was not called for the bundle stream")
	}
	before := wrapped.Load()
	// A message from b arrives on a stream a accepts.
	r, err := a.Messaging().Send(ctx, "b", "hello")
	if err != nil {
		t.Fatal(err)
	}
	id, _ := messaging.ParseMessageID(r.ID)
	if _, err := a.Messaging().WaitState(ctx, id, messaging.StateDelivered); err != nil {
		t.Fatal(err)
	}
	if wrapped.Load() == before {
		t.Fatal("WrapStream was not called for the message stream")
	}
}

func TestDisconnect(t *testing.T) {
	nodetest.CheckLeaks(t)
	a := newTestNode(t, nil)
	defer a.Close()
	b := newTestNode(t, nil)
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.Info().Addrs[0]); err != nil {
		t.Fatal(err)
	}
	if !hasPeer(a, b.Info().PeerID) {
		t.Fatal("not connected")
	}
	// Disconnect ends the connections open when it is called; either side
	// may connect again at once (the DHT does, to a peer in its table), so
	// the check is on those connections, not on the peer list afterwards.
	open := a.host.Network().ConnsToPeer(b.ID())
	if err := a.Disconnect(b.ID()); err != nil {
		t.Fatal(err)
	}
	for _, c := range open {
		if !c.IsClosed() {
			t.Errorf("connection %s still open after Disconnect", c.ID())
		}
	}
}
