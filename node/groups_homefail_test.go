package node

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/store"
)

// failStore is a node's store whose write transactions fail while fail is
// set: a disk that broke under a relay. Reads go through.
type failStore struct {
	store.Store
	mu  sync.Mutex
	err error
}

func (f *failStore) Update(ctx context.Context, fn func(tx *store.Tx) error) error {
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.Store.Update(ctx, fn)
}

func (f *failStore) fail(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// failingRelays are two relays, the second on a store that can fail.
func failingRelays(t *testing.T) (r1, r2 *Node, fs *failStore) {
	t.Helper()
	r1 = newTestNode(t, func(c *Config) { c.RelayService = true })
	r2 = newTestNode(t, func(c *Config) {
		c.RelayService = true
		fs = &failStore{Store: c.Store}
		c.Store = fs
	})
	return r1, r2, fs
}

// homeFailNet is failingRelays and a group of a and b with the second as
// its home (the first is the members' bootstrap), b's copy of the group
// made sure of before it returns.
func homeFailNet(t *testing.T, ctx context.Context, opts func(*Config)) (a, b, r1, r2 *Node, fs *failStore, group string) {
	t.Helper()
	r1, r2, fs = failingRelays(t)
	mod := quickMember(r1.Info().Addrs[0], opts)
	a, b = newTestNode(t, mod), newTestNode(t, mod)
	return a, b, r1, r2, fs, pairGroup(t, ctx, a, b, "homes", r2.Info().Addrs[0])
}

// twoHomePair is failingRelays and a group of a and b on both relays, the
// failing one (r2) second, whose members back off 4 minutes a round from a
// home that fails (more changes their configuration further); opts makes
// more members of the kind.
func twoHomePair(t *testing.T, ctx context.Context, more func(*Config)) (opts func(*Config), a, b, r2 *Node, fs *failStore, group string) {
	t.Helper()
	r1, r2, fs := failingRelays(t)
	opts = quickMember(r1.Info().Addrs[0], func(c *Config) {
		c.Groups.RetryMin, c.Groups.RetryMax = 4*time.Minute, 4*time.Minute
		if more != nil {
			more(c)
		}
	})
	a, b = newTestNode(t, opts), newTestNode(t, opts)
	return opts, a, b, r2, fs, pairGroup(t, ctx, a, b, "homes", r1.Info().Addrs[0], r2.Info().Addrs[0])
}

// entries is the count of group log entries relay r holds.
func entries(t *testing.T, r *Node) uint64 {
	x, err := r.GroupRelay().Totals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return x.Entries
}

// waitTexts waits until n shows exactly the texts want of group, in any
// order, each once.
func waitTexts(t *testing.T, ctx context.Context, n *Node, group string, want ...string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	var got []string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		got = slices.Sorted(slices.Values(texts(t, ctx, n, group)))
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute the member shows %q, want %q", got, want)
		}
	}
}

// TestGroupHomeStoreFails: the store of a group's home relay fails (every
// append is answered internal). The member's appends back off as a whole
// and, past HomeFailsShown rounds, the member shows the relay's failure
// (the group's relays, a group.relay event, sealpost_groups_homes_failing).
// The store heals: the entry lands once, the other member reads it once,
// and the failure is no longer shown. Before, the failure was only logged
// at debug level.
func TestGroupHomeStoreFails(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, b, _, r2, fs, group := homeFailNet(t, ctx, func(c *Config) {
		c.Groups.RetryMin = 20 * time.Millisecond
		c.Groups.RetryMax = 200 * time.Millisecond
	})
	evctx, evcancel := context.WithCancel(ctx)
	defer evcancel()
	events := a.Subscribe(evctx)
	var evmu sync.Mutex
	var shown []groups.RelayEvent
	evdone := make(chan struct{})
	go func() {
		defer close(evdone)
		for e := range events {
			if re, ok := e.Data.(groups.RelayEvent); ok && e.Type == groups.EventRelay {
				evmu.Lock()
				shown = append(shown, re)
				evmu.Unlock()
			}
		}
	}()
	relayError := func() string {
		g, err := a.Groups().Show(ctx, group)
		if err != nil || len(g.Relays) != 1 {
			t.Fatalf("show: %+v, %v", g, err)
		}
		return g.Relays[0].Error
	}
	gauge := func() float64 { return gaugeOf(t, a, "sealpost_groups_homes_failing") }

	before := entries(t, r2)
	fs.fail(errors.New("disk on fire"))
	if _, err := a.Groups().Send(ctx, group, "one"); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, time.Minute, "a to show its home failing", func() bool { return relayError() != "" })
	if got := labelled(t, a, "sealpost_groups_append_failures_total", "code", "internal"); got < groups.HomeFailsShown {
		t.Errorf("append failures counted internal: %v, want at least %d", got, groups.HomeFailsShown)
	}
	if g := gauge(); g != 1 {
		t.Errorf("homes failing: %v, want 1", g)
	}
	if got := texts(t, ctx, b, group); len(got) != 0 {
		t.Errorf("b read %q while the home failed", got)
	}

	fs.fail(nil)
	waitTexts(t, ctx, b, group, "one")
	nodetest.WaitFor(t, time.Minute, "the failure no longer shown", func() bool { return relayError() == "" && gauge() == 0 })
	if got := entries(t, r2); got != before+1 {
		t.Errorf("the home holds %d entries, want %d: the one appended once", got, before+1)
	}
	evcancel()
	<-evdone
	evmu.Lock()
	defer evmu.Unlock()
	if len(shown) != 2 || shown[0].Error == "" || shown[1].Error != "" || shown[0].GroupID != group || shown[0].Relay != r2.ID().String() {
		t.Errorf("group.relay events %+v, want the failure shown, then cleared", shown)
	}
}

// TestGroupJoinSecondHomeFails: while a group's second home fails every
// append, a contact the admin adds joins through the first home, the
// admin's next commit is followed by every member, and the joiner reads
// what a member sends. The joiner is told of its Welcome, and the next
// commit goes, once the first home holds the Welcome; before, only once
// the second home took it too or was given up (8 tries, each after its
// backoff: 4 minutes a round here).
func TestGroupJoinSecondHomeFails(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts, a, b, _, fs, group := twoHomePair(t, ctx, nil)
	c := newTestNode(t, opts)
	befriend(t, ctx, a, c, "c")
	fs.fail(errors.New("disk on fire"))
	if _, err := a.Groups().Add(ctx, group, []string{"c"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ctx, group, 3, a, b, c)
	// a's next commit does not wait for the failing home either.
	e := epochOf(t, ctx, a, group)
	if _, err := a.Groups().Update(ctx, group); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{a, b, c} {
		nodetest.WaitFor(t, time.Minute, "every member past a's commit", func() bool { return epochOf(t, ctx, n, group) > e })
	}
	if _, err := b.Groups().Send(ctx, group, "to the one who joined"); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, time.Minute, "c reads b's message", func() bool {
		return slices.Contains(texts(t, ctx, c, group), "to the one who joined")
	})
}

// TestGroupHomeFailsOthersGoOn: while a group's second home fails every
// append (its store fails) and each member waits out that home's backoff,
// long here (2 to 4 minutes a round), the rest of the group's work goes
// on through the first home: messages are sent and delivered (the
// receipts go), a commit is made and followed, each within a minute, and
// the failing home is sent nothing more meanwhile. Before, a member
// waiting out one home's backoff did nothing else: b's message waited
// for a's receipt, which waited for a's backoff to end.
func TestGroupHomeFailsOthersGoOn(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, a, b, r2, fs, group := twoHomePair(t, ctx, func(c *Config) { c.Groups.Poll = 2 * time.Second })

	held := entries(t, r2)
	fs.fail(errors.New("disk on fire"))
	delivered := func(from, to *Node, text string) {
		t.Helper()
		r, err := from.Groups().Send(ctx, group, text)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := groups.ParseMessageID(r.ID)
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		if res, err := from.Groups().WaitState(wctx, id, groups.StateDelivered); err != nil {
			t.Fatalf("%q not delivered within a minute: %+v %v", text, res, err)
		}
		nodetest.WaitFor(t, time.Minute, "the other member reads "+text, func() bool {
			return slices.Contains(texts(t, ctx, to, group), text)
		})
	}
	delivered(a, b, "one")
	delivered(b, a, "two")
	delivered(a, b, "three")
	e := epochOf(t, ctx, a, group)
	if _, err := a.Groups().Update(ctx, group); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{a, b} {
		nodetest.WaitFor(t, time.Minute, "every member past a's commit", func() bool { return epochOf(t, ctx, n, group) > e })
	}
	delivered(b, a, "four")
	for _, n := range []*Node{a, b} {
		if got := labelled(t, n, "sealpost_groups_append_failures_total", "code", "internal"); got != 1 {
			t.Errorf("append failures counted internal: %v, want 1 (one round, then the home's backoff)", got)
		}
	}
	if got := entries(t, r2); got != held {
		t.Errorf("the failing home holds %d entries, had %d", got, held)
	}
	noGroupError(t, ctx, group, a, b)
}
