package testnet

import (
	"context"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/internal/clock"
)

// gcWatch records when the process's garbage collector ran a cycle,
// from its first stop-the-world pause to its completion, as seen by
// reading runtime/metrics every gcWatchEvery. In an in-process testnet
// the nodes share one heap: a cycle marks all of it at once (hundreds of
// megabytes, for tenths of a second), taking a quarter of the CPU and
// drafting the goroutines that allocate meanwhile, so a message fanning
// out then is slowed at every member together. A node alone marks only
// its own heap, a hundredth of that in a testnet of 100.
type gcWatch struct {
	mu     sync.Mutex
	cycles []gcCycle
	open   time.Time // the cycle under way began then (zero: none)
}

type gcCycle struct{ start, end time.Time }

const gcWatchEvery = 2 * time.Millisecond

// watchGC starts a gcWatch, which runs until ctx ends.
func watchGC(ctx context.Context) *gcWatch {
	w := &gcWatch{}
	samples := []metrics.Sample{{Name: "/sched/pauses/total/gc:seconds"}, {Name: "/gc/cycles/total:gc-cycles"}}
	read := func() (pauses, cycles uint64) {
		metrics.Read(samples)
		if samples[0].Value.Kind() == metrics.KindFloat64Histogram {
			for _, c := range samples[0].Value.Float64Histogram().Counts {
				pauses += c
			}
		}
		if samples[1].Value.Kind() == metrics.KindUint64 {
			cycles = samples[1].Value.Uint64()
		}
		return pauses, cycles
	}
	pauses, cycles := read()
	last := time.Now() // when pauses and cycles were read
	go clock.Tick(ctx, clock.System(), gcWatchEvery, func() {
		p, c := read()
		now := time.Now()
		w.mu.Lock()
		if p > pauses && w.open.IsZero() {
			// A cycle begins with a pause; the sample before saw none.
			w.open = last
		}
		if c > cycles {
			start := w.open
			if start.IsZero() {
				start = last
			}
			w.cycles = append(w.cycles, gcCycle{start, now})
			w.open = time.Time{}
		}
		w.mu.Unlock()
		pauses, cycles, last = p, c, now
	})
	return w
}

// overlaps reports whether a cycle ran at some moment of [from, to]: one
// under way at to counts too.
func (w *gcWatch) overlaps(from, to time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.open.IsZero() && w.open.Before(to) {
		return true
	}
	for _, c := range w.cycles {
		if c.start.Before(to) && c.end.After(from) {
			return true
		}
	}
	return false
}

// TestGCWatch: a cycle the test forces is seen, over the moments it ran,
// and no cycle it records ends before it begins.
func TestGCWatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := watchGC(ctx)
	time.Sleep(20 * gcWatchEvery)
	before := time.Now()
	runtime.GC()
	done := time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for !w.overlaps(before, time.Now()) {
		if time.Now().After(deadline) {
			t.Fatal("the forced cycle was not seen")
		}
		time.Sleep(gcWatchEvery)
	}
	if !w.overlaps(before, done) {
		t.Error("the forced cycle is not seen over the moments it ran")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.cycles {
		if c.end.Before(c.start) {
			t.Errorf("a cycle ends before it begins: %+v", c)
		}
	}
}
