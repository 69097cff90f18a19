package node

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// Backoff of the node's retries (bootstrap, address record).
const (
	minBackoff = time.Second
	maxBackoff = 5 * time.Minute
	// bootstrapCheck is how often a node whose routing table is populated
	// checks that it still is.
	bootstrapCheck = time.Minute
)

// bootstrapLoop connects the bootstrap peers, retrying with backoff while
// the DHT's routing table is empty; once it is populated it checks again
// every bootstrapCheck (a node that lost the network starts over).
func (n *Node) bootstrapLoop() {
	if len(n.boot) == 0 {
		return
	}
	backoff := minBackoff
	t := n.clock.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C():
		}
		if n.dht.RoutingTable().Size() > 0 {
			backoff = minBackoff
			t.Reset(bootstrapCheck)
			continue
		}
		if ok := n.connectBootstrap(); ok > 0 {
			n.dht.RefreshRoutingTable() // asynchronous; its result is not needed
			n.log.Debug("bootstrap: connected", "peers", ok, "of", len(n.boot))
		} else {
			n.log.Info("bootstrap: no bootstrap peer reachable", "peers", len(n.boot), "retry_in", backoff)
		}
		t.Reset(n.jitter(backoff))
		backoff = min(2*backoff, maxBackoff)
	}
}

// connectBootstrap connects every bootstrap peer not connected yet, at
// once, and returns how many are connected afterwards.
func (n *Node) connectBootstrap() int {
	ctx, cancel := context.WithTimeout(n.ctx, dialTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, info := range n.boot {
		if info.ID == n.host.ID() || n.host.Network().Connectedness(info.ID) == network.Connected {
			continue
		}
		// This loop has its own backoff: clear the swarm's, which would
		// refuse redials for longer after the first failure.
		if sw, ok := n.host.Network().(*swarm.Swarm); ok {
			sw.Backoff().Clear(info.ID)
		}
		wg.Go(func() {
			if err := n.host.Connect(ctx, info); err != nil {
				n.log.Debug("bootstrap: connect failed", "peer_id", info.ID.String(), "err", err)
			}
		})
	}
	wg.Wait()
	ok := 0
	for _, info := range n.boot {
		if n.host.Network().Connectedness(info.ID) == network.Connected {
			ok++
		}
	}
	return ok
}

// jitter returns a duration uniformly in [d/2, d), from Config.Rand.
func (n *Node) jitter(d time.Duration) time.Duration {
	var b [8]byte
	if _, err := n.cfg.Rand.Read(b[:]); err != nil || d < 2 {
		return d
	}
	half := d / 2
	return half + time.Duration(binary.BigEndian.Uint64(b[:])%uint64(half))
}

// newResourceManager returns a resource manager with libp2p's default
// limits for its services, scaled to Config.MaxMemory and MaxFDs, and with
// the system and transient scopes capped by them and by the connection
// manager's high watermark (so many small nodes fit in one process).
func newResourceManager(cfg Config) (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	scaled := limits.Scale(cfg.MaxMemory, cfg.MaxFDs)
	conns := 2 * cfg.ConnHigh
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Memory:        rcmgr.LimitVal64(cfg.MaxMemory),
			FD:            rcmgr.LimitVal(cfg.MaxFDs),
			Conns:         rcmgr.LimitVal(conns),
			ConnsInbound:  rcmgr.LimitVal(max(cfg.ConnHigh, 8)),
			ConnsOutbound: rcmgr.LimitVal(conns),
		},
		Transient: rcmgr.ResourceLimits{
			Memory:        rcmgr.LimitVal64(cfg.MaxMemory / 4),
			FD:            rcmgr.LimitVal(max(cfg.MaxFDs/4, 4)),
			Conns:         rcmgr.LimitVal(max(conns/4, 8)),
			ConnsInbound:  rcmgr.LimitVal(max(conns/8, 4)),
			ConnsOutbound: rcmgr.LimitVal(max(conns/4, 8)),
		},
	}
	return rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(partial.Build(scaled)))
}
