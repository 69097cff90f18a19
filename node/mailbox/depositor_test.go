package mailbox_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/node/internal/clock/clocktest"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// watcher records, for a relay, which peer asked for what in which
// mailbox: what a relay learns of who writes to whom.
type watcher struct {
	mu    sync.Mutex
	wrote map[peer.ID]map[protocol.MailboxID]bool
	last  map[protocol.MailboxID]peer.ID // the last peer to deposit there
}

func (w *watcher) watch(from peer.ID, req *protocol.RelayRequest) {
	switch req.Op {
	case protocol.RelayDeposit, protocol.RelayGetCard, protocol.RelayTakePrekey:
	default:
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wrote == nil {
		w.wrote, w.last = map[peer.ID]map[protocol.MailboxID]bool{}, map[protocol.MailboxID]peer.ID{}
	}
	if w.wrote[from] == nil {
		w.wrote[from] = map[protocol.MailboxID]bool{}
	}
	w.wrote[from][req.Mailbox] = true
	if req.Op == protocol.RelayDeposit {
		w.last[req.Mailbox] = from
	}
}

// check fails t if a peer wrote to two mailboxes, and returns how many
// peers wrote.
func (w *watcher) check(t *testing.T) int {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for p, boxes := range w.wrote {
		if len(boxes) != 1 {
			t.Errorf("the relay saw %s write to %d mailboxes", p, len(boxes))
		}
	}
	return len(w.wrote)
}

func (w *watcher) lastDepositor(b *protocol.Mailbox) peer.ID {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last[b.ID]
}

// mailboxes makes n mailboxes of n owners on r and returns them as their
// depositors know them.
func mailboxes(t testing.TB, r *nodetest.Relay, n int) []*protocol.Mailbox {
	t.Helper()
	out := make([]*protocol.Mailbox, n)
	for i := range out {
		owner, ost := newClient(t)
		m := own(t, owner, ost, r)
		tok := token()
		if err := owner.Register(context.Background(), &m, mailbox.Quota{}, tok); err != nil {
			t.Fatalf("Register: %v", err)
		}
		out[i] = boxOf(t, r, &m, tok)
	}
	return out
}

// TestDepositorKeyPerMailbox: a relay that watches which peer asks for
// what never sees one peer deposit into, or take a card or a prekey of,
// two mailboxes, also over time (after the idle key went, the next run
// comes under a new one): the client writes to each mailbox under a key
// of its own, for one delivery run.
func TestDepositorKeyPerMailbox(t *testing.T) {
	ctx := context.Background()
	var w watcher
	r := nodetest.StartRelay(t, nodetest.RelayOptions{Watch: w.watch})
	boxes := mailboxes(t, r, 2)
	fake := clocktest.New(time.Now())
	st := store.NewMemory()
	defer st.Close()
	dep, err := mailbox.New(ctx, mailbox.Config{Store: st, Clock: fake, Options: mailbox.Options{IdleTimeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer dep.Close()
	run := func() {
		t.Helper()
		for i, b := range []*protocol.Mailbox{boxes[0], boxes[1], boxes[0], boxes[1]} {
			out, err := dep.Deposit(ctx, b, claimed.Public(), claimedDevice, payloads("x"))
			if err != nil || out[0].Err != nil {
				t.Fatalf("deposit %d: %v %v", i, err, out)
			}
			// Cards and prekeys the owners never put: the relay answers
			// not found, after it saw who asked for which mailbox.
			dep.GetCard(ctx, b)
			dep.TakePrekey(ctx, b)
		}
	}
	run()
	if n := w.check(t); n != len(boxes) {
		t.Errorf("the relay saw %d depositor keys for %d mailboxes in one run, want one each", n, len(boxes))
	}
	// Idle for longer than IdleTimeout: the janitor closes both hosts,
	// and the next run comes under new keys.
	first := []peer.ID{w.lastDepositor(boxes[0]), w.lastDepositor(boxes[1])}
	fake.Advance(2 * time.Second)
	nodetest.WaitFor(t, 10*time.Second, "the idle depositor hosts closed", func() bool {
		return r.Host.Network().Connectedness(first[0]) != network.Connected &&
			r.Host.Network().Connectedness(first[1]) != network.Connected
	})
	run()
	if n := w.check(t); n != 2*len(boxes) {
		t.Errorf("the relay saw %d depositor keys for %d mailboxes in two runs, want one each a run", n, len(boxes))
	}
}

// TestRelayHostsBounded: the hosts of keys made in memory towards one
// relay never exceed Options.RelayHosts: writing to one more mailbox
// closes the least recently used host not in use (whose key the relay
// then sees go), a mailbox written to again reuses its host while it is
// open, and with every host in use the request waits for one.
func TestRelayHostsBounded(t *testing.T) {
	ctx := context.Background()
	var w watcher
	r := nodetest.StartRelay(t, nodetest.RelayOptions{Watch: w.watch})
	r.Host.SetStreamHandler(libp2pproto.ID(protocol.BlobProtocol), func(s network.Stream) {
		io.Copy(io.Discard, s)
		s.Close()
	})
	relayID, _, err := mailbox.ParseAddr(r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	boxes := mailboxes(t, r, 4)
	st := store.NewMemory()
	defer st.Close()
	dep, err := mailbox.New(ctx, mailbox.Config{Store: st, Options: mailbox.Options{RelayHosts: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer dep.Close()
	deposit := func(ctx context.Context, b *protocol.Mailbox) error {
		out, err := dep.Deposit(ctx, b, claimed.Public(), claimedDevice, payloads("x"))
		if err == nil {
			err = out[0].Err
		}
		return err
	}
	for i, b := range boxes {
		if err := deposit(ctx, b); err != nil {
			t.Fatalf("deposit %d: %v", i, err)
		}
		if n := dep.HostsTowards(relayID); n > 2 {
			t.Fatalf("after a deposit into mailbox %d: %d hosts towards the relay, want at most 2", i, n)
		}
	}
	if n := w.check(t); n != len(boxes) {
		t.Errorf("the relay saw %d depositor keys for %d mailboxes, want one each", n, len(boxes))
	}
	evicted := w.lastDepositor(boxes[0])
	nodetest.WaitFor(t, 10*time.Second, "the relay sees the least recently used key go", func() bool {
		return r.Host.Network().Connectedness(evicted) != network.Connected
	})
	last := w.lastDepositor(boxes[3])
	if err := deposit(ctx, boxes[3]); err != nil {
		t.Fatal(err)
	}
	if got := w.lastDepositor(boxes[3]); got != last {
		t.Errorf("a second deposit into an open mailbox's host came under %s, want its key %s", got, last)
	}

	// Both hosts in use by uploads: a deposit into a third mailbox waits
	// and, within a short deadline, fails; once an upload ends it goes.
	var ups []network.Stream
	for _, b := range boxes[2:] {
		s, err := dep.BlobStream(ctx, relayID, nil, true, b.ID)
		if err != nil {
			t.Fatalf("BlobStream: %v", err)
		}
		ups = append(ups, s)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err = deposit(short, boxes[0])
	cancel()
	if !errors.Is(err, mailbox.ErrUnreachable) {
		t.Fatalf("deposit with every host in use: %v, want ErrUnreachable", err)
	}
	ups[0].Close()
	if err := deposit(ctx, boxes[0]); err != nil {
		t.Fatalf("deposit after an upload ended: %v", err)
	}
	ups[1].Close()
	if n := dep.HostsTowards(relayID); n > 2 {
		t.Errorf("%d hosts towards the relay, want at most 2", n)
	}
	w.check(t)
}
