package ratelimit

import (
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/internal/clock/clocktest"
)

func TestLimiter(t *testing.T) {
	c := clocktest.New(time.Unix(1e9, 0))
	l := New[string](c, 2, 5, time.Second, 100)
	if got := l.Take("a", 8); got != 5 {
		t.Fatalf("first take: %d tokens, want the burst 5", got)
	}
	if got := l.Take("a", 1); got != 0 {
		t.Errorf("empty bucket gave %d", got)
	}
	if got := l.Take("b", 1); got != 1 {
		t.Errorf("another key: %d, want its own bucket", got)
	}
	c.Advance(time.Second)
	if got := l.Take("a", 8); got != 2 {
		t.Errorf("after 1 s at 2/s: %d, want 2", got)
	}
	c.Advance(time.Hour)
	if got := l.Take("a", 8); got != 5 {
		t.Errorf("after an hour: %d, want the burst 5, no more", got)
	}

	// The penalty: refused for 1 s, then 2 s for the second offence.
	for i, d := range []time.Duration{time.Second, 2 * time.Second} {
		l.Penalize("a")
		if !l.Refused("a") || l.Take("a", 1) != 0 {
			t.Fatalf("offence %d: not refused", i+1)
		}
		c.Advance(d - time.Millisecond)
		if !l.Refused("a") {
			t.Fatalf("offence %d: free before %v", i+1, d)
		}
		c.Advance(time.Millisecond)
		if l.Refused("a") {
			t.Fatalf("offence %d: still refused after %v", i+1, d)
		}
	}
	if l.Refused("never seen") {
		t.Error("an unknown key is refused")
	}
}

// TestLimiterBound: beyond maxKeys, keys that are not refused are
// forgotten, never one in the penalty box.
func TestLimiterBound(t *testing.T) {
	c := clocktest.New(time.Unix(1e9, 0))
	l := New[int](c, 1, 1, time.Hour, 10)
	l.Penalize(-1)
	for k := range 100 {
		l.Take(k, 1)
	}
	if n := len(l.keys); n > 10 {
		t.Errorf("%d keys remembered, want at most 10", n)
	}
	if !l.Refused(-1) {
		t.Error("the refused key was forgotten")
	}
}

func TestBucket(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	b := NewBucket(3, t0)
	if got := b.Take(t0, 1, 3, 5); got != 3 {
		t.Errorf("full bucket: %d, want 3", got)
	}
	if got := b.Take(t0.Add(2*time.Second), 1, 3, 5); got != 2 {
		t.Errorf("after 2 s at 1/s: %d, want 2", got)
	}
}
