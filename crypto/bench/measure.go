package bench

import (
	"runtime"
	"time"
)

// op is one measured operation: a figure or a primitive.
type op struct {
	name string
	fn   func() error
	best float64 // lowest ns/op over the rounds
}

// timeOp runs fn for at least d and returns the mean ns/op. It grows the
// batch size so that the clock is read rarely.
func timeOp(fn func() error, d time.Duration) (float64, error) {
	// Warm up caches and lazily built state.
	if err := fn(); err != nil {
		return 0, err
	}
	var (
		n     int
		batch = 1
		start = time.Now()
		el    time.Duration
	)
	for {
		for range batch {
			if err := fn(); err != nil {
				return 0, err
			}
		}
		n += batch
		el = time.Since(start)
		if el >= d {
			break
		}
		if el < d/10 {
			batch *= 2
		}
	}
	return float64(el.Nanoseconds()) / float64(n), nil
}

// measureAll times every op in rounds, interleaved, and keeps each op's
// best round: on a shared, noisy machine the least disturbed round is the
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
