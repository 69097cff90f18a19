// Package jobs is the write path of sealpost's relay services: every change
// to the store goes through a store.Batcher, which commits the jobs waiting
// at that moment in one transaction (group commit: one fsync for many
// clients' writes). Batches commit in the order they were queued. A job
// refused by its own checks writes nothing and does not fail its batch;
// only a store error does, and then the Batcher runs each job alone.
package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/sealpost/sealpost/node/internal/clock"
	"github.com/sealpost/sealpost/store"
)

// Job is one unit of work.
type Job struct {
	// Fn runs inside the transaction, possibly more than once (a backend
	// may retry a conflicting transaction), so it resets its results at
	// its start. It returns only errors that must abort the transaction.
	Fn func(tx *store.Tx, now time.Time) error
	// Weight is its share of a batch: 1 per record, 1 per KiB written.
	Weight int
	// Exclusive jobs are committed alone.
	Exclusive bool
	// After runs once the transaction is durable.
	After func()
	// Release, if set, runs once the job's outcome is known, whatever it
	// is (durable, failed, or dropped at Close), before Wait returns: the
	// job frees there what it held only to be run (an entry's bytes).
	Release func()

	done chan struct{}
	err  error
}

// Ready reports whether the job's transaction has finished.
func (j *Job) Ready() bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// Wait waits for the job's transaction and returns its error (nil:
// durable; ErrClosed: the writer closed first).
func (j *Job) Wait() error {
	<-j.done
	return j.err
}

// ErrClosed is a job's error when its Writer closed before running it.
var ErrClosed = store.ErrClosed

// Options tune a Writer.
type Options struct {
	// MaxBatch is the weight committed in one transaction.
	MaxBatch int
	// Clock gives each batch its time.
	Clock clock.Clock
	// Finish runs in each batch's transaction after its jobs (to read
	// totals, say); nil: nothing.
	Finish func(tx *store.Tx) error
	// Done is told each batch's outcome (err nil: durable) and how long it
	// took, before its jobs are released; nil: nothing.
	Done func(jobs int, took time.Duration, err error)
}

// Writer commits jobs in batches.
type Writer struct{ b *store.Batcher[*Job] }

// New starts a Writer over st (two batches in flight: the next runs while
// the previous waits for its fsync).
func New(st store.Store, o Options) *Writer {
	return &Writer{b: store.NewBatcher(st, store.BatcherOptions[*Job]{
		Weight:    func(j *Job) (int, bool) { return j.Weight, j.Exclusive },
		MaxWeight: o.MaxBatch,
		Inflight:  2,
		Queue:     4 * o.MaxBatch,
		Run: func(tx *store.Tx, batch []*Job) error {
			now := o.Clock.Now()
			for _, j := range batch {
				if err := j.Fn(tx, now); err != nil {
					return err
				}
			}
			if o.Finish != nil {
				return o.Finish(tx)
			}
			return nil
		},
		Done: func(batch []*Job, took time.Duration, err error) {
			if o.Done != nil {
				o.Done(len(batch), took, err)
			}
			for _, j := range batch {
				j.err = err
				if err == nil && j.After != nil {
					j.After()
				}
				if j.Release != nil {
					j.Release()
				}
				close(j.done)
			}
		},
	})}
}

// Submit queues j (weight at least 1); ErrClosed once the Writer is
// closed, or ctx's error.
func (w *Writer) Submit(ctx context.Context, j *Job) error {
	j.done = make(chan struct{})
	j.Weight = max(j.Weight, 1)
	err := w.b.Submit(ctx, j)
	if errors.Is(err, store.ErrClosed) {
		return ErrClosed
	}
	return err
}

// Do submits a job and waits for it.
func (w *Writer) Do(ctx context.Context, weight int, fn func(tx *store.Tx, now time.Time) error) error {
	j := &Job{Fn: fn, Weight: weight}
	if err := w.Submit(ctx, j); err != nil {
		return err
	}
	return j.Wait()
}

// Close stops taking jobs, fails the queued ones with ErrClosed and waits
// for the batches in flight.
func (w *Writer) Close() { w.b.Close() }
