package node

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/crypto/mls"
	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
)

// logProxy stands as a group's home relay in front of a real one and
// forwards its group log streams, with faults: a commit stored whose
// member hears it was refused (as the retry of an append whose answer was
// lost hears), every stream reset at once (the relay restarted), the
// subscriptions' pushes dropped (the relay forgot them).
type logProxy struct {
	t      *testing.T
	h      host.Host
	target peer.AddrInfo

	// loseCommitAnswer: the next commit append is stored by the relay;
	// the member gets the answer a retry of it would get: the epoch is
	// closed (by that very commit).
	loseCommitAnswer atomic.Bool
	// dropPushes: subscription pushes are dropped.
	dropPushes atomic.Bool
	// fetches counts the fetch answers forwarded since the last resetAll.
	fetches atomic.Int64
	// misorder: on the streams opened after it was set (members read
	// logs under throwaway peer IDs), the next fetch answer of at least
	// misorderMin entries (none a commit) pushes its last entry first,
	// each under the sequence number of the one before it: a relay that
	// serves a log in another order than it was appended.
	misorder atomic.Bool

	mu   sync.Mutex
	strs []network.Stream
}

func newLogProxy(t *testing.T, relay *Node) *logProxy {
	t.Helper()
	ai, err := peer.AddrInfoFromString(relay.Info().Addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	p := &logProxy{t: t, h: h, target: *ai}
	t.Cleanup(func() {
		p.resetAll()
		h.Close()
	})
	h.SetStreamHandler(libp2pproto.ID(protocol.GroupLogProtocol), p.handle)
	return p
}

// addr is the proxy's address, as a group's home relay.
func (p *logProxy) addr() string { return fmt.Sprintf("%s/p2p/%s", p.h.Addrs()[0], p.h.ID()) }

func (p *logProxy) track(s ...network.Stream) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.strs = append(p.strs, s...)
}

// resetAll resets every stream, on both sides.
func (p *logProxy) resetAll() {
	p.mu.Lock()
	strs := p.strs
	p.strs = nil
	p.fetches.Store(0)
	p.mu.Unlock()
	for _, s := range strs {
		s.Reset()
	}
}

func (p *logProxy) handle(s network.Stream) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.h.Connect(ctx, p.target); err != nil {
		s.Reset()
		return
	}
	u, err := p.h.NewStream(ctx, p.target.ID, libp2pproto.ID(protocol.GroupLogProtocol))
	if err != nil {
		s.Reset()
		return
	}
	p.track(s, u)
	var commits sync.Map // request IDs of commit appends
	go func() {
		fr := protocol.NewFrameReader(s, protocol.MaxGroupLogFrame)
		for {
			var req protocol.GroupLogRequest
			if err := fr.Read(&req); err != nil {
				u.Reset()
				return
			}
			if req.Op == protocol.GroupLogAppend && req.Commit {
				commits.Store(req.ID, true)
			}
			if err := protocol.WriteFrame(u, &req); err != nil {
				s.Reset()
				return
			}
		}
	}()
	fr := protocol.NewFrameReader(u, protocol.MaxGroupLogFrame)
	misorder := p.misorder.Load()
	var held []protocol.GroupLogResponse // a fetch's pushes, when misordering
	for {
		var r protocol.GroupLogResponse
		if err := fr.Read(&r); err != nil {
			s.Reset()
			return
		}
		if misorder && r.Op == protocol.GroupLogPush && len(r.Entry) > 0 {
			held = append(held, r)
			continue
		}
		if len(held) > 0 {
			if r.Op == protocol.GroupLogFetch && len(held) >= misorderMin &&
				!slices.ContainsFunc(held, func(r protocol.GroupLogResponse) bool { return r.Commit }) &&
				p.misorder.CompareAndSwap(true, false) {
				p.t.Logf("proxy: %d entries of a fetch pushed with the last first", len(held))
				last := held[len(held)-1].Entry
				for i := len(held) - 1; i > 0; i-- {
					held[i].Entry = held[i-1].Entry
				}
				held[0].Entry = last
			}
			for i := range held {
				if err := protocol.WriteFrame(s, &held[i]); err != nil {
					u.Reset()
					return
				}
			}
			held = held[:0]
		}
		if _, ok := commits.Load(r.ID); ok && r.Op == protocol.GroupLogAppend && r.Code == protocol.CodeOK && p.loseCommitAnswer.CompareAndSwap(true, false) {
			p.t.Logf("proxy: the relay stored a commit at %d; the member hears the epoch is closed", r.Seq)
			r = protocol.GroupLogResponse{Op: protocol.GroupLogAppend, ID: r.ID, Code: protocol.CodeWrongEpoch, Epoch: r.Epoch}
		}
		if r.Op == protocol.GroupLogFetch {
			p.fetches.Add(1)
		}
		if r.Op == protocol.GroupLogPush && len(r.Entry) == 0 && p.dropPushes.Load() {
			continue
		}
		if err := protocol.WriteFrame(s, &r); err != nil {
			u.Reset()
			return
		}
	}
}

// misorderMin is the fewest entries of a fetch answer logProxy.misorder
// changes the order of.
const misorderMin = mls.DefaultOutOfOrderWindow + 2

// proxiedPair is a group of a and b whose home is a proxy in front of a
// relay; b's connections to a can be cut (no topic between them).
func proxiedPair(t *testing.T, ctx context.Context, bOpts func(*groups.Options)) (a, b *Node, p *logProxy, gate *cutGater, group string) {
	t.Helper()
	return proxiedPairWith(t, ctx, nil, bOpts)
}

// proxiedPairWith is proxiedPair with a's group options set by aOpts.
func proxiedPairWith(t *testing.T, ctx context.Context, aOpts, bOpts func(*groups.Options)) (a, b *Node, p *logProxy, gate *cutGater, group string) {
	t.Helper()
	r := newTestNode(t, func(c *Config) { c.RelayService = true })
	p = newLogProxy(t, r)
	a = newTestNode(t, func(c *Config) {
		c.Bootstrap = []string{r.Info().Addrs[0]}
		c.Groups.FetchGrace = 100 * time.Millisecond
		if aOpts != nil {
			aOpts(&c.Groups)
		}
	})
	gate = &cutGater{}
	b = newTestNode(t, func(c *Config) {
		c.Bootstrap = []string{r.Info().Addrs[0]}
		c.ConnGater = gate
		c.Groups.FetchGrace = 100 * time.Millisecond
		if bOpts != nil {
			bOpts(&c.Groups)
		}
	})
	return a, b, p, gate, pairGroup(t, ctx, a, b, "proxied", p.addr())
}

// cut ends the topic between a and b: what b learns, it learns from the
// relay.
func cut(a, b *Node, gate *cutGater) {
	gate.cut.Store(a.ID())
	a.Disconnect(b.ID())
	b.Disconnect(a.ID())
}

// sendCut cuts a off from b's topic, sends text from b and waits until a
// read it (from the relay); it returns the message's ID.
func sendCut(t *testing.T, ctx context.Context, a, b *Node, gate *cutGater, group, text string) protocol.MessageID {
	t.Helper()
	cut(a, b, gate)
	r, err := b.Groups().Send(ctx, group, text)
	if err != nil {
		t.Fatal(err)
	}
	id, err := groups.ParseMessageID(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, time.Minute, "a read b's message", func() bool {
		return slices.Contains(texts(t, ctx, a, group), text)
	})
	return id
}

// sendSent sends text and waits until it is on the relay.
func sendSent(t *testing.T, ctx context.Context, n *Node, group, text string) {
	t.Helper()
	r, err := n.Groups().Send(ctx, group, text)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := groups.ParseMessageID(r.ID)
	if _, err := n.Groups().WaitState(ctx, id, groups.StateSent); err != nil {
		t.Fatal(err)
	}
}

// follows checks that b, cut off from a's topic, follows a's commit out
// of epoch and reads the text a sends next.
func follows(t *testing.T, ctx context.Context, a, b *Node, group string, epoch uint64, text string) {
	t.Helper()
	nodetest.WaitFor(t, time.Minute, "a in the next epoch", func() bool { return epochOf(t, ctx, a, group) == epoch+1 })
	nodetest.WaitFor(t, time.Minute, "b in the next epoch", func() bool { return epochOf(t, ctx, b, group) == epoch+1 })
	sendSent(t, ctx, a, group, text)
	nodetest.WaitFor(t, time.Minute, "b reads a's message", func() bool {
		return slices.Contains(texts(t, ctx, b, group), text)
	})
	noGroupError(t, ctx, group, a, b)
}

func noGroupError(t *testing.T, ctx context.Context, group string, nodes ...*Node) {
	t.Helper()
	for _, n := range nodes {
		g, err := n.Groups().Show(ctx, group)
		if err != nil || g.Error != "" {
			t.Errorf("%s: %+v %v", n.Info().UserID, g, err)
		}
	}
}

// TestCommitAnswerLost: the relay stores an admin's commit, but the admin
// hears what a relay that does not recognize a retry would answer: the
// epoch is closed (by that very commit). The admin must still follow its
// commit into the next epoch, with the group, instead of dropping it and
// staying behind.
func TestCommitAnswerLost(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, b, p, _, group := proxiedPair(t, ctx, nil)
	epoch := epochOf(t, ctx, a, group)
	p.loseCommitAnswer.Store(true)
	if _, err := a.Groups().Update(ctx, group); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, time.Minute, "b in the epoch of a's commit", func() bool { return epochOf(t, ctx, b, group) == epoch+1 })
	if p.loseCommitAnswer.Load() {
		t.Fatal("the proxy lost no answer: the test cannot tell")
	}
	nodetest.WaitFor(t, time.Minute, "a in the epoch of its own commit", func() bool { return epochOf(t, ctx, a, group) == epoch+1 })
	sendSent(t, ctx, b, group, "after the lost answer")
	nodetest.WaitFor(t, time.Minute, "a reads b's message", func() bool {
		return slices.Contains(texts(t, ctx, a, group), "after the lost answer")
	})
	noGroupError(t, ctx, group, a, b)
}

// TestSubscriptionLostWithRelay: the relay restarts (every stream reset)
// while a member's topic is cut; the member subscribes again, learns of
// the next commit from the relay, and follows it.
func TestSubscriptionLostWithRelay(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// No poll within the test: only a new subscription can tell b.
	a, b, p, gate, group := proxiedPair(t, ctx, func(o *groups.Options) { o.Poll = time.Hour })
	epoch := epochOf(t, ctx, a, group)
	cut(a, b, gate)
	p.resetAll()
	// Both have read the log again after the restart, so only what comes
	// next can tell b of a's commit.
	nodetest.WaitFor(t, time.Minute, "a and b read the log after the restart", func() bool { return p.fetches.Load() >= 2 })
	if _, err := a.Groups().Update(ctx, group); err != nil {
		t.Fatal(err)
	}
	follows(t, ctx, a, b, group, epoch, "after the restart")
}

// TestQuietMemberPolls: the relay stops announcing heads (it forgot the
// subscriptions, the streams live on) while a member's topic is cut; the
// member still reads the log now and then and follows the group.
func TestQuietMemberPolls(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, b, p, gate, group := proxiedPair(t, ctx, func(o *groups.Options) { o.Poll = 2 * time.Second })
	epoch := epochOf(t, ctx, a, group)
	cut(a, b, gate)
	p.dropPushes.Store(true)
	if _, err := a.Groups().Update(ctx, group); err != nil {
		t.Fatal(err)
	}
	follows(t, ctx, a, b, group, epoch, "while the relay is quiet")
}

// TestReceiptOutOfReach: a member that cannot reach the sender's device
// (every connection between them refused) sends its receipt through the
// group after a few tries, and the sender, reading the log, sees the
// message delivered.
func TestReceiptOutOfReach(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, b, _, gate, group := proxiedPair(t, ctx, nil)
	id := sendCut(t, ctx, a, b, gate, group, "to an admin out of reach")
	if res, err := b.Groups().WaitState(ctx, id, groups.StateDelivered); err != nil || len(res.Members) != 1 {
		t.Fatalf("wait delivered: %v (%+v)", err, res)
	}
	if got := labelled(t, a, "sealpost_groups_receipts_total", "way", "group"); got < 1 {
		t.Errorf("a sent %v receipts through the group, want at least 1", got)
	}
	if got := labelled(t, a, "sealpost_groups_receipts_total", "way", "direct"); got != 0 {
		t.Errorf("a sent %v receipts straight to b, through a refused connection", got)
	}
}

// TestReceiptBusySender: a sender's device that refuses a member's
// connections for a while (as one over its connection limits does, when
// every member of a large group sends it receipts at once) is tried
// again, not written off after a few quick tries: once it takes the
// connection, the member's receipt goes to it directly, never through
// the group (where every member would decrypt it).
func TestReceiptBusySender(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// a tries b at least every second, so it fails its few tries well
	// within the refusal below, and writes b off only after 30 receipt
	// delays (a minute).
	a, b, _, gate, group := proxiedPairWith(t, ctx, func(o *groups.Options) {
		o.ReceiptDelay = 2 * time.Second
		o.RetryMin, o.RetryMax = 100*time.Millisecond, time.Second
	}, nil)
	id := sendCut(t, ctx, a, b, gate, group, "to a busy device")
	nodetest.WaitFor(t, time.Minute, "a's receipt refused a few times", func() bool {
		return counter(t, a, "sealpost_groups_receipt_failures_total") >= 4
	})
	gate.cut.Store(peer.ID(""))
	if res, err := b.Groups().WaitState(ctx, id, groups.StateDelivered); err != nil || len(res.Members) != 1 {
		t.Fatalf("wait delivered: %v (%+v)", err, res)
	}
	// a counts its receipt once b's answer is back with it.
	nodetest.WaitFor(t, time.Minute, "a counted its receipt", func() bool {
		return labelled(t, a, "sealpost_groups_receipts_total", "way", "direct")+labelled(t, a, "sealpost_groups_receipts_total", "way", "group") > 0
	})
	if got := labelled(t, a, "sealpost_groups_receipts_total", "way", "group"); got != 0 {
		t.Errorf("a sent %v receipts through the group to a device that was busy for seconds, want 0", got)
	}
}

// TestReceiptConnClosedLargeGroup: in a group large for a device's
// connection limits (more members than a third of its high watermark), a
// connection the device dialed only for a receipt is closed once the
// receipt is answered, though it holds few peers and pubsub protected the
// sender while it was a peer of the topic's mesh.
func TestReceiptConnClosedLargeGroup(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newTestNode(t, func(c *Config) { c.RelayService = true })
	gate := &cutGater{}
	a := newTestNode(t, func(c *Config) {
		c.Bootstrap = []string{r.Info().Addrs[0]}
		// Two members are a large group for a high watermark of 5; a
		// holds fewer peers than two thirds of it.
		c.ConnLow, c.ConnHigh = 2, 5
		// Neither serves the DHT, so neither dials the other for it:
		// the only connection between them after the cut is the
		// receipt's.
		c.DHTMode = DHTClient
		c.Groups.FetchGrace = 100 * time.Millisecond
		c.Groups.RetryMin, c.Groups.RetryMax = 100*time.Millisecond, time.Second
	})
	b := newTestNode(t, func(c *Config) {
		c.Bootstrap = []string{r.Info().Addrs[0]}
		c.ConnGater = gate
		c.DHTMode = DHTClient
		c.Groups.FetchGrace = 100 * time.Millisecond
	})
	group := pairGroup(t, ctx, a, b, "large", r.Info().Addrs[0])
	// a's receipt dials b once the cut ends.
	id := sendCut(t, ctx, a, b, gate, group, "to a large group")
	var mu sync.Mutex
	var dialed []network.Conn
	notifiee := &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if c.RemotePeer() == b.ID() {
			mu.Lock()
			dialed = append(dialed, c)
			mu.Unlock()
		}
	}}
	a.host.Network().Notify(notifiee)
	defer a.host.Network().StopNotify(notifiee)
	gate.cut.Store(peer.ID(""))
	if res, err := b.Groups().WaitState(ctx, id, groups.StateDelivered); err != nil || len(res.Members) != 1 {
		t.Fatalf("wait delivered: %v (%+v)", err, res)
	}
	mu.Lock()
	conns := slices.Clone(dialed)
	mu.Unlock()
	if len(conns) == 0 {
		t.Fatal("a's receipt reached b over no new connection")
	}
	nodetest.WaitFor(t, 30*time.Second, "a closed the connection it dialed for its receipt", func() bool {
		return !slices.ContainsFunc(conns, func(c network.Conn) bool { return !c.IsClosed() })
	})
}

// TestReceiptFromStranger: receipts on the receipt protocol from a device
// that is no member's are refused wrong_sender and count for nothing; an
// unknown group is not_found; a frame that does not decode gets its error.
func TestReceiptFromStranger(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, b, _, gate, group := proxiedPair(t, ctx, nil)
	cut(a, b, gate) // a's own receipt cannot reach b meanwhile
	r, err := b.Groups().Send(ctx, group, "pending at a stranger's word")
	if err != nil {
		t.Fatal(err)
	}
	id, _ := groups.ParseMessageID(r.ID)
	gid, _ := groups.ParseGroupID(group)
	stranger, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	ai, err := peer.AddrInfoFromString(b.Info().Addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := stranger.Connect(ctx, *ai); err != nil {
		t.Fatal(err)
	}
	send := func(frame []byte) (protocol.Ack, error) {
		s, err := stranger.NewStream(ctx, ai.ID, libp2pproto.ID(protocol.GroupReceiptProtocol))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Write(frame); err != nil {
			t.Fatal(err)
		}
		if err := s.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		var ack protocol.Ack
		err = protocol.NewFrameReader(s, protocol.MaxGroupReceipt).Read(&ack)
		return ack, err
	}
	receipt := func(g protocol.GroupID) []byte {
		b, err := protocol.AppendFrame(nil, &protocol.GroupReceipt{Group: g, Covers: []protocol.MessageID{id}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if ack, err := send(receipt(gid)); err != nil || ack.Code != protocol.CodeWrongSender {
		t.Errorf("a stranger's receipt: %+v, %v; want wrong_sender", ack, err)
	}
	if ack, err := send(receipt(protocol.GroupID{1})); err != nil || ack.Code != protocol.CodeNotFound {
		t.Errorf("a receipt for an unknown group: %+v, %v; want not_found", ack, err)
	}
	malformed := func() float64 { return labelled(t, b, "sealpost_groups_dropped_total", "reason", "malformed") }
	before := malformed()
	if ack, err := send([]byte{3, 0xff, 0xff, 0xff}); err != nil || ack.Code != protocol.CodeMalformed {
		t.Errorf("a frame that does not decode: %+v, %v; want malformed", ack, err)
	}
	if got := malformed(); got != before+1 {
		t.Errorf("a frame that does not decode counted %v times as malformed, want 1", got-before)
	}
	// A stream that ends before its frame is answered too (the handler
	// counts before it answers), and is no malformed message.
	if _, err := send(nil); err != nil {
		t.Errorf("a stream without a frame: %v; want an answer", err)
	}
	if got := malformed(); got != before+1 {
		t.Errorf("a stream without a frame counted as malformed: %v, want %v", got, before+1)
	}
	ms, err := b.Groups().Messages(ctx, group, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == r.ID && m.State == groups.StateDelivered && labelled(t, a, "sealpost_groups_receipts_total", "way", "group") == 0 {
			t.Errorf("delivered on a stranger's word: %+v", m)
		}
	}
	noGroupError(t, ctx, group, a, b)
}
