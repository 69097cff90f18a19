// Package bench is the Figure every runner of `sealpost bench` returns. The
// runners live in the packages below it, one per group of figures:
//
//	cryptobench    ratchet, PQXDH, sealing and MLS groups (crypto/...)
//	storebench     durable and group-committed writes (store/badgerstore)
//	relaybench     a relay's deposit path and relay-to-subscriber latency
//	               (node/relay, node/mailbox)
//	deliverybench  direct delivery between two nodes (node)
//	filebench      the attachment format and a file between two nodes
//	               (crypto/attachment, node/files)
//
// Each figure is reported next to its limit: a bound computed in the same
// run from the cost of the primitives it is made of, so that the ratio
// value/limit stays meaningful on a noisy, shared machine.
package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Figure is one measured figure. Names are stable snake_case identifiers
// (`ratchet_roundtrip`, `store_batch_write`); units are short strings such as
// "ops/s", "msgs/s", "ms" or "allocs/op".
type Figure struct {
	Name  string  `json:"name"`
	Unit  string  `json:"unit"`
	Value float64 `json:"value"`
	// Limit is the bound for Value computed in the same run by the figure's
	// fixed formula; zero when no formula defines one.
	Limit float64 `json:"limit,omitempty"`
	// Ratio is Value/Limit for throughputs (higher is better), or Limit/Value
	// for durations; zero when Limit is zero.
	Ratio float64 `json:"ratio,omitempty"`
}

// Rate returns a throughput figure (higher is better): Ratio is value/limit,
// or zero when there is no limit.
func Rate(name, unit string, value, limit float64) Figure {
	f := Figure{Name: name, Unit: unit, Value: value, Limit: limit}
	if limit > 0 {
		f.Ratio = value / limit
	}
	return f
}

// Parallel calls fn from workers goroutines, each again and again until
// about d has passed, ctx has ended or a call failed, and returns the
// successful calls per second and their number. fn learns which worker
// calls it. The error is the first call's that failed, else ctx's.
func Parallel(ctx context.Context, workers int, d time.Duration, fn func(worker int) error) (float64, int64, error) {
	var (
		n        atomic.Int64
		failed   atomic.Bool
		firstErr error
		once     sync.Once
		wg       sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil && !failed.Load() {
				if err := fn(w); err != nil {
					once.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, 0, firstErr
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	return float64(n.Load()) / elapsed.Seconds(), n.Load(), nil
}
