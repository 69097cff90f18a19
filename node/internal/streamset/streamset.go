// Package streamset bounds and tracks the streams a service serves: at
// most so many in all and per peer, each counted until released, and all
// reset at once when the service closes (a stream blocked in a read does
// not see a context end).
package streamset

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Set is a bounded set of open streams. The zero value is not usable; use
// New. Its methods are safe for concurrent use.
type Set struct {
	mu      sync.Mutex
	max     int
	perPeer int
	closed  bool
	open    map[network.Stream]peer.ID
	peers   map[peer.ID]int
	wg      sync.WaitGroup
}

// New returns a set of at most max streams, perPeer of them from one peer
// (0: no bound per peer).
func New(max, perPeer int) *Set {
	return &Set{max: max, perPeer: perPeer, open: map[network.Stream]peer.ID{}, peers: map[peer.ID]int{}}
}

// Add counts str from its remote peer, or returns false over the bounds or
// once the set is closed. Release it when it ends.
func (s *Set) Add(str network.Stream) bool {
	p := str.Conn().RemotePeer()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.open) >= s.max || (s.perPeer > 0 && s.peers[p] >= s.perPeer) {
		return false
	}
	s.open[str] = p
	s.peers[p]++
	s.wg.Add(1)
	return true
}

// Release stops counting str.
func (s *Set) Release(str network.Stream) {
	s.mu.Lock()
	p, ok := s.open[str]
	if ok {
		delete(s.open, str)
		if s.peers[p]--; s.peers[p] <= 0 {
			delete(s.peers, p)
		}
	}
	s.mu.Unlock()
	if ok {
		s.wg.Done()
	}
}

// Close refuses new streams, resets the open ones and waits until each is
// released. It is idempotent.
func (s *Set) Close() {
	s.mu.Lock()
	s.closed = true
	for str := range s.open {
		str.Reset()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
