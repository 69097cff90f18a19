package relay

import (
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// MaxRecentPeers bounds each list of RecentPeers: the relay remembers the
// peers it served last, up to this many per list, and forgets the oldest
// first. Memory: a few tens of KiB.
const MaxRecentPeers = 256

// RecentPeers is what `sealpost relay peers` shows: the peers the relay
// served on mailbox streams (protocol.RelayProtocol) lately, newest first,
// by kind of work. It is kept in memory only, never stored or logged, and
// names no mailbox or token: a peer in Owners is not linked to the mailbox
// it owns. An operator sees as much in the connections of the relay's host
// anyway; the lists let the operator (and the blindness test) check that
// what works on mailboxes are the per-relay keys of node/mailbox, never a
// device's peer ID (docs/OPERATING.md).
type RecentPeers struct {
	// Streams are the peers that opened a mailbox stream, whatever they
	// sent on it: every peer of the two lists below, and those that only
	// asked for challenges or sent frames that did not decode.
	Streams []SeenPeer `json:"streams"`
	// Owners are the peers that sent mailbox owner operations (create,
	// tokens, card and prekey uploads, fetch, subscribe, ack, delete).
	Owners []SeenPeer `json:"owners"`
	// Depositors are the peers that deposited envelopes, or asked for a
	// card blob or a one-time prekey with a token.
	Depositors []SeenPeer `json:"depositors"`
	// Limit is the most peers each list holds (MaxRecentPeers).
	Limit int `json:"limit"`
}

// SeenPeer is one peer of a RecentPeers list.
type SeenPeer struct {
	PeerID string `json:"peer_id"`
	// LastSeen is when the peer last began that kind of work on a stream
	// (on the relay's clock).
	LastSeen time.Time `json:"last_seen"`
}

// peerKind names a list of RecentPeers.
type peerKind int

const (
	seenStream peerKind = iota
	seenOwner
	seenDepositor
	nKinds
)

// recentPeers is a bounded set of peer IDs per kind with the time each
// was last seen. Adding a peer that is not there when the set is full
// evicts the one seen longest ago (a scan of at most MaxRecentPeers).
type recentPeers struct {
	mu    sync.Mutex
	limit int
	sets  [nKinds]map[peer.ID]time.Time
}

func newRecentPeers(limit int) *recentPeers {
	r := &recentPeers{limit: limit}
	for i := range r.sets {
		r.sets[i] = make(map[peer.ID]time.Time, limit)
	}
	return r
}

func (r *recentPeers) add(k peerKind, p peer.ID, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := r.sets[k]
	if _, ok := set[p]; !ok && len(set) >= r.limit {
		var oldest peer.ID
		var at time.Time
		for q, t := range set {
			if oldest == "" || t.Before(at) {
				oldest, at = q, t
			}
		}
		delete(set, oldest)
	}
	set[p] = now
}

func (r *recentPeers) list(k peerKind) []SeenPeer {
	r.mu.Lock()
	out := make([]SeenPeer, 0, len(r.sets[k]))
	for p, t := range r.sets[k] {
		out = append(out, SeenPeer{PeerID: p.String(), LastSeen: t})
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b SeenPeer) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		if a.PeerID < b.PeerID {
			return -1
		}
		return 1
	})
	return out
}

// RecentPeers returns the peers the relay served on mailbox streams
// lately, newest first.
func (s *Server) RecentPeers() RecentPeers {
	return RecentPeers{
		Streams:    s.seen.list(seenStream),
		Owners:     s.seen.list(seenOwner),
		Depositors: s.seen.list(seenDepositor),
		Limit:      s.seen.limit,
	}
}
