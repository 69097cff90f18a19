package clocktest

import (
	"testing"
	"time"
)

func TestFake(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := New(t0)
	tm := c.NewTimer(time.Minute)
	fired := func() bool {
		select {
		case <-tm.C():
			return true
		default:
			return false
		}
	}
	c.Advance(59 * time.Second)
	if fired() {
		t.Fatal("fired before its time")
	}
	c.Advance(time.Second)
	if !fired() || !c.Now().Equal(t0.Add(time.Minute)) {
		t.Fatal("not fired at its time")
	}
	// Reset to a time already due fires at once.
	if tm.Reset(0) {
		t.Error("Reset of a fired timer reported it active")
	}
	if !fired() {
		t.Error("Reset(0) did not fire")
	}
	// Stop keeps a pending timer from firing.
	tm.Reset(time.Hour)
	if !tm.Stop() {
		t.Error("Stop of a pending timer reported it inactive")
	}
	c.Advance(2 * time.Hour)
	if fired() {
		t.Error("a stopped timer fired")
	}
}

func TestFakeNewTimerDue(t *testing.T) {
	c := New(time.Unix(0, 0))
	select {
	case <-c.NewTimer(0).C():
	default:
		t.Error("a timer made already due did not fire")
	}
}
