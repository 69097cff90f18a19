package mailbox

import (
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	connmgrimpl "github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/prometheus/client_golang/prometheus"
)

// Limits of one relay's client host: it holds one connection (to its
// relay) with a few streams (a subscription, a deposit pipeline, short
// requests), so a few MiB and descriptors are plenty.
const (
	hostMemory  = 8 << 20
	hostFDs     = 8
	hostConns   = 4
	hostStreams = 32
)

// newKey makes a client key: a fresh Ed25519 libp2p key that is never the
// device's and is used towards one relay only.
func newKey(rand io.Reader) (crypto.PrivKey, error) {
	k, _, err := crypto.GenerateEd25519Key(rand)
	if err != nil {
		return nil, fmt.Errorf("mailbox: client key: %w", err)
	}
	return k, nil
}

// newHost builds the lightweight host of one relay: key is its client
// key. It dials only (no listen addresses, no relay, no hole punching, no
// NAT service, no DHT), so the relay learns nothing from it but the key
// it was given and the address it connects from.
func newHost(key crypto.PrivKey) (host.Host, error) {
	sys := rcmgr.ResourceLimits{
		Memory:          rcmgr.LimitVal64(hostMemory),
		FD:              rcmgr.LimitVal(hostFDs),
		Conns:           rcmgr.LimitVal(hostConns),
		ConnsInbound:    rcmgr.LimitVal(1),
		ConnsOutbound:   rcmgr.LimitVal(hostConns),
		Streams:         rcmgr.LimitVal(hostStreams),
		StreamsInbound:  rcmgr.LimitVal(hostStreams / 4),
		StreamsOutbound: rcmgr.LimitVal(hostStreams),
	}
	limits := rcmgr.PartialLimitConfig{System: sys, Transient: sys}
	base := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&base)
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.Build(base.Scale(hostMemory, hostFDs))))
	if err != nil {
		return nil, fmt.Errorf("mailbox: resource manager: %w", err)
	}
	cm, err := connmgrimpl.NewConnManager(1, hostConns)
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("mailbox: connection manager: %w", err)
	}
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.NoListenAddrs,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.DisableRelay(),
		// libp2p's metrics go to a registry of this host's own, never the
		// process-global one (its event bus registers even with metrics
		// disabled).
		libp2p.PrometheusRegisterer(prometheus.NewRegistry()),
		libp2p.DisableIdentifyAddressDiscovery(),
		libp2p.Ping(false),
		libp2p.UserAgent("sealpost-mailbox"),
	)
	if err != nil {
		return nil, fmt.Errorf("mailbox: client host: %w", err)
	}
	return h, nil
}
