package groups

import (
	"slices"
	"testing"
)

// TestQueue: a queue keeps its items in order up to its bound, says it is
// ready while it holds some, and holds no memory once emptied.
func TestQueue(t *testing.T) {
	q := newQueue[int](5)
	if q.items != nil {
		t.Fatal("a new queue holds memory")
	}
	for i := range 5 {
		if !q.put(i) {
			t.Fatalf("put %d refused below the bound", i)
		}
	}
	if q.put(5) {
		t.Error("put past the bound taken")
	}
	<-q.ready
	if got := q.take(2); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("take(2) = %v, want [0 1]", got)
	}
	select {
	case <-q.ready:
	default:
		t.Fatal("not ready with three items left")
	}
	if !q.put(5) {
		t.Error("put refused with room again")
	}
	if got := q.take(10); !slices.Equal(got, []int{2, 3, 4, 5}) {
		t.Errorf("take(10) = %v, want [2 3 4 5]", got)
	}
	if q.items != nil {
		t.Error("an emptied queue holds memory")
	}
	if got := q.take(1); len(got) != 0 {
		t.Errorf("take of an empty queue = %v", got)
	}
}
