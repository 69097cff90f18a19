package messaging_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/internal/clock/clocktest"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
)

// peer is one node under test.
type tnode struct {
	t      testing.TB
	name   string
	n      *node.Node
	m      *messaging.Service
	st     store.Store
	dir    string // badger directory ("" for a memory store)
	listen []string
	mod    func(*node.Config)
	closed bool
}

type peerOpt func(*tnode)

// onDisk keeps the peer's store in badger in a temporary directory, so
// that it survives a restart.
func onDisk() peerOpt {
	return func(p *tnode) { p.dir = filepath.Join(p.t.TempDir(), "store") }
}

// withConfig changes the node's Config before it starts.
func withConfig(f func(*node.Config)) peerOpt {
	return func(p *tnode) { p.mod = f }
}

// newPeer provisions and starts a test-profile node called name.
func newPeer(t testing.TB, name string, opts ...peerOpt) *tnode {
	t.Helper()
	p := &tnode{t: t, name: name}
	for _, o := range opts {
		o(p)
	}
	ctx := context.Background()
	if p.dir != "" {
		st, err := badgerstore.Create(ctx, p.dir, badgerstore.ModeKeyFile, badgerstore.Options{GCInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		p.st = st
	} else {
		p.st = store.NewMemory()
	}
	if err := node.Provision(ctx, p.st, name, nil); err != nil {
		t.Fatal(err)
	}
	p.start()
	t.Cleanup(p.close)
	return p
}

func (p *tnode) start() {
	p.t.Helper()
	cfg, err := node.Defaults(node.Test)
	if err != nil {
		p.t.Fatal(err)
	}
	cfg.Store = p.st
	if os.Getenv("SEALPOST_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", p.name)
	}
	if p.mod != nil {
		p.mod(&cfg)
	}
	if p.listen != nil {
		cfg.Listen = p.listen
	}
	n, err := node.New(context.Background(), cfg)
	if err != nil {
		p.t.Fatalf("%s: node.New: %v", p.name, err)
	}
	p.n, p.m, p.closed = n, n.Messaging(), false
	// Restarts listen on the same addresses, so peers find the node again.
	p.listen = nil
	for _, a := range n.Info().Addrs {
		p.listen = append(p.listen, a[:len(a)-len("/p2p/"+n.Info().PeerID)])
	}
}

// stop closes the node, and the store too.
func (p *tnode) stop() {
	p.t.Helper()
	if p.closed {
		return
	}
	p.closed = true
	if err := p.n.Close(); err != nil {
		p.t.Errorf("%s: Close: %v", p.name, err)
	}
	if err := p.st.Close(); err != nil {
		p.t.Errorf("%s: store Close: %v", p.name, err)
	}
}

// restart stops the node and starts it again on the same store (badger
// only) and addresses.
func (p *tnode) restart() {
	p.t.Helper()
	p.stop()
	st, err := badgerstore.Open(context.Background(), p.dir, badgerstore.Options{GCInterval: -1})
	if err != nil {
		p.t.Fatal(err)
	}
	p.st = st
	p.start()
}

func (p *tnode) close() {
	if !p.closed {
		p.closed = true
		p.n.Close()
		p.st.Close()
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// befriend has b invite a and a add b under the name b.name; b's node
// accepts a when its first message arrives.
func befriend(t testing.TB, a, b *tnode) {
	t.Helper()
	inv, err := b.m.Invite(ctxT(t))
	if err != nil {
		t.Fatalf("%s: Invite: %v", b.name, err)
	}
	if _, err := a.m.AddContact(ctxT(t), inv.Link, b.name); err != nil {
		t.Fatalf("%s: AddContact: %v", a.name, err)
	}
}

// send sends text and fails the test on an error.
func send(t testing.TB, from *tnode, to, text string) protocol.MessageID {
	t.Helper()
	r, err := from.m.Send(ctxT(t), to, text)
	if err != nil {
		t.Fatalf("%s: Send to %s: %v", from.name, to, err)
	}
	id, err := messaging.ParseMessageID(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// wait waits for an outgoing message to reach state.
func wait(t testing.TB, p *tnode, id protocol.MessageID, state string) {
	t.Helper()
	got, err := p.m.WaitState(ctxT(t), id, state)
	if err != nil {
		t.Fatalf("%s: WaitState(%s, %s): got %q, %v", p.name, id, state, got, err)
	}
}

// inbox returns every received message.
func inbox(t testing.TB, p *tnode) []messaging.Message {
	t.Helper()
	msgs, _, err := p.m.Inbox(ctxT(t), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newFakeClock returns a node.Clock that moves only when Advance is called.
func newFakeClock() *clocktest.Fake { return clocktest.New(time.Now()) }
