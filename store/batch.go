package store

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Batcher commits jobs in batches: one goroutine takes the jobs waiting at
// that moment, up to a total weight, and runs them in one transaction —
// group commit at the service level. A batch of N small writes costs one
// transaction and one fsync instead of N, and the records every job
// changes (a mailbox's counts, a contact's session) are written once per
// batch instead of making many small transactions conflict.
//
// With Inflight above 1, the next batch runs while the previous one waits
// for its fsync. Batches still commit in the order they were taken from
// the queue: each begins its transaction once the one before has committed
// (WithCommitted), so it sees that one's writes.
//
// If a batch of several jobs fails before it commits, each job is run
// again alone, so that one bad job (or a batch too big for one
// transaction) does not fail the others. A batch that committed and then
// failed to become durable is not run again.
type Batcher[J any] struct {
	st   Store
	opt  BatcherOptions[J]
	jobs chan J
	ctx  context.Context
	stop context.CancelFunc
	done chan struct{}

	// mu keeps Close from stopping the loop while a Submit is sending:
	// every job that went into jobs is taken out by the loop.
	mu     sync.RWMutex
	closed bool
}

// BatcherOptions configure a Batcher over jobs of type J.
type BatcherOptions[J any] struct {
	// Weight returns a job's share of a batch (by convention one per
	// record and one per KiB written) and whether it must be committed
	// alone.
	Weight func(j J) (weight int, exclusive bool)
	// MaxWeight is the weight committed together; a heavier job goes
	// alone. At most 1: every job alone.
	MaxWeight int
	// Inflight is how many batches may be committing at once. Zero: 1.
	Inflight int
	// Queue is how many submitted jobs may wait for the loop before
	// Submit blocks.
	Queue int
	// Run runs a batch inside its transaction, possibly more than once (a
	// conflicting transaction is retried), so it resets what it records
	// about the jobs at its start. It returns only errors that must abort
	// the transaction.
	Run func(tx *Tx, batch []J) error
	// Done is told the outcome of each batch — err nil means durable —
	// and how long its transaction took, from its start to its fsync. It
	// is also called, with ErrClosed, for jobs still queued at Close. It
	// runs on the Batcher's goroutines; batches may finish out of order.
	Done func(batch []J, took time.Duration, err error)
}

// NewBatcher starts a Batcher over st. Close stops it.
func NewBatcher[J any](st Store, opt BatcherOptions[J]) *Batcher[J] {
	opt.MaxWeight = max(opt.MaxWeight, 1)
	opt.Inflight = max(opt.Inflight, 1)
	ctx, stop := context.WithCancel(context.Background())
	b := &Batcher[J]{st: st, opt: opt, jobs: make(chan J, max(opt.Queue, 0)), ctx: ctx, stop: stop, done: make(chan struct{})}
	go b.loop()
	return b
}

// Submit queues j. It fails with ErrClosed once the Batcher is closed, or
// with ctx's error; otherwise Done will be told j's outcome.
func (b *Batcher[J]) Submit(ctx context.Context, j J) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	select {
	case b.jobs <- j:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Closed is closed once the Batcher has stopped: every batch finished and
// every queued job told ErrClosed.
func (b *Batcher[J]) Closed() <-chan struct{} { return b.done }

// Close stops taking jobs, fails the queued ones with ErrClosed, waits for
// the batches in flight and returns.
func (b *Batcher[J]) Close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.stop()
	<-b.done
}

func (b *Batcher[J]) loop() {
	defer close(b.done)
	slots := make(chan struct{}, b.opt.Inflight)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	var next []J
	// prev is closed once the batch before has committed.
	prev := make(chan struct{})
	close(prev)
	for {
		// Wait for a free slot before taking jobs: the jobs that arrive
		// meanwhile make the next batch bigger.
		slots <- struct{}{}
		batch := next
		next = nil
		if len(batch) == 0 {
			select {
			case j := <-b.jobs:
				batch = append(batch, j)
			case <-b.ctx.Done():
				for {
					select {
					case j := <-b.jobs:
						b.opt.Done([]J{j}, 0, ErrClosed)
					default:
						return
					}
				}
			}
		}
		weight, exclusive := b.opt.Weight(batch[0])
	fill:
		for !exclusive && weight < b.opt.MaxWeight {
			select {
			case j := <-b.jobs:
				w, x := b.opt.Weight(j)
				if x || weight+w > b.opt.MaxWeight {
					next = []J{j}
					break fill
				}
				batch = append(batch, j)
				weight += w
			default:
				break fill
			}
		}
		inflight.Add(1)
		after, committed := prev, make(chan struct{})
		prev = committed
		go func() {
			defer inflight.Done()
			<-after
			var once sync.Once
			b.commit(batch, func() { once.Do(func() { close(committed) }) })
			<-slots
		}()
	}
}

// commit runs batch in one transaction and tells Done; committed is
// called once the batch's writes are visible to the next transaction, or
// once nothing of them will be.
func (b *Batcher[J]) commit(batch []J, committed func()) {
	defer committed()
	start := time.Now()
	var visible bool
	ctx := WithCommitted(context.Background(), func() {
		visible = true
		committed()
	})
	err := b.st.Update(ctx, func(tx *Tx) error { return b.opt.Run(tx, batch) })
	if err != nil && !visible && len(batch) > 1 && !errors.Is(err, ErrClosed) {
		for _, j := range batch {
			b.commit([]J{j}, func() {})
		}
		return
	}
	b.opt.Done(batch, time.Since(start), err)
}
