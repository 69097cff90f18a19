package node

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/nodetest"
)

// groupNet is a relay and personal nodes that bootstrap through it.
type groupNet struct {
	relay *Node
	nodes []*Node
}

func newGroupNet(t *testing.T, n int) *groupNet {
	t.Helper()
	return newGroupNetWith(t, n, nil)
}

// quickMember is the configuration of a group member in these tests:
// bootstrapped from relay, its receipts and fetches a tenth of a second
// after what calls for them, then more (nil: nothing more).
func quickMember(relay string, more func(*Config)) func(*Config) {
	return func(c *Config) {
		c.Bootstrap = []string{relay}
		c.Groups.ReceiptDelay = 100 * time.Millisecond
		c.Groups.FetchGrace = 100 * time.Millisecond
		if more != nil {
			more(c)
		}
	}
}

// newGroupNetWith is newGroupNet with the nodes' group options changed by
// opts (nil: none).
func newGroupNetWith(t *testing.T, n int, opts func(*groups.Options)) *groupNet {
	t.Helper()
	logs := newGroupLogs(t)
	r := newTestNode(t, func(c *Config) { c.RelayService = true })
	gn := &groupNet{relay: r}
	for range n {
		gn.nodes = append(gn.nodes, newTestNode(t, quickMember(r.Info().Addrs[0], func(c *Config) {
			c.Logger = logs.logger()
			if opts != nil {
				opts(&c.Groups)
			}
		})))
	}
	return gn
}

// trio makes the net's first three nodes a group named name on its relay:
// b and c become contacts of a, which creates the group and adds them; it
// returns once each of the three holds three members.
func (gn *groupNet) trio(t *testing.T, ctx context.Context, name string) groups.Info {
	t.Helper()
	a, b, c := gn.nodes[0], gn.nodes[1], gn.nodes[2]
	befriend(t, ctx, a, b, "b")
	befriend(t, ctx, a, c, "c")
	info, err := a.Groups().Create(ctx, name, []string{gn.relay.Info().Addrs[0]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Groups().Add(ctx, info.ID, []string{"b", "c"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ctx, info.ID, 3, a, b, c)
	return info
}

// pairGroup makes b a contact of a, and a group named name of the two on
// the relays at addrs (a creates it and adds b); it returns the group's ID
// once both hold two members.
func pairGroup(t *testing.T, ctx context.Context, a, b *Node, name string, addrs ...string) string {
	t.Helper()
	befriend(t, ctx, a, b, "b")
	info, err := a.Groups().Create(ctx, name, addrs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Groups().Add(ctx, info.ID, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ctx, info.ID, 2, a, b)
	return info.ID
}

// befriend makes b a contact of a (a adds b's invite; b learns a from a's
// first message).
func befriend(t *testing.T, ctx context.Context, a, b *Node, name string) {
	t.Helper()
	inv, err := b.Messaging().Invite(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Messaging().AddContact(ctx, inv.Link, name); err != nil {
		t.Fatal(err)
	}
}

func memberNames(t *testing.T, ctx context.Context, n *Node, group string) []string {
	g, err := n.Groups().Show(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range g.Members {
		out = append(out, m.UserID)
	}
	slices.Sort(out)
	return out
}

func texts(t *testing.T, ctx context.Context, n *Node, group string) []string {
	ms, err := n.Groups().Messages(ctx, group, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Text)
	}
	return out
}

// TestGroupLife: a group of three on one relay: created, joined, messages
// delivered to every member (with per-member detail), one member removed
// reads nothing after, one leaves.
func TestGroupLife(t *testing.T) {
	nodetest.CheckLeaks(t)
	gn := newGroupNet(t, 3)
	a, b, c := gn.nodes[0], gn.nodes[1], gn.nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	befriend(t, ctx, a, b, "b")
	befriend(t, ctx, a, c, "c")

	info, err := a.Groups().Create(ctx, "club", []string{gn.relay.Info().Addrs[0]})
	if err != nil {
		t.Fatal(err)
	}
	if info.Epoch != 0 || info.Name != "club" {
		t.Fatalf("create: %+v", info)
	}
	if _, err := a.Groups().Add(ctx, "club", []string{"b", "c"}); err != nil {
		t.Fatal(err)
	}
	want := []string{a.Info().UserID, b.Info().UserID, c.Info().UserID}
	slices.Sort(want)
	for _, n := range []*Node{a, b, c} {
		nodetest.WaitFor(t, time.Minute, "every member in the group", func() bool {
			g, err := n.Groups().Show(ctx, info.ID)
			return err == nil && g.State == "active" && slices.Equal(memberNames(t, ctx, n, info.ID), want)
		})
	}

	r, err := b.Groups().Send(ctx, info.ID, "hello from b")
	if err != nil {
		t.Fatal(err)
	}
	id, _ := groups.ParseMessageID(r.ID)
	res, err := b.Groups().WaitState(ctx, id, groups.StateDelivered)
	if err != nil {
		t.Fatalf("wait delivered: %v (%+v)", err, res)
	}
	if len(res.Members) != 2 {
		t.Fatalf("deliveries: %+v", res.Members)
	}
	for _, n := range []*Node{a, c} {
		if got := texts(t, ctx, n, info.ID); !slices.Equal(got, []string{"hello from b"}) {
			t.Errorf("messages at a member: %q", got)
		}
	}
	// The group is a conversation with its newest message; nothing comes
	// before that message.
	convs, err := c.Groups().Conversations(ctx)
	if err != nil || len(convs) != 1 || convs[0].Kind != groups.ConversationGroup || convs[0].ID != info.ID ||
		convs[0].Group == nil || convs[0].Last == nil || convs[0].Last.Text != "hello from b" || convs[0].Last.GroupID != info.ID {
		t.Fatalf("conversations: %+v, %v", convs, err)
	}
	// b's message is unread at c until c marks the group read; b's own is
	// never unread.
	if convs[0].Unread != 1 {
		t.Errorf("c's unread count: %d, want 1", convs[0].Unread)
	}
	if convs, err := b.Groups().Conversations(ctx); err != nil || len(convs) != 1 || convs[0].Unread != 0 {
		t.Errorf("the sender's conversations: %+v, %v; want nothing unread", convs, err)
	}
	if err := c.Groups().MarkRead(ctx, "club"); err != nil {
		t.Fatal(err)
	}
	if convs, err := c.Groups().Conversations(ctx); err != nil || len(convs) != 1 || convs[0].Unread != 0 {
		t.Errorf("after MarkRead: %+v, %v; want nothing unread", convs, err)
	}
	if ms, err := c.Groups().Messages(ctx, "club", 0); err != nil || len(ms) != 1 || ms[0].State != "read" {
		t.Errorf("after MarkRead the message is %+v, %v; want read", ms, err)
	}
	if older, err := c.Groups().Page(ctx, info.ID, 10, convs[0].Last.Cursor); err != nil || len(older) != 0 {
		t.Errorf("messages before the first: %+v, %v", older, err)
	}

	// c is removed; a message after it never reaches c.
	if _, err := a.Groups().Remove(ctx, info.ID, []string{"c"}); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, time.Minute, "c removed", func() bool {
		g, err := c.Groups().Show(ctx, info.ID)
		return err == nil && g.State == "left"
	})
	nodetest.WaitFor(t, time.Minute, "b sees the removal", func() bool {
		return len(memberNames(t, ctx, b, info.ID)) == 2
	})
	r, err = a.Groups().Send(ctx, info.ID, "after c")
	if err != nil {
		t.Fatal(err)
	}
	id, _ = groups.ParseMessageID(r.ID)
	if res, err := a.Groups().WaitState(ctx, id, groups.StateDelivered); err != nil || len(res.Members) != 1 {
		t.Fatalf("wait delivered: %v (%+v)", err, res)
	}
	if got := texts(t, ctx, c, info.ID); slices.Contains(got, "after c") {
		t.Errorf("a removed member read a message sent after: %q", got)
	}

	// b leaves; a's client commits it.
	if _, err := b.Groups().Leave(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, time.Minute, "b left", func() bool {
		g, err := b.Groups().Show(ctx, info.ID)
		return err == nil && g.State == "left"
	})
	nodetest.WaitFor(t, time.Minute, "a alone", func() bool {
		return len(memberNames(t, ctx, a, info.ID)) == 1
	})
}

// TestGroupCommitRace: two admins commit in the same epochs, round after
// round; the relay takes one commit per epoch, the other admin's is
// refused and made again on the next epoch. Every member ends in the same
// epoch with the same authenticator (no fork), every update applied.
func TestGroupCommitRace(t *testing.T) {
	nodetest.CheckLeaks(t)
	gn := newGroupNet(t, 3)
	a, b, c := gn.nodes[0], gn.nodes[1], gn.nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	info := gn.trio(t, ctx, "race")
	if _, err := a.Groups().Promote(ctx, info.ID, []string{b.Info().UserID}); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, time.Minute, "b promoted", func() bool {
		g, err := b.Groups().Show(ctx, info.ID)
		return err == nil && g.Admin
	})
	// a merges its own commit once the log brings it back, so b can be
	// promoted before a is in the epoch: the rounds count from the epoch
	// every member is in.
	var epoch uint64
	nodetest.WaitFor(t, time.Minute, "every member in the promotion's epoch", func() bool {
		epoch = epochOf(t, ctx, b, info.ID)
		return epochOf(t, ctx, a, info.ID) == epoch && epochOf(t, ctx, c, info.ID) == epoch
	})
	for round := range 5 {
		done := make(chan error, 2)
		for _, n := range []*Node{a, b} {
			go func() { _, err := n.Groups().Update(ctx, info.ID); done <- err }()
		}
		for range 2 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		epoch += 2 // each admin's update commits once, the loser's again on the next epoch
		nodetest.WaitFor(t, time.Minute, fmt.Sprintf("round %d: both updates committed everywhere", round), func() bool {
			for _, n := range []*Node{a, b, c} {
				if epochOf(t, ctx, n, info.ID) != epoch {
					return false
				}
			}
			return true
		})
	}
	want := epoch
	auth := ""
	for _, n := range []*Node{a, b, c} {
		g, _ := n.Groups().Show(ctx, info.ID)
		if auth == "" {
			auth = g.Authenticator
		} else if g.Authenticator != auth {
			t.Fatalf("members disagree on epoch %d: a fork", want)
		}
	}
	// The group still carries messages.
	r, err := c.Groups().Send(ctx, info.ID, "after the race")
	if err != nil {
		t.Fatal(err)
	}
	id, _ := groups.ParseMessageID(r.ID)
	if _, err := c.Groups().WaitState(ctx, id, groups.StateDelivered); err != nil {
		t.Fatal(err)
	}
	t.Logf("commits refused and retried: %v", refusedCommits(t, a)+refusedCommits(t, b))
}

// cutGater refuses connections with one peer once cut is set.
type cutGater struct{ cut atomic.Value } // peer.ID

func (g *cutGater) ok(p peer.ID) bool {
	c, _ := g.cut.Load().(peer.ID)
	return c == "" || c != p
}
func (g *cutGater) InterceptPeerDial(p peer.ID) bool                 { return g.ok(p) }
func (g *cutGater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return g.ok(p) }
func (g *cutGater) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (g *cutGater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.ok(p)
}
func (g *cutGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// TestCommitAfterUnreadEntries: an admin whose commit the relay accepts
// after entries of the epoch it never saw (the topic did not bring them
// and it had not fetched them yet) reads them before it moves to the next
// epoch: none is lost.
func TestCommitAfterUnreadEntries(t *testing.T) {
	nodetest.CheckLeaks(t)
	r := newTestNode(t, func(c *Config) { c.RelayService = true })
	gate := &cutGater{}
	a := newTestNode(t, func(c *Config) {
		c.Bootstrap = []string{r.Info().Addrs[0]}
		c.ConnGater = gate
		// A head the relay announces is not fetched before an hour: only
		// a commit makes a fetch.
		c.Groups.FetchGrace = time.Hour
	})
	b := newTestNode(t, func(c *Config) {
		c.Bootstrap = []string{r.Info().Addrs[0]}
		c.Groups.FetchGrace = 100 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	group := pairGroup(t, ctx, a, b, "unread", r.Info().Addrs[0])
	// a and b no longer meet: the topic carries nothing between them.
	gate.cut.Store(b.ID())
	a.Disconnect(b.ID())
	b.Disconnect(a.ID())
	epoch := epochOf(t, ctx, a, group)
	for i := range 3 {
		s, err := b.Groups().Send(ctx, group, fmt.Sprintf("unseen %d", i))
		if err != nil {
			t.Fatal(err)
		}
		id, _ := groups.ParseMessageID(s.ID)
		if _, err := b.Groups().WaitState(ctx, id, groups.StateSent); err != nil {
			t.Fatal(err)
		}
	}
	if got := texts(t, ctx, a, group); len(got) != 0 {
		t.Fatalf("a holds %q before its commit: the test cannot tell", got)
	}
	if _, err := a.Groups().Update(ctx, group); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, time.Minute, "a in the next epoch with b's messages", func() bool {
		return epochOf(t, ctx, a, group) == epoch+1 && len(texts(t, ctx, a, group)) == 3
	})
	nodetest.WaitFor(t, time.Minute, "b in a's epoch", func() bool { return epochOf(t, ctx, b, group) == epoch+1 })
}

func waitMembers(t *testing.T, ctx context.Context, group string, n int, nodes ...*Node) {
	t.Helper()
	for _, x := range nodes {
		nodetest.WaitFor(t, time.Minute, "every member in the group", func() bool {
			g, err := x.Groups().Show(ctx, group)
			return err == nil && g.State == "active" && len(g.Members) == n
		})
	}
}

func epochOf(t *testing.T, ctx context.Context, n *Node, group string) uint64 {
	g, err := n.Groups().Show(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	return g.Epoch
}

// refusedCommits reads the node's count of its commits another won.
func refusedCommits(t *testing.T, n *Node) float64 {
	return labelled(t, n, "sealpost_groups_commits_total", "outcome", "refused")
}

// labelled reads a node's counter name of the series whose label is value.
func labelled(t *testing.T, n *Node, name, label, value string) float64 {
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestReceiptsGoToSender: a member's delivery receipts go straight to the
// device that sent the messages, not to the group: the sender sees each
// member's delivery, and a third member receives only the texts, none of
// the others' receipts (through the group, every member decrypted every
// receipt: a cost growing with the square of the group's size).
func TestReceiptsGoToSender(t *testing.T) {
	nodetest.CheckLeaks(t)
	gn := newGroupNet(t, 3)
	a, b, c := gn.nodes[0], gn.nodes[1], gn.nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	info := gn.trio(t, ctx, "receipts")
	const n = 5
	for i := range n {
		r, err := b.Groups().Send(ctx, info.ID, fmt.Sprintf("from b %d", i))
		if err != nil {
			t.Fatal(err)
		}
		id, _ := groups.ParseMessageID(r.ID)
		res, err := b.Groups().WaitState(ctx, id, groups.StateDelivered)
		if err != nil {
			t.Fatalf("wait delivered: %v (%+v)", err, res)
		}
		if len(res.Members) != 2 || res.Members[0].At.IsZero() || res.Members[1].At.IsZero() {
			t.Fatalf("per-member deliveries: %+v", res.Members)
		}
	}
	for _, m := range []*Node{a, c} {
		if got := labelled(t, m, "sealpost_groups_receipts_total", "way", "direct"); got < 1 {
			t.Errorf("%s sent %v receipts to the sender's device, want some", m.Info().UserID, got)
		}
		if got := labelled(t, m, "sealpost_groups_receipts_total", "way", "group"); got != 0 {
			t.Errorf("%s sent %v receipts through the group, want none", m.Info().UserID, got)
		}
		// Every receipt of the other member went to b only: what this
		// member committed of others is b's texts.
		if got := counter(t, m, "sealpost_groups_received_total"); got != n {
			t.Errorf("%s committed %v group messages of others, want b's %d texts", m.Info().UserID, got, n)
		}
	}
}

// TestRefusedCommitNewLogs: a member that breaks the group's rules (it
// removes another without being an admin) gets its commit into the log,
// where it closes the epoch; the others refuse it, move to new logs they
// all derive, and go on: messages, the rule breaker's removal, a new
// member joining through the new logs.
func TestRefusedCommitNewLogs(t *testing.T) {
	nodetest.CheckLeaks(t)
	gn := newGroupNet(t, 3)
	a, c, d := gn.nodes[0], gn.nodes[1], gn.nodes[2]
	b := newTestNode(t, func(cfg *Config) {
		cfg.Bootstrap = []string{gn.relay.Info().Addrs[0]}
		cfg.Groups.FetchGrace = 100 * time.Millisecond
		cfg.Groups.BreakRules = true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	befriend(t, ctx, a, b, "b")
	befriend(t, ctx, a, c, "c")
	befriend(t, ctx, a, d, "d")
	info, err := a.Groups().Create(ctx, "rules", []string{gn.relay.Info().Addrs[0]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Groups().Add(ctx, info.ID, []string{"b", "c"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ctx, info.ID, 3, a, b, c)
	epoch := epochOf(t, ctx, a, info.ID)
	if _, err := b.Groups().Remove(ctx, info.ID, []string{c.Info().UserID}); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, time.Minute, "b's refused commit in the log", func() bool { return epochOf(t, ctx, b, info.ID) == epoch+1 })
	nodetest.WaitFor(t, time.Minute, "a and c in new logs", func() bool {
		return counter(t, a, "sealpost_groups_log_resets_total") == 1 && counter(t, c, "sealpost_groups_log_resets_total") == 1
	})
	for _, n := range []*Node{a, c} {
		if g, err := n.Groups().Show(ctx, info.ID); err != nil || g.Epoch != epoch || g.State != "active" || g.Error != "" {
			t.Fatalf("after the refused commit: %+v, %v; want active at epoch %d", g, err, epoch)
		}
	}
	send := func(from *Node, text string) {
		t.Helper()
		r, err := from.Groups().Send(ctx, info.ID, text)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := groups.ParseMessageID(r.ID)
		if _, err := from.Groups().WaitState(ctx, id, groups.StateSent); err != nil {
			t.Fatal(err)
		}
	}
	send(a, "after the refused commit")
	nodetest.WaitFor(t, time.Minute, "c reads a's message", func() bool {
		return slices.Contains(texts(t, ctx, c, info.ID), "after the refused commit")
	})
	if _, err := a.Groups().Remove(ctx, info.ID, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Groups().Add(ctx, info.ID, []string{"d"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ctx, info.ID, 3, a, c, d)
	send(c, "to d")
	nodetest.WaitFor(t, time.Minute, "d reads c's message", func() bool {
		return slices.Contains(texts(t, ctx, d, info.ID), "to d")
	})
	auth := ""
	for _, n := range []*Node{a, c, d} {
		g, _ := n.Groups().Show(ctx, info.ID)
		if g.Error != "" {
			t.Errorf("%s: %s", n.Info().UserID, g.Error)
		}
		if auth != "" && g.Authenticator != auth {
			t.Fatal("members disagree after the new logs: a fork")
		}
		auth = g.Authenticator
	}
}

// counter reads a node's counter name (without labels).
func counter(t *testing.T, n *Node, name string) float64 {
	return metricValue(t, n, name, false)
}

// gaugeOf reads a node's gauge name (without labels).
func gaugeOf(t *testing.T, n *Node, name string) float64 {
	return metricValue(t, n, name, true)
}

// metricValue reads the first series of a node's metric name: a gauge's
// value, or a counter's; 0 if it has none.
func metricValue(t *testing.T, n *Node, name string, gauge bool) float64 {
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				if gauge {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestGroupHeadsCoveredNotFetched: the relay announces each text's entry
// (a head), and the topic brings the text within the fetch grace: the
// members fetch none of them (each head is looked at again when its
// grace ends), and read each text once.
func TestGroupHeadsCoveredNotFetched(t *testing.T) {
	nodetest.CheckLeaks(t)
	// A grace the topic on loopback keeps well within, and no poll in
	// the test.
	gn := newGroupNetWith(t, 3, func(o *groups.Options) { o.FetchGrace, o.Poll = 2*time.Second, time.Hour })
	a, b, c := gn.nodes[0], gn.nodes[1], gn.nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	info := gn.trio(t, ctx, "heads covered")
	// holds reports whether b and c hold every text in want (in the order
	// they came, which the topic need not keep).
	holds := func(want ...string) bool {
		for _, m := range []*Node{b, c} {
			got := texts(t, ctx, m, info.ID)
			for _, w := range want {
				if !slices.Contains(got, w) {
					return false
				}
			}
		}
		return true
	}
	// The joins' fetches are over once the first text is read.
	sendSent(t, ctx, a, info.ID, "warm-up")
	nodetest.WaitFor(t, time.Minute, "the warm-up read", func() bool { return holds("warm-up") })
	time.Sleep(3 * time.Second) // the warm-up's grace ends
	fetched := func() float64 {
		return counter(t, b, "sealpost_groups_fetched_total") + counter(t, c, "sealpost_groups_fetched_total")
	}
	before := fetched()
	const n = 10
	var want []string
	for i := range n {
		want = append(want, fmt.Sprint("text ", i))
		sendSent(t, ctx, a, info.ID, want[i])
	}
	nodetest.WaitFor(t, time.Minute, "every text read", func() bool { return holds(want...) })
	time.Sleep(3 * time.Second) // the last text's grace ends
	// A text the topic was late with on a loaded machine is fetched; most
	// are not.
	if got := fetched() - before; got > n/2 {
		t.Errorf("b and c fetched %v entries for %d texts the topic brought, want at most %d", got, n, n/2)
	}
	for _, m := range []*Node{b, c} {
		if got := len(texts(t, ctx, m, info.ID)); got != n+1 {
			t.Errorf("a member holds %d texts, want %d", got, n+1)
		}
	}
}
