package nodetest

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/sealpost/sealpost/protocol"
)

func TestMain(m *testing.M) { VerifyTestMain(m) }

// TestMockNet: two hosts of a MockNet connect by peer ID and address and
// carry a stream, with nothing on a socket.
func TestMockNet(t *testing.T) {
	CheckLeaks(t)
	mn := NewMockNet(t)
	key := Key(t)
	a, b := mn.Host(nil), mn.Host(key)
	if id, err := peer.IDFromPrivateKey(key); err != nil || b.ID() != id {
		t.Fatalf("host ID %s is not its key's (%s, %v)", b.ID(), id, err)
	}
	if len(a.Addrs()) != 1 || len(b.Addrs()) != 1 || a.Addrs()[0].Equal(b.Addrs()[0]) {
		t.Fatalf("addresses %v and %v: want one each, distinct", a.Addrs(), b.Addrs())
	}
	got := make(chan string, 1)
	b.SetStreamHandler("/test/1", func(s network.Stream) {
		defer s.Close()
		buf, _ := io.ReadAll(s)
		got <- string(buf)
	})
	ctx := Context(t)
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := a.NewStream(ctx, b.ID(), "/test/1")
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("hello"))
	s.CloseWrite()
	select {
	case m := <-got:
		if m != "hello" {
			t.Errorf("got %q", m)
		}
	case <-ctx.Done():
		t.Fatal("the stream's bytes never arrived")
	}
	s.Close()
}

// TestStartRelay: the relay's address names its host, which serves the
// relay protocol.
func TestStartRelay(t *testing.T) {
	CheckLeaks(t)
	r := StartRelay(t, RelayOptions{})
	a, err := ma.NewMultiaddr(r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	info, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil || info.ID != r.Host.ID() {
		t.Fatalf("address %s: %v, %v", r.Addr, info, err)
	}
	c := Host(t)
	if err := c.Connect(Context(t), *info); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10*time.Second, "the relay protocol in the peerstore", func() bool {
		ps, _ := c.Peerstore().SupportsProtocols(r.Host.ID(), protocol.RelayProtocol)
		return len(ps) == 1
	})
}

// TestLeakedQUICFound: the quic-go send queues the leak checks pass over
// do not hide a QUIC host left open: its transport's and server's
// receiving goroutines are found, and none is once the host is closed.
func TestLeakedQUICFound(t *testing.T) {
	before := goleak.IgnoreCurrent()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	err = goleak.Find(append([]goleak.Option{before}, workers...)...)
	for _, f := range []string{"quic-go.(*Transport).listen", "quic-go.(*baseServer).run"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("with a QUIC host open the leak check does not find %s: %v", f, err)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := goleak.Find(append([]goleak.Option{before}, workers...)...); err != nil {
		t.Errorf("after the host's Close: %v", err)
	}
}
