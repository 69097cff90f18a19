package node

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/node/gossip"
	"github.com/sealpost/sealpost/node/grouprelay"
	"github.com/sealpost/sealpost/node/groups"
)

// Groups join three services: messaging carries the 1:1 controls of
// joining and wakes the group engine when one arrived (groupSlot), gossip
// asks the engine which devices take part in a topic, and the engine uses
// both. Messaging and gossip start first; the engine, started next, finds
// in the store whatever control arrived in between.

// groupSlot holds the group engine once it runs.
type groupSlot struct {
	svc atomic.Pointer[groups.Service]
}

// wake tells the engine that a control arrived (messaging.Config.OnGroupControl).
func (s *groupSlot) wake() {
	if svc := s.svc.Load(); svc != nil {
		svc.Wake()
	}
}

// allowed is gossip.Config.Allowed: nobody before the engine runs.
func (s *groupSlot) allowed(topic string, p peer.ID) bool {
	if svc := s.svc.Load(); svc != nil {
		return svc.Allowed(topic, p)
	}
	return false
}

// startGroups starts gossipsub and the group engine on the node's host.
func (n *Node) startGroups(ctx context.Context) error {
	var err error
	n.gossip, err = gossip.New(gossip.Config{Host: n.host, Allowed: n.groupSlot.allowed, Logger: n.log, Registerer: n.cfg.Registry, Options: n.cfg.Gossip})
	if err != nil {
		return fmt.Errorf("node: gossip: %w", err)
	}
	n.closers.PushFunc(closeService(n.gossip))
	n.groups, err = groups.New(ctx, groups.Config{
		Host: n.host, Store: n.cfg.Store, Messaging: n.msg, Mailbox: n.mb, Gossip: n.gossip,
		FindDevice: n.FindDevice, Publish: n.publish, Logger: n.log, Clock: n.clock, Rand: n.cfg.Rand,
		Registerer: n.cfg.Registry, ConnHigh: n.cfg.ConnHigh, Options: n.cfg.Groups, Files: n.groupFiles(),
	})
	if err != nil {
		return fmt.Errorf("node: groups: %w", err)
	}
	n.closers.PushFunc(closeService(n.groups))
	n.groupSlot.svc.Store(n.groups)
	return nil
}

// groupFiles is what the group engine hands the pointers of the group
// file messages it receives to: the file sink when the node has a file
// service.
func (n *Node) groupFiles() groups.Files {
	if n.files == nil {
		return nil
	}
	return &n.sink
}

// startGroupRelay starts the relay's group log service.
func (n *Node) startGroupRelay() error {
	var err error
	n.grelay, err = grouprelay.New(grouprelay.Config{
		Host: n.host, Store: n.cfg.Store, Resources: n.cfg.GroupRelay, Logger: n.log, Clock: n.clock, Registerer: n.cfg.Registry,
		// A creator's group logs count in the creator quotas of its
		// mailboxes, and their refusals with theirs.
		Quotas: n.relay.CreatorQuotas, QuotaRefused: n.relay.QuotaRefused,
	})
	if err != nil {
		return fmt.Errorf("node: group relay: %w", err)
	}
	n.closers.PushFunc(closeService(n.grelay))
	return nil
}

// Groups returns the node's group engine (package node/groups).
func (n *Node) Groups() *groups.Service { return n.groups }

// GroupRelay returns the relay's group log service, or nil unless
// Config.RelayService is on.
func (n *Node) GroupRelay() *grouprelay.Server { return n.grelay }
