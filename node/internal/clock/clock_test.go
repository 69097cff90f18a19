package clock

import (
	"testing"
	"time"
)

func TestOffset(t *testing.T) {
	if d := Offset(time.Hour).Now().Sub(time.Now()); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("Offset(1h) is %v ahead", d)
	}
	if d := time.Since(System().Now()); d < 0 || d > time.Minute {
		t.Errorf("System is %v behind", d)
	}
	tm := System().NewTimer(time.Millisecond)
	select {
	case <-tm.C():
	case <-time.After(10 * time.Second):
		t.Error("a system timer did not fire")
	}
}
