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

// BlobStream opens a stream of the relay's attachment blob service
// (protocol.BlobProtocol). An upload for mailbox mb goes under the
// depositor's key for that mailbox, as its deposits do (an upload carries a
// deposit token, so it tells the relay no more than a deposit); an upload
// for a group log (mb zero) under the key of the node's group log streams
// (it carries an epoch token of the log, as their appends do); a download
// (mb ignored) goes under a reader's
// key of its own, so the relay cannot join what this node fetches to what
// it uploads or deposits. Neither is ever the device's or an own
// mailbox's key. addrs are added to what the key's host knows of the
// relay.
func (c *Client) BlobStream(ctx context.Context, relay peer.ID, addrs []ma.Multiaddr, upload bool, mb protocol.MailboxID) (network.Stream, error) {
	k := connKey{id: relay, role: roleReader}
	if upload {
		k.role, k.mailbox = roleDepositor, mb
	}
	r, err := c.conn(ctx, k, addrs)
	if err != nil {
		return nil, err
	}
	defer r.release()
	return r.stream(ctx, protocol.BlobProtocol)
}

// stream opens a long-lived stream of protocol p to the relay for a
// caller, who closes or resets it; while it is open the janitor leaves the
// host alone.
func (r *relayConn) stream(ctx context.Context, p string) (network.Stream, error) {
	if err := r.connect(ctx); err != nil {
		return nil, err
	}
	h, err := r.host()
	if err != nil {
		return nil, err
	}
	s, err := h.NewStream(ctx, r.id, libp2pproto.ID(p))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, r.id, err)
	}
	return r.hold(s), nil
}

// hold counts s in its relay connection until it is closed or reset.
func (r *relayConn) hold(s network.Stream) network.Stream {
	r.touch()
	r.held.Add(1)
	return &heldStream{Stream: s, r: r}
}

// heldStream is a stream counted in its relay connection while open, so
// that the janitor does not close the host under a long-lived stream.
type heldStream struct {
	network.Stream
	r    *relayConn
	once sync.Once
}

func (g *heldStream) done() {
	g.once.Do(func() {
		g.r.touch()
		if g.r.held.Add(-1) == 0 {
			g.r.c.freeRoom()
		}
	})
}

func (g *heldStream) Close() error { defer g.done(); return g.Stream.Close() }
func (g *heldStream) Reset() error { defer g.done(); return g.Stream.Reset() }
