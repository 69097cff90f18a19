package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/store"
)

// Info is who and where the node is.
type Info struct {
	// Name is the user's display name (what contacts see in an invite or
	// card); empty on a node without messaging.
	Name string `json:"name,omitempty"`
	// UserID is the text form of the user's identity.
	UserID string `json:"user_id"`
	// PeerID is the device's libp2p peer ID.
	PeerID string `json:"peer_id"`
	// Addrs are the node's addresses as full multiaddrs (with /p2p/).
	Addrs []string `json:"addrs"`
	// Relays are the relays the node is reachable through (their
	// multiaddrs with /p2p/): those it keeps a mailbox on (relays add),
	// then those of its circuit addresses.
	Relays []string `json:"relays"`
	// API is the loopback TCP address (host:port) the local API and the
	// web app listen on, empty while there is none; the API fills it in.
	API string `json:"api,omitempty"`
}

// PeerInfo is one connected peer.
type PeerInfo struct {
	PeerID string `json:"peer_id"`
	// Addrs are the remote addresses of the open connections.
	Addrs []string `json:"addrs"`
	// Direction of the oldest open connection: "inbound" or "outbound".
	Direction string `json:"direction"`
	// Limited: every connection is relayed (limited).
	Limited bool `json:"limited,omitempty"`
	// Latency is the smoothed round-trip time, zero when not measured yet.
	Latency time.Duration `json:"latency_ns,omitempty"`
	// ConnectedSince is when the oldest open connection opened.
	ConnectedSince time.Time `json:"connected_since"`
}

// Status is the node's state in numbers.
type Status struct {
	// Peers is the number of connected peers.
	Peers int `json:"peers"`
	// DHTMode is the DHT's configured mode (auto, client, server);
	// DHTServing tells whether it answers queries now.
	DHTMode    string `json:"dht_mode"`
	DHTServing bool   `json:"dht_serving"`
	// RoutingTable is the number of peers in the DHT routing table.
	RoutingTable int `json:"routing_table"`
	// Reachability is AutoNAT's verdict: unknown, public or private.
	Reachability string `json:"reachability"`
	// Relays is the number of relays the node is reachable through (as
	// Info.Relays); RelaysSubscribed the number of its mailboxes whose
	// relay pushes to it now.
	Relays           int `json:"relays"`
	RelaysSubscribed int `json:"relays_subscribed"`
	// Outbox is the number of messages waiting for delivery.
	Outbox int `json:"outbox"`
	// Sessions is the number of ratchet sessions in the store.
	Sessions int `json:"sessions"`
	// Record is the state of the device's address record in the DHT.
	Record RecordStatus `json:"addr_record"`
	// DiskFull says, while the disk holding the store is too full to
	// write, how full it is; empty otherwise.
	DiskFull string `json:"disk_full,omitempty"`
	// RolledBack is set when this daemon found its store older than this
	// machine last saw it and ended its sessions (messaging.Service.Rollback).
	RolledBack *messaging.RollbackNotice `json:"rolled_back,omitempty"`
	// Damaged lists the store's records that do not decode, which the
	// node skips (store.DamageLog) while it serves everything else.
	Damaged []store.DamagedRecord `json:"damaged,omitempty"`
	// API is as in Info.
	API string `json:"api,omitempty"`
}

// ID returns the device's peer ID.
func (n *Node) ID() peer.ID { return n.host.ID() }

// Info returns the node's identity and addresses.
func (n *Node) Info() Info {
	self := ma.StringCast("/p2p/" + n.host.ID().String())
	addrs := n.host.Addrs()
	info := Info{
		UserID: n.userID.String(),
		PeerID: n.host.ID().String(),
		Addrs:  make([]string, 0, len(addrs)),
		Relays: n.allRelays(addrs),
	}
	for _, a := range addrs {
		info.Addrs = append(info.Addrs, a.Encapsulate(self).String())
	}
	if n.msg != nil {
		info.Name = n.msg.Name()
	}
	return info
}

// relays returns the distinct relays (multiaddr with /p2p/, without
// /p2p-circuit) of the circuit addresses among addrs.
func relays(addrs []ma.Multiaddr) []string {
	out := []string{}
	for _, a := range addrs {
		relay, _ := ma.SplitFunc(a, func(c ma.Component) bool { return c.Protocol().Code == ma.P_CIRCUIT })
		if len(relay) == len(a) || len(relay) == 0 {
			continue // not a circuit address
		}
		if s := relay.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// allRelays returns the relays of the node's mailboxes (their first
// address with /p2p/), then the distinct relays of its circuit addresses.
func (n *Node) allRelays(addrs []ma.Multiaddr) []string {
	out := []string{}
	if boxes, err := n.msg.Relays(n.ctx); err == nil {
		for _, r := range boxes {
			if len(r.Addrs) > 0 {
				out = append(out, r.Addrs[0]+"/p2p/"+r.ID)
			}
		}
	}
	for _, r := range relays(addrs) {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// EventRelayStatus: the subscription to one of the node's relay mailboxes
// changed state. Data: RelayStatusEvent.
const EventRelayStatus = "relay.status"

// RelayStatusEvent is the data of relay.status.
type RelayStatusEvent struct {
	// Relay is the relay's peer ID.
	Relay string `json:"relay"`
	// State is connecting, fetching, subscribed or error.
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// Stored is what the relay last reported holding for the node.
	Stored uint64 `json:"stored"`
}

// relayStatus publishes relay.status.
func (n *Node) relayStatus(s mailbox.Status) {
	n.events.publish(Event{Type: EventRelayStatus, Time: n.clock.Now(),
		Data: RelayStatusEvent{Relay: s.Relay, State: s.State, Error: s.Err, Stored: s.Stored}})
}

// Peers returns the connected peers, ordered by peer ID.
func (n *Node) Peers() []PeerInfo {
	net := n.host.Network()
	ids := sortedPeers(net.Peers())
	out := make([]PeerInfo, 0, len(ids))
	for _, id := range ids {
		conns := net.ConnsToPeer(id)
		if len(conns) == 0 {
			continue
		}
		p := PeerInfo{PeerID: id.String(), Addrs: make([]string, 0, len(conns)), Limited: true}
		var oldest network.Conn
		for _, c := range conns {
			st := c.Stat()
			if oldest == nil || st.Opened.Before(oldest.Stat().Opened) {
				oldest = c
			}
			if !st.Limited {
				p.Limited = false
			}
			if s := c.RemoteMultiaddr().String(); !slices.Contains(p.Addrs, s) {
				p.Addrs = append(p.Addrs, s)
			}
		}
		p.Direction = directionString(oldest.Stat().Direction)
		p.ConnectedSince = oldest.Stat().Opened
		p.Latency = n.host.Peerstore().LatencyEWMA(id)
		out = append(out, p)
	}
	return out
}

// Connect connects the peer at maddr, which must end in /p2p/<peer ID>.
// A malformed address returns an error wrapping ErrBadAddr, a failed
// connection one wrapping ErrUnreachable.
func (n *Node) Connect(ctx context.Context, maddr string) error {
	info, err := parsePeerAddr(maddr)
	if err != nil {
		return err
	}
	if info.ID == n.host.ID() {
		return fmt.Errorf("%w %q: that is this node", ErrBadAddr, maddr)
	}
	if err := n.ctx.Err(); err != nil {
		return ErrClosed
	}
	if err := n.host.Connect(ctx, *info); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnreachable, info.ID, err)
	}
	return nil
}

// Status returns the node's state. Outbox and Sessions are read from the
// store, so Status fails only if the store does.
func (n *Node) Status(ctx context.Context) (Status, error) {
	st := Status{
		Peers:        len(n.host.Network().Peers()),
		DHTMode:      string(n.cfg.DHTMode),
		DHTServing:   slices.Contains(n.host.Mux().Protocols(), ProtocolPrefix+"/kad/1.0.0"),
		RoutingTable: n.dht.RoutingTable().Size(),
		Reachability: reachabilityString(network.Reachability(n.reach.Load())),
		Relays:       len(n.allRelays(n.host.Addrs())),
		Record:       n.recordStatus(),
	}
	for _, s := range n.mb.Statuses() {
		if s.State == mailbox.StateSubscribed {
			st.RelaysSubscribed++
		}
	}
	if n.msg != nil {
		st.RolledBack = n.msg.Rollback()
	}
	if d, ok := n.cfg.Store.(interface{ DiskFull() error }); ok {
		var df *store.DiskFullError
		if errors.As(d.DiskFull(), &df) {
			st.DiskFull = fmt.Sprintf("%s free, the store needs %s", store.MiB(df.Free), store.MiB(df.Need))
		}
	}
	err := n.cfg.Store.View(ctx, func(tx *store.Tx) error {
		out, err := tx.Outbox().List()
		if err != nil {
			return err
		}
		contacts, err := tx.Contacts().List()
		if err != nil {
			return err
		}
		st.Outbox, st.Sessions = len(out), 0
		for _, c := range contacts {
			ss, err := tx.Sessions().List(c.UserID)
			if err != nil {
				return err
			}
			st.Sessions += len(ss)
		}
		return nil
	})
	if err != nil {
		return Status{}, fmt.Errorf("node: status: %w", err)
	}
	st.Damaged = store.Damage(n.cfg.Store).Records()
	return st, nil
}

// Registry returns the registry the node's metrics are in (Config.Registry
// or the one New made); serve it at /metrics.
func (n *Node) Registry() Registry { return n.cfg.Registry }
