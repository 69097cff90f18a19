package relay

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sealpost/sealpost/store"
)

// The writer: every change to the relay's store goes through one goroutine
// that commits the jobs waiting at that moment in one store transaction —
// group commit at the service level. A batch of deposits costs one fsync,
// and the shared records every deposit changes (the mailbox's counts, the
// token's, the totals) are written once per batch instead of making many
// small transactions conflict. Two batches may be in flight: the next one
// runs while the previous one waits for its fsync. A job that fails
// alone (a quota, an unknown token) writes nothing and does not fail the
// batch; only a store error does, and then each job is retried alone.

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
}

// maxWeight is the weight the writer commits together: MaxBatch 1 KiB
// deposits. Weighing by size as well keeps a transaction of large
// envelopes inside what badger commits at once.
func (s *Server) maxWeight() int { return 2 * s.res.MaxBatch }

// submit queues j for the writer.
func (s *Server) submit(ctx context.Context, j *job) error {
	j.done = make(chan struct{})
	j.weight = max(j.weight, 1)
	select {
	case s.jobs <- j:
		return nil
	case <-s.writerDone:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// await waits for a submitted job and returns its transaction's error.
func (s *Server) await(j *job) error {
	select {
	case <-j.done:
		return j.err
	case <-s.writerDone:
		select {
		case <-j.done:
			return j.err
		default:
			return ErrClosed
		}
	}
}

// do submits a job and waits for it.
func (s *Server) do(ctx context.Context, weight int, fn func(tx *store.Tx, now time.Time) error) error {
	j := &job{fn: fn, weight: weight}
	if err := s.submit(ctx, j); err != nil {
		return err
	}
	return s.await(j)
}

// maxInflight is how many batches may be committing at once: while one
// waits for its fsync, the next one runs its jobs and commits, so the
// fsync's wait is not lost. Batches commit in the order they were taken
// from the queue: each begins its transaction once the one before has
// committed (store.WithCommitted), so it sees that one's writes — a flood
// on one token is refused from the first deposit past its quota, never
// from an earlier one that a later batch overtook.
const maxInflight = 2

// writeLoop commits jobs in batches until the server closes, then fails
// what is left.
func (s *Server) writeLoop() {
	defer s.wg.Done()
	defer close(s.writerDone)
	slots := make(chan struct{}, maxInflight)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	var next *job
	// prev is closed once the batch before has committed.
	prev := make(chan struct{})
	close(prev)
	for {
		var batch []*job
		if next != nil {
			batch, next = append(batch, next), nil
		} else {
			select {
			case j := <-s.jobs:
				batch = append(batch, j)
			case <-s.ctx.Done():
				for {
					select {
					case j := <-s.jobs:
						j.err = ErrClosed
						close(j.done)
					default:
						return
					}
				}
			}
		}
		weight := batch[0].weight
	fill:
		for !batch[0].exclusive && weight < s.maxWeight() {
			select {
			case j := <-s.jobs:
				if j.exclusive || weight+j.weight > s.maxWeight() {
					next = j
					break fill
				}
				batch = append(batch, j)
				weight += j.weight
			default:
				break fill
			}
		}
		slots <- struct{}{}
		inflight.Add(1)
		after, committed := prev, make(chan struct{})
		prev = committed
		go func() {
			defer inflight.Done()
			<-after
			var once sync.Once
			s.commit(batch, func() { once.Do(func() { close(committed) }) })
			<-slots
		}()
	}
}

// commit runs a batch in one transaction; if it fails before committing
// with several jobs, each is retried alone. It calls committed once the
// batch's writes are visible to the next transaction, or once nothing of
// them will be.
func (s *Server) commit(batch []*job, committed func()) {
	defer committed()
	start := time.Now()
	var totals store.RelayTotals
	var visible bool
	ctx := store.WithCommitted(context.Background(), func() {
		visible = true
		committed()
	})
	err := s.st.Update(ctx, func(tx *store.Tx) error {
		now := s.clock.Now()
		for _, j := range batch {
			if err := j.fn(tx, now); err != nil {
				return err
			}
		}
		var err error
		totals, err = tx.Relay().Totals()
		return err
	})
	if err != nil && !visible && len(batch) > 1 && !errors.Is(err, store.ErrClosed) {
		for _, j := range batch {
			s.commit([]*job{j}, func() {})
		}
		return
	}
	if err == nil {
		s.commits.Add(1)
		s.met.committed(len(batch), time.Since(start), totals)
	} else if !errors.Is(err, store.ErrClosed) {
		s.log.Error("relay: store transaction failed", "err", err)
	}
	for _, j := range batch {
		j.err = err
		if err == nil && j.after != nil {
			j.after()
		}
		close(j.done)
	}
}
