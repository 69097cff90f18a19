package relay

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestRecentPeersBound: a full list forgets the peer seen longest ago, and
// a peer seen again moves to the front.
func TestRecentPeersBound(t *testing.T) {
	r := newRecentPeers(3)
	t0 := time.Unix(1000, 0)
	p := func(i int) peer.ID { return peer.ID(fmt.Sprintf("peer-%d", i)) }
	for i := range 3 {
		r.add(seenOwner, p(i), t0.Add(time.Duration(i)*time.Second))
	}
	r.add(seenOwner, p(0), t0.Add(10*time.Second)) // seen again
	r.add(seenOwner, p(3), t0.Add(11*time.Second)) // evicts p(1)
	got := r.list(seenOwner)
	var ids []string
	for _, s := range got {
		ids = append(ids, s.PeerID)
	}
	want := []string{p(3).String(), p(0).String(), p(2).String()}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", ids, want)
	}
	if len(r.list(seenDepositor)) != 0 {
		t.Error("another kind's list is not empty")
	}
}
