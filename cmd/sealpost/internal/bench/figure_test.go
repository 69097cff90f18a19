package bench

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestParallel(t *testing.T) {
	var calls [4]atomic.Int64
	rate, n, err := Parallel(context.Background(), 4, 20*time.Millisecond, func(w int) error {
		calls[w].Add(1)
		return nil
	})
	if err != nil || n <= 0 || rate <= 0 {
		t.Fatalf("Parallel = %v, %d, %v", rate, n, err)
	}
	var sum int64
	for w := range calls {
		sum += calls[w].Load()
	}
	if sum != n {
		t.Errorf("%d calls made, %d counted", sum, n)
	}

	boom := errors.New("boom")
	var left atomic.Int64
	left.Store(10)
	if _, _, err := Parallel(context.Background(), 4, time.Minute, func(int) error {
		if left.Add(-1) < 0 {
			return boom
		}
		return nil
	}); !errors.Is(err, boom) {
		t.Errorf("a failing call: %v, want %v", err, boom)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Parallel(ctx, 2, time.Minute, func(int) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("an ended context: %v, want context.Canceled", err)
	}
}

func TestRate(t *testing.T) {
	if f := Rate("x", "ops/s", 50, 200); f.Ratio != 0.25 || f.Limit != 200 {
		t.Errorf("Rate with a limit: %+v", f)
	}
	if f := Rate("x", "ops/s", 50, 0); f.Ratio != 0 || f.Limit != 0 {
		t.Errorf("Rate without a limit: %+v", f)
	}
}
