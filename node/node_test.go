package node

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sealpost/sealpost/store"
)

// newTestNode provisions an in-memory store and starts a test-profile node.
func newTestNode(t testing.TB, mod func(*Config)) *Node {
	t.Helper()
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
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTwoNodesBootstrap(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a := newTestNode(t, nil)
	b := newTestNode(t, func(c *Config) { c.Bootstrap = []string{a.Info().Addrs[0]} })
	has := func(n *Node, id string) bool {
		for _, p := range n.Peers() {
			if p.PeerID == id {
				return true
			}
		}
		return false
	}
	eventually(t, 10*time.Second, "peers to list each other", func() bool {
		return has(a, b.Info().PeerID) && has(b, a.Info().PeerID)
	})
	t.Logf("a: %+v", a.Info())
	st, err := b.Status(context.Background())
	t.Logf("b status: %+v %v", st, err)
	b.Close()
	a.Close()
}
