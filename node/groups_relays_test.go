package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/grouprelay"
	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// createOnHomes has n create the group name with its homes on r1 and r2,
// in that order.
func createOnHomes(t *testing.T, ctx context.Context, n *Node, name string, r1, r2 *restartable) groups.Info {
	t.Helper()
	info, err := n.Groups().Create(ctx, name, []string{r1.node.Info().Addrs[0], r2.node.Info().Addrs[0]})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// lagPair is the net of the lagging-home tests: two restartable relays,
// and a group named name of a and b (b restartable) with both as homes,
// its members retrying from 20 ms up to retryMax; it returns once both
// hold two members.
func lagPair(t *testing.T, ctx context.Context, name string, retryMax time.Duration) (r1, r2 *restartable, a *Node, b *restartable, group string) {
	t.Helper()
	r1, r2 = restartableRelay(t), restartableRelay(t)
	opts := quickMember(r1.node.Info().Addrs[0], func(c *Config) {
		c.Groups.RetryMin, c.Groups.RetryMax = 20*time.Millisecond, retryMax
	})
	a, b = newTestNode(t, opts), newRestartable(t, opts)
	return r1, r2, a, b, pairGroup(t, ctx, a, b.node, name, r1.node.Info().Addrs[0], r2.node.Info().Addrs[0])
}

// restartableRelay is a relay on a fixed loopback port whose store
// outlives it: started again, it is the same relay at the same address.
func restartableRelay(t *testing.T) *restartable { return restartableRelayWith(t, nil) }

// restartableRelayWith is restartableRelay with res for its group logs
// (nil: the defaults).
func restartableRelayWith(t *testing.T, res *grouprelay.Resources) *restartable {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return newRestartable(t, func(c *Config) {
		c.RelayService = true
		c.Listen = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)}
		if res != nil {
			c.GroupRelay = *res
		}
	})
}

// TestGroupTwoRelays: a group with two home relays goes on while either
// is down, and a home that was down through commits catches up. With the
// second down, members send and commit (twice) through the first; back,
// the second is copied the epochs it missed, so that a member offline
// meanwhile reads all it missed from it while the first is down. With
// the first down, members send through the second (commits wait for the
// first, which orders them). Nothing is lost, and the homes do not fork:
// commits go on through both.
func TestGroupTwoRelays(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r1, r2 := restartableRelay(t), restartableRelay(t)
	opts := quickMember(r1.node.Info().Addrs[0], func(c *Config) {
		c.Groups.RetryMax = 2 * time.Second
		c.Groups.Poll = 5 * time.Second
	})
	a := newTestNode(t, opts)
	b := newTestNode(t, opts)
	c := newRestartable(t, opts)
	befriend(t, ctx, a, b, "b")
	befriend(t, ctx, a, c.node, "c")
	info := createOnHomes(t, ctx, a, "two", r1, r2)
	if _, err := a.Groups().Add(ctx, info.ID, []string{"b", "c"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ctx, info.ID, 3, a, b, c.node)
	holds := func(n *Node, text string) func() bool {
		return func() bool { return slices.Contains(texts(t, ctx, n, info.ID), text) }
	}
	update := func(n *Node, members ...*Node) {
		t.Helper()
		e := epochOf(t, ctx, n, info.ID)
		if _, err := n.Groups().Update(ctx, info.ID); err != nil {
			t.Fatal(err)
		}
		for _, m := range members {
			nodetest.WaitFor(t, time.Minute, "every member past the commit", func() bool { return epochOf(t, ctx, m, info.ID) > e })
		}
	}

	// The second home down through two commits: messages and commits go
	// through the first; c goes offline after them.
	down := epochOf(t, ctx, a, info.ID)
	r2.stop()
	sendSent(t, ctx, a, info.ID, "second down")
	update(a, a, b, c.node)
	update(b, a, b, c.node)
	for _, n := range []*Node{a, b, c.node} {
		nodetest.WaitFor(t, time.Minute, "every member reads the message", holds(n, "second down"))
	}
	c.stop()
	sendSent(t, ctx, a, info.ID, "c away")

	// The second back: b's message finds it behind, and it is copied the
	// epochs it missed.
	r2.start()
	sendSent(t, ctx, b, info.ID, "second back")
	nodetest.WaitFor(t, time.Minute, "the second home caught up", func() bool {
		return labelled(t, a, "sealpost_groups_home_catchups_total", "result", "done")+
			labelled(t, b, "sealpost_groups_home_catchups_total", "result", "done") > 0
	})
	// It is open at the group's epoch and holds every entry the first
	// holds of the epochs from the one it went down in (before, its own
	// retries could reach it out of order: a commit before a message of
	// its epoch, which it could then never take).
	nodetest.WaitFor(t, time.Minute, "the second home holds what it missed", func() bool {
		open, missing := homeMisses(t, ctx, a, r1, r2, info.ID, 1, down)
		return open == epochOf(t, ctx, a, info.ID) && missing == 0
	})

	// The first home down: c, back, reads from the second all it missed,
	// and messages go through the second.
	r1.stop()
	c.start()
	for _, text := range []string{"c away", "second back"} {
		nodetest.WaitFor(t, 2*time.Minute, "c reads from the second home "+text, holds(c.node, text))
	}
	sendSent(t, ctx, b, info.ID, "first down")
	for _, n := range []*Node{a, c.node} {
		nodetest.WaitFor(t, time.Minute, "a member reads b's message", holds(n, "first down"))
	}
	r1.start()
	sendSent(t, ctx, a, info.ID, "first back")
	for _, n := range []*Node{b, c.node} {
		nodetest.WaitFor(t, time.Minute, "a member reads a's message", holds(n, "first back"))
	}
	// Commits go on through both homes.
	update(a, a, b, c.node)
	update(c.node, a, b, c.node)
	sendSent(t, ctx, b, info.ID, "last")
	for _, n := range []*Node{a, c.node} {
		nodetest.WaitFor(t, time.Minute, "a member reads the last message", holds(n, "last"))
	}
	if n := labelled(t, a, "sealpost_groups_home_catchups_total", "result", "given_up") + labelled(t, b, "sealpost_groups_home_catchups_total", "result", "given_up"); n != 0 {
		t.Errorf("%v catch-ups given up", n)
	}
	noGroupError(t, ctx, info.ID, a, b, c.node)
}

// TestGroupHomeDown: what a member sent while its group's second home was
// down, long enough that each entry gave that home up, is copied to it
// when it is back, in the first home's order: the home's catch-up from
// the first entry it failed to take. Before, the entries were lost to the
// second home: back at the same epoch, it took the next message as if it
// had missed nothing.
func TestGroupHomeDown(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r1, r2 := restartableRelay(t), restartableRelay(t)
	a := newTestNode(t, func(c *Config) {
		c.Bootstrap = []string{r1.node.Info().Addrs[0]}
		c.Groups.RetryMin = 20 * time.Millisecond
		c.Groups.RetryMax = 100 * time.Millisecond
	})
	info := createOnHomes(t, ctx, a, "down", r1, r2)
	down := epochOf(t, ctx, a, info.ID)
	r2.stop()
	for i := range 3 {
		sendSent(t, ctx, a, info.ID, fmt.Sprintf("down %d", i))
	}
	// Not retried for ever: each entry gives the home up.
	nodetest.WaitFor(t, time.Minute, "the entries give the second home up", func() bool { return outItems(t, ctx, a, info.ID) == 0 })
	r2.start()
	sendSent(t, ctx, a, info.ID, "back")
	nodetest.WaitFor(t, time.Minute, "the second home holds what it missed", func() bool {
		open, missing := homeMisses(t, ctx, a, r1, r2, info.ID, 1, down)
		return open == epochOf(t, ctx, a, info.ID) && missing == 0 && outItems(t, ctx, a, info.ID) == 0
	})
	if n := labelled(t, a, "sealpost_groups_home_catchups_total", "result", "done"); n == 0 {
		t.Error("no catch-up counted done")
	}
}

// TestGroupWelcomeSecondHome: a Welcome goes to a group's second home
// after the commit that opens its epoch there, also when that commit is
// held back. The second home takes one commit at once and then one every
// 30 s: the admin adds b (that commit takes the home's one) and then c,
// whose commit the second home refuses over its rate for a while. Before,
// the Welcome's pieces went to the second home as soon as the first held
// them: refused wrong_epoch (the epoch was not open there yet), they were
// given up, and c could not have joined from the second home while the
// first was down.
func TestGroupWelcomeSecondHome(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res := grouprelay.DefaultResources()
	res.CommitBurst, res.CommitRate = 1, 0.1
	r1, r2 := restartableRelay(t), restartableRelayWith(t, &res)
	opts := func(c *Config) {
		c.Bootstrap = []string{r1.node.Info().Addrs[0]}
		// The commit's retries on the second home outlast its refusals:
		// it is not given up there (which would make the home lag, and
		// its catch-up copy the Welcome).
		c.Groups.RetryMax = 5 * time.Second
	}
	a, b, c := newTestNode(t, opts), newTestNode(t, opts), newTestNode(t, opts)
	befriend(t, ctx, a, b, "b")
	befriend(t, ctx, a, c, "c")
	info := createOnHomes(t, ctx, a, "welcomes", r1, r2)
	start := epochOf(t, ctx, a, info.ID)
	if _, err := a.Groups().Add(ctx, info.ID, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ctx, info.ID, 2, a, b)
	if _, err := a.Groups().Add(ctx, info.ID, []string{"c"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ctx, info.ID, 3, a, b, c)
	nodetest.WaitFor(t, 2*time.Minute, "the second home holds every entry of the first, the Welcomes' too", func() bool {
		open, missing := homeMisses(t, ctx, a, r1, r2, info.ID, 1, start)
		return open == epochOf(t, ctx, a, info.ID) && missing == 0
	})
	t.Logf("catch-ups of the second home: %v", labelled(t, a, "sealpost_groups_home_catchups_total", "result", "done"))
	noGroupError(t, ctx, info.ID, a, b, c)
}

// TestGroupHomeDownRestart: a member restarted while its group's second
// home is down still catches that home up once it is back, with what it
// sent meanwhile: the entries gave the home up (they are no longer
// queued), and the home's lag is stored. Before, the restarted member
// knew nothing of it, and the home, back at the same epoch, took the
// next message without the others.
func TestGroupHomeDownRestart(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r1, r2 := restartableRelay(t), restartableRelay(t)
	a := newRestartable(t, func(c *Config) {
		c.Bootstrap = []string{r1.node.Info().Addrs[0]}
		c.Groups.RetryMin = 20 * time.Millisecond
		c.Groups.RetryMax = 100 * time.Millisecond
	})
	info := createOnHomes(t, ctx, a.node, "down", r1, r2)
	down := epochOf(t, ctx, a.node, info.ID)
	r2.stop()
	for i := range 3 {
		sendSent(t, ctx, a.node, info.ID, fmt.Sprintf("down %d", i))
	}
	nodetest.WaitFor(t, time.Minute, "the entries give the second home up", func() bool { return outItems(t, ctx, a.node, info.ID) == 0 })
	a.stop()
	a.start()
	r2.start()
	sendSent(t, ctx, a.node, info.ID, "back")
	nodetest.WaitFor(t, time.Minute, "the second home holds what it missed", func() bool {
		open, missing := homeMisses(t, ctx, a.node, r1, r2, info.ID, 1, down)
		return open == epochOf(t, ctx, a.node, info.ID) && missing == 0 && outItems(t, ctx, a.node, info.ID) == 0
	})
}

// TestGroupHomeLagsMore: a member whose append the second home did not
// answer copies it what it missed from that entry's epoch, and from an
// earlier one when the home turns out to lag more: it also missed a
// commit of another member, who is offline when the home is back. Before,
// the catch-up's appends were refused wrong_epoch again and again and the
// home stayed behind.
func TestGroupHomeLagsMore(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r1, r2, a, b, group := lagPair(t, ctx, "more", 100*time.Millisecond)
	down := epochOf(t, ctx, a, group)
	r2.stop()
	if _, err := b.node.Groups().Update(ctx, group); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{a, b.node} {
		nodetest.WaitFor(t, time.Minute, "every member past b's commit", func() bool { return epochOf(t, ctx, n, group) > down })
	}
	b.stop()
	sendSent(t, ctx, a, group, "after b's commit")
	r2.start()
	nodetest.WaitFor(t, time.Minute, "the second home holds what it missed", func() bool {
		open, missing := homeMisses(t, ctx, a, r1, r2, group, 1, down)
		return open == epochOf(t, ctx, a, group) && missing == 0
	})
}

// TestGroupHomeCatchUpRated: a catch-up that the second home's append
// rate stops goes on from the last entry it copied, and completes. The
// home missed two commits and 20 messages; it takes 4 appends at once.
// Before, a catch-up stopped past its first epoch started again from
// that epoch: its copies, answered duplicate, took the rate, and it
// never got further.
func TestGroupHomeCatchUpRated(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res := grouprelay.DefaultResources()
	res.AppendRate, res.AppendBurst = 4, 4
	r1, r2 := restartableRelay(t), restartableRelayWith(t, &res)
	a := newTestNode(t, func(c *Config) {
		c.Bootstrap = []string{r1.node.Info().Addrs[0]}
		c.Groups.RetryMin = 50 * time.Millisecond
		c.Groups.RetryMax = 500 * time.Millisecond
	})
	info := createOnHomes(t, ctx, a, "rated", r1, r2)
	down := epochOf(t, ctx, a, info.ID)
	r2.stop()
	for k := range 2 {
		for i := range 10 {
			sendSent(t, ctx, a, info.ID, fmt.Sprintf("down %d %d", k, i))
		}
		e := epochOf(t, ctx, a, info.ID)
		if _, err := a.Groups().Update(ctx, info.ID); err != nil {
			t.Fatal(err)
		}
		nodetest.WaitFor(t, time.Minute, "the commit", func() bool { return epochOf(t, ctx, a, info.ID) > e })
	}
	r2.start()
	sendSent(t, ctx, a, info.ID, "back")
	nodetest.WaitFor(t, 2*time.Minute, "the second home holds what it missed", func() bool {
		open, missing := homeMisses(t, ctx, a, r1, r2, info.ID, 1, down)
		return open == epochOf(t, ctx, a, info.ID) && missing == 0 && outItems(t, ctx, a, info.ID) == 0
	})
	if n := labelled(t, a, "sealpost_groups_home_catchups_total", "result", "done"); n == 0 {
		t.Error("no catch-up counted done")
	}
}

// TestGroupHomeLagStale: a member whose lag of its group's second home is
// stale (another member caught the home up) sends through that home
// while the first home is down. a and then b send while the second home
// is down (each stores the home's lag), b stops, the home comes back and
// a catches it up, b's entry too. Then the first home goes down and b
// comes back: its catch-up cannot read the first home, yet its message
// goes through the second, and a reads it there; once the first home is
// back, b's catch-up finds the home holds all and its lag is forgotten.
// Before, b's appends to the second home waited for that catch-up, which
// waited for the first home: b could send nothing while it was down.
func TestGroupHomeLagStale(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r1, r2, a, b, group := lagPair(t, ctx, "stale", 200*time.Millisecond)
	down := epochOf(t, ctx, a, group)
	r2.stop()
	sendSent(t, ctx, a, group, "a, second down")
	nodetest.WaitFor(t, time.Minute, "a to store the second home's lag", func() bool { return lagItems(t, ctx, a, group) == 1 })
	sendSent(t, ctx, b.node, group, "b, second down")
	nodetest.WaitFor(t, time.Minute, "b to store the second home's lag", func() bool { return lagItems(t, ctx, b.node, group) == 1 })
	b.stop()
	r2.start()
	nodetest.WaitFor(t, time.Minute, "a to catch the second home up", func() bool {
		open, missing := homeMisses(t, ctx, a, r1, r2, group, 1, down)
		return open == epochOf(t, ctx, a, group) && missing == 0 && lagItems(t, ctx, a, group) == 0
	})

	r1.stop()
	b.start()
	if lagItems(t, ctx, b.node, group) != 1 {
		t.Fatal("b's lag of the second home not stored")
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	sendSent(t, wctx, b.node, group, "b, first down")
	nodetest.WaitFor(t, time.Minute, "a reads b's message from the second home", func() bool {
		return slices.Contains(texts(t, ctx, a, group), "b, first down")
	})

	r1.start()
	nodetest.WaitFor(t, time.Minute, "b's lag forgotten", func() bool { return lagItems(t, ctx, b.node, group) == 0 })
	sendSent(t, ctx, a, group, "first back")
	nodetest.WaitFor(t, time.Minute, "b reads a's message", func() bool { return slices.Contains(texts(t, ctx, b.node, group), "first back") })
	noGroupError(t, ctx, group, a, b.node)
}

// outItems returns how many entries member m has on their way to its
// group's homes (workOut items).
func outItems(t *testing.T, ctx context.Context, m *Node, group string) int {
	t.Helper()
	return workItems(t, ctx, m, group, 1) // workOut
}

// lagItems returns how many of its group's homes member m has stored as
// lagging (workLag items).
func lagItems(t *testing.T, ctx context.Context, m *Node, group string) int {
	t.Helper()
	return workItems(t, ctx, m, group, 9) // workLag
}

// workItems returns how many work items of kind member m has stored for
// its group.
func workItems(t *testing.T, ctx context.Context, m *Node, group string, kind store.GroupWorkKind) int {
	t.Helper()
	gid, ok := groups.ParseGroupID(group)
	if !ok {
		t.Fatalf("group ID %q", group)
	}
	var n int
	err := m.cfg.Store.View(ctx, func(tx *store.Tx) error {
		w, err := tx.Groups().Work(gid, kind, 0)
		n = len(w)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestGroupLogCreatorQuota: a node's relay counts the group logs a peer
// creates in that peer's creator quota, across a restart of the relay:
// past it the creator is told too_many_logs, and another peer still
// creates its group there.
func TestGroupLogCreatorQuota(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res := grouprelay.DefaultResources()
	res.PeerMaxLogs = 2
	r := newRestartable(t, func(c *Config) {
		c.RelayService = true
		c.GroupRelay = res
	})
	at := []string{r.node.Info().Addrs[0]}
	a := newTestNode(t, func(c *Config) { c.Bootstrap = at })
	for _, name := range []string{"one", "two"} {
		if _, err := a.Groups().Create(ctx, name, at); err != nil {
			t.Fatalf("group %s: %v", name, err)
		}
	}
	if _, err := a.Groups().Create(ctx, "three", at); !errors.Is(err, protocol.ErrTooManyLogs) {
		t.Errorf("a third group of one peer: %v", err)
	}
	if n := labelled(t, r.node, "sealpost_relay_quota_refusals_total", "quota", "group_peer_logs"); n != 1 {
		t.Errorf("%v refusals counted for group_peer_logs, want 1", n)
	}
	r.stop()
	r.start()
	at = []string{r.node.Info().Addrs[0]}
	if _, err := a.Groups().Create(ctx, "three", at); !errors.Is(err, protocol.ErrTooManyLogs) {
		t.Errorf("a third group of one peer after a restart: %v", err)
	}
	b := newTestNode(t, func(c *Config) { c.Bootstrap = at })
	if _, err := b.Groups().Create(ctx, "b's", at); err != nil {
		t.Errorf("another peer's group: %v", err)
	}
}

// homeMisses returns the open epoch of group's log on relay r2 (its home
// i, r1 its first home, as member m has them), and how many entries r1
// holds of the epochs from `from` to r2's open one that r2 does not.
func homeMisses(t *testing.T, ctx context.Context, m *Node, r1, r2 *restartable, group string, i int, from uint64) (open uint64, missing int) {
	t.Helper()
	gid, ok := groups.ParseGroupID(group)
	if !ok {
		t.Fatalf("group ID %q", group)
	}
	var logs [2]protocol.GroupLogID
	err := m.cfg.Store.View(ctx, func(tx *store.Tx) error {
		g, err := tx.Groups().Get(gid)
		if err != nil {
			return err
		}
		logs[0], logs[1] = g.Homes[0].Log, g.Homes[i].Log
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	held := map[[32]byte]bool{}
	err = r2.st.View(ctx, func(tx *store.Tx) error {
		l, err := tx.RelayGroups().Log(logs[1])
		if err != nil {
			return err
		}
		open = l.Epoch
		for e := from; e <= open; e++ {
			err := tx.RelayGroups().Entries(logs[1], e, 0, 0, func(x store.RelayGroupEntry) error {
				held[sha256.Sum256(x.Entry)] = true
				return nil
			})
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = r1.st.View(ctx, func(tx *store.Tx) error {
		for e := from; e <= open; e++ {
			err := tx.RelayGroups().Entries(logs[0], e, 0, 0, func(x store.RelayGroupEntry) error {
				if !held[sha256.Sum256(x.Entry)] {
					missing++
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return open, missing
}
