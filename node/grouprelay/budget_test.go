package grouprelay

import (
	"context"
	"testing"
	"time"
)

// TestBudget: take waits until its bytes are given back, and while it
// waits tryTake and takeUpTo take nothing (a FETCH waiting for a page is
// not starved by others' later pages); a canceled take takes nothing.
func TestBudget(t *testing.T) {
	b := newBudget(10)
	if got := b.takeUpTo(6); got != 6 {
		t.Fatalf("takeUpTo(6) of 10: %d", got)
	}
	if got := b.takeUpTo(6); got != 4 {
		t.Fatalf("takeUpTo(6) of the 4 left: %d", got)
	}
	took := make(chan bool)
	go func() { took <- b.take(context.Background(), 5) }()
	waiting := func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.waiting == 1
	}
	for i := 0; !waiting(); i++ { // until the take waits
		select {
		case <-took:
			t.Fatal("take of 5 with nothing free did not wait")
		default:
		}
		if i == 10000 {
			t.Fatal("take does not wait")
		}
		time.Sleep(time.Millisecond)
	}
	b.give(4)
	if b.tryTake(1) || b.takeUpTo(4) != 0 {
		t.Error("bytes taken past a take that waits")
	}
	b.give(1)
	if !<-took {
		t.Fatal("take failed")
	}
	if got := b.takeUpTo(10); got != 0 {
		t.Errorf("takeUpTo after the take: %d, want 0", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b.take(ctx, 1) {
		t.Error("a canceled take took")
	}
	b.give(10)
	if !b.tryTake(10) {
		t.Error("the whole bound not free once everything was given back")
	}
}
