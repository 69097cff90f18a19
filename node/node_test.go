package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/gologshim"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/store"
)

// newTestNode provisions an in-memory store and starts a test-profile node
// with it; mod may change the Config first.
func newTestNode(t testing.TB, mod func(*Config)) *Node {
	t.Helper()
	n, err := startTestNode(t, mod)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

func startTestNode(t testing.TB, mod func(*Config)) (*Node, error) {
	ctx := context.Background()
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	if err := Provision(ctx, st, "test", nil); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	cfg, err := Defaults(Test)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store = st
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { n.Close() })
	return n, nil
}

func hasPeer(n *Node, id string) bool {
	for _, p := range n.Peers() {
		if p.PeerID == id {
			return true
		}
	}
	return false
}

func TestTwoNodesBootstrap(t *testing.T) {
	nodetest.CheckLeaks(t)
	a := newTestNode(t, nil)
	b := newTestNode(t, func(c *Config) { c.Bootstrap = []string{a.Info().Addrs[0]} })
	nodetest.WaitFor(t, 20*time.Second, "the nodes to list each other in Peers", func() bool {
		return hasPeer(a, b.Info().PeerID) && hasPeer(b, a.Info().PeerID)
	})
	for _, p := range b.Peers() {
		if p.Direction != "outbound" || len(p.Addrs) == 0 || p.ConnectedSince.IsZero() {
			t.Errorf("b's peer %+v: want an outbound connection with addresses and a start time", p)
		}
	}
	for _, p := range a.Peers() {
		if p.Direction != "inbound" {
			t.Errorf("a's peer %+v: want inbound", p)
		}
	}
	info := a.Info()
	if !strings.HasPrefix(info.UserID, "sp") || info.PeerID != a.ID().String() || info.Relays == nil {
		t.Errorf("Info() = %+v", info)
	}
	for _, addr := range info.Addrs {
		if !strings.HasSuffix(addr, "/p2p/"+info.PeerID) {
			t.Errorf("Info().Addrs has %q, want a /p2p/ suffix", addr)
		}
	}
	nodetest.WaitFor(t, 20*time.Second, "both routing tables to hold the other", func() bool {
		sa, err1 := a.Status(context.Background())
		sb, err2 := b.Status(context.Background())
		return err1 == nil && err2 == nil && sa.RoutingTable == 1 && sb.RoutingTable == 1
	})
	st, err := b.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := Status{Peers: 1, DHTMode: "server", DHTServing: true, RoutingTable: 1, Reachability: "unknown"}
	st.Record = RecordStatus{}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("Status() = %+v, want %+v", st, want)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	nodetest.CheckLeaks(t)
	n := newTestNode(t, nil)
	ch := n.Subscribe(context.Background())
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := n.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	if err := n.Close(); err != nil {
		t.Errorf("Close after Close: %v", err)
	}
	if _, ok := <-ch; ok {
		t.Error("subscription still open after Close")
	}
	if _, ok := <-n.Subscribe(context.Background()); ok {
		t.Error("Subscribe after Close returned an open channel")
	}
	if err := n.Connect(context.Background(), "/ip4/127.0.0.1/tcp/1/p2p/"+peerOf(t, newTestNode(t, nil))); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Close = %v, want ErrClosed", err)
	}
}

func peerOf(t testing.TB, n *Node) string {
	t.Helper()
	defer n.Close()
	return n.ID().String()
}

func TestEvents(t *testing.T) {
	nodetest.CheckLeaks(t)
	a := newTestNode(t, nil)
	b := newTestNode(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	events := a.Subscribe(ctx)
	next := func() Event {
		t.Helper()
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("event channel closed")
			}
			return e
		case <-time.After(20 * time.Second):
			t.Fatal("no event")
		}
		return Event{}
	}
	if err := b.Connect(context.Background(), a.Info().Addrs[0]); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	e := next()
	if pe, _ := e.Data.(PeerEvent); e.Type != EventPeerConnected || pe.PeerID != b.ID().String() || pe.Direction != "inbound" || e.Time.IsZero() {
		t.Errorf("got %+v, want peer.connected from b, inbound", e)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	e = next()
	if pe, _ := e.Data.(PeerEvent); e.Type != EventPeerDisconnected || pe.PeerID != b.ID().String() {
		t.Errorf("got %+v, want peer.disconnected of b", e)
	}
	cancel()
	nodetest.WaitFor(t, 5*time.Second, "the subscription to end with its context", func() bool {
		select {
		case _, ok := <-events:
			return !ok
		default:
			return false
		}
	})
	a.Close()
}

func TestBusOverflow(t *testing.T) {
	b := newBus()
	slow := b.subscribe()
	fast := b.subscribe()
	for i := range SubscriberBuffer + 10 {
		b.publish(Event{Type: "x", Data: i})
		select {
		case <-fast.ch:
		default:
			t.Fatal("fast subscriber got nothing")
		}
	}
	for i := range SubscriberBuffer {
		e, ok := <-slow.ch
		if !ok || e.Data != i {
			t.Fatalf("event %d: got %+v, %v", i, e, ok)
		}
	}
	if e, ok := <-slow.ch; !ok || e.Type != EventOverflow {
		t.Fatalf("after the buffer: got %+v, %v; want an overflow event", e, ok)
	}
	if _, ok := <-slow.ch; ok {
		t.Fatal("channel open after the overflow event")
	}
	if got := b.overflows.Load(); got != 1 {
		t.Errorf("overflows = %d, want 1", got)
	}
	if got := b.count(); got != 1 {
		t.Errorf("%d subscribers left, want 1", got)
	}
	b.close()
	if _, ok := <-fast.ch; ok {
		t.Error("fast subscriber open after close")
	}
	if b.subscribe() != nil {
		t.Error("subscribe after close succeeded")
	}
}

func TestConnectErrors(t *testing.T) {
	nodetest.CheckLeaks(t)
	n := newTestNode(t, nil)
	other := peerOf(t, newTestNode(t, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		addr string
		want error
	}{
		{"not a multiaddr", ErrBadAddr},
		{"/ip4/127.0.0.1/tcp/1", ErrBadAddr},
		{n.Info().Addrs[0], ErrBadAddr},
		{"/ip4/127.0.0.1/tcp/1/p2p/" + other, ErrUnreachable},
	} {
		if err := n.Connect(ctx, tc.addr); !errors.Is(err, tc.want) {
			t.Errorf("Connect(%q) = %v, want %v", tc.addr, err, tc.want)
		}
	}
	n.Close()
}

func TestNewErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, Config{}); err == nil {
		t.Error("New without a store succeeded")
	}
	st := store.NewMemory()
	defer st.Close()
	if _, err := New(ctx, Config{Store: st, Profile: Test}); !errors.Is(err, ErrNotProvisioned) {
		t.Errorf("New on an empty store = %v, want ErrNotProvisioned", err)
	}
	if err := Provision(ctx, st, "me", nil); err != nil {
		t.Fatal(err)
	}
	if err := Provision(ctx, st, "me again", nil); !errors.Is(err, store.ErrExists) {
		t.Errorf("second Provision = %v, want store.ErrExists", err)
	}
	for _, cfg := range []Config{
		{Store: st, Profile: "desktop"},
		{Store: st, Profile: Test, DHTMode: "sometimes"},
		{Store: st, Profile: Test, Listen: []string{"/ip4/127.0.0.1/tcp/x"}},
		{Store: st, Profile: Test, Bootstrap: []string{"/ip4/127.0.0.1/tcp/1"}},
		{Store: st, Profile: Test, ConnLow: 10, ConnHigh: 5},
	} {
		if n, err := New(ctx, cfg); err == nil {
			n.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestDefaults(t *testing.T) {
	for _, tc := range []struct {
		p      Profile
		mdns   bool
		relay  bool
		mode   DHTMode
		listen string
	}{
		{"", true, false, DHTAuto, "/ip4/0.0.0.0/tcp/7710"},
		{Personal, true, false, DHTAuto, "/ip4/0.0.0.0/udp/7710/quic-v1"},
		{Relay, false, true, DHTServer, "/ip6/::/tcp/7710"},
		{Test, false, false, DHTServer, "/ip4/127.0.0.1/tcp/0"},
	} {
		c, err := Defaults(tc.p)
		if err != nil {
			t.Fatal(err)
		}
		if c.MDNS != tc.mdns || c.RelayService != tc.relay || c.DHTMode != tc.mode || !contains(c.Listen, tc.listen) || len(c.Bootstrap) != 0 {
			t.Errorf("Defaults(%q) = %+v", tc.p, c)
		}
	}
	c, _ := Defaults(Test)
	c.Listen[0] = "changed"
	if d, _ := Defaults(Test); d.Listen[0] == "changed" {
		t.Error("Defaults shares its Listen slice between calls")
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestTenNodes starts ten nodes in one process that join through node 0,
// publish their address records, find every other's, and stop without
// leaking goroutines. It logs the figures the issue asks for.
func TestTenNodes(t *testing.T) {
	nodetest.CheckLeaks(t)
	const count = 10
	g0 := runtime.NumGoroutine()
	nodes := make([]*Node, count)
	var newTimes []time.Duration
	for i := range nodes {
		start := time.Now()
		nodes[i] = newTestNode(t, func(c *Config) {
			if i > 0 {
				c.Bootstrap = []string{nodes[0].Info().Addrs[0]}
			}
		})
		newTimes = append(newTimes, time.Since(start))
	}
	t.Logf("New returned after %v", newTimes)
	nodetest.WaitFor(t, 40*time.Second, "every node to publish its address record", func() bool {
		for _, n := range nodes {
			if n.recordStatus().Seq == 0 {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			for j, m := range nodes {
				if i == j {
					continue
				}
				addrs, err := n.FindDevice(ctx, m.ID())
				if err != nil {
					t.Errorf("node %d: FindDevice(node %d): %v", i, j, err)
					continue
				}
				if len(addrs) == 0 || !contains(m.Info().Addrs, addrs[0].String()+"/p2p/"+m.ID().String()) {
					t.Errorf("node %d: FindDevice(node %d) = %v, want one of %v", i, j, addrs, m.Info().Addrs)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d goroutines for %d nodes (%d before)", runtime.NumGoroutine(), count, g0)
	var closeErrs []error
	for _, n := range nodes {
		closeErrs = append(closeErrs, n.Close())
	}
	if err := errors.Join(closeErrs...); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestFindDeviceNotFound(t *testing.T) {
	nodetest.CheckLeaks(t)
	a := newTestNode(t, nil)
	b := newTestNode(t, func(c *Config) { c.Bootstrap = []string{a.Info().Addrs[0]} })
	nodetest.WaitFor(t, 20*time.Second, "b's routing table to hold a", func() bool { return b.dht.RoutingTable().Size() > 0 })
	nobody := peerOf(t, newTestNode(t, nil))
	id, err := peer.Decode(nobody)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := b.FindDevice(ctx, id); !errors.Is(err, ErrDeviceNotFound) {
		t.Errorf("FindDevice of a device that never published = %v, want ErrDeviceNotFound", err)
	}
	b.Close()
	a.Close()
}

// TestLibp2pLogs checks that go-log's (the DHT's) loggers reach the node's
// logger.
func TestLibp2pLogs(t *testing.T) {
	nodetest.CheckLeaks(t)
	var buf syncBuffer
	n := newTestNode(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&buf, nil)) })
	golog.Logger("sealpost-test").Error("hello from go-log", "k", 1)
	gologshim.Logger("sealpost-shim-test").Error("hello from gologshim", "k", 2)
	n.Close()
	golog.Logger("sealpost-test").Error("after close")
	out := buf.String()
	if !strings.Contains(out, "hello from go-log") || !strings.Contains(out, "logger=sealpost-test") || !strings.Contains(out, "component=libp2p") {
		t.Errorf("node log lacks the go-log line:\n%s", out)
	}
	if !strings.Contains(out, "hello from gologshim") || !strings.Contains(out, "logger=sealpost-shim-test") {
		t.Errorf("node log lacks the gologshim (go-libp2p) line:\n%s", out)
	}
	if strings.Contains(out, "after close") {
		t.Errorf("a closed node still receives libp2p's logs:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMetrics(t *testing.T) {
	nodetest.CheckLeaks(t)
	reg := prometheus.NewRegistry()
	n := newTestNode(t, func(c *Config) { c.Registry = reg })
	if n.Registry() != reg {
		t.Error("Registry() is not Config.Registry")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(strings.ToLower(l.GetName()), "peer_id") || l.GetName() == "peer" {
					t.Errorf("metric %s has a per-peer label %s", mf.GetName(), l.GetName())
				}
			}
		}
	}
	// Each name checked as it is: the node's own, the process's, and the
	// resource manager's connections and limits (what an operator needs
	// to see a limit reached).
	for _, want := range []string{"sealpost_peers", "sealpost_dht_routing_table_peers", "sealpost_addr_record_publish_total", "sealpost_relay_bad_receipts_total", "go_goroutines", "process_resident_memory_bytes", "libp2p_rcmgr_connections", "libp2p_rcmgr_limit"} {
		if !names[want] {
			t.Errorf("registry lacks %s", want)
		}
	}
	// A second node on the same registry is refused (its metrics would
	// collide); after Close the registry can be used again.
	st := store.NewMemory()
	defer st.Close()
	if err := Provision(context.Background(), st, "x", nil); err != nil {
		t.Fatal(err)
	}
	if m, err := New(context.Background(), Config{Store: st, Profile: Test, Registry: reg}); err == nil {
		m.Close()
		t.Error("two open nodes shared a registry")
	}
	n.Close()
	m, err := New(context.Background(), Config{Store: st, Profile: Test, Registry: reg})
	if err != nil {
		t.Fatalf("New on a registry released by Close: %v", err)
	}
	m.Close()
}

// TestMeasureIdle reports the memory and goroutines of ten idle nodes in
// one process. It runs only with SEALPOST_MEASURE=1 (it idles for 60 s, or
// SEALPOST_MEASURE_IDLE).
func TestMeasureIdle(t *testing.T) {
	if os.Getenv("SEALPOST_MEASURE") == "" {
		t.Skip("set SEALPOST_MEASURE=1 to measure")
	}
	const count = 10
	runtime.GC()
	rss0, g0 := rssAnon(t), runtime.NumGoroutine()
	nodes := make([]*Node, count)
	for i := range nodes {
		nodes[i] = newTestNode(t, func(c *Config) {
			if i > 0 {
				c.Bootstrap = []string{nodes[0].Info().Addrs[0]}
			}
		})
	}
	idle := 60 * time.Second
	if d, err := time.ParseDuration(os.Getenv("SEALPOST_MEASURE_IDLE")); err == nil {
		idle = d
	}
	time.Sleep(idle)
	runtime.GC()
	rss1, g1 := rssAnon(t), runtime.NumGoroutine()
	conns := 0
	for _, n := range nodes {
		conns += len(n.Peers())
	}
	t.Logf("%d nodes idle %s with %.1f peers each: RssAnon %d KiB -> %d KiB (%d KiB per node), goroutines %d -> %d (%d per node)",
		count, idle, float64(conns)/count, rss0, rss1, (rss1-rss0)/count, g0, g1, (g1-g0)/count)
	for _, n := range nodes {
		n.Close()
	}
}

func rssAnon(t testing.TB) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(fmt.Errorf("RssAnon: %w", err))
			}
			return kb
		}
	}
	t.Skip("no RssAnon in /proc/self/status")
	return 0
}

// TestRecordLifecycle drives the address record with injected clocks: it
// is republished when republishEvery passes, and refused by a node whose
// clock is past its expiry.
func TestRecordLifecycle(t *testing.T) {
	nodetest.CheckLeaks(t)
	start := time.Now()
	ca, cb := newFakeClock(start), newFakeClock(start)
	a := newTestNode(t, func(c *Config) { c.Clock = ca })
	b := newTestNode(t, func(c *Config) {
		c.Clock = cb
		c.Bootstrap = []string{a.Info().Addrs[0]}
	})
	// b's first attempts may fail before its routing table fills; its
	// retries wait on the fake clock, so keep it moving.
	nodetest.WaitFor(t, 20*time.Second, "b to publish its record", func() bool {
		cb.Advance(time.Second)
		return b.recordStatus().Seq != 0
	})
	first := b.recordStatus()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := a.FindDevice(ctx, b.ID()); err != nil {
		t.Fatalf("FindDevice: %v", err)
	}

	cb.Advance(republishEvery)
	nodetest.WaitFor(t, 20*time.Second, "b to republish", func() bool { return b.recordStatus().Seq > first.Seq })
	if got := b.recordStatus(); !got.Expires.After(first.Expires) {
		t.Errorf("republished record expires %s, first one %s", got.Expires, first.Expires)
	}

	// a's clock passes the expiry of every record b published, beyond the
	// tolerance: a refuses them.
	ca.Advance(republishEvery + RecordTTL + 6*time.Minute)
	if _, err := a.FindDevice(ctx, b.ID()); !errors.Is(err, ErrDeviceNotFound) {
		t.Errorf("FindDevice of an expired record = %v, want ErrDeviceNotFound", err)
	}
	b.Close()
	a.Close()
}

// TestBootstrapRetry: a node whose bootstrap peer is down at first keeps
// trying and joins once the peer is up.
func TestBootstrapRetry(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx := context.Background()
	st := store.NewMemory()
	defer st.Close()
	if err := Provision(ctx, st, "boot", nil); err != nil {
		t.Fatal(err)
	}
	bootCfg := Config{Store: st, Profile: Test}
	a, err := New(ctx, bootCfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := a.Info().Addrs[0] // TCP
	listen := strings.TrimSuffix(addr, "/p2p/"+a.ID().String())
	a.Close()

	b := newTestNode(t, func(c *Config) { c.Bootstrap = []string{addr} })
	time.Sleep(200 * time.Millisecond) // b's first attempt fails
	bootCfg.Listen = []string{listen}
	a, err = New(ctx, bootCfg)
	if err != nil {
		t.Fatalf("restart the bootstrap node on %s: %v", listen, err)
	}
	nodetest.WaitFor(t, 30*time.Second, "b to join through the restarted bootstrap node", func() bool {
		return b.dht.RoutingTable().Size() == 1
	})
	b.Close()
	a.Close()
}

// refuseDials is a connection gater that refuses to dial one peer.
type refuseDials struct{ peer peer.ID }

func (g refuseDials) InterceptPeerDial(p peer.ID) bool             { return p != g.peer }
func (g refuseDials) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }
func (g refuseDials) InterceptAccept(network.ConnMultiaddrs) bool  { return true }
func (g refuseDials) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}
func (g refuseDials) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

func TestConnGater(t *testing.T) {
	nodetest.CheckLeaks(t)
	a := newTestNode(t, nil)
	b := newTestNode(t, func(c *Config) { c.ConnGater = refuseDials{a.ID()} })
	if err := b.Connect(context.Background(), a.Info().Addrs[0]); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Connect through a gater that refuses = %v, want ErrUnreachable", err)
	}
	b.Close()
	a.Close()
}

// TestProfiles starts a node of each profile on loopback (mDNS off: tests
// send nothing beyond loopback).
func TestProfiles(t *testing.T) {
	nodetest.CheckLeaks(t)
	for _, p := range []Profile{Personal, Relay, Test} {
		n := newTestNode(t, func(c *Config) {
			d, err := Defaults(p)
			if err != nil {
				t.Fatal(err)
			}
			d.Store, d.MDNS = c.Store, false
			d.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
			*c = d
		})
		st, err := n.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.DHTMode != string(map[Profile]DHTMode{Personal: DHTAuto, Relay: DHTServer, Test: DHTServer}[p]) {
			t.Errorf("%s: Status().DHTMode = %s", p, st.DHTMode)
		}
		if want := p != Personal; st.DHTServing != want {
			t.Errorf("%s: DHT serving = %v, want %v", p, st.DHTServing, want)
		}
		if err := n.Close(); err != nil {
			t.Errorf("%s: Close: %v", p, err)
		}
	}
}
