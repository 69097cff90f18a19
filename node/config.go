package node

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/node/blobrelay"
	"github.com/sealpost/sealpost/node/files"
	"github.com/sealpost/sealpost/node/gossip"
	"github.com/sealpost/sealpost/node/grouprelay"
	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/internal/clock"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/store"
)

// Profile names a set of defaults: what kind of node this is.
type Profile string

// Profiles. The zero Profile is Personal.
const (
	// Personal is a user's own node: TCP and QUIC on port 7710 on all
	// interfaces, mDNS on, the DHT in client mode unless the node finds
	// itself publicly reachable.
	Personal Profile = "personal"
	// Relay is a community relay: the same ports, the DHT in server mode,
	// the circuit relay v2 service on, larger limits.
	Relay Profile = "relay"
	// Test is for tests and local networks: random loopback ports, no
	// mDNS, no default bootstrap peers, the DHT in server mode so that a
	// network of loopback nodes is routable, small limits so that many
	// nodes fit in one process, and no AutoNAT v2 (it checks only public
	// addresses, through a second host per node).
	Test Profile = "test"
)

// DefaultPort is the TCP and UDP (QUIC) port of the personal and relay
// profiles.
const DefaultPort = 7710

// DHTMode selects whether the node answers DHT queries.
type DHTMode string

// DHT modes. The zero DHTMode is the profile's.
const (
	// DHTAuto is client mode until AutoNAT finds the node publicly
	// reachable, then server mode.
	DHTAuto DHTMode = "auto"
	// DHTClient only queries.
	DHTClient DHTMode = "client"
	// DHTServer queries and answers.
	DHTServer DHTMode = "server"
)

// Registry is where the node registers its metrics and what /metrics
// serves; *prometheus.Registry is one.
type Registry interface {
	prometheus.Registerer
	prometheus.Gatherer
}

// Config is what New needs. Each field documents its zero value; New fills
// defaults on a copy. Start from Defaults(profile) to get the profile's
// settings for the plain booleans (MDNS, RelayService) as well.
type Config struct {
	// Store holds the node's identity and device key (store.Self, written
	// by Provision). Required. The node does not close it.
	Store store.Store

	// Profile selects the defaults of the fields below. Zero: Personal.
	Profile Profile

	// Listen is the multiaddrs to listen on. Zero: the profile's.
	Listen []string
	// Bootstrap is the multiaddrs (each with /p2p/) of the peers the node
	// joins the network through. Zero: none (a node without bootstrap
	// peers is found by others, or through mDNS).
	Bootstrap []string
	// MDNS finds and connects peers on the local network. Zero: off
	// (Defaults(Personal) turns it on).
	MDNS bool
	// DHTMode is the DHT's mode. Zero: the profile's (auto for Personal,
	// server for Relay and Test).
	DHTMode DHTMode
	// RelayService runs the community relay service (node/relay: mailboxes
	// of sealed envelopes for others, in Store) and the circuit relay v2
	// service for other peers. Zero: off (Defaults(Relay) turns it on).
	RelayService bool
	// Relay are the relay service's limits. Zero: relay.DefaultResources().
	Relay relay.Resources
	// Blobs are the limits of the relay's attachment blob service. Zero:
	// blobrelay.DefaultResources() with the TTL of Relay.
	Blobs blobrelay.Resources

	// DataDir holds what the node keeps outside its store: the
	// ciphertexts of the files it sends and receives (DataDir/files) and,
	// with RelayService, the attachment blobs it keeps for others
	// (DataDir/blobs). Zero: no attachments (the node neither sends nor
	// downloads files, and its relay service keeps no blobs).
	DataDir string
	// Files tunes the attachment service (size limits, automatic
	// download). Zero: its defaults.
	Files files.Options

	// Logger receives the node's logs and libp2p's (see package doc).
	// Zero: logs are discarded.
	Logger *slog.Logger
	// Clock is the source of time of sealpost's own decisions (record
	// expiry, republishing, backoff). Zero: the system clock.
	Clock Clock
	// Rand is the random source of sealpost's own decisions (backoff
	// jitter) and of the messaging service's keys and message IDs, so it
	// must be a cryptographic source outside tests. Zero:
	// crypto/rand.Reader.
	Rand io.Reader
	// Registry gets libp2p's metrics, Go and process collectors, and
	// sealpost's own. Zero: a fresh registry (see Node.Registry).
	Registry Registry
	// ConnGater may refuse connections. Zero: none.
	ConnGater connmgr.ConnectionGater

	// ConnLow and ConnHigh are the connection manager's watermarks: above
	// ConnHigh connections it trims down to ConnLow. Zero: the profile's.
	ConnLow, ConnHigh int
	// ConnGrace is how long a new connection is safe from trimming.
	// Zero: 20 seconds.
	ConnGrace time.Duration
	// MaxMemory bounds the memory the resource manager lets libp2p reserve
	// (streams and connection buffers), in bytes. Zero: the profile's.
	MaxMemory int64
	// MaxFDs bounds the file descriptors libp2p may use. Zero: the
	// profile's.
	MaxFDs int

	// Messaging tunes the messaging service (retry backoff, batching, rate
	// limits, prekey schedule). Zero: its defaults.
	Messaging messaging.Options
	// Groups tunes the group engine; Gossip its gossipsub. Zero: their
	// defaults.
	Groups groups.Options
	Gossip gossip.Options
	// GroupRelay are the limits of the relay's group log service (with
	// RelayService). Zero: grouprelay.DefaultResources().
	GroupRelay grouprelay.Resources

	// WrapStream, when set, wraps every stream the messaging service opens
	// or accepts before the service uses it: a fault-injection hook for
	// tests and `sealpost testnet`, whose wrapper resets a fraction of the
	// streams to model message loss on links (faults.go). Zero: streams
	// are used as they are.
	WrapStream func(network.Stream) network.Stream
}

// profileDefaults returns profile p's settings.
func profileDefaults(p Profile) (Config, bool) {
	switch p {
	case Personal:
		return Config{
			Listen:    allInterfaces(DefaultPort),
			MDNS:      true,
			DHTMode:   DHTAuto,
			ConnLow:   32,
			ConnHigh:  96,
			MaxMemory: 128 << 20,
			MaxFDs:    512,
		}, true
	case Relay:
		return Config{
			Listen:       allInterfaces(DefaultPort),
			DHTMode:      DHTServer,
			RelayService: true,
			ConnLow:      512,
			ConnHigh:     1024,
			MaxMemory:    1 << 30,
			MaxFDs:       4096,
		}, true
	case Test:
		return Config{
			Listen:    []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
			DHTMode:   DHTServer,
			ConnLow:   16,
			ConnHigh:  48,
			MaxMemory: 32 << 20,
			MaxFDs:    128,
		}, true
	}
	return Config{}, false
}

func allInterfaces(port int) []string {
	return []string{
		fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", port),
		fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", port),
		fmt.Sprintf("/ip6/::/tcp/%d", port),
		fmt.Sprintf("/ip6/::/udp/%d/quic-v1", port),
	}
}

// Defaults returns the settings of profile p (the zero Profile is
// Personal): the starting point for a Config. The bootstrap list is empty:
// there is no public sealpost network to default to yet, so bootstrap
// peers come from the configuration.
func Defaults(p Profile) (Config, error) {
	if p == "" {
		p = Personal
	}
	c, ok := profileDefaults(p)
	if !ok {
		return Config{}, fmt.Errorf("node: unknown profile %q (want personal, relay or test)", p)
	}
	c.Profile = p
	return c, nil
}

// withDefaults returns a copy of c with every zero field filled.
func (c Config) withDefaults() (Config, error) {
	if c.Store == nil {
		return c, fmt.Errorf("node: Config.Store is nil")
	}
	d, err := Defaults(c.Profile)
	if err != nil {
		return c, err
	}
	c.Profile = d.Profile
	if len(c.Listen) == 0 {
		c.Listen = d.Listen
	} else {
		c.Listen = append([]string(nil), c.Listen...)
	}
	c.Bootstrap = append([]string(nil), c.Bootstrap...)
	switch c.DHTMode {
	case "":
		c.DHTMode = d.DHTMode
	case DHTAuto, DHTClient, DHTServer:
	default:
		return c, fmt.Errorf("node: unknown DHT mode %q (want auto, client or server)", c.DHTMode)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = clock.System()
	}
	if c.Rand == nil {
		c.Rand = cryptoRand{}
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.ConnLow == 0 {
		c.ConnLow = d.ConnLow
	}
	if c.ConnHigh == 0 {
		c.ConnHigh = max(d.ConnHigh, c.ConnLow)
	}
	if c.ConnLow < 0 || c.ConnHigh < c.ConnLow {
		return c, fmt.Errorf("node: connection watermarks %d/%d: want 0 <= low <= high", c.ConnLow, c.ConnHigh)
	}
	if c.ConnGrace == 0 {
		c.ConnGrace = 20 * time.Second
	}
	if c.MaxMemory == 0 {
		c.MaxMemory = d.MaxMemory
	}
	if c.MaxFDs == 0 {
		c.MaxFDs = d.MaxFDs
	}
	if c.Relay == (relay.Resources{}) {
		c.Relay = relay.DefaultResources()
	}
	if c.Blobs == (blobrelay.Resources{}) {
		c.Blobs = blobrelay.DefaultResources()
		c.Blobs.TTL = c.Relay.TTL
	}
	if c.RelayService {
		if err := c.Relay.Validate(); err != nil {
			return c, fmt.Errorf("node: %w", err)
		}
		if err := c.Blobs.Validate(); err != nil {
			return c, fmt.Errorf("node: %w", err)
		}
	}
	if c.MaxMemory < 1<<20 || c.MaxFDs < 16 {
		return c, fmt.Errorf("node: resource limits of %d bytes and %d descriptors are too small", c.MaxMemory, c.MaxFDs)
	}
	return c, nil
}
