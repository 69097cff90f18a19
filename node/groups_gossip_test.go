package node

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
)

// TestGroupGossipNotFetched: an entry a member took from the topic (or
// appended itself) is not read again from the log: not when a commit,
// which only the log carries, makes the member fetch, and not after the
// member restarts. The cursor on the first home moved over those entries.
// Heads wait long for the topic here (FetchGrace) and no poll comes, so
// every fetch is one the test makes happen or one of an entry the topic
// missed; such an entry is fetched once, never a copy of one taken.
func TestGroupGossipNotFetched(t *testing.T) {
	nodetest.CheckLeaks(t)
	gn := newGroupNetWith(t, 3, func(o *groups.Options) {
		o.FetchGrace = 10 * time.Second
		o.Poll = time.Hour
	})
	a, b, c := gn.nodes[0], gn.nodes[1], gn.nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	info := gn.trio(t, ctx, "gossip")
	holds := func(n *Node, text string) bool { return slices.Contains(texts(t, ctx, n, info.ID), text) }
	fetched := func(n *Node) float64 { return counter(t, n, "sealpost_groups_fetched_total") }
	dups := func(n *Node) float64 { return counter(t, n, "sealpost_groups_duplicates_total") }

	// The topic's mesh forms: a message reaches a and c without a fetch.
	for i := 0; ; i++ {
		if i == 10 {
			t.Fatal("no message came over the topic in 10 tries")
		}
		fa, fc := fetched(a), fetched(c)
		text := fmt.Sprintf("warm-up %d", i)
		if _, err := b.Groups().Send(ctx, info.ID, text); err != nil {
			t.Fatal(err)
		}
		nodetest.WaitFor(t, time.Minute, "the warm-up held", func() bool { return holds(a, text) && holds(c, text) })
		if fetched(a) == fa && fetched(c) == fc {
			break
		}
	}

	members := []*Node{a, b, c}
	var f0, d0 []float64
	for _, m := range members {
		f0, d0 = append(f0, fetched(m)), append(d0, dups(m))
	}
	const n = 10
	for i := range n {
		if _, err := b.Groups().Send(ctx, info.ID, fmt.Sprintf("text %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	last := fmt.Sprintf("text %d", n-1)
	nodetest.WaitFor(t, time.Minute, "every text held", func() bool { return holds(a, last) && holds(c, last) })

	// A commit: every member but its maker fetches it from the log.
	epoch := epochOf(t, ctx, a, info.ID)
	if _, err := a.Groups().Update(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		nodetest.WaitFor(t, time.Minute, "every member in the new epoch", func() bool { return epochOf(t, ctx, m, info.ID) > epoch })
	}
	for i, m := range members {
		if got := dups(m) - d0[i]; got != 0 {
			t.Errorf("member %d read %v copies of entries it held, want none", i, got)
		}
	}
	// The commit's fetch at c read the commit and what the topic missed,
	// not b's texts the topic brought (before, n+1 entries).
	if got := fetched(c) - f0[2]; got > n {
		t.Errorf("c fetched %v entries for %d texts and a commit; want the commit and what the topic missed", got, n)
	}
	// b appended the texts itself: the log brought back none of them.
	if got := fetched(b) - f0[1]; got > 1 {
		t.Errorf("b fetched %v entries after sending %d texts, want the commit only", got, n)
	}
}

// TestGroupGossipCursorStored: the cursor a member moved over entries it
// took from the topic is stored with the state that read them: back after
// a crash, the member reads none of them again from the log (its first
// fetch, and the fetch of the next commit, read the commit only).
func TestGroupGossipCursorStored(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	slow := func(c *Config) {
		c.Groups.FetchGrace = 10 * time.Second
		c.Groups.Poll = time.Hour
		c.Groups.StateEvery = time.Millisecond
	}
	p := newCrashPair(t, ctx, slow)
	holds := func(text string) bool { return slices.Contains(texts(t, ctx, p.b, p.group), text) }
	for i := 0; ; i++ {
		if i == 10 {
			t.Fatal("no message came over the topic in 10 tries")
		}
		f := counter(t, p.b, "sealpost_groups_fetched_total")
		text := fmt.Sprintf("warm-up %d", i)
		p.send(t, ctx, text)
		nodetest.WaitFor(t, time.Minute, "the warm-up held", func() bool { return holds(text) })
		if counter(t, p.b, "sealpost_groups_fetched_total") == f {
			break
		}
	}
	const n = 10
	var last protocol.MessageID
	for i := range n {
		last = p.send(t, ctx, fmt.Sprintf("text %d", i))
	}
	lastText := fmt.Sprintf("text %d", n-1)
	nodetest.WaitFor(t, time.Minute, "every text held", func() bool { return holds(lastText) })
	// The last text, then the keys that read it (with the group's
	// record, its cursor) are written.
	const tMessage, tGroupStateKeys = 0x07, 0x39
	msg := p.disk.wrote(0, func(k string) bool { return len(k) == 17 && k[0] == tMessage && k[1:] == string(last[:]) })
	if msg < 0 {
		t.Fatal("b holds the last text but its disk never wrote it")
	}
	nodetest.WaitFor(t, time.Minute, "b's MLS keys written after the last text", func() bool {
		return p.disk.wrote(msg+1, func(k string) bool { return len(k) == 33 && k[0] == tGroupStateKeys }) >= 0
	})
	p.crash(t, ctx, nil)

	epoch := epochOf(t, ctx, p.a, p.group)
	if _, err := p.a.Groups().Update(ctx, p.group); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, time.Minute, "b in the new epoch", func() bool { return epochOf(t, ctx, p.b, p.group) > epoch })
	if got := counter(t, p.b, "sealpost_groups_fetched_total"); got != 1 {
		t.Errorf("b fetched %v entries after the crash, want the commit only", got)
	}
	if got := counter(t, p.b, "sealpost_groups_duplicates_total"); got != 0 {
		t.Errorf("b read %v copies of entries it held after the crash, want none", got)
	}
}
