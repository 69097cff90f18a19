package mailbox

import (
	"context"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/protocol"
)

// GroupLogStream opens a stream of the relay's group log service
// (protocol.GroupLogProtocol) under the depositor's key for that relay's
// group logs, never the device's, an own mailbox's or one that deposits
// into a mailbox: what the node reads and writes
// in group logs cannot be joined to its device or its mailboxes, and every
// member of a group looks alike to the relay. addrs are added to what the
// key's host knows of the relay.
func (c *Client) GroupLogStream(ctx context.Context, relay peer.ID, addrs []ma.Multiaddr) (network.Stream, error) {
	r, err := c.relay(ctx, relay, protocol.MailboxID{}, addrs)
	if err != nil {
		return nil, err
	}
	defer r.release()
	return r.stream(ctx, protocol.GroupLogProtocol)
}
