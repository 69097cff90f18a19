// Package clocktest has a clock.Clock for tests that moves only when told.
package clocktest

import (
	"sync"
	"time"

	"github.com/sealpost/sealpost/node/internal/clock"
)

// Fake is a clock.Clock that moves only when Advance is called. Its timers
// behave like Go 1.23 timers: a timer already due fires when it is made or
// reset, and Stop and Reset leave no stale value in the channel.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

// New returns a Fake at now.
func New(now time.Time) *Fake { return &Fake{now: now} }

// Now returns the fake time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires once the fake time has moved by d.
func (c *Fake) NewTimer(d time.Duration) clock.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{c: c, ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	t.setLocked(d)
	return t
}

// Advance moves the clock forward by d and fires the timers that are due.
func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		t.fireLocked()
	}
}

type timer struct {
	c        *Fake
	ch       chan time.Time
	deadline time.Time
	active   bool
}

func (t *timer) C() <-chan time.Time { return t.ch }

// setLocked arms the timer, dropping a value not yet received.
func (t *timer) setLocked(d time.Duration) bool {
	was := t.active
	select {
	case <-t.ch:
	default:
	}
	t.deadline, t.active = t.c.now.Add(d), true
	t.fireLocked()
	return was
}

func (t *timer) fireLocked() {
	if t.active && !t.c.now.Before(t.deadline) {
		t.active = false
		select {
		case t.ch <- t.c.now:
		default:
		}
	}
}

func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.active = false
	select {
	case <-t.ch:
	default:
	}
	return was
}

func (t *timer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.setLocked(d)
}
