package relay

import (
	"sync"
	"time"
)

// bucket is a token bucket.
type bucket struct {
	tokens  float64
	at      time.Time
	until   time.Time // refused until then (penalty)
	strikes int
}

// take refills b to now at rate up to burst and takes one token.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	if el := now.Sub(b.at); el > 0 {
		b.tokens = min(burst, b.tokens+el.Seconds()*rate)
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// maxKeys bounds the keys a limiter remembers; beyond it, keys whose
// bucket is full and that are not refused are forgotten first.
const maxKeys = 16384

// maxStrikes caps the doubling of a repeat offender's penalty.
const maxStrikes = 6

// limiter is a token bucket per key (a deposit token's hash, a peer) on the
// relay's clock, with a penalty box.
type limiter[K comparable] struct {
	clock   Clock
	rate    float64
	burst   float64
	penalty time.Duration

	mu   sync.Mutex
	keys map[K]*bucket
}

func newLimiter[K comparable](c Clock, rate, burst float64, penalty time.Duration) *limiter[K] {
	return &limiter[K]{clock: c, rate: rate, burst: burst, penalty: penalty, keys: map[K]*bucket{}}
}

func (l *limiter[K]) get(k K, now time.Time) *bucket {
	b := l.keys[k]
	if b != nil {
		return b
	}
	if len(l.keys) >= maxKeys {
		l.shrink(now)
	}
	b = &bucket{tokens: l.burst, at: now}
	l.keys[k] = b
	return b
}

// shrink forgets keys with full buckets and no penalty, or else any key
// not currently refused.
func (l *limiter[K]) shrink(now time.Time) {
	for k, b := range l.keys {
		full := b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst
		if full && !now.Before(b.until) {
			delete(l.keys, k)
		}
	}
	for k, b := range l.keys {
		if len(l.keys) < maxKeys {
			return
		}
		if !now.Before(b.until) {
			delete(l.keys, k)
		}
	}
}

// take takes one token for k; false while k is refused or its bucket is
// empty.
func (l *limiter[K]) take(k K) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	b := l.get(k, now)
	if now.Before(b.until) {
		return false
	}
	return b.take(now, l.rate, l.burst)
}

// refused reports whether k is in the penalty box.
func (l *limiter[K]) refused(k K) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.keys[k]
	return b != nil && l.clock.Now().Before(b.until)
}

// penalize refuses k for the penalty, doubled for each earlier offence.
func (l *limiter[K]) penalize(k K) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	b := l.get(k, now)
	b.until = now.Add(l.penalty << min(b.strikes, maxStrikes))
	b.strikes++
	b.tokens = 0
}
