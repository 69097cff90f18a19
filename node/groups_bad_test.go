package node

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/crypto/mls"
	"github.com/sealpost/sealpost/node/grouprelay"
	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
)

// TestMisorderedLogCounted: a home relay that serves a member the log in
// another order than it was appended (the newest of 131 messages first)
// makes it lose the oldest: MLS gave up their keys when the newest moved
// their sender's ratchet more than its window past them. Each message
// lost that way is counted as dropped{reason="evicted"}, none as a
// duplicate, and the member reads every other one.
func TestMisorderedLogCounted(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	logs := newGroupLogs(t)
	r := newTestNode(t, func(c *Config) { c.RelayService = true })
	p := newLogProxy(t, r)
	boot := []string{r.Info().Addrs[0]}
	alog, mlog := logs.logger(), logs.logger()
	a := newRestartable(t, func(c *Config) {
		c.Bootstrap = boot
		c.Logger = alog
	})
	m := newRestartable(t, func(c *Config) {
		c.Bootstrap = boot
		c.Logger = mlog
		c.Groups.FetchGrace = 100 * time.Millisecond
	})
	inv, err := m.node.Messaging().Invite(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.node.Messaging().AddContact(ctx, inv.Link, "m"); err != nil {
		t.Fatal(err)
	}
	info, err := a.node.Groups().Create(ctx, "misordered", []string{p.addr()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.node.Groups().Add(ctx, info.ID, []string{"m"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ctx, info.ID, 2, a.node, m.node)
	m.stop()
	// a starts again as well. m left the topic as it stopped (a PRUNE):
	// a's gossipsub would not take m back into its mesh for a minute, and
	// would announce to m (IHAVE) what it published within its last
	// heartbeat; m, back that soon, would ask for those messages and read
	// them from the topic, before the log or after it. A fresh a takes m
	// into its mesh at its first heartbeat, and gossips nothing to it.
	a.stop()
	a.start()

	const n = misorderMin + 1
	var ids []protocol.MessageID
	for i := range n {
		s, err := a.node.Groups().Send(ctx, info.ID, fmt.Sprint("text ", i))
		if err != nil {
			t.Fatal(err)
		}
		id, _ := groups.ParseMessageID(s.ID)
		ids = append(ids, id)
	}
	for _, id := range ids {
		if _, err := a.node.Groups().WaitState(ctx, id, groups.StateSent); err != nil {
			t.Fatal(err)
		}
	}
	p.misorder.Store(true)
	m.start()
	// Every message is read or counted lost (the log may hold more
	// entries than messages: a retried append stored twice is the same
	// message in two ciphertexts).
	var got int
	var lost, dup float64
	nodetest.WaitFor(t, 2*time.Minute, "m reads the log", func() bool {
		got = len(texts(t, ctx, m.node, info.ID))
		lost = labelled(t, m.node, "sealpost_groups_dropped_total", "reason", "evicted")
		dup = counter(t, m.node, "sealpost_groups_duplicates_total")
		return !p.misorder.Load() && float64(got)+lost+dup >= n
	})
	t.Logf("m read %d of %d messages; %v lost, counted as evicted; %v duplicates", got, n, lost, dup)
	if lost == 0 {
		t.Error("no message counted as evicted")
	}
	if dup != 0 {
		t.Errorf("%v duplicates counted: messages lost look like copies", dup)
	}
}

// impostor is a raw gossipsub peer on the device key of a member whose
// node was closed: to the others it is that member's device, so what it
// publishes on the group's topic passes the membership filter and meets
// the group's own checks. It also learns the topics the others announce.
type impostor struct {
	h  host.Host
	ps *pubsub.PubSub

	mu     sync.Mutex
	topics map[string]map[peer.ID]bool // announced subscriptions
}

// newImpostor closes n and starts a raw gossipsub on its device key
// (a host of a fresh key when n is nil: an outsider), connected to peers.
func newImpostor(t *testing.T, n *Node, peers ...*Node) *impostor {
	t.Helper()
	opts := []libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay()}
	if n != nil {
		key := n.host.Peerstore().PrivKey(n.ID())
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		opts = append(opts, libp2p.Identity(key))
	} else {
		opts = append(opts, libp2p.Identity(nodetest.Key(t)))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	im := &impostor{h: h, topics: map[string]map[peer.ID]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	im.ps, err = pubsub.NewGossipSub(ctx, h,
		pubsub.WithGossipSubProtocols([]libp2pproto.ID{protocol.GossipProtocol}, func(f pubsub.GossipSubFeature, _ libp2pproto.ID) bool {
			return f == pubsub.GossipSubFeatureMesh
		}),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pubsubpb.Message) string { h := sha256.Sum256(m.GetData()); return string(h[:]) }),
		pubsub.WithAppSpecificRpcInspector(func(from peer.ID, rpc *pubsub.RPC) error {
			im.mu.Lock()
			defer im.mu.Unlock()
			for _, s := range rpc.GetSubscriptions() {
				if im.topics[s.GetTopicid()] == nil {
					im.topics[s.GetTopicid()] = map[peer.ID]bool{}
				}
				im.topics[s.GetTopicid()][from] = s.GetSubscribe()
			}
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		err := h.Connect(cctx, peer.AddrInfo{ID: p.ID(), Addrs: p.host.Addrs()})
		ccancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	return im
}

// topic waits for the one topic every node in peers announced.
func (im *impostor) topic(t *testing.T, peers ...*Node) string {
	t.Helper()
	var topic string
	nodetest.WaitFor(t, time.Minute, "the group's topic announced", func() bool {
		im.mu.Lock()
		defer im.mu.Unlock()
		for name, subs := range im.topics {
			if !strings.HasPrefix(name, protocol.GroupTopicPrefix) {
				continue
			}
			all := true
			for _, p := range peers {
				all = all && subs[p.ID()]
			}
			if all {
				topic = name
				return true
			}
		}
		return false
	})
	return topic
}

// sum adds a labelled counter over nodes.
func sum(t *testing.T, name, label, value string, nodes ...*Node) float64 {
	var s float64
	for _, n := range nodes {
		s += labelled(t, n, name, label, value)
	}
	return s
}

// TestGroupBadInput: members' devices and an outsider publish bad input
// on a group's real topic (real hosts, a raw gossipsub on the device key
// of two members whose nodes were closed): a replay, a ciphertext whose
// sender data was tampered with, a commit (commits travel only through
// the log), an application message over its size, a header that names
// another epoch, a body that is no MLS message, and an outsider's
// message. Each is dropped, before any decryption where the clear header
// tells, and counted under its reason; the group goes on: the members
// still exchange messages.
func TestGroupBadInput(t *testing.T) {
	nodetest.CheckLeaks(t)
	gn := newGroupNet(t, 5)
	a, b, c, d, e := gn.nodes[0], gn.nodes[1], gn.nodes[2], gn.nodes[3], gn.nodes[4]
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	info := gn.trio(t, ctx, "bad input")
	befriend(t, ctx, a, d, "d")
	befriend(t, ctx, a, e, "e")
	if _, err := a.Groups().Add(ctx, info.ID, []string{"d", "e"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ctx, info.ID, 5, a, b, c, d, e)
	honest := []*Node{a, b, c}
	dm := newImpostor(t, d, honest...)
	em := newImpostor(t, e, honest...)
	outsider := newImpostor(t, nil, honest...)
	topic := dm.topic(t, honest...)
	// join joins the topic and waits until the impostor counts every
	// honest member as its peer there: what it publishes then goes to
	// each of them directly (the honest ones forward none of it).
	join := func(im *impostor) *pubsub.Topic {
		t.Helper()
		tp, err := im.ps.Join(topic)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tp.Close() })
		nodetest.WaitFor(t, time.Minute, "the members as topic peers", func() bool {
			peers := tp.ListPeers()
			for _, n := range honest {
				if !slices.Contains(peers, n.ID()) {
					return false
				}
			}
			return true
		})
		return tp
	}
	dt, et, ot := join(dm), join(em), join(outsider)
	sub, err := dt.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()

	// A message of a's, as the topic carries it.
	var m protocol.GroupMessage
	for i := 0; m.Body == nil; i++ {
		if i == 60 {
			t.Fatal("the impostor received no message of a's")
		}
		sendSent(t, ctx, a, info.ID, fmt.Sprint("before ", i))
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		msg, err := sub.Next(rctx)
		rcancel()
		if err == nil && m.Unmarshal(msg.GetData()) != nil {
			t.Fatal("a's message does not decode")
		}
	}
	nodetest.WaitFor(t, time.Minute, "b and c read a's message", func() bool {
		return counter(t, b, "sealpost_groups_received_total") > 0 && counter(t, c, "sealpost_groups_received_total") > 0
	})
	variant := func(f func(*protocol.GroupMessage)) []byte {
		v := protocol.GroupMessage{Epoch: m.Epoch, Kind: m.Kind, Body: slices.Clone(m.Body), Seqs: slices.Clone(m.Seqs)}
		f(&v)
		raw, err := v.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	publish := func(tp *pubsub.Topic, raw []byte) {
		t.Helper()
		if err := tp.Publish(ctx, raw); err != nil {
			t.Fatal(err)
		}
	}
	// The offsets of an MLS PrivateMessage: version, wire format, the
	// group ID (32 bytes after a length byte), epoch, content type,
	// empty authenticated data, then the encrypted sender data.
	const contentType, senderData = 2 + 2 + 1 + 32 + 8, 2 + 2 + 1 + 32 + 8 + 1 + 1 + 1
	if h, err := mls.Peek(m.Body); err != nil || h.Kind != mls.KindApplication || m.Body[contentType] != 1 {
		t.Fatalf("a's message: %+v %v", h, err)
	}
	// Each case is counted by the members it reached (at least one: the
	// impostor publishes to those it knows subscribed).
	counted := func(what string, count func() float64, publish func()) {
		t.Helper()
		before := count()
		publish()
		nodetest.WaitFor(t, time.Minute, what, func() bool { return count() > before })
	}
	gossipDrops := func(reason string) func() float64 {
		return func() float64 { return sum(t, "sealpost_gossip_dropped_total", "reason", reason, honest...) }
	}
	groupDrops := func(reason string) func() float64 {
		return func() float64 { return sum(t, "sealpost_groups_dropped_total", "reason", reason, honest...) }
	}
	dups := func() float64 {
		return counter(t, a, "sealpost_groups_duplicates_total") + counter(t, b, "sealpost_groups_duplicates_total") +
			counter(t, c, "sealpost_groups_duplicates_total")
	}

	// The outsider's copy: no member's device forwarded it.
	counted("the outsider's message dropped", gossipDrops("not_member"), func() {
		publish(ot, variant(func(v *protocol.GroupMessage) { v.Seqs = append(v.Seqs, 1) }))
	})
	// A member's replay (other bytes on the wire, the same MLS message):
	// a duplicate, never decrypted again.
	counted("the replay counted as a duplicate", dups, func() {
		publish(dt, variant(func(v *protocol.GroupMessage) { v.Seqs = append(v.Seqs, 0) }))
	})
	// Sender data tampered with: MLS refuses it.
	counted("the tampered message refused", groupDrops("auth"), func() {
		publish(dt, variant(func(v *protocol.GroupMessage) { v.Body[senderData+2] ^= 1 }))
	})
	// A commit on the topic, and an application message over its size:
	// refused by the topic's check (a second rejection leaves the
	// impostor graylisted by the members it reached).
	notMember := groupDrops("not_member")()
	counted("the commit refused", gossipDrops("rejected"), func() {
		publish(dt, variant(func(v *protocol.GroupMessage) { v.Kind, v.Body[contentType] = protocol.GroupCommit, 3 }))
	})
	counted("the oversized message refused", gossipDrops("rejected"), func() {
		publish(dt, variant(func(v *protocol.GroupMessage) { v.Body = append(v.Body, make([]byte, groups.MaxApplicationBody)...) }))
	})
	if got := groupDrops("not_member")(); got != notMember {
		t.Errorf("the commit from the topic reached the groups: not_member %v, was %v", got, notMember)
	}
	// The other member's device: a header of another epoch, and a body
	// that is no MLS message.
	counted("the mismatched epoch refused", gossipDrops("rejected"), func() {
		publish(et, variant(func(v *protocol.GroupMessage) { v.Epoch++ }))
	})
	counted("the non-MLS body refused", gossipDrops("rejected"), func() {
		publish(et, variant(func(v *protocol.GroupMessage) { v.Body = []byte("no MLS message at all") }))
	})

	// The group goes on.
	sendSent(t, ctx, a, info.ID, "after the bad input")
	sendSent(t, ctx, c, info.ID, "c after the bad input")
	nodetest.WaitFor(t, time.Minute, "the members read each other", func() bool {
		return slices.Contains(texts(t, ctx, b, info.ID), "after the bad input") &&
			slices.Contains(texts(t, ctx, b, info.ID), "c after the bad input") &&
			slices.Contains(texts(t, ctx, a, info.ID), "c after the bad input")
	})
	noGroupError(t, ctx, info.ID, honest...)
	for _, n := range honest {
		if g, _ := n.Groups().Show(ctx, info.ID); g.State != "active" {
			t.Errorf("%s: %s", n.Info().UserID, g.State)
		}
	}
}

// TestCommitRate: commits past the home relay's commit rate for the
// group's log are refused there (rate_limited), counted by each
// committer, and retried with backoff: every member follows every epoch,
// none forks, and messages go on.
func TestCommitRate(t *testing.T) {
	nodetest.CheckLeaks(t)
	res := grouprelay.DefaultResources()
	res.CommitBurst, res.CommitRate = 1, 0.5
	r := newTestNode(t, func(c *Config) {
		c.RelayService = true
		c.GroupRelay = res
	})
	gn := &groupNet{relay: r}
	for range 3 {
		gn.nodes = append(gn.nodes, newTestNode(t, func(c *Config) {
			c.Bootstrap = []string{r.Info().Addrs[0]}
			c.Groups.FetchGrace = 100 * time.Millisecond
		}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	info := gn.trio(t, ctx, "commit rate")
	nodes := gn.nodes
	start := epochOf(t, ctx, nodes[0], info.ID)
	// Every member updates its keys at once: three commits (or more: a
	// member's update that lost the race for an epoch is made again)
	// where the log takes one at once and then one every two seconds.
	for _, n := range nodes {
		if _, err := n.Groups().Update(ctx, info.ID); err != nil {
			t.Fatal(err)
		}
	}
	var epoch uint64
	auth := ""
	nodetest.WaitFor(t, 3*time.Minute, "every update committed, the members at one epoch", func() bool {
		auth, epoch = "", 0
		for _, n := range nodes {
			g, err := n.Groups().Show(ctx, info.ID)
			if err != nil || g.Epoch < start+uint64(len(nodes)) || epoch != 0 && g.Epoch != epoch {
				return false
			}
			if auth != "" && g.Authenticator != auth {
				t.Fatal("members disagree at one epoch: a fork")
			}
			epoch, auth = g.Epoch, g.Authenticator
		}
		return true
	})
	limited := sum(t, "sealpost_groups_commits_total", "outcome", "rate_limited", nodes...)
	t.Logf("epoch %d to %d; %v commit appends rate-limited, %v commits refused for a lost race", start, epoch, limited,
		sum(t, "sealpost_groups_commits_total", "outcome", "refused", nodes...))
	if limited == 0 {
		t.Error("no commit counted rate_limited")
	}
	sendSent(t, ctx, nodes[1], info.ID, "after the updates")
	nodetest.WaitFor(t, time.Minute, "a and c read b's message", func() bool {
		return slices.Contains(texts(t, ctx, nodes[0], info.ID), "after the updates") &&
			slices.Contains(texts(t, ctx, nodes[2], info.ID), "after the updates")
	})
	noGroupError(t, ctx, info.ID, nodes...)
}
