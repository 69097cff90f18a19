package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/protocol"
)

// TestRelayService: with RelayService on, the node serves the relay
// protocol on its host (and registers its metrics); off, it does not.
func TestRelayService(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.RelayService = true })
	if n.Relay() == nil {
		t.Fatal("no relay service")
	}
	h, err := libp2p.New(libp2p.NoListenAddrs, libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info := peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()}
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	str, err := h.NewStream(ctx, info.ID, libp2pproto.ID(protocol.RelayProtocol))
	if err != nil {
		t.Fatal(err)
	}
	defer str.Reset()
	var hello protocol.RelayResponse
	if err := protocol.NewFrameReader(str, protocol.MaxRelayFrame).Read(&hello); err != nil || hello.Op != protocol.RelayHello {
		t.Fatalf("hello: %+v, %v", hello, err)
	}
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		found = found || strings.HasPrefix(mf.GetName(), "sealpost_relay_")
	}
	if !found {
		t.Error("no relay metrics registered")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	off := newTestNode(t, nil)
	if off.Relay() != nil {
		t.Error("relay service without RelayService")
	}
	for _, p := range off.host.Mux().Protocols() {
		if string(p) == protocol.RelayProtocol {
			t.Error("relay protocol served without RelayService")
		}
	}
}
