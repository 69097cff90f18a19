package gossip

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sealpost/sealpost/protocol"
)

// rawPeer speaks gossipsub's wire by hand: it writes whatever RPC a test
// gives it, as no pubsub implementation would send.
type rawPeer struct {
	h host.Host
	s network.Stream
}

func newRawPeer(t *testing.T, to host.Host) *rawPeer {
	t.Helper()
	h := newHost(t)
	// What the node sends is read and dropped, so that its pubsub counts
	// the peer as one of its own.
	h.SetStreamHandler(libp2pproto.ID(protocol.GossipProtocol), func(s network.Stream) {
		io.Copy(io.Discard, s)
		s.Reset()
	})
	connect(t, h, to)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s, err := h.NewStream(ctx, to.ID(), libp2pproto.ID(protocol.GossipProtocol))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Reset() })
	return &rawPeer{h: h, s: s}
}

// send writes rpc as pubsub frames it: a uvarint length and the bytes.
func (r *rawPeer) send(rpc *pubsubpb.RPC) error {
	b, err := proto.Marshal(rpc)
	if err != nil {
		return err
	}
	_, err = r.s.Write(append(binary.AppendUvarint(nil, uint64(len(b))), b...))
	return err
}

// subscriptions are n subscriptions to group topics named after prefix.
func subscriptions(prefix string, n int) []*pubsubpb.RPC_SubOpts {
	out := make([]*pubsubpb.RPC_SubOpts, n)
	for i := range out {
		secret := sha256.Sum256(fmt.Append(nil, prefix, i))
		name, err := protocol.GroupTopic(secret[:protocol.GroupTopicSecretSize])
		if err != nil {
			panic(err)
		}
		out[i] = &pubsubpb.RPC_SubOpts{Subscribe: proto.Bool(true), Topicid: proto.String(name)}
	}
	return out
}

// tracked reports whether the member's pubsub tracks p as subscribed to
// topic.
func tracked(m *member, topic string, p peer.ID) bool {
	return slices.Contains(m.g.ps.ListPeers(topic), p)
}

// TestTopicSpam: a peer announcing more subscriptions than a node joins
// topics, in one RPC or in many, is refused past the limits and counted;
// what it announced within them is tracked, and the members' topic goes
// on.
func TestTopicSpam(t *testing.T) {
	ha, hb := newHost(t), newHost(t)
	a := newMember(t, ha, nil, Options{})
	b := newMember(t, hb, nil, Options{})
	connect(t, ha, hb)
	a.join(t, topicName(7))
	b.join(t, topicName(7))
	settle(t, a, b)
	spam := func() float64 { return value(a.g.met.refusals.WithLabelValues("topic_spam")) }

	x := newRawPeer(t, ha)
	// One RPC over the limit: refused whole.
	over := subscriptions("one rpc ", maxSubscriptionsPerRPC+1)
	if err := x.send(&pubsubpb.RPC{Subscriptions: over}); err != nil {
		t.Fatal(err)
	}
	// Then RPCs within the limit, each of new topics, until the peer
	// announced twice what it may hold.
	var many [][]*pubsubpb.RPC_SubOpts
	for i := range 2 * maxSubscriptionsPerPeer / maxSubscriptionsPerRPC {
		subs := subscriptions(fmt.Sprintf("rpc %d ", i), maxSubscriptionsPerRPC)
		many = append(many, subs)
		if err := x.send(&pubsubpb.RPC{Subscriptions: subs}); err != nil {
			t.Fatal(err)
		}
	}
	first := many[0][0].GetTopicid()
	deadline := time.Now().Add(wait)
	for !tracked(a, first, x.h.ID()) || spam() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("topic_spam %v, first topic tracked %v", spam(), tracked(a, first, x.h.ID()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if tracked(a, over[0].GetTopicid(), x.h.ID()) {
		t.Error("a subscription of the RPC over the limit is tracked")
	}
	last := many[len(many)-1]
	if tracked(a, last[len(last)-1].GetTopicid(), x.h.ID()) {
		t.Error("a subscription past the peer's limit is tracked")
	}
	if n := a.g.subsOf(x.h.ID()); n != maxSubscriptionsPerPeer {
		t.Errorf("%d subscriptions of the peer tracked, limit %d", n, maxSubscriptionsPerPeer)
	}

	// Leaving topics makes room again.
	leave := slices.Clone(many[0])
	for _, s := range leave {
		s.Subscribe = proto.Bool(false)
	}
	if err := x.send(&pubsubpb.RPC{Subscriptions: leave}); err != nil {
		t.Fatal(err)
	}
	again := last[len(last)-1].GetTopicid()
	if err := x.send(&pubsubpb.RPC{Subscriptions: []*pubsubpb.RPC_SubOpts{{Subscribe: proto.Bool(true), Topicid: proto.String(again)}}}); err != nil {
		t.Fatal(err)
	}
	for !tracked(a, again, x.h.ID()) {
		if time.Now().After(deadline) {
			t.Fatal("a subscription within the limit after leaving others is not tracked")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A peer that disconnects is forgotten.
	x.h.Network().ClosePeer(ha.ID())
	for a.g.subsOf(x.h.ID()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions of a peer gone", a.g.subsOf(x.h.ID()))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The members' topic goes on.
	m := groupMessage(t, 42, 100)
	if err := a.t.Publish(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	b.waitForMessage(t, m)
}

// TestOversized: a message over the group message limit, or with a body
// over the group body limit, is dropped before any check and counted; an
// RPC over pubsub's limit is not even read (the stream is reset); the
// members' topic goes on.
func TestOversized(t *testing.T) {
	ha, hb := newHost(t), newHost(t)
	a := newMember(t, ha, nil, Options{})
	b := newMember(t, hb, nil, Options{})
	connect(t, ha, hb)
	topic := topicName(8)
	a.join(t, topic)
	b.join(t, topic)
	settle(t, a, b)
	malformed := func() float64 { return value(a.g.met.drops.WithLabelValues("malformed")) }

	x := newRawPeer(t, ha)
	// A group message (version 1, epoch 3, an application message) whose
	// body is one byte over its limit; then bytes over the message limit.
	bigBody := protowire.AppendTag(nil, 1, protowire.VarintType)
	bigBody = protowire.AppendVarint(bigBody, protocol.Version)
	bigBody = protowire.AppendTag(bigBody, 2, protowire.VarintType)
	bigBody = protowire.AppendVarint(bigBody, 3)
	bigBody = protowire.AppendTag(bigBody, 3, protowire.VarintType)
	bigBody = protowire.AppendVarint(bigBody, uint64(protocol.GroupApplication))
	bigBody = protowire.AppendTag(bigBody, 4, protowire.BytesType)
	bigBody = protowire.AppendBytes(bigBody, make([]byte, protocol.MaxGroupBody+1))
	var m protocol.GroupMessage
	if err := m.Unmarshal(bigBody); !errors.Is(err, protocol.ErrTooLarge) || len(bigBody) > protocol.MaxGroupMessage {
		t.Fatalf("a body over the limit in %d bytes: %v", len(bigBody), err)
	}
	for i, data := range [][]byte{bigBody, make([]byte, protocol.MaxGroupMessage+1)} {
		if err := x.send(&pubsubpb.RPC{Publish: []*pubsubpb.Message{{Data: data, Topic: proto.String(topic)}}}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(wait)
		for malformed() < float64(i+1) {
			if time.Now().After(deadline) {
				t.Fatalf("oversized message %d: malformed %v", i, malformed())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// An RPC over pubsub's limit: the stream is reset unread (maybe
	// while the RPC is still being written).
	err := x.send(&pubsubpb.RPC{Publish: []*pubsubpb.Message{{Data: make([]byte, maxRPC), Topic: proto.String(topic)}}})
	if err == nil {
		x.s.SetReadDeadline(time.Now().Add(wait))
		_, err = x.s.Read(make([]byte, 1))
	}
	var reset *network.StreamError
	if !errors.As(err, &reset) && !errors.Is(err, network.ErrReset) {
		t.Errorf("the stream of an RPC over the limit: %v, want a reset", err)
	}

	// The members' topic goes on; nothing oversized reached them.
	mm := groupMessage(t, 43, 100)
	if err := b.t.Publish(context.Background(), mm); err != nil {
		t.Fatal(err)
	}
	a.waitForMessage(t, mm)
	for _, got := range a.received() {
		if len(got) > protocol.MaxGroupMessage {
			t.Errorf("a message of %d bytes delivered", len(got))
		}
	}
	if got := malformed(); got != 2 {
		t.Errorf("malformed %v, want 2", got)
	}
}
