package writeq

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// stream records what is written.
type stream struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	fail   error
	reset  bool
}

func (s *stream) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	s.writes++
	return s.buf.Write(b)
}
func (s *stream) SetWriteDeadline(time.Time) error { return nil }
func (s *stream) Reset() error                     { s.mu.Lock(); s.reset = true; s.mu.Unlock(); return nil }

// item is ready at once, or when its channel closes.
type item struct {
	b    string
	wait chan struct{}
}

func (it item) Ready() bool {
	if it.wait == nil {
		return true
	}
	select {
	case <-it.wait:
		return true
	default:
		return false
	}
}

func (it item) Append(buf []byte) ([]byte, error) {
	if it.wait != nil {
		<-it.wait
	}
	return append(buf, it.b...), nil
}

// TestOrder: items are written in the order queued, an item that waits
// holds back those after it, and what is ready is written in few Writes.
func TestOrder(t *testing.T) {
	s := &stream{}
	q := New(s, 16, time.Second, func(err error) { t.Errorf("fail: %v", err) })
	ctx := context.Background()
	slow := make(chan struct{})
	q.Put(ctx, item{b: "a"})
	q.Put(ctx, item{b: "b", wait: slow})
	q.Put(ctx, item{b: "c"})
	q.Put(ctx, item{b: "d"})
	time.Sleep(50 * time.Millisecond)
	s.mu.Lock()
	if got := s.buf.String(); got != "a" {
		t.Errorf("written before the slow item: %q", got)
	}
	s.mu.Unlock()
	close(slow)
	q.Close()
	if got := s.buf.String(); got != "abcd" {
		t.Errorf("written %q", got)
	}
	if s.writes > 3 {
		t.Errorf("%d writes for 4 items", s.writes)
	}
}

// TestFail: a failed write resets the stream, is reported once, and the
// queue drains without blocking Put.
func TestFail(t *testing.T) {
	s := &stream{fail: errors.New("broken")}
	fails := 0
	q := New(s, 1, time.Second, func(error) { fails++ })
	for range 10 {
		if !q.Put(context.Background(), item{b: "x"}) {
			t.Fatal("Put refused")
		}
	}
	q.Close()
	if fails != 1 || !s.reset {
		t.Errorf("fails %d, reset %v", fails, s.reset)
	}
}

// TestLargeBufferNotKept: after an answer larger than twice the write
// buffer the writer does not keep a buffer that large; after small ones it
// keeps its buffer.
func TestLargeBufferNotKept(t *testing.T) {
	s := &stream{}
	q := New(s, 4, time.Second, func(err error) { t.Errorf("fail: %v", err) })
	ctx := context.Background()
	q.Put(ctx, item{b: string(make([]byte, 1<<20))})
	q.Put(ctx, item{b: "small"})
	q.Close()
	if cap(q.buf) > 2*bufSize {
		t.Errorf("kept a buffer of %d after a large answer, bound %d", cap(q.buf), 2*bufSize)
	}
	if s.buf.Len() != 1<<20+len("small") {
		t.Errorf("wrote %d bytes", s.buf.Len())
	}

	s = &stream{}
	q = New(s, 4, time.Second, func(err error) { t.Errorf("fail: %v", err) })
	q.Put(ctx, item{b: "small"})
	q.Close()
	if cap(q.buf) == 0 {
		t.Error("no buffer kept after a small answer")
	}
}

// counted is an item that counts its releases and notes what was written
// before its release.
type counted struct {
	item
	s        *stream
	released *int
	written  *[]int
}

func (c counted) Release() {
	*c.released++
	c.s.mu.Lock()
	*c.written = append(*c.written, c.s.buf.Len())
	c.s.mu.Unlock()
}

// TestRelease: each Releaser is released once, after the Write that
// carried it (what was written then includes it), and the items dropped
// after a failure are released too.
func TestRelease(t *testing.T) {
	s := &stream{}
	q := New(s, 16, time.Second, func(err error) { t.Errorf("fail: %v", err) })
	released, written := 0, []int{}
	for i := range 5 {
		q.Put(context.Background(), counted{item{b: strings.Repeat("x", i+1)}, s, &released, &written})
	}
	q.Close()
	if released != 5 {
		t.Errorf("%d releases of 5 items", released)
	}
	for i, n := range written {
		if want := (i + 1) * (i + 2) / 2; n < want {
			t.Errorf("item %d released with %d bytes written, want at least %d", i, n, want)
		}
	}

	s = &stream{fail: errors.New("broken")}
	released = 0
	q = New(s, 16, time.Second, func(error) {})
	for range 10 {
		q.Put(context.Background(), counted{item{b: "x"}, s, &released, &written})
	}
	q.Close()
	if released != 10 {
		t.Errorf("%d releases of 10 items after a failed write", released)
	}
}
