package node

import (
	"context"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Fault injection for tests and `sealpost testnet` (package node/testnet):
// Config.WrapStream and Disconnect. Neither is used by a node that is not
// told to.

// faultHost is the host the messaging service sees when Config.WrapStream
// is set: every stream it opens or accepts passes through wrap first.
type faultHost struct {
	host.Host
	wrap func(network.Stream) network.Stream
}

func (h *faultHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	return h.wrap(s), nil
}

func (h *faultHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, func(s network.Stream) { handler(h.wrap(s)) })
}

func (h *faultHost) SetStreamHandlerMatch(pid protocol.ID, match func(protocol.ID) bool, handler network.StreamHandler) {
	h.Host.SetStreamHandlerMatch(pid, match, func(s network.Stream) { handler(h.wrap(s)) })
}

// Disconnect closes every connection to the peer p; whether p may connect
// again is up to Config.ConnGater. Tests and `sealpost testnet` use it to
// cut a network in two: the gater refuses new connections across the cut,
// Disconnect ends those already open.
func (n *Node) Disconnect(p peer.ID) error {
	return n.host.Network().ClosePeer(p)
}
