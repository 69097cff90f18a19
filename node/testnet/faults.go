package testnet

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/node"
)

// skewClock is the system clock shifted by a fixed offset (ClockSkew).
type skewClock struct{ offset time.Duration }

func (c skewClock) Now() time.Time { return time.Now().Add(c.offset) }

func (c skewClock) NewTimer(d time.Duration) node.Timer { return sysTimer{time.NewTimer(d)} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time        { return t.t.C }
func (t sysTimer) Stop() bool                 { return t.t.Stop() }
func (t sysTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

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

// Drop's parameters: the fraction of streams doomed while it is on, and
// the most I/O calls a doomed stream makes before it is reset.
const (
	dropFraction = 0.2
	dropMaxOps   = 16
)

// dropper resets a fraction of the streams it wraps (Drop): a doomed
// stream is reset at a random read or write among its first dropMaxOps,
// so frames in flight, and acknowledgements, are lost.
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
func (d *dropper) wrap(s network.Stream) network.Stream {
	if !d.on.Load() {
		return s
	}
	d.mu.Lock()
	doomed := d.rng.Float64() < dropFraction
	after := 1 + d.rng.IntN(dropMaxOps)
	d.mu.Unlock()
	if !doomed {
		return s
	}
	ds := &doomedStream{Stream: s, d: d}
	ds.left.Store(int32(after))
	return ds
}

type doomedStream struct {
	network.Stream
	d    *dropper
	left atomic.Int32
}

// tick counts one I/O call and resets the stream at the last one.
func (s *doomedStream) tick() {
	if s.left.Add(-1) == 0 && s.d.on.Load() {
		s.d.resets.Add(1)
		s.Stream.Reset()
	}
}

func (s *doomedStream) Read(b []byte) (int, error) {
	s.tick()
	return s.Stream.Read(b)
}

func (s *doomedStream) Write(b []byte) (int, error) {
	s.tick()
	return s.Stream.Write(b)
}
