package testnet

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/sealpost/sealpost/node/relay"
)

// relayHost is the relay service of a relay member: package relay's
// Server on a libp2p host of its own, over the member's store. node.New
// does not run the relay service yet (Config.RelayService is circuit
// relay v2 only), so a relay member is its node (DHT server, bootstrap
// peer) and this host next to it, with a key of its own kept across
// restarts, on the same loopback address after a restart.
type relayHost struct {
	key    crypto.PrivKey
	id     peer.ID
	listen []string
	h      host.Host
	srv    *relay.Server
}

func newRelayHost() (*relayHost, error) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &relayHost{key: key, id: id}, nil
}

// start starts the host and the relay service on st.
func (r *relayHost) start(m *member) error {
	// A relay's limits are its operator's choice; the testnet's relays
	// take every node of the network (each connects its device host, its
	// mailbox host and deposit hosts).
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(rcmgr.InfiniteLimits))
	if err != nil {
		return fmt.Errorf("relay host: %w", err)
	}
	opts := func(listen []string) []libp2p.Option {
		return []libp2p.Option{
			libp2p.ResourceManager(rm),
			libp2p.Identity(r.key),
			libp2p.ListenAddrStrings(listen...),
			libp2p.Transport(tcp.NewTCPTransport),
			libp2p.Transport(quic.NewTransport),
			libp2p.Security(noise.ID, noise.New),
			libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
			libp2p.ConnectionGater(m.gater),
			libp2p.DisableRelay(),
		}
	}
	fresh := m.net.listen()
	if len(r.listen) == 0 {
		r.listen = fresh
	}
	h, err := libp2p.New(opts(r.listen)...)
	if err != nil {
		h, err = libp2p.New(opts(fresh)...) // the old ports are taken
	}
	if err != nil {
		rm.Close()
		return fmt.Errorf("relay host: %w", err)
	}
	srv, err := relay.New(h, m.st, relay.DefaultResources(), relay.Options{Logger: m.net.log.With("member", m.name, "service", "relay")})
	if err != nil {
		h.Close()
		return err
	}
	r.h, r.srv = h, srv
	r.listen = r.listen[:0]
	for _, a := range h.Addrs() {
		r.listen = append(r.listen, a.String())
	}
	return nil
}

// addr is the relay's address with /p2p/, as `relays add` takes it: its
// QUIC address if it has one (the mailbox client dials only the address it
// was given).
func (r *relayHost) addr() string {
	a := r.listen[0]
	for _, l := range r.listen {
		if strings.Contains(l, "/quic-v1") {
			a = l
			break
		}
	}
	return a + "/p2p/" + r.id.String()
}

// cut closes every connection of the host at once.
func (r *relayHost) cut() {
	if r.h == nil {
		return
	}
	for _, p := range r.h.Network().Peers() {
		r.h.Network().ClosePeer(p)
	}
}

// stop closes the relay service and its host.
func (r *relayHost) stop() error {
	if r.h == nil {
		return nil
	}
	err := errors.Join(r.srv.Close(), r.h.Close())
	r.h, r.srv = nil, nil
	return err
}
