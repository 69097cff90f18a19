// Package ratelimit has the token buckets of sealpost's services: one per
// key (a peer, a deposit token) on the service's clock, with a penalty box
// for keys that sent bad input, and a bound on the keys it remembers.
package ratelimit

import (
	"sync"
	"time"

	"github.com/sealpost/sealpost/node/internal/clock"
)

// maxStrikes caps the doubling of a repeat offender's penalty (2^6 times
// the base penalty).
const maxStrikes = 6

// Limiter is a token bucket per key of type K, and a penalty box. It is
// safe for concurrent use.
type Limiter[K comparable] struct {
	clock   clock.Clock
	rate    float64 // tokens per second
	burst   float64
	penalty time.Duration
	maxKeys int

	mu   sync.Mutex
	keys map[K]*bucket
}

// Bucket is one token bucket, for a caller that keeps it itself (the
// relay keeps one per connection).
type Bucket struct {
	tokens float64
	at     time.Time
}

// NewBucket returns a full bucket of burst tokens at now.
func NewBucket(burst float64, now time.Time) Bucket { return Bucket{tokens: burst, at: now} }

// refill adds the tokens earned since the last refill, up to burst.
func (b *Bucket) refill(now time.Time, rate, burst float64) {
	if el := now.Sub(b.at); el > 0 {
		b.tokens = min(burst, b.tokens+el.Seconds()*rate)
		b.at = now
	}
}

// take takes up to n tokens and returns how many it got.
func (b *Bucket) take(n int) int {
	got := min(n, int(b.tokens))
	b.tokens -= float64(got)
	return got
}

// Take refills b to now at rate, up to burst, and takes up to n tokens; it
// returns how many it got.
func (b *Bucket) Take(now time.Time, rate, burst float64, n int) int {
	b.refill(now, rate, burst)
	return b.take(n)
}

type bucket struct {
	Bucket
	until   time.Time // refused until then
	strikes int
}

// New returns a Limiter that gives each key rate tokens a second up to
// burst, refuses a penalized key for penalty (doubled for each earlier
// offence), and remembers at most maxKeys keys: beyond it, keys whose
// bucket is full and that are not refused are forgotten first, then any
// key not refused.
func New[K comparable](c clock.Clock, rate, burst float64, penalty time.Duration, maxKeys int) *Limiter[K] {
	return &Limiter[K]{clock: c, rate: rate, burst: burst, penalty: penalty, maxKeys: max(maxKeys, 1), keys: map[K]*bucket{}}
}

// get returns k's bucket, refilled to now.
func (l *Limiter[K]) get(k K, now time.Time) *bucket {
	b := l.keys[k]
	if b == nil {
		if len(l.keys) >= l.maxKeys {
			l.shrink(now)
		}
		b = &bucket{Bucket: NewBucket(l.burst, now)}
		l.keys[k] = b
		return b
	}
	b.refill(now, l.rate, l.burst)
	return b
}

// shrink forgets keys with full buckets and no penalty, or else any key
// not currently refused.
func (l *Limiter[K]) shrink(now time.Time) {
	for k, b := range l.keys {
		full := b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst
		if full && !now.Before(b.until) {
			delete(l.keys, k)
		}
	}
	for k, b := range l.keys {
		if len(l.keys) < l.maxKeys {
			return
		}
		if !now.Before(b.until) {
			delete(l.keys, k)
		}
	}
}

// Take takes up to n tokens for k and returns how many it got (0 while k
// is refused).
func (l *Limiter[K]) Take(k K, n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	b := l.get(k, now)
	if now.Before(b.until) {
		return 0
	}
	return b.take(n)
}

// Refused reports whether k is in the penalty box.
func (l *Limiter[K]) Refused(k K) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.keys[k]
	return b != nil && l.clock.Now().Before(b.until)
}

// Penalize refuses k for the penalty, doubled for each earlier offence,
// and empties its bucket.
func (l *Limiter[K]) Penalize(k K) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	b := l.get(k, now)
	b.until = now.Add(l.penalty << min(b.strikes, maxStrikes))
	b.strikes++
	b.tokens = 0
}
