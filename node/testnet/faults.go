package testnet

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// cut is the state of a partition: while it is active, peers on different
// sides may not connect. Peers without a side (the mailbox client's own
// hosts, which the harness does not know) are judged by the side of the
// host that dials or accepts them.
type cut struct {
	mu     sync.RWMutex
	active bool
	side   map[peer.ID]int
}

func newCut() *cut { return &cut{side: map[peer.ID]int{}} }

func (c *cut) set(p peer.ID, side int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.side[p] = side
}

// setActive turns the cut on or off and reports whether it was on.
func (c *cut) setActive(on bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	was := c.active
	c.active = on
	return was
}

// blocked reports whether a host on side s may not talk to peer p now.
func (c *cut) blocked(s int, p peer.ID) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ps, ok := c.side[p]
	return c.active && ok && ps != s
}

// gater is one host's connection gater: it refuses connections across an
// active cut.
type gater struct {
	cut  *cut
	side int
	// dead refuses every connection: the host is being killed.
	dead atomic.Bool
}

func (g *gater) allow(p peer.ID) bool { return !g.dead.Load() && !g.cut.blocked(g.side, p) }

func (g *gater) InterceptPeerDial(p peer.ID) bool { return g.allow(p) }

func (g *gater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return g.allow(p) }

func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool { return !g.dead.Load() }

func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.allow(p)
}

func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// dropRate is the chance that a read or write on a message stream resets
// the stream while Drop is on.
const dropRate = 0.02

// dropper resets streams at random (Drop): while it is on, each read or
// write on a stream it wraps resets the stream with probability dropRate,
// so frames in flight, and acknowledgements, are lost. It wraps every
// stream from the node's start, so the long-lived streams opened before
// the fault are hit too.
type dropper struct {
	on     atomic.Bool
	resets atomic.Int64
	mu     sync.Mutex
	rng    *rand.Rand
}

func newDropper(seed int64) *dropper {
	return &dropper{rng: rand.New(rand.NewPCG(uint64(seed), 0xd509))}
}

// wrap is node.Config.WrapStream.
func (d *dropper) wrap(s network.Stream) network.Stream { return &lossyStream{Stream: s, d: d} }

// hit draws whether this I/O call resets the stream.
func (d *dropper) hit() bool {
	if !d.on.Load() {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rng.Float64() < dropRate
}

type lossyStream struct {
	network.Stream
	d *dropper
}

func (s *lossyStream) tick() {
	if s.d.hit() {
		s.d.resets.Add(1)
		s.Stream.Reset()
	}
}

func (s *lossyStream) Read(b []byte) (int, error) {
	s.tick()
	return s.Stream.Read(b)
}

func (s *lossyStream) Write(b []byte) (int, error) {
	s.tick()
	return s.Stream.Write(b)
}
