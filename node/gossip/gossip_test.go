package gossip

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
)

func TestMain(m *testing.M) { nodetest.VerifyTestMain(m) }

// wait bounds every wait for the network: generous, because the machine
// running the tests may be busy; nothing here is timed.
const wait = 60 * time.Second

func newHost(t *testing.T) host.Host { return nodetest.Host(t) }

// value reads a counter.
func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// testContext is canceled when the test ends (it stops a raw pubsub).
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, a, b host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// member is one host with a Gossip and what it received on one topic.
type member struct {
	h   host.Host
	g   *Gossip
	reg *prometheus.Registry
	t   *Topic

	mu   sync.Mutex
	got  [][]byte
	from []peer.ID
	more chan struct{}
	rpcs []*pubsub.RPC
	// rpcFrom: the peer each of rpcs came from.
	rpcFrom []peer.ID
}

// allow is an Allowed built from a set of peers (nil: everyone).
func allow(ids map[peer.ID]bool) func(string, peer.ID) bool {
	if ids == nil {
		return nil
	}
	return func(_ string, p peer.ID) bool { return ids[p] }
}

func newMember(t *testing.T, h host.Host, allowed func(string, peer.ID) bool, opts Options) *member {
	t.Helper()
	m := &member{h: h, reg: prometheus.NewRegistry(), more: make(chan struct{}, 1)}
	g, err := newGossip(Config{Host: h, Allowed: allowed, Registerer: m.reg, Options: opts}, func(from peer.ID, rpc *pubsub.RPC) {
		m.mu.Lock()
		m.rpcs = append(m.rpcs, rpc)
		m.rpcFrom = append(m.rpcFrom, from)
		m.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	m.g = g
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

func (m *member) join(t *testing.T, topic string) {
	t.Helper()
	tp, err := m.g.Join(topic, func(peer.ID, *protocol.GroupMessage) error { return nil }, func(from peer.ID, gm *protocol.GroupMessage, raw []byte) {
		m.mu.Lock()
		m.got = append(m.got, append([]byte(nil), raw...))
		m.from = append(m.from, from)
		m.mu.Unlock()
		select {
		case m.more <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	m.t = tp
}

func (m *member) received() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]byte(nil), m.got...)
}

// waitFor waits until m received n messages, or fails.
func (m *member) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(wait)
	for len(m.received()) < n {
		select {
		case <-m.more:
		case <-deadline:
			t.Fatalf("%s received %d messages of %d", m.h.ID().ShortString(), len(m.received()), n)
		}
	}
}

// waitForMessage waits until m received b, or fails.
func (m *member) waitForMessage(t *testing.T, b []byte) {
	t.Helper()
	deadline := time.After(wait)
	for !slices.ContainsFunc(m.received(), func(got []byte) bool { return bytes.Equal(got, b) }) {
		select {
		case <-m.more:
		case <-deadline:
			t.Fatalf("%s never received the message", m.h.ID().ShortString())
		}
	}
}

func topicName(b byte) string {
	name, err := protocol.GroupTopic(bytes.Repeat([]byte{b}, protocol.GroupTopicSecretSize))
	if err != nil {
		panic(err)
	}
	return name
}

func groupMessage(t testing.TB, i int, size int) []byte {
	body := bytes.Repeat([]byte{byte(i)}, size)
	copy(body, fmt.Sprintf("message %d", i))
	b, err := (&protocol.GroupMessage{Epoch: 3, Kind: protocol.GroupApplication, Body: body, Seqs: []uint64{uint64(i + 1)}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// settle publishes probe messages from src until every member received
// one: the meshes are then formed. It returns how many probes each member
// should count.
func settle(t *testing.T, src *member, dst ...*member) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for i := 0; ; i++ {
		probe := groupMessage(t, 1000+i, 16)
		if err := src.t.Publish(context.Background(), probe); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		all := true
		for _, d := range dst {
			if len(d.received()) == 0 {
				all = false
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("meshes did not form")
		}
	}
}

// reset forgets what members received so far.
func reset(ms ...*member) {
	for _, m := range ms {
		m.mu.Lock()
		m.got, m.from = nil, nil
		m.mu.Unlock()
	}
}

// group makes n members on one topic, each connected to the next (a
// line, so messages cross several hops) and the first to the last.
func group(t *testing.T, n int, opts Options) []*member {
	var ms []*member
	for range n {
		ms = append(ms, newMember(t, newHost(t), nil, opts))
	}
	for i := range ms {
		connect(t, ms[i].h, ms[(i+1)%n].h)
	}
	for _, m := range ms {
		m.join(t, topicName(1))
	}
	return ms
}

// TestBurst: 200 messages published back to back, with no pause, reach
// every member of a 5-member group whole and once, and no queue drops any.
func TestBurst(t *testing.T) {
	ms := group(t, 5, Options{})
	settle(t, ms[0], ms[1:]...)
	time.Sleep(time.Second) // the probes still in flight land before the reset
	reset(ms...)

	const burst = 200
	want := map[string]bool{}
	for i := range burst {
		b := groupMessage(t, i, 1024)
		want[string(b)] = true
		if err := ms[0].t.Publish(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range ms[1:] {
		m.waitFor(t, burst)
	}
	// A barrier published after the burst, then the count: each link
	// carries messages in order, so a copy of the burst sent on a link
	// before the barrier is in once the barrier is (a sleep only guessed
	// a time for it).
	barrier := groupMessage(t, burst, 1024)
	if err := ms[0].t.Publish(context.Background(), barrier); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[1:] {
		m.waitForMessage(t, barrier)
	}
	want[string(barrier)] = true
	for i, m := range ms[1:] {
		got := m.received()
		seen := map[string]bool{}
		for _, b := range got {
			if !want[string(b)] {
				t.Errorf("member %d received a message nobody sent", i+1)
			}
			if seen[string(b)] {
				t.Errorf("member %d received a message twice", i+1)
			}
			seen[string(b)] = true
		}
		if len(seen) != burst+1 {
			t.Errorf("member %d received %d distinct messages of %d", i+1, len(seen), burst+1)
		}
	}
	for i, m := range ms {
		if s := m.g.Stats(); s != (Stats{}) {
			t.Errorf("member %d: queue drops %+v", i, s)
		}
	}
}

// TestWire: what travels has no author, sequence number, signature or key,
// and its ID is the hash of its bytes; publishing the same bytes twice
// sends them once.
func TestWire(t *testing.T) {
	ms := group(t, 3, Options{})
	settle(t, ms[0], ms[1:]...)
	time.Sleep(time.Second)
	reset(ms...)

	msg := groupMessage(t, 7, 300)
	for range 3 {
		if err := ms[0].t.Publish(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	ms[1].waitFor(t, 1)
	ms[2].waitFor(t, 1)
	time.Sleep(2 * time.Second)
	for i, m := range ms[1:] {
		if n := len(m.received()); n != 1 {
			t.Errorf("member %d received the message %d times", i+1, n)
		}
	}
	seen := 0
	for _, m := range ms {
		m.mu.Lock()
		for _, rpc := range m.rpcs {
			for _, p := range rpc.GetPublish() {
				seen++
				if p.From != nil || p.Seqno != nil || p.Signature != nil || p.Key != nil {
					t.Errorf("message on the wire with from %x, seqno %x, signature %x, key %x", p.From, p.Seqno, p.Signature, p.Key)
				}
				if id := messageID(p); id != string(sha256Sum(p.GetData())) {
					t.Error("message ID is not the hash of the data")
				}
			}
		}
		m.mu.Unlock()
	}
	if seen == 0 {
		t.Fatal("no message seen on the wire")
	}
}

func sha256Sum(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

// TestPublishCopies: the caller may reuse its buffer when Publish returns.
func TestPublishCopies(t *testing.T) {
	ms := group(t, 2, Options{})
	settle(t, ms[0], ms[1])
	time.Sleep(time.Second)
	reset(ms...)

	// Each message is built in the same buffer, over the previous one.
	buf := make([]byte, 0, 2048)
	want := map[string]bool{}
	const n = 50
	for i := range n {
		m := groupMessage(t, i, 500)
		want[string(m)] = true
		buf = append(buf[:0], m...)
		if err := ms[0].t.Publish(context.Background(), buf); err != nil {
			t.Fatal(err)
		}
	}
	ms[1].waitFor(t, n)
	for _, got := range ms[1].received() {
		if !want[string(got)] {
			t.Fatal("a message received is not one published: its buffer was reused")
		}
		delete(want, string(got))
	}
	if len(want) != 0 {
		t.Errorf("%d messages published were not received", len(want))
	}
}

// TestMembersOnly: a peer the group does not allow gets none of its
// messages even if it joins the topic, and what it publishes is dropped
// before any check.
func TestMembersOnly(t *testing.T) {
	ha, hb, hc := newHost(t), newHost(t), newHost(t)
	members := map[peer.ID]bool{ha.ID(): true, hb.ID(): true}
	a := newMember(t, ha, allow(members), Options{})
	b := newMember(t, hb, allow(members), Options{})
	c := newMember(t, hc, nil, Options{}) // the outsider allows everyone
	connect(t, ha, hb)
	connect(t, ha, hc)
	connect(t, hb, hc)
	for _, m := range []*member{a, b, c} {
		m.join(t, topicName(2))
	}
	settle(t, a, b)
	outsider := map[string]bool{}
	for i := range 20 {
		if err := a.t.Publish(context.Background(), groupMessage(t, i, 100)); err != nil {
			t.Fatal(err)
		}
		m := groupMessage(t, 500+i, 100)
		outsider[string(m)] = true
		if err := c.t.Publish(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	b.waitFor(t, 21)
	time.Sleep(3 * time.Second)
	if n := len(c.received()); n != 0 {
		t.Errorf("the outsider received %d messages", n)
	}
	for _, m := range []*member{a, b} {
		for _, got := range m.received() {
			if outsider[string(got)] {
				t.Errorf("a member received the outsider's message")
			}
		}
	}
	for _, p := range a.t.Peers() {
		if p == hc.ID() {
			t.Error("the outsider is listed as a topic peer")
		}
	}
	if got := value(b.g.met.drops.WithLabelValues("not_member")) + value(a.g.met.drops.WithLabelValues("not_member")); got == 0 {
		t.Error("no not_member drop counted")
	}
}

// TestBadInput: messages that are not group messages, or that carry an
// author and a signature, are dropped before the topic's check sees them,
// counted, and the sender's score falls; nothing crashes.
func TestBadInput(t *testing.T) {
	ha, hx := newHost(t), newHost(t)
	a := newMember(t, ha, nil, Options{})
	checked := make(chan *protocol.GroupMessage, 100)
	tp, err := a.g.Join(topicName(3), func(_ peer.ID, m *protocol.GroupMessage) error {
		checked <- m
		return nil
	}, func(peer.ID, *protocol.GroupMessage, []byte) {})
	if err != nil {
		t.Fatal(err)
	}
	a.t = tp

	// A raw gossipsub on the same protocol: no validator of ours, and
	// signing on, as pubsub's defaults have it.
	raw, err := pubsub.NewGossipSub(testContext(t), hx,
		pubsub.WithGossipSubProtocols([]libp2pproto.ID{protocol.GossipProtocol}, features))
	if err != nil {
		t.Fatal(err)
	}
	connect(t, hx, ha)
	rt, err := raw.Join(topicName(3))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	time.Sleep(2 * time.Second) // subscriptions exchanged
	for i := range 10 {
		if err := rt.Publish(context.Background(), groupMessage(t, i, 50)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(wait)
	for value(a.g.met.refusals.WithLabelValues("signed")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("signed messages were not refused")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(checked) != 0 {
		t.Errorf("%d signed messages reached the check", len(checked))
	}
}

// TestBadInputUnsigned: unsigned junk, wrong kinds and messages the topic's
// check refuses are dropped before delivery, each counted by reason.
func TestBadInputUnsigned(t *testing.T) {
	ha, hx := newHost(t), newHost(t)
	a := newMember(t, ha, nil, Options{})
	var mu sync.Mutex
	var delivered [][]byte
	tp, err := a.g.Join(topicName(4), func(_ peer.ID, m *protocol.GroupMessage) error {
		switch {
		case m.Epoch != 3:
			return ErrIgnore
		case m.Kind == protocol.GroupProposal:
			return errors.New("refused by the group")
		}
		return nil
	}, func(_ peer.ID, _ *protocol.GroupMessage, raw []byte) {
		mu.Lock()
		delivered = append(delivered, append([]byte(nil), raw...))
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	a.t = tp
	raw, err := pubsub.NewGossipSub(testContext(t), hx,
		pubsub.WithGossipSubProtocols([]libp2pproto.ID{protocol.GossipProtocol}, features),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(messageID))
	if err != nil {
		t.Fatal(err)
	}
	connect(t, hx, ha)
	rt, err := raw.Join(topicName(4))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	enc := func(m protocol.GroupMessage) []byte {
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// The good message first: the rejections that follow lower the
	// sender's score until its messages are ignored, as they should be.
	// Each attempt has new bytes: the same bytes again would be a
	// duplicate the sender itself drops.
	good := map[string]bool{}
	deadline := time.Now().Add(wait)
	for i := 0; ; i++ {
		g := enc(protocol.GroupMessage{Epoch: 3, Kind: protocol.GroupApplication, Body: fmt.Appendf(nil, "good %d", i)})
		good[string(g)] = true
		if err := rt.Publish(context.Background(), g); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		mu.Lock()
		n := len(delivered)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the good message was not delivered")
		}
	}
	// Then one message at a time, each waited for: a message of an epoch
	// the node left is ignored (no penalty), a proposal the group refuses
	// and bytes that are no group message are rejected.
	waitDrop := func(reason string, want float64) {
		t.Helper()
		for value(a.g.met.drops.WithLabelValues(reason)) < want {
			if time.Now().After(deadline) {
				t.Fatalf("dropped %s: %v, want %v", reason, value(a.g.met.drops.WithLabelValues(reason)), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, c := range []struct {
		msg    []byte
		reason string
	}{
		{enc(protocol.GroupMessage{Epoch: 2, Kind: protocol.GroupApplication, Body: []byte("old epoch")}), "ignored"},
		{enc(protocol.GroupMessage{Epoch: 3, Kind: protocol.GroupProposal, Body: []byte("refused")}), "rejected"},
		{[]byte("not a group message"), "malformed"},
	} {
		if err := rt.Publish(context.Background(), c.msg); err != nil {
			t.Fatal(err)
		}
		waitDrop(c.reason, 1)
	}
	// Two rejections put the sender below the graylist threshold: what it
	// sends now is not even validated.
	mu.Lock()
	before := len(delivered)
	mu.Unlock()
	for i := range 5 {
		late := enc(protocol.GroupMessage{Epoch: 3, Kind: protocol.GroupApplication, Body: fmt.Appendf(nil, "late %d", i)})
		if err := rt.Publish(context.Background(), late); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	if len(delivered) != before {
		t.Errorf("%d messages of a graylisted peer delivered", len(delivered)-before)
	}
	for _, d := range delivered {
		if !good[string(d)] {
			t.Errorf("delivered %q", d)
		}
	}
}

// TestJoinLeave: joining twice fails, a topic can be left and joined again,
// and a closed Gossip refuses new topics.
func TestJoinLeave(t *testing.T) {
	m := newMember(t, newHost(t), nil, Options{})
	m.join(t, topicName(5))
	ok := func(peer.ID, *protocol.GroupMessage) error { return nil }
	drop := func(peer.ID, *protocol.GroupMessage, []byte) {}
	if _, err := m.g.Join(topicName(5), ok, drop); !errors.Is(err, ErrJoined) {
		t.Errorf("joined twice: %v", err)
	}
	if _, err := m.g.Join("/not/a/group/topic", ok, drop); err == nil {
		t.Error("joined a topic outside the group namespace")
	}
	if err := m.t.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.t.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := m.t.Publish(context.Background(), groupMessage(t, 1, 10)); !errors.Is(err, ErrClosed) {
		t.Errorf("publish on a closed topic: %v", err)
	}
	m.join(t, topicName(5))
	if err := m.g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.g.Join(topicName(6), ok, drop); !errors.Is(err, ErrClosed) {
		t.Errorf("join after Close: %v", err)
	}
}

// TestAnnouncedOnce: a member hears a message's ID announced (IHAVE) by a
// peer at most once, at that peer's first heartbeat after the message, not
// at each of the next ones; and what it hears is counted in
// sealpost_gossip_control_total. Four members, each connected to the
// three others, with a mesh of two, each have a peer outside their mesh.
func TestAnnouncedOnce(t *testing.T) {
	const heartbeat = 50 * time.Millisecond
	ms := group(t, 4, Options{D: 2, DLo: 2, DHi: 2, Heartbeat: heartbeat})
	connect(t, ms[0].h, ms[2].h)
	connect(t, ms[1].h, ms[3].h)
	settle(t, ms[0], ms[1:]...)
	time.Sleep(10 * heartbeat)
	for _, m := range ms {
		m.mu.Lock()
		m.rpcs, m.rpcFrom = nil, nil
		m.mu.Unlock()
	}
	reset(ms...)
	const sent = 5
	ids := map[string]bool{}
	for i := range sent {
		b := groupMessage(t, i, 64)
		ids[string(sha256Sum(b))] = true
		if err := ms[0].t.Publish(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range ms[1:] {
		m.waitFor(t, sent)
	}
	// Past the heartbeats that could announce them again (gossipsub keeps
	// five heartbeats of history).
	time.Sleep(10 * heartbeat)
	total := 0
	for i, m := range ms {
		m.mu.Lock()
		announced := map[string]int{} // announcer and message ID
		n := 0
		for j, rpc := range m.rpcs {
			for _, ih := range rpc.GetControl().GetIhave() {
				n += len(ih.GetMessageIDs())
				for _, id := range ih.GetMessageIDs() {
					if ids[id] {
						announced[string(m.rpcFrom[j])+id]++
					}
				}
			}
		}
		m.mu.Unlock()
		total += len(announced)
		for k, c := range announced {
			if c > 1 {
				t.Errorf("member %d heard a message announced %d times by one peer (%x)", i, c, k[len(k)-32:])
			}
		}
		if got := ihaveCounted(t, m); got < float64(n) {
			t.Errorf("member %d counted %v message IDs announced, heard %d", i, got, n)
		}
	}
	if total == 0 {
		t.Error("no message was announced: no member had a peer outside its mesh")
	}
}

// ihaveCounted reads m's sealpost_gossip_control_total{kind="ihave"}.
func ihaveCounted(t *testing.T, m *member) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sealpost_gossip_control_total" {
			continue
		}
		for _, c := range mf.GetMetric() {
			for _, l := range c.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == "ihave" {
					return c.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
