package mailbox

import (
	"context"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/protocol"
)

// GroupLogStream opens a stream of the relay's group log service
// (protocol.GroupLogProtocol) under the depositor's key for that relay,
// never the device's or an own mailbox's: what the node reads and writes
// in group logs cannot be joined to its device or its mailboxes, and every
// member of a group looks alike to the relay. addrs are added to what the
// key's host knows of the relay.
func (c *Client) GroupLogStream(ctx context.Context, relay peer.ID, addrs []ma.Multiaddr) (network.Stream, error) {
	r, err := c.relay(relay, addrs)
	if err != nil {
		return nil, err
	}
	if err := r.connect(ctx); err != nil {
		return nil, err
	}
	h, err := r.host()
	if err != nil {
		return nil, err
	}
	s, err := h.NewStream(ctx, relay, libp2pproto.ID(protocol.GroupLogProtocol))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, relay, err)
	}
	r.touch()
	r.groups.Add(1)
	return &groupStream{Stream: s, r: r}, nil
}

// groupStream counts itself in its relay connection while open, so that
// the janitor does not close the host under a member's long-lived
// subscriptions.
type groupStream struct {
	network.Stream
	r    *relayConn
	once sync.Once
}

func (g *groupStream) done() {
	g.once.Do(func() {
		g.r.touch()
		g.r.groups.Add(-1)
	})
}

func (g *groupStream) Close() error { defer g.done(); return g.Stream.Close() }
func (g *groupStream) Reset() error { defer g.done(); return g.Stream.Reset() }
