package node

import (
	"context"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/sealpost/sealpost/store"
)

// Behind a NAT. A personal node learns from AutoNAT (v1, answered by the
// community relays, and v2) whether it is reachable from the internet.
// While it is not (or not yet known), AutoRelay keeps circuit relay v2
// reservations on up to two relays, taken from the node's own relays
// (those of its mailboxes) and its bootstrap peers (relayCandidates); the
// node's addresses then include /p2p-circuit addresses through them,
// which go into its invites, cards and address record. A peer that dials
// such an address gets a relayed (limited) connection, over which the
// node starts DCUtR hole punching; what the messaging service sends waits
// for the direct connection this makes (or falls back to the contact's
// mailboxes after messaging.Options.RelayAfter).

// Circuit relay reservations.
const (
	// reservedRelays is how many relays a node behind a NAT keeps a
	// reservation on.
	reservedRelays = 2
	// relayRetry is how long a relay that refused or failed a
	// reservation waits before it is tried again. Community relays are
	// few (libp2p's default of an hour would leave a node that lost its
	// relay unreachable for that long).
	relayRetry = time.Minute
)

// circuitResources are the limits of a relay's circuit relay v2 service:
// libp2p's, with room for a reservation from every user the connection
// limits admit (libp2p's default of 128 would turn most users of a full
// community relay away; each user's device holds one reservation and
// about two connections). Circuits keep libp2p's limits (2 minutes and
// 128 KiB each way): they carry hole punching and little else.
func circuitResources(cfg Config) relayv2.Resources {
	r := relayv2.DefaultResources()
	r.MaxReservations = max(r.MaxReservations, cfg.ConnHigh/2)
	return r
}

// autoRelayOptions are the options of AutoRelay for a personal node.
func (n *Node) autoRelayOptions() []autorelay.Option {
	return []autorelay.Option{
		autorelay.WithNumRelays(reservedRelays),
		autorelay.WithMinCandidates(1),
		autorelay.WithBootDelay(0),
		autorelay.WithBackoff(relayRetry),
		autorelay.WithMinInterval(relayRetry / 2),
	}
}

// relayCandidates is AutoRelay's source of relays: the relays of the
// node's mailboxes, then its bootstrap peers (AutoRelay keeps only those
// that offer circuit relay v2), at most num.
func (n *Node) relayCandidates(ctx context.Context, num int) <-chan peer.AddrInfo {
	self, _ := peer.IDFromPrivateKey(n.key)
	var out []peer.AddrInfo
	add := func(info peer.AddrInfo) {
		if info.ID == "" || info.ID == self || len(out) >= num ||
			slices.ContainsFunc(out, func(o peer.AddrInfo) bool { return o.ID == info.ID }) {
			return
		}
		out = append(out, info)
	}
	var boxes []store.Mailbox
	n.cfg.Store.View(ctx, func(tx *store.Tx) error {
		var err error
		boxes, err = tx.Mailboxes().List()
		return err
	})
	for _, b := range boxes {
		id, err := peer.Decode(b.Relay)
		if err != nil {
			continue
		}
		info := peer.AddrInfo{ID: id}
		for _, s := range b.Addrs {
			if a, err := ma.NewMultiaddr(s); err == nil {
				info.Addrs = append(info.Addrs, a)
			}
		}
		add(info)
	}
	for _, info := range n.boot {
		add(info)
	}
	ch := make(chan peer.AddrInfo, len(out))
	for _, info := range out {
		ch <- info
	}
	close(ch)
	return ch
}

// Lab addressing. libp2p decides what is public with go-multiaddr's
// tables, in which the benchmarking range 198.18.0.0/15 (RFC 2544) is
// unroutable: neither public nor private. AutoNAT, AutoRelay's
// reservations, identify's observed addresses and hole punching consider
// public addresses only, so in a network built of that range (`sealpost
// testnet lab`) none of them would run. UseLabAddressing makes this
// process treat the range as a real internet with home networks behind
// it.
const (
	// LabPublic is the lab's internet: public addresses.
	LabPublic = "198.18.0.0/16"
	// LabPrivate is the lab's home networks: private addresses.
	LabPrivate = "198.19.0.0/16"
)

var labOnce sync.Once

// UseLabAddressing makes this process count LabPublic as public internet
// addresses and LabPrivate as private ones. It changes go-multiaddr's
// process-wide tables, so it is for a daemon process that runs one node
// in the lab (`sealpost daemon --lab-addressing`) and must be called
// before any node starts; a node outside the lab never calls it, and then
// addresses in 198.18.0.0/15 stay unroutable (never advertised as
// public). It is idempotent.
func UseLabAddressing() {
	labOnce.Do(func() {
		_, priv, _ := net.ParseCIDR(LabPrivate)
		_, whole, _ := net.ParseCIDR("198.18.0.0/15")
		manet.Unroutable4 = slices.DeleteFunc(slices.Clone(manet.Unroutable4), func(n *net.IPNet) bool {
			return n.String() == whole.String()
		})
		// LabPublic is then public: neither private nor unroutable.
		manet.Private4 = append(slices.Clone(manet.Private4), priv)
	})
}
