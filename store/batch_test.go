package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/store"
)

// bjob is a test job: it takes the next value of a counter, or fails.
type bjob struct {
	weight    int
	exclusive bool
	fail      bool // abort the transaction
	got       uint64
	batch     int // the size of the batch it was committed in
	err       error
	done      chan struct{}
}

type batchRecorder struct {
	mu      sync.Mutex
	batches [][]*bjob
}

func newBatcher(t *testing.T, st store.Store, maxWeight, inflight int) (*store.Batcher[*bjob], *batchRecorder) {
	rec := &batchRecorder{}
	b := store.NewBatcher(st, store.BatcherOptions[*bjob]{
		Weight:    func(j *bjob) (int, bool) { return j.weight, j.exclusive },
		MaxWeight: maxWeight,
		Inflight:  inflight,
		Queue:     64,
		Run: func(tx *store.Tx, batch []*bjob) error {
			for _, j := range batch {
				if j.fail {
					return errors.New("job failed")
				}
				v, err := tx.Counters().Next("c")
				if err != nil {
					return err
				}
				j.got = v
			}
			return nil
		},
		Done: func(batch []*bjob, _ time.Duration, err error) {
			rec.mu.Lock()
			rec.batches = append(rec.batches, batch)
			rec.mu.Unlock()
			for _, j := range batch {
				j.err, j.batch = err, len(batch)
				close(j.done)
			}
		},
	})
	t.Cleanup(b.Close)
	return b, rec
}

func submit(t *testing.T, b *store.Batcher[*bjob], j *bjob) *bjob {
	t.Helper()
	j.done = make(chan struct{})
	if err := b.Submit(context.Background(), j); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return j
}

// TestBatcherOrder: jobs submitted from one goroutine commit in that order
// across batches, with two batches in flight, and batches are formed.
func TestBatcherOrder(t *testing.T) {
	for _, inflight := range []int{1, 2} {
		st := store.NewMemory()
		defer st.Close()
		b, rec := newBatcher(t, st, 8, inflight)
		var jobs []*bjob
		for range 200 {
			jobs = append(jobs, submit(t, b, &bjob{weight: 1}))
		}
		for i, j := range jobs {
			<-j.done
			if j.err != nil || j.got != uint64(i+1) {
				t.Fatalf("inflight %d: job %d: got %d %v, want %d", inflight, i, j.got, j.err, i+1)
			}
			if j.batch > 8 {
				t.Errorf("inflight %d: job %d committed in a batch of %d, over the weight 8", inflight, i, j.batch)
			}
		}
		b.Close()
		if n := len(rec.batches); n >= 200 {
			t.Errorf("inflight %d: 200 jobs in %d batches: nothing was batched", inflight, n)
		}
	}
}

// TestBatcherExclusive: an exclusive job, or one heavier than MaxWeight,
// is committed alone.
func TestBatcherExclusive(t *testing.T) {
	st := store.NewMemory()
	defer st.Close()
	b, _ := newBatcher(t, st, 4, 1)
	var jobs []*bjob
	for i := range 40 {
		j := &bjob{weight: 1}
		switch i % 10 {
		case 3:
			j.exclusive = true
		case 7:
			j.weight = 9
		}
		jobs = append(jobs, submit(t, b, j))
	}
	for i, j := range jobs {
		<-j.done
		if (j.exclusive || j.weight > 4) && j.batch != 1 {
			t.Errorf("job %d (exclusive %v, weight %d) committed with %d others", i, j.exclusive, j.weight, j.batch-1)
		}
	}
}

// TestBatcherFailAlone: a batch that fails before its commit is run again
// job by job: only the failing job fails, and the others commit once.
func TestBatcherFailAlone(t *testing.T) {
	st := store.NewMemory()
	defer st.Close()
	b, _ := newBatcher(t, st, 64, 2)
	var jobs []*bjob
	for i := range 30 {
		jobs = append(jobs, submit(t, b, &bjob{weight: 1, fail: i == 10}))
	}
	var want uint64
	for i, j := range jobs {
		<-j.done
		if i == 10 {
			if j.err == nil {
				t.Error("the failing job succeeded")
			}
			continue
		}
		want++
		if j.err != nil || j.got != want {
			t.Errorf("job %d: got %d %v, want %d", i, j.got, j.err, want)
		}
	}
	var n uint64
	if err := st.View(context.Background(), func(tx *store.Tx) error {
		var err error
		n, err = tx.Counters().Get("c")
		return err
	}); err != nil || n != 29 {
		t.Errorf("counter %d %v after 29 good jobs", n, err)
	}
}

// TestBatcherClose: every job submitted before Close is told its outcome;
// Submit after Close fails with ErrClosed.
func TestBatcherClose(t *testing.T) {
	st := store.NewMemory()
	defer st.Close()
	b, _ := newBatcher(t, st, 4, 2)
	var jobs []*bjob
	for range 50 {
		jobs = append(jobs, submit(t, b, &bjob{weight: 1}))
	}
	b.Close()
	for i, j := range jobs {
		select {
		case <-j.done:
			if j.err != nil && !errors.Is(j.err, store.ErrClosed) {
				t.Errorf("job %d: %v", i, j.err)
			}
		default:
			t.Fatalf("job %d not told its outcome after Close", i)
		}
	}
	if err := b.Submit(context.Background(), &bjob{done: make(chan struct{})}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Submit after Close: %v, want ErrClosed", err)
	}
	select {
	case <-b.Closed():
	default:
		t.Error("Closed not closed after Close")
	}
}
