package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/grouprelay"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
)

// restartableRelay is a relay on a fixed loopback port whose store
// outlives it: started again, it is the same relay at the same address.
func restartableRelay(t *testing.T) *restartable {
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
	boot := []string{r1.node.Info().Addrs[0]}
	opts := func(c *Config) {
		c.Bootstrap = boot
		c.Groups.ReceiptDelay = 100 * time.Millisecond
		c.Groups.FetchGrace = 100 * time.Millisecond
		c.Groups.RetryMax = 2 * time.Second
		c.Groups.Poll = 5 * time.Second
	}
	a := newTestNode(t, opts)
	b := newTestNode(t, opts)
	c := newRestartable(t, opts)
	befriend(t, ctx, a, b, "b")
	befriend(t, ctx, a, c.node, "c")
	info, err := a.Groups().Create(ctx, "two", []string{r1.node.Info().Addrs[0], r2.node.Info().Addrs[0]})
	if err != nil {
		t.Fatal(err)
	}
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
