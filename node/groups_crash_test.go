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

// TestGroupReceiveCrash: a member goes on receiving a group's messages
// while none of what it writes becomes durable (it does not wait for the
// disk on what it receives), and after a crash that takes all of that
// back it reads them again from the home relay: each once, none lost.
func TestGroupReceiveCrash(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newTestNode(t, func(c *Config) { c.RelayService = true })
	member := func(c *Config) {
		c.Bootstrap = []string{r.Info().Addrs[0]}
		c.Groups.ReceiptDelay = 100 * time.Millisecond
		c.Groups.FetchGrace = 100 * time.Millisecond
	}
	a := newTestNode(t, member)
	disk := newSlowDisk()
	st, err := store.Open(ctx, disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := Provision(ctx, st, "test", nil); err != nil {
		t.Fatal(err)
	}
	b := newTestNode(t, func(c *Config) {
		member(c)
		c.Store = st
		// No receipt round while the disk is held: its read of the
		// receipts to send would wait for a sync.
		c.Groups.ReceiptDelay = time.Hour
	})
	t.Cleanup(disk.release) // before b closes (cleanups run last first)
	befriend(t, ctx, a, b, "b")
	info, err := a.Groups().Create(ctx, "crash", []string{r.Info().Addrs[0]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Groups().Add(ctx, info.ID, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ctx, info.ID, 2, a, b)

	// What b has committed, read past the held syncs.
	committed, err := store.Open(ctx, disk.mem)
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
	disk.hold()
	const n = 5
	var want []string
	var ids []protocol.MessageID
	for i := range n {
		text := "while the disk is slow " + string(rune('a'+i))
		want = append(want, text)
		res, err := a.Groups().Send(ctx, info.ID, text)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := groups.ParseMessageID(res.ID)
		ids = append(ids, id)
		// One at a time: a member waiting for the disk after the first
		// would never commit the second.
		nodetest.WaitFor(t, time.Minute, fmt.Sprintf("b to commit message %d with its disk held", i), func() bool { return has(id) })
	}

	back := disk.crash(t)
	b.Close()
	st2, err := store.Open(ctx, back)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st2.Close() })
	for _, id := range ids {
		err := st2.View(ctx, func(tx *store.Tx) error {
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
	cfg.Store = st2
	member(&cfg)
	b2, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b2.Close() })
	nodetest.WaitFor(t, time.Minute, "b to read the messages again from the log", func() bool {
		return len(texts(t, ctx, b2, info.ID)) >= n
	})
	got := texts(t, ctx, b2, info.ID)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("b holds %q after the crash, want %q", got, want)
	}
}
