package groups

import (
	"slices"
	"sync"
)

// queue is a FIFO of at most max items, waiting for a group's goroutine,
// that holds memory only for what waits in it: a channel of that capacity
// takes all of it for as long as the group lives (for the topic's
// messages and the receipts, about 176 KB a group, idle or not).
type queue[T any] struct {
	mu    sync.Mutex
	items []T
	max   int
	ready chan struct{} // holds a value while items may not be empty
}

func newQueue[T any](max int) *queue[T] {
	return &queue[T]{max: max, ready: make(chan struct{}, 1)}
}

// put adds x at the end; false if the queue holds max items.
func (q *queue[T]) put(x T) bool {
	q.mu.Lock()
	if len(q.items) >= q.max {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, x)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// take removes and returns up to n items, the oldest first; ready has a
// value again if some are left.
func (q *queue[T]) take(n int) []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n >= len(q.items) {
		// All of it: the caller takes the slice itself, and the memory
		// goes with it.
		out := q.items
		q.items = nil
		return out
	}
	out := slices.Clone(q.items[:n])
	clear(q.items[:n])
	q.items = q.items[n:]
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return out
}
