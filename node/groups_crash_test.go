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

// crash fails every wait for a sync and returns a new slowDisk holding
// what was durable (durable, its log that of this one up to the crash),
// which can crash in its turn.
func (d *slowDisk) crash(t *testing.T) *slowDisk {
	t.Helper()
	d.mu.Lock()
	d.crashed = true
	d.cond.Broadcast()
	durable := slices.Clone(d.log[:d.durable])
	d.mu.Unlock()
	n := newSlowDisk()
	n.log, n.durable = durable, len(durable)
	err := n.mem.Update(context.Background(), func(kv store.KV) error {
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
	return n
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
	started int // the disk's commits when b last started
}

func newCrashPair(t *testing.T, ctx context.Context, modB func(c *Config)) *crashPair {
	t.Helper()
	p := &crashPair{disk: newSlowDisk()}
	p.r = newTestNode(t, func(c *Config) { c.RelayService = true })
	relay := p.r.Info().Addrs[0]
	p.member = quickMember(relay, nil)
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
	p.crashWith(t, ctx, ids, nil)
}

// crashWith is crash, with mod (unless nil) changing what the disk kept
// before b starts on it.
func (p *crashPair) crashWith(t *testing.T, ctx context.Context, ids []protocol.MessageID, mod func(kv store.KV) error) {
	t.Helper()
	p.disk = p.disk.crash(t)
	p.b.Close()
	if mod != nil {
		if err := p.disk.Update(ctx, mod); err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.Open(ctx, p.disk)
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
	p.started = p.disk.commits()
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	t.Cleanup(p.disk.release) // before b closes
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
	holdsAll(t, ctx, p.b, p.group, want)
}

// holdsAll waits until n holds want in group, each once.
func holdsAll(t *testing.T, ctx context.Context, n *Node, group string, want []string) {
	t.Helper()
	nodetest.WaitFor(t, time.Minute, "the messages held", func() bool {
		return len(texts(t, ctx, n, group)) >= len(want)
	})
	got := texts(t, ctx, n, group)
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Fatalf("holds %q, want %q", got, want)
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
	const tMessage = 0x07
	msgs := p.disk.wrote(0, func(k string) bool {
		return len(k) == 17 && k[0] == tMessage && (k[1:] == string(ids[0][:]) || k[1:] == string(ids[1][:]))
	})
	if msgs < 0 {
		t.Fatal("b holds the messages but its disk never wrote them")
	}
	// b only read messages: after them it writes the keys they used, not
	// its whole state.
	nodetest.WaitFor(t, time.Minute, "b's MLS keys written after the messages", func() bool {
		return p.disk.wrote(msgs+1, isGroupStateKeys) >= 0
	})
	if i := p.disk.wrote(msgs+1, isGroupState); i >= 0 {
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

// commits returns how many commits wrote something.
func (d *slowDisk) commits() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.log)
}

// sendFrom sends text from n to group.
func sendFrom(t *testing.T, ctx context.Context, n *Node, group, text string) {
	t.Helper()
	if _, err := n.Groups().Send(ctx, group, text); err != nil {
		t.Fatal(err)
	}
}

// Store keys of a group's MLS state (store/groups.go): the whole state
// (its first part), and the keys written after it.
const tGroupState, tGroupStateKeys = 0x18, 0x39

func isGroupState(k string) bool     { return len(k) == 33 && k[0] == tGroupState }
func isGroupStateKeys(k string) bool { return len(k) == 33 && k[0] == tGroupStateKeys }

// TestGroupOwnMessagesWriteKeys: a member's own application messages move
// only its sender ratchet, so before each leaves it writes the keys of
// its MLS state, not the whole state (which grows with the group); the
// others read them.
func TestGroupOwnMessagesWriteKeys(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newCrashPair(t, ctx, func(c *Config) {})
	from := p.disk.commits()
	changes := labelled(t, p.b, "sealpost_groups_state_writes_total", "why", "change")
	bytes0 := counter(t, p.b, "sealpost_groups_state_bytes_total")
	var want []string
	for i := range 3 {
		text := "from b " + string(rune('a'+i))
		want = append(want, text)
		sendFrom(t, ctx, p.b, p.group, text)
	}
	holdsAll(t, ctx, p.a, p.group, want)
	if p.disk.wrote(from, isGroupStateKeys) < 0 {
		t.Error("b wrote no MLS keys with its messages")
	}
	if i := p.disk.wrote(from, isGroupState); i >= 0 {
		t.Errorf("b wrote its whole MLS state with its own messages (commit %d), want only their keys", i)
	}
	if got := labelled(t, p.b, "sealpost_groups_state_writes_total", "why", "keys"); got < 3 {
		t.Errorf("b counted %v writes of keys, want one a message at least", got)
	}
	if got := labelled(t, p.b, "sealpost_groups_state_writes_total", "why", "change"); got != changes {
		t.Errorf("b counted %v writes of its whole state, %v before its messages", got, changes)
	}
	if got := counter(t, p.b, "sealpost_groups_state_bytes_total"); got <= bytes0 {
		t.Errorf("b counted %v bytes of state written, %v before its messages", got, bytes0)
	}
}

// TestGroupSendAfterCrash: a member that sent messages (their keys
// written, not its whole state) crashes and comes back: its stored keys
// carry its sender ratchet on, so it sends on with the generations after
// those used (a generation used again is read as a duplicate and dropped)
// and the others read every message. With its stored keys then broken (as
// if they did not fit its state: its state alone would encrypt with
// generations used), it encrypts nothing more in the epoch: its key update
// ends it, and the message sent meanwhile goes out in the next.
func TestGroupSendAfterCrash(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newCrashPair(t, ctx, func(c *Config) {})
	var want []string
	send := func(text string) {
		t.Helper()
		want = append(want, text)
		sendFrom(t, ctx, p.b, p.group, text)
	}
	for i := range 3 {
		send("before the crash " + string(rune('a'+i)))
	}
	holdsAll(t, ctx, p.a, p.group, want)
	if p.disk.wrote(0, isGroupStateKeys) <= p.disk.wrote(0, isGroupState) {
		t.Fatal("b wrote no MLS keys after its state: the test means its sender ratchet to be in them")
	}
	p.crash(t, ctx, nil)
	for i := range 3 {
		send("after the crash " + string(rune('a'+i)))
	}
	holdsAll(t, ctx, p.a, p.group, want)

	epoch := epochOf(t, ctx, p.b, p.group)
	p.crashWith(t, ctx, nil, breakKeys)
	send("with the keys lost")
	holdsAll(t, ctx, p.a, p.group, want)
	if got := epochOf(t, ctx, p.b, p.group); got <= epoch {
		t.Errorf("b sent in epoch %d, the one of its lost keys", got)
	}
}

// breakKeys cuts the last byte off the one group's MLS keys stored, so
// that they no longer fit its state.
func breakKeys(kv store.KV) error {
	var keys [][2][]byte
	err := kv.Scan([]byte{tGroupStateKeys}, []byte{tGroupStateKeys + 1}, false, func(k, v []byte) error {
		keys = append(keys, [2][]byte{slices.Clone(k), slices.Clone(v)})
		return nil
	})
	if err != nil {
		return err
	}
	if len(keys) != 1 {
		return fmt.Errorf("%d keys stored, want the group's", len(keys))
	}
	return kv.Set(keys[0][0], keys[0][1][:len(keys[0][1])-1])
}

// TestGroupKeysLostKept: a member whose stored keys did not fit its state
// writes its state whole until its key update ends the epoch, and keeps
// those keys stored with it: crashed again before the update landed (its
// home relay down), it still encrypts nothing in the epoch. Its state
// alone, without them, would encrypt with its sender ratchet behind the
// messages it sent.
func TestGroupKeysLostKept(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newCrashPair(t, ctx, func(c *Config) {})
	sendFrom(t, ctx, p.b, p.group, "before the crash")
	holdsAll(t, ctx, p.a, p.group, []string{"before the crash"})
	// The relay down: b's key update cannot land.
	p.r.Close()
	p.crashWith(t, ctx, nil, breakKeys)
	// b makes its key update: its state, the commit pending, is written
	// whole.
	nodetest.WaitFor(t, time.Minute, "b's state written with its key update", func() bool {
		return p.disk.wrote(p.started, isGroupState) >= 0
	})
	p.crash(t, ctx, nil)
	sendFrom(t, ctx, p.b, p.group, "after the second crash")
	if got := labelled(t, p.b, "sealpost_groups_state_writes_total", "why", "keys"); got != 0 {
		t.Errorf("b wrote keys of its own message %v times in the epoch of its lost keys, want none (nothing encrypted)", got)
	}
}

// TestGroupCommitStoredRestart: a member that stopped with a commit of its
// own stored but not yet appended (its home relay down) loads the group
// again when it is back, the commit still on its way.
func TestGroupCommitStoredRestart(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newCrashPair(t, ctx, func(c *Config) {})
	p.r.Close()
	from := p.disk.commits()
	if _, err := p.b.Groups().Update(ctx, p.group); err != nil {
		t.Fatal(err)
	}
	// The commit is made: the state, the commit pending, written whole
	// with the entry.
	nodetest.WaitFor(t, time.Minute, "b's key update made", func() bool {
		return p.disk.wrote(from, isGroupState) >= 0
	})
	p.crash(t, ctx, nil)
	g, err := p.b.Groups().Show(ctx, p.group)
	if err != nil || g.State != "active" || len(g.Members) != 2 {
		t.Fatalf("b's group after the restart: %+v, %v", g, err)
	}
}
