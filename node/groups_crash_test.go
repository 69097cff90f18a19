package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// slowDisk is a store backend whose commits are visible at once and
// durable only when a sync runs, as on a disk with a slow fsync: like
// badgerstore's, an Update returns once its write is durable, and a View
// once what it may have seen is. Syncs run at once until hold; crash
// returns a backend with only what was durable, as a machine that lost
// its power would find on its disk.
type slowDisk struct {
	mem store.Backend // what is committed

	mu      sync.Mutex
	cond    *sync.Cond
	log     []map[string][]byte // each commit's writes (nil: a deletion), in order
	durable int                 // log[:durable] is durable
	held    bool
	crashed bool
}

func newSlowDisk() *slowDisk {
	d := &slowDisk{mem: store.NewMemoryBackend()}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// hold stops the syncs: from now on nothing more becomes durable.
func (d *slowDisk) hold() {
	d.mu.Lock()
	d.held = true
	d.mu.Unlock()
}

// release lets the syncs run again.
func (d *slowDisk) release() {
	d.mu.Lock()
	d.held = false
	d.cond.Broadcast()
	d.mu.Unlock()
}

// crash fails every wait for a sync and returns a new backend holding
// what was durable.
func (d *slowDisk) crash(t *testing.T) store.Backend {
	t.Helper()
	d.mu.Lock()
	d.crashed = true
	d.cond.Broadcast()
	durable := slices.Clone(d.log[:d.durable])
	d.mu.Unlock()
	b := store.NewMemoryBackend()
	err := b.Update(context.Background(), func(kv store.KV) error {
		for _, w := range durable {
			for k, v := range w {
				var err error
				if v == nil {
					err = kv.Delete([]byte(k))
				} else {
					err = kv.Set([]byte(k), v)
				}
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// settle waits until log[:n] is durable.
func (d *slowDisk) settle(n int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		switch {
		case d.crashed:
			return store.ErrClosed
		case d.durable >= n:
			return nil
		case !d.held:
			d.durable = len(d.log)
			return nil
		}
		d.cond.Wait()
	}
}

func (d *slowDisk) View(ctx context.Context, fn func(store.KV) error) error {
	if err := d.mem.View(ctx, fn); err != nil {
		return err
	}
	d.mu.Lock()
	n := len(d.log)
	d.mu.Unlock()
	return d.settle(n)
}

func (d *slowDisk) Update(ctx context.Context, fn func(store.KV) error) error {
	var w *recordKV
	n := -1
	committed := store.Committed(ctx)
	// The memory backend runs one Update at a time and calls this before
	// it lets the next begin: the log is in commit order.
	ctx = store.WithCommitted(ctx, func() {
		d.mu.Lock()
		if w != nil && len(w.writes) > 0 {
			d.log = append(d.log, w.writes)
		}
		n = len(d.log)
		d.mu.Unlock()
		committed()
	})
	err := d.mem.Update(ctx, func(kv store.KV) error {
		w = &recordKV{KV: kv, writes: map[string][]byte{}}
		return fn(w)
	})
	if err != nil || n < 0 {
		return err
	}
	return d.settle(n)
}

func (d *slowDisk) Close() error { return d.mem.Close() }

// recordKV notes the writes of a transaction.
type recordKV struct {
	store.KV
	writes map[string][]byte
}

func (r *recordKV) Set(k, v []byte) error {
	r.writes[string(k)] = slices.Clone(v)
	return r.KV.Set(k, v)
}

func (r *recordKV) Delete(k []byte) error {
	r.writes[string(k)] = nil
	return r.KV.Delete(k)
}

// crashPair is a group of two on a relay: a, and b on a slowDisk that can
// crash; restart starts b again on what its disk kept.
type crashPair struct {
	r, a, b *Node
	disk    *slowDisk
	member  func(c *Config)
	group   string
}

func newCrashPair(t *testing.T, ctx context.Context, modB func(c *Config)) *crashPair {
	t.Helper()
	p := &crashPair{disk: newSlowDisk()}
	p.r = newTestNode(t, func(c *Config) { c.RelayService = true })
	p.member = func(c *Config) {
		c.Bootstrap = []string{p.r.Info().Addrs[0]}
		c.Groups.ReceiptDelay = 100 * time.Millisecond
		c.Groups.FetchGrace = 100 * time.Millisecond
	}
	p.a = newTestNode(t, p.member)
	st, err := store.Open(ctx, p.disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := Provision(ctx, st, "test", nil); err != nil {
		t.Fatal(err)
	}
	p.b = newTestNode(t, func(c *Config) {
		p.member(c)
		c.Store = st
		modB(c)
	})
	t.Cleanup(p.disk.release) // before b closes (cleanups run last first)
	befriend(t, ctx, p.a, p.b, "b")
	info, err := p.a.Groups().Create(ctx, "crash", []string{p.r.Info().Addrs[0]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.a.Groups().Add(ctx, info.ID, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ctx, info.ID, 2, p.a, p.b)
	p.group = info.ID
	return p
}

// crash crashes b's disk, closes b, checks that none of ids survived,
// and starts b again on what the disk kept.
func (p *crashPair) crash(t *testing.T, ctx context.Context, ids []protocol.MessageID) {
	t.Helper()
	back := p.disk.crash(t)
	p.b.Close()
	st, err := store.Open(ctx, back)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, id := range ids {
		err := st.View(ctx, func(tx *store.Tx) error {
			_, err := tx.Messages().Get(id)
			return err
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("message %s survived the crash (%v); the test means to lose it", id, err)
		}
	}
	cfg, err := Defaults(Test)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store = st
	p.member(&cfg)
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	p.b = b
}

// send sends text from a and returns its ID.
func (p *crashPair) send(t *testing.T, ctx context.Context, text string) protocol.MessageID {
	t.Helper()
	res, err := p.a.Groups().Send(ctx, p.group, text)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := groups.ParseMessageID(res.ID)
	return id
}

// holds waits until b holds want, each once.
func (p *crashPair) holds(t *testing.T, ctx context.Context, want []string) {
	t.Helper()
	nodetest.WaitFor(t, time.Minute, "b to hold the messages", func() bool {
		return len(texts(t, ctx, p.b, p.group)) >= len(want)
	})
	got := texts(t, ctx, p.b, p.group)
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Fatalf("b holds %q, want %q", got, want)
	}
}

// TestGroupReceiveCrash: a member goes on receiving a group's messages
// while none of what it writes becomes durable (it does not wait for the
// disk on what it receives), and after a crash that takes all of that
// back it reads them again from the home relay: each once, none lost.
func TestGroupReceiveCrash(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newCrashPair(t, ctx, func(c *Config) {
		// No receipt round while the disk is held: its read of the
		// receipts to send would wait for a sync.
		c.Groups.ReceiptDelay = time.Hour
	})
	// What b has committed, read past the held syncs.
	committed, err := store.Open(ctx, p.disk.mem)
	if err != nil {
		t.Fatal(err)
	}
	has := func(id protocol.MessageID) bool {
		err := committed.View(ctx, func(tx *store.Tx) error {
			_, err := tx.Messages().Get(id)
			return err
		})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	p.disk.hold()
	var want []string
	var ids []protocol.MessageID
	for i := range 5 {
		text := "while the disk is slow " + string(rune('a'+i))
		want = append(want, text)
		id := p.send(t, ctx, text)
		ids = append(ids, id)
		// One at a time: a member waiting for the disk after the first
		// would never commit the second.
		nodetest.WaitFor(t, time.Minute, fmt.Sprintf("b to commit message %d with its disk held", i), func() bool { return has(id) })
	}
	p.crash(t, ctx, ids)
	p.holds(t, ctx, want)
}

// TestGroupStateWaits: a member writes its group's MLS state moved on by
// messages received only now and then (Options.StateEvery), with its log
// cursor; a crash after the messages were written but not that state
// leaves it to read them again from the log: it holds each once and
// follows the group on.
func TestGroupStateWaits(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newCrashPair(t, ctx, func(c *Config) { c.Groups.StateEvery = time.Hour })
	var want []string
	for i := range 5 {
		text := "before the crash " + string(rune('a'+i))
		want = append(want, text)
		p.send(t, ctx, text)
	}
	p.holds(t, ctx, want) // written, durable: the state is not
	if got := labelled(t, p.b, "sealpost_groups_state_writes_total", "why", "deferred"); got != 0 {
		t.Errorf("b counted %v deferred state writes before the crash, want none", got)
	}
	p.crash(t, ctx, nil)
	p.holds(t, ctx, want)
	want = append(want, "after the crash")
	p.send(t, ctx, "after the crash")
	p.holds(t, ctx, want)
}

// wrote reports whether a commit after log[from:] wrote a key for which
// match holds, and returns the index of the last commit that did (-1:
// none).
func (d *slowDisk) wrote(from int, match func(k string) bool) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	last := -1
	for i := from; i < len(d.log); i++ {
		for k := range d.log[i] {
			if match(k) {
				last = i
			}
		}
	}
	return last
}

// TestGroupReceiptsAfterRestart: a member that stopped with receipts
// still to send (the messages committed, durable, with its MLS state)
// sends them once it is back, without waiting for another message to
// come: the sender sees its messages delivered.
func TestGroupReceiptsAfterRestart(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newCrashPair(t, ctx, func(c *Config) {
		c.Groups.ReceiptDelay = time.Hour // none sent before the crash
		c.Groups.StateEvery = time.Millisecond
	})
	want := []string{"before the stop a", "before the stop b"}
	var ids []protocol.MessageID
	for _, text := range want {
		ids = append(ids, p.send(t, ctx, text))
	}
	p.holds(t, ctx, want)
	// The messages and then the MLS keys that read them are durable:
	// back, b reads nothing again from the log (which would make it cover
	// them anew), so only what it stored can bring its receipts.
	const tMessage, tGroupState = 0x07, 0x18
	msgs := p.disk.wrote(0, func(k string) bool {
		return len(k) == 17 && k[0] == tMessage && (k[1:] == string(ids[0][:]) || k[1:] == string(ids[1][:]))
	})
	if msgs < 0 {
		t.Fatal("b holds the messages but its disk never wrote them")
	}
	// b only read messages: after them it writes the keys they used, not
	// its whole state.
	const tGroupStateKeys = 0x39
	nodetest.WaitFor(t, time.Minute, "b's MLS keys written after the messages", func() bool {
		return p.disk.wrote(msgs+1, func(k string) bool { return len(k) == 33 && k[0] == tGroupStateKeys }) >= 0
	})
	if i := p.disk.wrote(msgs+1, func(k string) bool { return len(k) == 33 && k[0] == tGroupState }); i >= 0 {
		t.Errorf("b wrote its whole MLS state after reading the messages (commit %d), want only their keys", i)
	}
	// b only read messages: its state waited for StateEvery.
	if got := labelled(t, p.b, "sealpost_groups_state_writes_total", "why", "deferred"); got < 1 {
		t.Errorf("b counted %v deferred state writes, want at least 1", got)
	}
	if got := counter(t, p.b, "sealpost_groups_state_bytes_total"); got <= 0 {
		t.Errorf("b counted %v bytes of state written, want some", got)
	}
	p.crash(t, ctx, nil)
	for _, id := range ids {
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := p.a.Groups().WaitState(wctx, id, groups.StateDelivered)
		wcancel()
		if err != nil {
			t.Fatalf("message %s not delivered after b came back: %v (%+v)", id, err, res)
		}
		if len(res.Members) != 1 || res.Members[0].At.IsZero() {
			t.Fatalf("per-member deliveries: %+v", res.Members)
		}
	}
	if got := counter(t, p.b, "sealpost_groups_received_total"); got != 0 {
		t.Errorf("b committed %v messages again after the restart, want 0 (the test means its state to be durable)", got)
	}
}
