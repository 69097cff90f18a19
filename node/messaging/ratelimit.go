package messaging

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// maxLimited bounds the peers a limiter remembers; beyond it, peers whose
// bucket is full and who are not refused are forgotten first.
const maxLimited = 4096

// maxStrikes caps the doubling of a repeat offender's penalty (2^6 times
// the base penalty).
const maxStrikes = 6

// limiter is a token bucket per peer, on the service's clock, and a
// penalty box for peers that sent bad input.
type limiter struct {
	clock   Clock
	rate    float64 // tokens per second
	burst   float64
	penalty time.Duration

	mu    sync.Mutex
	peers map[peer.ID]*bucket
}

type bucket struct {
	tokens  float64
	at      time.Time
	until   time.Time // refused until then
	strikes int
}

func newLimiter(c Clock, rate, burst float64, penalty time.Duration) *limiter {
	return &limiter{clock: c, rate: rate, burst: burst, penalty: penalty, peers: map[peer.ID]*bucket{}}
}

// get returns p's bucket, refilled to now.
func (l *limiter) get(p peer.ID, now time.Time) *bucket {
	b := l.peers[p]
	if b == nil {
		if len(l.peers) >= maxLimited {
			l.shrink(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.peers[p] = b
		return b
	}
	if el := now.Sub(b.at); el > 0 {
		b.tokens = min(l.burst, b.tokens+el.Seconds()*l.rate)
		b.at = now
	}
	return b
}

// shrink forgets peers with full buckets and no penalty, or else any
// peer not currently refused.
func (l *limiter) shrink(now time.Time) {
	for p, b := range l.peers {
		full := b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst
		if full && !now.Before(b.until) {
			delete(l.peers, p)
		}
	}
	for p, b := range l.peers {
		if len(l.peers) < maxLimited {
			return
		}
		if !now.Before(b.until) {
			delete(l.peers, p)
		}
	}
}

// take takes up to n tokens for p and returns how many it got (0 while p
// is refused).
func (l *limiter) take(p peer.ID, n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	b := l.get(p, now)
	if now.Before(b.until) {
		return 0
	}
	got := min(n, int(b.tokens))
	b.tokens -= float64(got)
	return got
}

// refused reports whether p is in the penalty box.
func (l *limiter) refused(p peer.ID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	return now.Before(l.get(p, now).until)
}

// penalize refuses p for the penalty, doubled for each earlier offence,
// and empties its bucket.
func (l *limiter) penalize(p peer.ID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	b := l.get(p, now)
	b.until = now.Add(l.penalty << min(b.strikes, maxStrikes))
	b.strikes++
	b.tokens = 0
}
