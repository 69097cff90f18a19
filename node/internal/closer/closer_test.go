package closer

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestOnceSecondCallWaits(t *testing.T) {
	var o Once
	started, release := make(chan struct{}), make(chan struct{})
	errFirst := errors.New("first")
	calls := 0
	first := make(chan error, 1)
	go func() {
		first <- o.Do(func() error {
			calls++
			close(started)
			<-release
			return errFirst
		})
	}()
	<-started
	second := make(chan error, 1)
	go func() { second <- o.Do(func() error { calls++; return nil }) }()
	// The second call must not return while the first close runs. No
	// timing is asserted: a second call returning early shows up here
	// whenever it happens to run first, and never makes the test pass
	// wrongly.
	select {
	case err := <-second:
		t.Fatalf("second Do returned %v while the first close was running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-first; err != errFirst {
		t.Fatalf("first Do = %v, want %v", err, errFirst)
	}
	if err := <-second; err != errFirst {
		t.Fatalf("second Do = %v, want the first call's %v", err, errFirst)
	}
	if err := o.Do(func() error { calls++; return nil }); err != errFirst {
		t.Fatalf("later Do = %v, want %v", err, errFirst)
	}
	if calls != 1 {
		t.Fatalf("close function ran %d times, want 1", calls)
	}
}

func TestStackClosesLastFirst(t *testing.T) {
	var s Stack
	var order []int
	e1, e3 := errors.New("one"), errors.New("three")
	s.Push(func() error { order = append(order, 1); return e1 })
	s.PushFunc(func() { order = append(order, 2) })
	s.Push(func() error { order = append(order, 3); return e3 })
	err := s.Close()
	if !slices.Equal(order, []int{3, 2, 1}) {
		t.Fatalf("closed in order %v, want [3 2 1]", order)
	}
	if !errors.Is(err, e1) || !errors.Is(err, e3) {
		t.Fatalf("Close = %v, want both errors", err)
	}
	if err := s.Close(); err != nil || len(order) != 3 {
		t.Fatalf("second Close = %v and ran %v, want nil and nothing more", err, order)
	}
}
