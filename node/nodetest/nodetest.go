// Package nodetest is the shared harness of node/'s tests: libp2p hosts
// (real ones on 127.0.0.1 where the transport matters, go-libp2p's mocknet
// where it does not), a relay server, the goroutine-leak check with the
// one list of process-wide workers it ignores, and waiting for a condition
// instead of sleeping. The fake clock is clocktest.Fake
// (node/internal/clock/clocktest).
//
// Everything a helper starts is closed by the test's cleanup. Only tests
// import this package.
package nodetest

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/sealpost/sealpost/node/internal/clock"
	"github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// workers are the goroutines libp2p, badger and their dependencies keep
// for the whole process once started; they are not leaks of a test.
var workers = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
	goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
	goleak.IgnoreAnyFunction("github.com/dgraph-io/badger/v4.(*DB).monitorCache"),
	goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
	goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
	goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
	goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	// quic-go's Close waits for a transport's and a server's receiving
	// goroutines but not for their send queues, which return only once
	// those have (they select on the channel the receiving goroutine
	// closes): right after a host's Close they may not have run yet, and
	// on a loaded machine not within goleak's half second of retries. A
	// transport or server left open still shows by its receiving
	// goroutine (TestLeakedQUICFound).
	goleak.IgnoreTopFunction("github.com/quic-go/quic-go.(*Transport).runSendQueue"),
	goleak.IgnoreTopFunction("github.com/quic-go/quic-go.(*baseServer).runSendQueue"),
}

// VerifyTestMain runs the package's tests and then fails if goroutines
// are left running, other than the process-wide workers (and what extra
// ignores): the TestMain of a package whose tests start services.
func VerifyTestMain(m *testing.M, extra ...goleak.Option) {
	goleak.VerifyTestMain(m, append(append([]goleak.Option{}, workers...), extra...)...)
}

// FindLeaks returns an error naming the goroutines left running other
// than the process-wide workers, for a TestMain that does more than
// VerifyTestMain's.
func FindLeaks() error { return goleak.Find(workers...) }

// CheckLeaks makes t fail if, once its cleanups have run, goroutines are
// left that were not running when CheckLeaks was called (the
// process-wide workers aside). Call it first, so that its check runs after
// every other cleanup.
func CheckLeaks(t testing.TB) {
	t.Helper()
	opts := append([]goleak.Option{goleak.IgnoreCurrent()}, workers...)
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

// Context returns a context that ends after a minute or with the test.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// WaitFor polls cond until it holds, failing t after d: for a state that
// has no event to wait on. It never sleeps longer than 10 ms between
// polls.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Key returns a new Ed25519 libp2p key, the kind devices and relays have.
func Key(t testing.TB) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Host returns a real libp2p host with a new Ed25519 key listening on
// TCP on 127.0.0.1, without circuit relay: for tests where the transport
// matters, or where the code under test dials hosts of its own.
func Host(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.Identity(Key(t)), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// Addr returns h's first address with /p2p/ and its peer ID, as
// `sealpost relays add` takes it.
func Addr(h host.Host) string {
	return fmt.Sprintf("%s/p2p/%s", h.Addrs()[0], h.ID())
}

// MockNet is a go-libp2p mocknet whose hosts are all linked: a network
// in memory, for tests where the transport does not matter. Streams and
// connections behave as libp2p's; nothing touches a socket.
type MockNet struct {
	t  testing.TB
	mn mocknet.Mocknet
	n  int
}

// NewMockNet returns an empty MockNet, closed with the test.
func NewMockNet(t testing.TB) *MockNet {
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	return &MockNet{t: t, mn: mn}
}

// Host adds a host with key (nil: a new Ed25519 key) and links it to
// every other host of the network. Its one address is a distinct
// non-loopback TCP address, as a reachable device would list.
func (m *MockNet) Host(key crypto.PrivKey) host.Host {
	m.t.Helper()
	if key == nil {
		key = Key(m.t)
	}
	m.n++
	ip := net.IPv4(100, 64, byte(m.n>>8), byte(m.n))
	a, err := ma.NewMultiaddr(fmt.Sprintf("/ip4/%s/tcp/4001", ip))
	if err != nil {
		m.t.Fatal(err)
	}
	h, err := m.mn.AddPeer(key, a)
	if err != nil {
		m.t.Fatal(err)
	}
	if err := m.mn.LinkAll(); err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { h.Close() })
	return h
}

// Relay is a relay server started by StartRelay.
type Relay struct {
	Host   host.Host
	Server *relay.Server
	Store  store.Store
	// Addr is the relay's address with /p2p/.
	Addr string
}

// RelayOptions tune StartRelay; the zero value is a relay with the
// default resources, an in-memory store and the system clock, on a real
// loopback host.
type RelayOptions struct {
	// Resources are the relay's limits. Zero: relay.DefaultResources().
	Resources relay.Resources
	// Host is the relay's host. Zero: Host(t), a real one (the mailbox
	// client dials with hosts of its own, so a relay it uses must be).
	Host host.Host
	// Store is the relay's store, which the test closes. Zero: an
	// in-memory store closed with the test.
	Store store.Store
	// Clock is the relay's time, a clocktest.Fake to move it. Zero: the
	// system clock.
	Clock clock.Clock
	// Tamper, if set, sees every response the relay writes on a relay
	// stream, with the request it answers, and may change it before it
	// leaves: a relay that lies (a forged receipt, a far stored-until, a
	// push of someone else's envelope), for tests of what its clients do
	// about one (SignReceipt signs a lie). Zero: an honest relay.
	Tamper Tamper
	// Watch, if set, sees every request the relay reads on a relay
	// stream, with the peer that sent it: what a relay learns of who
	// does what. It must not block. Zero: not called.
	Watch func(from peer.ID, req *protocol.RelayRequest)
}

// StartRelay starts a relay server, closed with the test.
func StartRelay(t testing.TB, o RelayOptions) *Relay {
	t.Helper()
	if o.Resources == (relay.Resources{}) {
		o.Resources = relay.DefaultResources()
	}
	if o.Host == nil {
		o.Host = Host(t)
	}
	if o.Store == nil {
		st := store.NewMemory()
		t.Cleanup(func() { st.Close() })
		o.Store = st
	}
	h := o.Host
	if o.Tamper != nil || o.Watch != nil {
		h = &tamperHost{Host: h, tamper: o.Tamper, watch: o.Watch}
	}
	srv, err := relay.New(relay.Config{Host: h, Store: o.Store, Resources: o.Resources, Clock: o.Clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("relay Close: %v", err)
		}
	})
	return &Relay{Host: o.Host, Server: srv, Store: o.Store, Addr: Addr(o.Host)}
}

// HangUp plays a daemon that dies during each request: on ln it takes
// each connection's request head and closes the connection without an
// answer, until ln is closed (which the test's cleanup does).
func HangUp(t testing.TB, ln net.Listener) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
			}
			c.Close()
		}
	}()
}
