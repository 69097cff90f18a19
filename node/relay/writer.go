package relay

import (
	"context"
	"errors"
	"time"

	"github.com/sealpost/sealpost/store"
)

// The writer: every change to the relay's store goes through a
// store.Batcher, which commits the jobs waiting at that moment in one
// store transaction — group commit at the service level. A batch of
// deposits costs one fsync, and the shared records every deposit changes
// (the mailbox's counts, the token's, the totals) are written once per
// batch instead of making many small transactions conflict. Two batches
// may be in flight: the next one runs while the previous one waits for its
// fsync, and they commit in the order they were queued, so a flood on one
// token is refused from the first deposit past its quota, never from an
// earlier one that a later batch overtook. A job that fails alone (a
// quota, an unknown token) writes nothing and does not fail the batch;
// only a store error does, and then each job is retried alone.

// job is one unit of work for the writer.
type job struct {
	// fn runs inside the transaction, possibly more than once (a backend
	// may retry a conflicting transaction), so it resets its results at
	// its start. It returns only errors that must abort the transaction.
	fn func(tx *store.Tx, now time.Time) error
	// weight is its share of a batch: 1 per record, 1 per KiB written.
	weight int
	// exclusive jobs are committed alone (deleting a mailbox).
	exclusive bool
	// after runs in the writer once the transaction is durable.
	after func()
	done  chan struct{}
	err   error

	// totals are the store's totals after the batch, and seq the number
	// of its transaction, set by the writer on a batch's first job for
	// the metrics.
	totals store.RelayTotals
	seq    uint64
}

// maxInflight is how many batches may be committing at once.
const maxInflight = 2

// newWriter returns the Batcher of s's jobs: MaxBatch 1 KiB deposits are
// committed together. Weighing by size as well keeps a transaction of
// large envelopes inside what badger commits at once.
func (s *Server) newWriter() *store.Batcher[*job] {
	return store.NewBatcher(s.st, store.BatcherOptions[*job]{
		Weight:    func(j *job) (int, bool) { return j.weight, j.exclusive },
		MaxWeight: 2 * s.res.MaxBatch,
		Inflight:  maxInflight,
		Queue:     4 * s.res.MaxBatch,
		Run: func(tx *store.Tx, batch []*job) error {
			now := s.clock.Now()
			for _, j := range batch {
				if err := j.fn(tx, now); err != nil {
					return err
				}
			}
			var err error
			batch[0].totals, err = tx.Relay().Totals()
			batch[0].seq = s.met.nextBatch()
			return err
		},
		Done: func(batch []*job, took time.Duration, err error) {
			switch {
			case err == nil:
				s.met.committed(len(batch), took, batch[0].totals, batch[0].seq)
			case errors.Is(err, store.ErrClosed):
				err = ErrClosed
			case errors.Is(err, store.ErrDiskFull):
				// The store said so once; each refusal is not news.
				s.log.Debug("relay: store transaction refused", "err", err)
			default:
				s.log.Error("relay: store transaction failed", "err", err)
			}
			for _, j := range batch {
				j.err = err
				if err == nil && j.after != nil {
					j.after()
				}
				close(j.done)
			}
		},
	})
}

// submit queues j for the writer.
func (s *Server) submit(ctx context.Context, j *job) error {
	j.done = make(chan struct{})
	j.weight = max(j.weight, 1)
	err := s.w.Submit(ctx, j)
	if errors.Is(err, store.ErrClosed) {
		return ErrClosed
	}
	return err
}

// await waits for a submitted job and returns its transaction's error.
func (s *Server) await(j *job) error {
	<-j.done
	return j.err
}

// do submits a job and waits for it.
func (s *Server) do(ctx context.Context, weight int, fn func(tx *store.Tx, now time.Time) error) error {
	j := &job{fn: fn, weight: weight}
	if err := s.submit(ctx, j); err != nil {
		return err
	}
	return s.await(j)
}
