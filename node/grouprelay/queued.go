package grouprelay

import (
	"context"
	"sync"

	"github.com/sealpost/sealpost/protocol"
)

// budget counts bytes held under a bound. Bytes given back go first to
// those waiting in take: takeUpTo and tryTake take nothing while anyone
// waits, so a FETCH that waits for a whole page is not starved by the
// later pages of others.
type budget struct {
	mu      sync.Mutex
	free    int
	waiting int
	freed   chan struct{} // closed, and replaced, when bytes are given back
}

func newBudget(n int) *budget { return &budget{free: n, freed: make(chan struct{})} }

// tryTake takes n bytes if they are free and no one waits.
func (b *budget) tryTake(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waiting > 0 || n > b.free {
		return false
	}
	b.free -= n
	return true
}

// take takes n bytes, waiting until they are free; false if ctx ended
// first. n must be at most the bound.
func (b *budget) take(ctx context.Context, n int) bool {
	b.mu.Lock()
	b.waiting++
	for n > b.free {
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			b.mu.Lock()
			b.waiting--
			b.mu.Unlock()
			return false
		}
		b.mu.Lock()
	}
	b.waiting--
	b.free -= n
	b.mu.Unlock()
	return true
}

// takeUpTo takes what is free of n bytes, nothing while anyone waits, and
// returns what it took.
func (b *budget) takeUpTo(n int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waiting > 0 {
		return 0
	}
	n = min(n, b.free)
	b.free -= n
	return n
}

// give gives back n bytes taken.
func (b *budget) give(n int) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free += n
	close(b.freed)
	b.freed = make(chan struct{})
}

// pushOverhead bounds the bytes of a FETCH's push frame besides its
// entry: the length prefix and the fields (version, id, op, code, seq,
// commit, the entry's tag and length) take at most 38.
const pushOverhead = 64

// pushCost is what a push of an entry of n bytes counts in the queued
// bytes.
func pushCost(n int) int { return n + pushOverhead }

// pageBytes is the room a page of a FETCH is read into: at least the
// largest push (an entry of protocol.MaxGroupEntry), so that the first
// page of every FETCH holds an entry.
const pageBytes = protocol.MaxGroupLogFrame

// reserveQueued takes room for a page of a FETCH's entries in the
// stream's and the relay's queued bytes (Resources.MaxQueuedBytes,
// MaxQueuedBytesTotal) and returns it. The first page waits for a whole
// page's room, so that every FETCH pushes at least one entry; a later
// page takes what is free, possibly nothing (the FETCH then ends, with
// more). False if the stream ended while waiting.
func (c *stream) reserveQueued(first bool) (int, bool) {
	s := c.s
	n := pageBytes
	if first {
		if !c.queued.tryTake(n) {
			s.met.queuedWaits.WithLabelValues("stream").Inc()
			if !c.queued.take(c.ctx, n) {
				return 0, false
			}
		}
		if !s.queued.tryTake(n) {
			s.met.queuedWaits.WithLabelValues("relay").Inc()
			if !s.queued.take(c.ctx, n) {
				c.queued.give(n)
				return 0, false
			}
		}
	} else {
		n = c.queued.takeUpTo(n)
		m := s.queued.takeUpTo(n)
		c.queued.give(n - m)
		n = m
	}
	s.met.queuedBytes.Add(float64(n))
	return n, true
}

// releaseQueued gives back n bytes that reserveQueued took.
func (c *stream) releaseQueued(n int) {
	if n == 0 {
		return
	}
	c.s.met.queuedBytes.Sub(float64(n))
	c.s.queued.give(n)
	c.queued.give(n)
}

// push is a FETCH's push of one entry, holding its cost in the queued
// bytes until it is written or dropped (writeq.Releaser).
type push struct {
	c    *stream
	r    protocol.GroupLogResponse
	cost int
}

func (p *push) Ready() bool                       { return true }
func (p *push) Append(buf []byte) ([]byte, error) { return protocol.AppendFrame(buf, &p.r) }

func (p *push) Release() {
	p.r.Entry = nil
	p.c.releaseQueued(p.cost)
}
