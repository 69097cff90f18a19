package cryptobench

import (
	"math"
	"runtime"
	"time"
)

// op is one measured operation: a figure or a primitive.
type op struct {
	name string
	fn   func() error
	best float64 // lowest ns/op over the rounds
}

// batchTarget is the length of one timed batch: short enough that most
// batches run without being preempted on a busy machine, long enough that
// reading the clock costs nothing.
const batchTarget = 200 * time.Microsecond

// timeOp runs fn for about d in batches of about batchTarget and returns the
// best batch's ns/op: the cost of fn when nothing else got in its way.
func timeOp(fn func() error, d time.Duration) (float64, error) {
	run := func(n int) (time.Duration, error) {
		start := time.Now()
		for range n {
			if err := fn(); err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	}
	// Warm up, and find the batch size.
	batch := 1
	for {
		el, err := run(batch)
		if err != nil {
			return 0, err
		}
		if el >= batchTarget || batch >= 1<<20 {
			break
		}
		batch *= 2
	}
	best := math.Inf(1)
	start := time.Now()
	for i := 0; i < 3 || time.Since(start) < d; i++ {
		el, err := run(batch)
		if err != nil {
			return 0, err
		}
		best = min(best, float64(el.Nanoseconds())/float64(batch))
	}
	return best, nil
}

// measureAll times every op in rounds, interleaved, and keeps each op's
// best batch: on a shared, noisy machine the least disturbed batch is the
// closest to the true cost, for the figures and their primitives alike.
func measureAll(ops []*op, rounds int, d time.Duration) error {
	for r := range rounds {
		for _, o := range ops {
			ns, err := timeOp(o.fn, d)
			if err != nil {
				return err
			}
			if r == 0 || ns < o.best {
				o.best = ns
			}
		}
	}
	return nil
}

// allocsPerRun is testing.AllocsPerRun without importing testing: the
// average number of heap allocations of fn over runs calls.
func allocsPerRun(runs int, fn func() error) (float64, error) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	if err := fn(); err != nil {
		return 0, err
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		if err := fn(); err != nil {
			return 0, err
		}
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(runs), nil
}
