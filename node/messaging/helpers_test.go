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
	"github.com/sealpost/sealpost/node/nodetest"
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
	dir    string        // badger directory ("" for a memory store)
	kv     store.Backend // the memory store's backend, if the test keeps it
	listen []string
	mod    func(*node.Config)
	closed bool

	// On a MockNet the peer is the messaging service alone, on a host of
	// the mock network (n is nil): for tests where the transport does not
	// matter.
	mock *nodetest.MockNet
}

type peerOpt func(*tnode)

// onDisk keeps the peer's store in badger in a temporary directory, so
// that it survives a restart.
func onDisk() peerOpt {
	return func(p *tnode) { p.dir = filepath.Join(p.t.TempDir(), "store") }
}

// onBackend keeps the peer's store in b (a memory backend the test
// reaches under the store).
func onBackend(b store.Backend) peerOpt {
	return func(p *tnode) { p.kv = b }
}

// onMockNet runs the peer's messaging service on a host of mn instead of
// a whole node on loopback.
func onMockNet(mn *nodetest.MockNet) peerOpt {
	return func(p *tnode) { p.mock = mn }
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
	} else if p.kv != nil {
		st, err := store.Open(ctx, p.kv)
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
	if p.mock != nil {
		p.startMock()
		return
	}
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

// startMock starts the messaging service alone on a MockNet host with
// the device key the store holds.
func (p *tnode) startMock() {
	p.t.Helper()
	ctx := nodetest.Context(p.t)
	self, err := node.ReadSelf(ctx, p.st)
	if err != nil {
		p.t.Fatal(err)
	}
	h := p.mock.Host(self.Key)
	// The messaging options and the clock of the node configuration
	// withConfig makes; the rest is about the node around the service.
	ncfg, err := node.Defaults(node.Test)
	if err != nil {
		p.t.Fatal(err)
	}
	if p.mod != nil {
		p.mod(&ncfg)
	}
	cfg := messaging.Config{Host: h, Store: p.st, Clock: ncfg.Clock, Options: ncfg.Messaging}
	if os.Getenv("SEALPOST_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", p.name)
	}
	m, err := messaging.New(ctx, cfg)
	if err != nil {
		p.t.Fatalf("%s: messaging.New: %v", p.name, err)
	}
	p.m, p.closed = m, false
}

// stop closes the node, and the store too.
func (p *tnode) stop() {
	p.t.Helper()
	if p.closed {
		return
	}
	p.closed = true
	if err := p.closeService(); err != nil {
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
		p.closeService()
		p.st.Close()
	}
}

// closeService closes the node, or the service alone on a MockNet.
func (p *tnode) closeService() error {
	if p.n == nil {
		return p.m.Close()
	}
	return p.n.Close()
}

// befriend has b invite a and a add b under the name b.name; b's node
// accepts a when its first message arrives.
func befriend(t testing.TB, a, b *tnode) {
	t.Helper()
	inv, err := b.m.Invite(nodetest.Context(t))
	if err != nil {
		t.Fatalf("%s: Invite: %v", b.name, err)
	}
	if _, err := a.m.AddContact(nodetest.Context(t), inv.Link, b.name); err != nil {
		t.Fatalf("%s: AddContact: %v", a.name, err)
	}
}

// send sends text and fails the test on an error.
func send(t testing.TB, from *tnode, to, text string) protocol.MessageID {
	t.Helper()
	r, err := from.m.Send(nodetest.Context(t), to, text)
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
	got, err := p.m.WaitState(nodetest.Context(t), id, state)
	if err != nil {
		t.Fatalf("%s: WaitState(%s, %s): got %q, %v", p.name, id, state, got, err)
	}
}

// inbox returns every received message.
func inbox(t testing.TB, p *tnode) []messaging.Message {
	t.Helper()
	msgs, _, err := p.m.Inbox(nodetest.Context(t), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// newFakeClock returns a node.Clock that moves only when Advance is called.
func newFakeClock() *clocktest.Fake { return clocktest.New(time.Now()) }
