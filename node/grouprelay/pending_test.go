package grouprelay_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/node/grouprelay"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// gateStore is the relay's real store with its write transactions held
// (hold) until let, or failed with an error (fail) until heal: a disk that
// stalls, a store that breaks. Reads go through.
type gateStore struct {
	store.Store
	mu      sync.Mutex
	gate    chan struct{} // closed: writes go on
	err     error         // set: writes fail with it
	failed  int           // writes failed
	updates int           // writes begun
}

func newGateStore(st store.Store) *gateStore {
	g := &gateStore{Store: st, gate: make(chan struct{})}
	close(g.gate)
	return g
}

func (g *gateStore) Update(ctx context.Context, fn func(tx *store.Tx) error) error {
	g.mu.Lock()
	gate, err := g.gate, g.err
	g.updates++
	if err != nil {
		g.failed++
	}
	g.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case <-gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Store.Update(ctx, fn)
}

// hold makes the writes that begin from now on wait until let.
func (g *gateStore) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gate:
		g.gate = make(chan struct{})
	default:
	}
}

// let lets the held writes go on.
func (g *gateStore) let() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gate:
	default:
		close(g.gate)
	}
}

// fail makes the writes fail with err until heal.
func (g *gateStore) fail(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.err = err
}

func (g *gateStore) heal() { g.fail(nil) }

func (g *gateStore) failures() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failed
}

// metric sums the values of the series of name in reg whose labels
// include those given (name=value pairs).
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// waitFor polls cond until it holds or a minute passes (a bound on the
// loop, not a timing: the test checks what holds when it ends).
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// rawStream opens a group log stream from a new host (with opts), for a
// client that writes requests and reads what it wants.
func (r *relay) rawStream(opts ...libp2p.Option) network.Stream {
	r.t.Helper()
	h, err := libp2p.New(append([]libp2p.Option{libp2p.NoListenAddrs, libp2p.DisableRelay()}, opts...)...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: r.h.ID(), Addrs: r.h.Addrs()}); err != nil {
		r.t.Fatal(err)
	}
	str, err := h.NewStream(ctx, r.h.ID(), libp2pproto.ID(protocol.GroupLogProtocol))
	if err != nil {
		r.t.Fatal(err)
	}
	return str
}

// TestPendingBytes: clients that pipeline large appends and read no
// answer, while the store stalls, make the relay hold at most its pending
// bytes: a stream's bound, then the relay's, stop it reading; an honest
// client's append waits its turn, and once the store goes on every append
// is stored once and the bytes held go back to zero. Before the bound, a
// stream held up to 256 appends (512 MiB of 2 MiB entries) read and not
// yet stored.
func TestPendingBytes(t *testing.T) {
	res := testResources()
	// Two entries of 1 MiB per stream, three in all.
	res.MaxPendingBytes = protocol.MaxGroupLogFrame
	res.MaxPendingBytesTotal = 3 * protocol.MaxGroupLogFrame / 2
	reg := prometheus.NewRegistry()
	var gs *gateStore
	r := newRelayHook(t, res, nil, func(cfg *grouprelay.Config) {
		gs = newGateStore(cfg.Store)
		cfg.Store, cfg.Registerer = gs, reg
	})
	t.Cleanup(gs.let) // before the relay closes
	honest := r.dial()
	log, err := create(honest, 0, tok(0))
	if err != nil {
		t.Fatal(err)
	}

	const perClient, clients = 6, 2
	big := strings.Repeat("x", 1<<20)
	gs.hold()
	var wg sync.WaitGroup
	for k := range clients {
		str := r.rawStream()
		t.Cleanup(func() { str.Reset() })
		wg.Go(func() {
			for i := range perClient {
				req := &protocol.GroupLogRequest{ID: uint64(i + 1), Op: protocol.GroupLogAppend, Log: log, Token: tok(0),
					Entry: entry(t, 0, protocol.GroupApplication, fmt.Sprint(k, i, big))}
				if err := protocol.WriteFrame(str, req); err != nil {
					return // reset at the end of the test
				}
			}
			str.CloseWrite()
		})
	}
	appends := func() float64 { return metric(t, reg, "sealpost_relay_group_requests_total", "op", "append") }
	waits := func() float64 { return metric(t, reg, "sealpost_relay_group_pending_waits_total") }
	// Each client's stream stops being read (or all its appends are read:
	// what the relay did without a bound in bytes).
	waitFor(func() bool { return waits() >= clients || appends() >= perClient*clients })
	held := metric(t, reg, "sealpost_relay_group_pending_bytes")
	if got := appends(); got > 3 {
		t.Errorf("the relay read %v appends of 1 MiB while its store stalled, bound 3 (%d bytes)", got, res.MaxPendingBytesTotal)
	}
	if held > float64(res.MaxPendingBytesTotal) || held < 1<<20 {
		t.Errorf("pending bytes %v, want 1 MiB to the bound %d", held, res.MaxPendingBytesTotal)
	}
	if metric(t, reg, "sealpost_relay_group_pending_waits_total", "bound", "relay") < 1 {
		t.Error("no stream waited for the relay's bound")
	}

	// An honest append waits behind them, then goes through.
	p, err := honest.StartAppend(log, 0, tok(0), entry(t, 0, protocol.GroupApplication, "honest"), false, protocol.TokenHash{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(func() bool { return waits() >= clients+1 })
	gs.let()
	a, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("the honest append: %v", err)
	}
	if a.Seq == 0 {
		t.Errorf("the honest append: %+v", a)
	}
	wg.Wait()
	if !waitFor(func() bool {
		return appends() == perClient*clients+1 && metric(t, reg, "sealpost_relay_group_pending_bytes") == 0
	}) {
		t.Fatalf("after the store went on: %v appends read, %v bytes held", appends(), metric(t, reg, "sealpost_relay_group_pending_bytes"))
	}
	tot, err := r.srv.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tot.Entries != perClient*clients+1 {
		t.Errorf("%d entries stored, want %d", tot.Entries, perClient*clients+1)
	}
}
