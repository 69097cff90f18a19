package node

import (
	"context"
	"fmt"
	"testing"
	"time"

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
	r := newTestNode(t, func(c *Config) { c.RelayService = true })
	p := newLogProxy(t, r)
	boot := []string{r.Info().Addrs[0]}
	a := newTestNode(t, func(c *Config) { c.Bootstrap = boot })
	m := newRestartable(t, func(c *Config) {
		c.Bootstrap = boot
		c.Groups.FetchGrace = 100 * time.Millisecond
	})
	inv, err := m.node.Messaging().Invite(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Messaging().AddContact(ctx, inv.Link, "m"); err != nil {
		t.Fatal(err)
	}
	info, err := a.Groups().Create(ctx, "misordered", []string{p.addr()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Groups().Add(ctx, info.ID, []string{"m"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ctx, info.ID, 2, a, m.node)
	m.stop()

	const n = misorderMin + 1
	var ids []protocol.MessageID
	for i := range n {
		s, err := a.Groups().Send(ctx, info.ID, fmt.Sprint("text ", i))
		if err != nil {
			t.Fatal(err)
		}
		id, _ := groups.ParseMessageID(s.ID)
		ids = append(ids, id)
	}
	for _, id := range ids {
		if _, err := a.Groups().WaitState(ctx, id, groups.StateSent); err != nil {
			t.Fatal(err)
		}
	}
	p.misorder.Store(true)
	m.start()
	var got int
	var lost, dup float64
	nodetest.WaitFor(t, 2*time.Minute, "m reads the log", func() bool {
		got = len(texts(t, ctx, m.node, info.ID))
		lost = labelled(t, m.node, "sealpost_groups_dropped_total", "reason", "evicted")
		dup = counter(t, m.node, "sealpost_groups_duplicates_total")
		return !p.misorder.Load() && float64(got)+lost+dup == n
	})
	t.Logf("m read %d of %d messages; %v lost, counted as evicted; %v duplicates", got, n, lost, dup)
	if lost == 0 {
		t.Error("no message counted as evicted")
	}
	if dup != 0 {
		t.Errorf("%v duplicates counted: messages lost look like copies", dup)
	}
}
