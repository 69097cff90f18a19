package mailbox

import "github.com/libp2p/go-libp2p/core/peer"

// HostsTowards returns how many hosts of keys made in memory the client
// holds towards relay id.
func (c *Client) HostsTowards(id peer.ID) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, r := range c.relays {
		if k.id == id && !r.own {
			n++
		}
	}
	return n
}
