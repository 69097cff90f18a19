// Package node is a sealpost node: the libp2p host (TCP and QUIC, noise,
// yamux, identify, ping, AutoNAT, circuit relay v2 client, hole punching,
// optional mDNS), the Kademlia DHT under the protocol prefix /sealpost, the
// device's signed address record in the DHT (package node/addrrecord), the
// event stream and the queries the local API serves.
//
// A node is built by New from a Config and owns every goroutine it starts:
// Close cancels them and waits. Everything a node uses (store, logger,
// clock, random source, Prometheus registry, connection gater, listen
// addresses) comes through its Config, so many nodes run in one process.
// The one exception is the routing of libp2p's own logs, which is
// process-global because libp2p's loggers are (see logbridge.go): the first
// New installs it and each open node's logger receives libp2p's lines.
//
// What the caller must do: write the node's identity into the store first
// (Provision, which `sealpost init` calls), keep the store open until Close
// returns, and close the store afterwards (the node does not).
package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	connmgrimpl "github.com/libp2p/go-libp2p/p2p/net/connmgr"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node/addrrecord"
	"github.com/sealpost/sealpost/node/blobrelay"
	"github.com/sealpost/sealpost/node/files"
	"github.com/sealpost/sealpost/node/gossip"
	"github.com/sealpost/sealpost/node/grouprelay"
	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/internal/closer"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/store"
)

// Errors.
var (
	// ErrNotProvisioned: the store holds no identity yet (run Provision,
	// that is `sealpost init`).
	ErrNotProvisioned = errors.New("node: the store holds no identity (run sealpost init)")
	// ErrBadAddr: a multiaddr is malformed or lacks the /p2p/ peer ID it
	// needs.
	ErrBadAddr = errors.New("node: bad multiaddr")
	// ErrUnreachable: a peer could not be connected.
	ErrUnreachable = errors.New("node: peer unreachable")
	// ErrDeviceNotFound: the DHT holds no valid address record for the
	// device.
	ErrDeviceNotFound = errors.New("node: no address record for the device")
	// ErrClosed: the node was closed.
	ErrClosed = errors.New("node: closed")
)

// Limits and intervals.
const (
	// MaxBootstrap bounds Config.Bootstrap.
	MaxBootstrap = 64
	// ProtocolPrefix is the prefix of the DHT's protocol IDs.
	ProtocolPrefix = "/sealpost"
	// mdnsService is the mDNS service name nodes announce and look for.
	mdnsService = "_sealpost._udp"
	// maxMDNSDials bounds the connection attempts mDNS discovery runs at
	// once; further discoveries are dropped until one finishes.
	maxMDNSDials = 4
	// dialTimeout bounds one connection attempt made by the node itself.
	dialTimeout = 30 * time.Second
)

// Node is a running sealpost node. Its methods are safe for concurrent
// use.
type Node struct {
	cfg    Config
	log    *slog.Logger
	clock  Clock
	host   host.Host
	dht    *dht.IpfsDHT
	mdns   mdns.Service
	sub    event.Subscription
	userID identity.UserID
	key    crypto.PrivKey
	boot   []peer.AddrInfo
	events *bus
	met    *metrics
	msg    *messaging.Service
	mb     *mailbox.Client
	relay  *relay.Server     // nil unless Config.RelayService
	files  *files.Service    // nil without Config.DataDir
	blobs  *blobrelay.Server // nil unless Config.RelayService and DataDir
	sink   fileSink
	// groups
	groupSlot groupSlot
	gossip    *gossip.Gossip
	groups    *groups.Service
	grelay    *grouprelay.Server // nil unless Config.RelayService

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	spawnMu  sync.Mutex
	stopping bool // set by Close under spawnMu; spawn refuses afterwards

	// closers unwinds what New started, the last started first: New on
	// failure, Close otherwise.
	closers closer.Stack
	closing closer.Once

	reach    atomic.Int32  // network.Reachability
	wake     chan struct{} // wakes the address-record publisher
	mdnsDial chan struct{} // semaphore of mDNS connection attempts
	pub      publishState
}

// New starts a node. When it returns, the host listens; joining the
// network (bootstrap, DHT) and publishing the address record continue in
// the background. ctx bounds only the start (loading the identity); the
// node runs until Close.
func New(ctx context.Context, cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	installLogBridge()
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger,
		clock:    cfg.Clock,
		events:   newBus(),
		wake:     make(chan struct{}, 1),
		mdnsDial: make(chan struct{}, maxMDNSDials),
	}
	if err := n.loadSelf(ctx); err != nil {
		return nil, err
	}
	// A damaged record is skipped by the store's lists, so that the node
	// serves every other contact; say which one, once.
	store.Damage(cfg.Store).Notify(func(d store.DamagedRecord) {
		n.log.Error("store: a damaged record is skipped; the rest of the store is served (restore the home from a backup to get it back)",
			"table", d.Table, "key", d.Key, "err", d.Err)
	})
	listen, err := parseAddrs(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("node: listen: %w", err)
	}
	if len(cfg.Bootstrap) > MaxBootstrap {
		return nil, fmt.Errorf("node: %d bootstrap peers, limit %d", len(cfg.Bootstrap), MaxBootstrap)
	}
	for _, s := range cfg.Bootstrap {
		info, err := parsePeerAddr(s)
		if err != nil {
			return nil, fmt.Errorf("node: bootstrap: %w", err)
		}
		// Several addresses of one peer (TCP and QUIC) make one entry, so
		// that a connection attempt tries them together (QUIC first).
		if k := slices.IndexFunc(n.boot, func(b peer.AddrInfo) bool { return b.ID == info.ID }); k >= 0 {
			n.boot[k].Addrs = append(n.boot[k].Addrs, info.Addrs...)
			continue
		}
		n.boot = append(n.boot, *info)
	}

	n.host, err = n.newHost(listen)
	if err != nil {
		return nil, err
	}
	n.closers.Push(n.host.Close)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.closers.PushFunc(n.cancel)
	fail := func(err error) (*Node, error) {
		n.closers.Close()
		return nil, err
	}

	mode := map[DHTMode]dht.ModeOpt{DHTAuto: dht.ModeAuto, DHTClient: dht.ModeClient, DHTServer: dht.ModeServer}[cfg.DHTMode]
	n.dht, err = dht.New(n.host,
		dht.ProtocolPrefix(ProtocolPrefix),
		dht.Mode(mode),
		dht.Validator(record.NamespacedValidator{addrrecord.Namespace: addrrecord.Validator{Now: n.clock.Now}}),
		dht.DisableProviders(),
		dht.BootstrapPeers(n.boot...),
	)
	if err != nil {
		return fail(fmt.Errorf("node: dht: %w", err))
	}
	n.closers.Push(n.dht.Close)

	n.sub, err = n.host.EventBus().Subscribe([]any{
		new(event.EvtPeerConnectednessChanged),
		new(event.EvtLocalReachabilityChanged),
		new(event.EvtLocalAddressesUpdated),
	}, eventbus.Name("sealpost-node"), eventbus.BufSize(256))
	if err != nil {
		return fail(fmt.Errorf("node: subscribe to host events: %w", err))
	}
	n.closers.Push(n.sub.Close)
	if n.met, err = newMetrics(n); err != nil {
		return fail(err)
	}
	n.closers.PushFunc(n.met.unregister)
	// The node's own loops (spawned last) stop after the services.
	n.closers.PushFunc(n.stopLoops)
	var msgHost host.Host = n.host
	if cfg.WrapStream != nil {
		msgHost = &faultHost{Host: n.host, wrap: cfg.WrapStream}
	}
	// Mailbox work goes through hosts of its own, never n.host.
	n.mb, err = mailbox.New(ctx, mailbox.Config{Store: cfg.Store, Logger: n.log, Rand: cfg.Rand, Clock: n.clock,
		OnStatus: n.relayStatus})
	if err != nil {
		return fail(fmt.Errorf("node: mailbox client: %w", err))
	}
	n.closers.PushFunc(closeService(n.mb))
	mcfg := messaging.Config{
		Host:       msgHost,
		Store:      cfg.Store,
		Logger:     n.log,
		Clock:      n.clock,
		Rand:       cfg.Rand,
		Publish:    n.publish,
		FindDevice: n.FindDevice,
		Mailbox:    n.mb,
		Options:    cfg.Messaging,
	}
	if cfg.DataDir != "" {
		mcfg.Files = &n.sink
		n.sink.dir = filepath.Join(cfg.DataDir, FilesDir)
	}
	mcfg.OnGroupControl = n.groupSlot.wake
	n.msg, err = messaging.New(ctx, mcfg)
	if err != nil {
		return fail(fmt.Errorf("node: messaging: %w", err))
	}
	n.closers.PushFunc(closeService(n.msg))

	if cfg.DataDir != "" {
		n.files, err = files.New(files.Config{
			Host:      n.host,
			Store:     cfg.Store,
			Dir:       filepath.Join(cfg.DataDir, FilesDir),
			Messenger: fileMessenger{n.msg},
			Groups:    fileGroups{&n.groupSlot},
			Relays:    n.mb,
			Logger:    n.log,
			Clock:     n.clock,
			Rand:      cfg.Rand,
			Publish:   n.publish,
			NoServe:   cfg.RelayService,
			Options:   cfg.Files,
		})
		if err != nil {
			return fail(fmt.Errorf("node: files: %w", err))
		}
		n.closers.PushFunc(closeService(n.files))
		n.sink.svc.Store(n.files)
	}
	if err := n.startGroups(ctx); err != nil {
		return fail(err)
	}
	if cfg.RelayService {
		n.relay, err = relay.New(relay.Config{
			Host:       n.host,
			Store:      cfg.Store,
			Resources:  cfg.Relay,
			Logger:     n.log,
			Clock:      n.clock,
			Rand:       cfg.Rand,
			Registerer: cfg.Registry,
		})
		if err != nil {
			return fail(fmt.Errorf("node: relay service: %w", err))
		}
		n.closers.PushFunc(closeService(n.relay))
		if err := n.startGroupRelay(); err != nil {
			return fail(err)
		}
		if cfg.DataDir != "" {
			if err := n.startBlobs(); err != nil {
				return fail(err)
			}
		}
	}
	if cfg.MDNS {
		n.mdns = mdns.NewMdnsService(n.host, mdnsService, mdnsNotifee{n})
		if err := n.mdns.Start(); err != nil {
			return fail(fmt.Errorf("node: mdns: %w", err))
		}
		n.closers.Push(n.mdns.Close)
	}

	logs.add(n, n.log)
	n.spawn(n.eventLoop)
	n.spawn(n.bootstrapLoop)
	n.spawn(n.publishLoop)
	n.log.Info("node started", "peer_id", n.host.ID().String(), "user_id", n.userID.String(),
		"profile", string(cfg.Profile), "dht", string(cfg.DHTMode), "addrs", len(n.host.Addrs()))
	return n, nil
}

// loadSelf reads the identity and the device key from the store.
func (n *Node) loadSelf(ctx context.Context) error {
	self, err := ReadSelf(ctx, n.cfg.Store)
	if err != nil {
		return err
	}
	n.userID, n.key = self.UserID, self.Key
	return nil
}

// Self is what Provision wrote, checked: the user ID, the device's libp2p
// key and the peer ID it gives.
type Self struct {
	UserID identity.UserID
	Key    crypto.PrivKey
	PeerID peer.ID
}

// ReadSelf reads the identity and device key that Provision wrote and checks
// that they belong together (the device record, when present, is signed by
// the identity for this device). It returns ErrNotProvisioned when the store
// holds none.
func ReadSelf(ctx context.Context, st store.Store) (Self, error) {
	var self store.Self
	err := st.View(ctx, func(tx *store.Tx) error {
		var err error
		self, err = tx.Self()
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return Self{}, ErrNotProvisioned
	}
	if err != nil {
		return Self{}, fmt.Errorf("node: load identity: %w", err)
	}
	id, err := identity.ParsePrivate(self.Identity)
	if err != nil {
		return Self{}, fmt.Errorf("node: stored identity: %w", err)
	}
	key, err := crypto.UnmarshalPrivateKey(self.DeviceKey)
	if err != nil {
		return Self{}, fmt.Errorf("node: stored device key: %w", err)
	}
	if key.Type() != crypto.Ed25519 {
		return Self{}, fmt.Errorf("node: stored device key is not Ed25519")
	}
	pid, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return Self{}, fmt.Errorf("node: device key: %w", err)
	}
	if len(self.DeviceRecord) > 0 {
		rec, err := identity.ParseDeviceRecord(self.DeviceRecord)
		if err != nil {
			return Self{}, fmt.Errorf("node: stored device record: %w", err)
		}
		if err := rec.Verify(); err != nil {
			return Self{}, fmt.Errorf("node: stored device record: %w", err)
		}
		if rec.Identity() != id.UserID() || string(rec.DeviceID()) != string(pid) {
			return Self{}, fmt.Errorf("node: stored device record is for another identity or device")
		}
	}
	return Self{UserID: id.UserID(), Key: key, PeerID: pid}, nil
}

// newHost builds the libp2p host.
func (n *Node) newHost(listen []ma.Multiaddr) (host.Host, error) {
	cfg := n.cfg
	rm, err := newResourceManager(cfg)
	if err != nil {
		return nil, fmt.Errorf("node: resource manager: %w", err)
	}
	cm, err := connmgrimpl.NewConnManager(cfg.ConnLow, cfg.ConnHigh, connmgrimpl.WithGracePeriod(cfg.ConnGrace))
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("node: connection manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(n.key),
		libp2p.ListenAddrs(listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.PrometheusRegisterer(cfg.Registry),
		libp2p.UserAgent("sealpost"),
		libp2p.Ping(true),
		libp2p.EnableRelay(),
		libp2p.EnableHolePunching(),
	}
	if cfg.Profile != Test {
		// AutoNAT v2 checks each public address through a second, dialing
		// host; loopback test networks have no public address to check.
		opts = append(opts, libp2p.EnableAutoNATv2())
	}
	if cfg.ConnGater != nil {
		opts = append(opts, libp2p.ConnectionGater(cfg.ConnGater))
	}
	if cfg.RelayService {
		opts = append(opts, libp2p.EnableRelayService(relayv2.WithResources(circuitResources(cfg))), libp2p.EnableNATService())
	} else if cfg.Profile != Test {
		// Behind a NAT: reservations on the node's relays (nat.go).
		opts = append(opts, libp2p.EnableAutoRelayWithPeerSource(n.relayCandidates, n.autoRelayOptions()...))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("node: libp2p host: %w", err)
	}
	return h, nil
}

// Close stops the node: it closes its services, cancels its work, waits
// for every goroutine it started, and closes the DHT and the host. It does
// not close the store. It is idempotent; a second call waits for the first
// and returns its result.
func (n *Node) Close() error {
	return n.closing.Do(func() error {
		n.spawnMu.Lock()
		n.stopping = true
		n.spawnMu.Unlock()
		err := n.closers.Close()
		logs.remove(n)
		if err != nil {
			err = fmt.Errorf("node: close: %w", err)
		}
		n.log.Info("node stopped")
		return err
	})
}

// stopLoops cancels the node's own work and waits for its goroutines.
func (n *Node) stopLoops() {
	n.cancel()
	n.events.close()
	n.wg.Wait()
}

// closeService returns the close of a service for the closer stack. The
// services log what fails as they close; the node's Close reports the
// host's, the DHT's and mDNS's errors.
func closeService(s io.Closer) func() { return func() { s.Close() } }

// spawn runs f in a goroutine that Close waits for. It returns false,
// without running f, once Close has begun.
func (n *Node) spawn(f func()) bool {
	n.spawnMu.Lock()
	defer n.spawnMu.Unlock()
	if n.stopping {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

// eventLoop turns the host's events into node events and state.
func (n *Node) eventLoop() {
	connected := map[peer.ID]bool{}
	for {
		var e any
		select {
		case <-n.ctx.Done():
			return
		case e = <-n.sub.Out():
		}
		switch e := e.(type) {
		case event.EvtPeerConnectednessChanged:
			now := n.clock.Now()
			switch e.Connectedness {
			case network.Connected, network.Limited:
				if connected[e.Peer] {
					continue
				}
				connected[e.Peer] = true
				pe := PeerEvent{PeerID: e.Peer.String(), Limited: e.Connectedness == network.Limited}
				if conns := n.host.Network().ConnsToPeer(e.Peer); len(conns) > 0 {
					pe.Direction = directionString(conns[0].Stat().Direction)
				}
				n.events.publish(Event{Type: EventPeerConnected, Time: now, Data: pe})
			default:
				if !connected[e.Peer] {
					continue
				}
				delete(connected, e.Peer)
				n.events.publish(Event{Type: EventPeerDisconnected, Time: now, Data: PeerEvent{PeerID: e.Peer.String()}})
			}
		case event.EvtLocalReachabilityChanged:
			n.reach.Store(int32(e.Reachability))
			n.log.Info("reachability changed", "reachability", reachabilityString(e.Reachability))
		case event.EvtLocalAddressesUpdated:
			n.poke()
		}
	}
}

// poke wakes the address-record publisher.
func (n *Node) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// mdnsNotifee connects the peers mDNS finds.
type mdnsNotifee struct{ n *Node }

func (m mdnsNotifee) HandlePeerFound(info peer.AddrInfo) {
	n := m.n
	if info.ID == n.host.ID() || n.host.Network().Connectedness(info.ID) == network.Connected {
		return
	}
	select {
	case n.mdnsDial <- struct{}{}:
	default:
		return // enough attempts in flight; mDNS announces again
	}
	if !n.spawn(func() {
		defer func() { <-n.mdnsDial }()
		ctx, cancel := context.WithTimeout(n.ctx, dialTimeout)
		defer cancel()
		if err := n.host.Connect(ctx, info); err != nil {
			n.log.Debug("mdns: connect failed", "peer_id", info.ID.String(), "err", err)
		}
	}) {
		<-n.mdnsDial
	}
}

func parseAddrs(ss []string) ([]ma.Multiaddr, error) {
	out := make([]ma.Multiaddr, 0, len(ss))
	for _, s := range ss {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrBadAddr, s, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// parsePeerAddr parses a multiaddr that ends in /p2p/<peer ID>.
func parsePeerAddr(s string) (*peer.AddrInfo, error) {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrBadAddr, s, err)
	}
	info, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return nil, fmt.Errorf("%w %q: needs a /p2p/ peer ID", ErrBadAddr, s)
	}
	return info, nil
}

func directionString(d network.Direction) string {
	switch d {
	case network.DirInbound:
		return "inbound"
	case network.DirOutbound:
		return "outbound"
	}
	return "unknown"
}

func reachabilityString(r network.Reachability) string {
	switch r {
	case network.ReachabilityPublic:
		return "public"
	case network.ReachabilityPrivate:
		return "private"
	}
	return "unknown"
}

// cryptoRand is crypto/rand.Reader as a value (the default of Config.Rand).
type cryptoRand struct{}

func (cryptoRand) Read(b []byte) (int, error) { return rand.Read(b) }

// sortedPeers returns ids sorted.
func sortedPeers(ids []peer.ID) []peer.ID {
	slices.Sort(ids)
	return ids
}

// Messaging returns the node's messaging service: contacts, invites,
// sending and reading messages (package node/messaging).
func (n *Node) Messaging() *messaging.Service { return n.msg }

// Relay returns the node's relay service, or nil when Config.RelayService
// is off.
func (n *Node) Relay() *relay.Server { return n.relay }

// publish puts an event of the messaging service on the event stream.
func (n *Node) publish(typ string, data any) {
	n.events.publish(Event{Type: typ, Time: n.clock.Now(), Data: data})
}
