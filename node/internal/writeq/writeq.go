// Package writeq writes a stream's answers in the order they were queued,
// several frames per Write while more are ready, waiting for an answer
// that depends on work in progress (a store commit) only when nothing
// queued before it is left to write. A service's reader queues; one writer
// goroutine per stream writes.
package writeq

import (
	"context"
	"time"
)

// Item is one answer: ready reports whether its frame can be appended
// without waiting; Append appends it, waiting if needed.
type Item interface {
	Ready() bool
	Append(buf []byte) ([]byte, error)
}

// Releaser is an Item that holds something (an entry, bytes counted in a
// bound) until it is written: Release is called once, after the Write
// that carried its frame returned, or when the item is dropped (its
// encoding or a Write failed, or one before it did).
type Releaser interface {
	Item
	Release()
}

// release releases it if it is a Releaser.
func release(it Item) {
	if r, ok := it.(Releaser); ok {
		r.Release()
	}
}

// Stream is the part of a libp2p stream the writer uses.
type Stream interface {
	Write([]byte) (int, error)
	SetWriteDeadline(time.Time) error
	Reset() error
}

// bufSize is how much the writer collects before one Write. A buffer
// that grew past twice that for a large frame is not kept after its
// Write: a stream that carried one large answer does not hold that much
// for as long as it stays open.
const bufSize = 64 << 10

// Queue is the ordered output of one stream.
type Queue struct {
	str     Stream
	timeout time.Duration
	fail    func(error)
	items   chan Item
	done    chan struct{}
	buf     []byte // the writer's, kept between Writes
	batch   []Item // the items of one Write, kept between Writes
}

// New starts the writer of str: capacity items may wait (Put blocks while
// the queue is full, which stops the service's reader: backpressure),
// each Write has timeout, and fail is called once if encoding or writing
// fails (the stream is then reset and later items dropped).
func New(str Stream, capacity int, timeout time.Duration, fail func(error)) *Queue {
	q := &Queue{str: str, timeout: timeout, fail: fail, items: make(chan Item, capacity), done: make(chan struct{})}
	go q.loop()
	return q
}

// Put queues it; false if ctx ended first (a Releaser is then not
// released: it is still the caller's).
func (q *Queue) Put(ctx context.Context, it Item) bool {
	select {
	case q.items <- it:
		return true
	case <-ctx.Done():
		return false
	}
}

// Close takes no more items and waits until the queued ones are written
// (or dropped after a failure). Put must not be called after Close.
func (q *Queue) Close() {
	close(q.items)
	<-q.done
}

func (q *Queue) loop() {
	defer close(q.done)
	var held Item
	failed := false
	for {
		it := held
		held = nil
		if it == nil {
			var ok bool
			if it, ok = <-q.items; !ok {
				return
			}
		}
		if failed {
			release(it)
			continue // drain, so that Put does not block
		}
		batch := append(q.batch[:0], it)
		buf, err := it.Append(q.buf[:0])
	more:
		for err == nil && len(buf) < bufSize {
			select {
			case next, ok := <-q.items:
				if !ok {
					break more
				}
				if !next.Ready() {
					held = next
					break more
				}
				batch = append(batch, next)
				buf, err = next.Append(buf)
			default:
				break more
			}
		}
		if err == nil {
			q.str.SetWriteDeadline(time.Now().Add(q.timeout))
			_, err = q.str.Write(buf)
		}
		for _, it := range batch {
			release(it)
		}
		clear(batch)
		q.batch = batch[:0]
		q.buf = buf
		if cap(buf) > 2*bufSize {
			q.buf = nil
		}
		if err != nil {
			failed = true
			q.str.Reset()
			q.fail(err)
		}
	}
}
