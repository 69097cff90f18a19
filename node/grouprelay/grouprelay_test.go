package grouprelay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/node/grouplog"
	"github.com/sealpost/sealpost/node/grouprelay"
	"github.com/sealpost/sealpost/node/internal/clock/clocktest"
	"github.com/sealpost/sealpost/node/nodetest"
	mailrelay "github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
)

func TestMain(m *testing.M) { nodetest.VerifyTestMain(m) }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// relay is the service under test on a real host and a real badger store.
type relay struct {
	t     *testing.T
	h     host.Host
	st    *badgerstore.Store
	srv   *grouprelay.Server
	clock *clocktest.Fake
	res   grouprelay.Resources
	// quotas, when set, starts a relay's mailbox service on the same host
	// and store, whose creator quotas the group logs count in
	// (quota_test.go).
	quotas *mailrelay.Resources
	mbox   *mailrelay.Server
	// hook, when set, changes the service's Config before each start
	// (pending_test.go: a store that holds or fails its transactions, a
	// registry of the metrics).
	hook func(*grouprelay.Config)
}

func newRelay(t *testing.T, res grouprelay.Resources) *relay {
	t.Helper()
	return newRelayQuotas(t, res, nil)
}

// newRelayQuotas is newRelay with a mailbox service of resources quotas
// (nil: none) whose creator quotas the logs count in.
func newRelayQuotas(t *testing.T, res grouprelay.Resources, quotas *mailrelay.Resources) *relay {
	t.Helper()
	return newRelayHook(t, res, quotas, nil)
}

// newRelayHook is newRelayQuotas with hook (nil: none) applied to the
// service's Config before each start.
func newRelayHook(t *testing.T, res grouprelay.Resources, quotas *mailrelay.Resources, hook func(*grouprelay.Config)) *relay {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, h: h, clock: clocktest.New(t0), res: res, quotas: quotas, hook: hook}
	r.st, err = badgerstore.Create(context.Background(), filepath.Join(t.TempDir(), "store"), badgerstore.ModeUnencrypted, badgerstore.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(func() {
		r.stop()
		r.st.Close()
		h.Close()
	})
	return r
}

func (r *relay) start() {
	r.t.Helper()
	var err error
	cfg := grouprelay.Config{Host: r.h, Store: r.st, Resources: r.res, Clock: r.clock}
	if r.quotas != nil {
		if r.mbox, err = mailrelay.New(mailrelay.Config{Host: r.h, Store: r.st, Resources: *r.quotas, Clock: r.clock}); err != nil {
			r.t.Fatal(err)
		}
		cfg.Quotas, cfg.QuotaRefused = r.mbox.CreatorQuotas, r.mbox.QuotaRefused
	}
	if r.hook != nil {
		r.hook(&cfg)
	}
	r.srv, err = grouprelay.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
}

func (r *relay) stop() {
	if r.srv != nil {
		if err := r.srv.Close(); err != nil {
			r.t.Error(err)
		}
		if err := r.srv.Close(); err != nil {
			r.t.Error("second Close:", err)
		}
		r.srv = nil
	}
	if r.mbox != nil {
		if err := r.mbox.Close(); err != nil {
			r.t.Error(err)
		}
		r.mbox = nil
	}
}

// dial opens a client Conn from a new host, as a member's client key would.
func (r *relay) dial(opts ...libp2p.Option) *grouplog.Conn {
	r.t.Helper()
	c := grouplog.NewConn(r.rawStream(opts...), 0)
	r.t.Cleanup(func() { c.Close() })
	return c
}

func testResources() grouprelay.Resources {
	res := grouprelay.DefaultResources()
	res.TTL = time.Hour
	res.IdleTTL = 24 * time.Hour
	return res
}

// tok is the token of epoch e in the tests.
func tok(e uint64) protocol.GroupToken {
	var t protocol.GroupToken
	copy(t[:], fmt.Sprintf("token of epoch %d.................", e))
	return t
}

func entry(t testing.TB, epoch uint64, kind protocol.GroupKind, body string) []byte {
	b, err := (&protocol.GroupMessage{Epoch: epoch, Kind: kind, Body: []byte(body)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var ctx = context.Background()

// create creates a log with a fresh random ID.
func create(c *grouplog.Conn, epoch uint64, token protocol.GroupToken) (protocol.GroupLogID, error) {
	var id protocol.GroupLogID
	rand.Read(id[:])
	return id, c.Create(ctx, id, epoch, token)
}

// TestCreateAgain: creating a log again at the same epoch for the same
// token is a retry; anything else on an existing ID is refused.
func TestCreateAgain(t *testing.T) {
	r := newRelay(t, testResources())
	c := r.dial()
	log, err := create(c, 2, tok(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, log, 2, tok(2)); err != nil {
		t.Errorf("the same create again: %v", err)
	}
	mustAppend(t, c, log, 2, "a")
	for _, e := range []uint64{1, 3} {
		if err := c.Create(ctx, log, e, tok(e)); !errors.Is(err, protocol.ErrDuplicate) {
			t.Errorf("create at epoch %d over an existing log: %v, want ErrDuplicate", e, err)
		}
	}
	if err := c.Create(ctx, log, 2, tok(3)); !errors.Is(err, protocol.ErrDuplicate) {
		t.Errorf("create with another token over an existing log: %v, want ErrDuplicate", err)
	}
	f, err := c.Fetch(ctx, log, 2, tok(2), 0, 0)
	if err != nil || len(f.Entries) != 1 {
		t.Errorf("the log after the creates: %d entries, %v", len(f.Entries), err)
	}
}

func mustAppend(t *testing.T, c *grouplog.Conn, log protocol.GroupLogID, epoch uint64, body string) grouplog.Appended {
	t.Helper()
	a, err := c.Append(ctx, log, epoch, tok(epoch), entry(t, epoch, protocol.GroupApplication, body), false, protocol.TokenHash{})
	if err != nil {
		t.Fatalf("append %q to epoch %d: %v", body, epoch, err)
	}
	return a
}

func commit(c *grouplog.Conn, log protocol.GroupLogID, epoch uint64, body string) (grouplog.Appended, error) {
	e, _ := (&protocol.GroupMessage{Epoch: epoch, Kind: protocol.GroupCommit, Body: []byte(body)}).Marshal()
	return c.Append(ctx, log, epoch, tok(epoch), e, true, tok(epoch+1).Hash())
}

func bodies(t *testing.T, es []grouplog.Entry) []string {
	var out []string
	for _, e := range es {
		var m protocol.GroupMessage
		if err := m.Unmarshal(e.Entry); err != nil {
			t.Fatal(err)
		}
		out = append(out, string(m.Body))
	}
	return out
}

// TestLog runs a log through two epochs: appends, the commit that closes
// the first, reads bounded to each epoch by its token.
func TestLog(t *testing.T) {
	r := newRelay(t, testResources())
	c := r.dial()
	log, err := create(c, 0, tok(0))
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range []string{"a", "b", "c"} {
		if a := mustAppend(t, c, log, 0, b); a.Seq != uint64(i+1) || a.Open != 0 || !a.StoredUntil.Equal(t0.Add(time.Hour)) {
			t.Errorf("append %s: %+v", b, a)
		}
	}
	won, err := commit(c, log, 0, "commit of alice")
	if err != nil || won.Seq != 4 || won.Open != 1 {
		t.Fatalf("commit: %+v, %v", won, err)
	}
	// The second commit for epoch 0 lost; so does an entry for epoch 0.
	var ee *grouplog.EpochError
	if _, err := commit(c, log, 0, "commit of bob"); !errors.As(err, &ee) || ee.Open != 1 || !errors.Is(err, protocol.ErrWrongEpoch) {
		t.Fatalf("second commit: %v", err)
	}
	if _, err := c.Append(ctx, log, 0, tok(0), entry(t, 0, protocol.GroupApplication, "late"), false, protocol.TokenHash{}); !errors.As(err, &ee) || ee.Open != 1 {
		t.Fatalf("late entry: %v", err)
	}
	// The winner's retry is answered as the first time.
	if again, err := commit(c, log, 0, "commit of alice"); err != nil || again.Seq != 4 || again.Open != 1 {
		t.Fatalf("commit again: %+v, %v", again, err)
	}
	mustAppend(t, c, log, 1, "d")

	f, err := c.Fetch(ctx, log, 0, tok(0), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(bodies(t, f.Entries)); got != "[a b c commit of alice]" || f.Open != 1 || f.More || !f.Entries[3].Commit {
		t.Errorf("epoch 0: %s, %+v", got, f)
	}
	if f, err = c.Fetch(ctx, log, 0, tok(0), 1, 2); err != nil || fmt.Sprint(bodies(t, f.Entries)) != "[b c]" || !f.More {
		t.Errorf("epoch 0 after 1, limit 2: %v, %+v", err, f)
	}
	if f, err = c.Fetch(ctx, log, 1, tok(1), 0, 0); err != nil || fmt.Sprint(bodies(t, f.Entries)) != "[d]" {
		t.Errorf("epoch 1: %v, %+v", err, f)
	}
	// A token reads its own epoch only: a member removed at epoch 0's
	// commit holds tok(0) and reads nothing of epoch 1.
	if _, err := c.Fetch(ctx, log, 1, tok(0), 0, 0); !errors.Is(err, protocol.ErrTokenRefused) {
		t.Errorf("epoch 1 with epoch 0's token: %v", err)
	}
	if _, err := c.Append(ctx, log, 1, tok(0), entry(t, 1, protocol.GroupApplication, "x"), false, protocol.TokenHash{}); !errors.Is(err, protocol.ErrTokenRefused) {
		t.Errorf("append with another epoch's token: %v", err)
	}
	// A log behind the epoch read (a home that missed commits) says where
	// it is open, for the member to catch it up.
	var lag *grouplog.EpochError
	if _, err := c.Fetch(ctx, log, 2, tok(2), 0, 0); !errors.As(err, &lag) || lag.Open != 1 {
		t.Errorf("future epoch: %v", err)
	}
	if _, err := c.Subscribe(ctx, log, 3, tok(3), 0); !errors.As(err, &lag) || lag.Open != 1 {
		t.Errorf("subscription to a future epoch: %v", err)
	}
	if _, err := c.Fetch(ctx, protocol.GroupLogID{1}, 0, tok(0), 0, 0); !errors.Is(err, protocol.ErrUnknownLog) {
		t.Errorf("unknown log: %v", err)
	}
	tot, err := r.srv.Totals(ctx)
	if err != nil || tot != (store.RelayGroupTotals{Logs: 1, Entries: 5, Bytes: tot.Bytes}) {
		t.Errorf("totals %+v, %v", tot, err)
	}
}

// TestCommitRace: committers on their own connections commit for the same
// epoch at once, epoch after epoch; each time exactly one wins, every other
// learns the open epoch, and the log holds one commit per epoch.
func TestCommitRace(t *testing.T) {
	r := newRelay(t, testResources())
	const n, epochs = 6, 5
	conns := make([]*grouplog.Conn, n)
	for i := range conns {
		conns[i] = r.dial()
	}
	log, err := create(conns[0], 0, tok(0))
	if err != nil {
		t.Fatal(err)
	}
	for e := range uint64(epochs) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var winners []int
		for i, c := range conns {
			wg.Go(func() {
				_, err := commit(c, log, e, fmt.Sprintf("commit %d of member %d", e, i))
				var ee *grouplog.EpochError
				switch {
				case err == nil:
					mu.Lock()
					winners = append(winners, i)
					mu.Unlock()
				case errors.As(err, &ee) && ee.Open == e+1:
				default:
					t.Errorf("member %d, epoch %d: %v", i, e, err)
				}
			})
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("epoch %d: %d winners", e, len(winners))
		}
		f, err := conns[0].Fetch(ctx, log, e, tok(e), 0, 0)
		if err != nil || len(f.Entries) != 1 || !f.Entries[0].Commit {
			t.Fatalf("epoch %d holds %+v, %v", e, f, err)
		}
		if got, want := bodies(t, f.Entries)[0], fmt.Sprintf("commit %d of member %d", e, winners[0]); got != want {
			t.Fatalf("epoch %d: the stored commit is %q, the winner's %q", e, got, want)
		}
	}
}

// TestSubscribe: a subscription names the newest entry as entries commit,
// and ends with the epoch's commit; one to a closed epoch ends at once.
func TestSubscribe(t *testing.T) {
	r := newRelay(t, testResources())
	w, rd := r.dial(), r.dial()
	log, err := create(w, 3, tok(3))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w, log, 3, "before")
	sub, err := rd.Subscribe(ctx, log, 3, tok(3), 0)
	if err != nil {
		t.Fatal(err)
	}
	if sub.Start != 1 || sub.Open != 3 {
		t.Errorf("subscription starts at %d, open %d", sub.Start, sub.Open)
	}
	waitHead := func(want uint64, commit bool) {
		t.Helper()
		deadline := time.After(time.Minute)
		for {
			if seq, c := sub.Head(); seq == want && c == commit {
				return
			}
			select {
			case <-sub.Wake():
			case <-deadline:
				seq, c := sub.Head()
				t.Fatalf("head %d (commit %v), want %d (%v)", seq, c, want, commit)
			}
		}
	}
	mustAppend(t, w, log, 3, "x")
	waitHead(2, false)
	mustAppend(t, w, log, 3, "y")
	mustAppend(t, w, log, 3, "z")
	waitHead(4, false)
	if _, err := commit(w, log, 3, "the commit"); err != nil {
		t.Fatal(err)
	}
	waitHead(5, true)
	select {
	case <-sub.Done():
	case <-time.After(time.Minute):
		t.Fatal("subscription did not end at the commit")
	}
	if sub.Err() != nil {
		t.Errorf("subscription ended with %v", sub.Err())
	}
	// Subscribing to the closed epoch gets its commit at once.
	late, err := rd.Subscribe(ctx, log, 3, tok(3), 0)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-late.Done():
	case <-time.After(time.Minute):
		t.Fatal("subscription to a closed epoch did not end")
	}
	if seq, c := late.Head(); seq != 5 || !c || late.Open != 4 {
		t.Errorf("closed epoch: head %d commit %v open %d", seq, c, late.Open)
	}
	if _, err := rd.Subscribe(ctx, log, 4, tok(3), 0); !errors.Is(err, protocol.ErrTokenRefused) {
		t.Errorf("subscribe with another epoch's token: %v", err)
	}
}

// TestExpiry: entries go at the end of their TTL, an epoch with its commit
// (reading it is then wrong_epoch), and a log not appended to for its idle
// time goes whole.
func TestExpiry(t *testing.T) {
	r := newRelay(t, testResources())
	c := r.dial()
	log, err := create(c, 0, tok(0))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, c, log, 0, "a")
	if _, err := commit(c, log, 0, "c0"); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(30 * time.Minute)
	mustAppend(t, c, log, 1, "b")
	r.clock.Advance(31 * time.Minute)
	if n, err := r.srv.Sweep(ctx); err != nil || n != 2 {
		t.Fatalf("sweep after the TTL of epoch 0: %d, %v", n, err)
	}
	var ee *grouplog.EpochError
	if _, err := c.Fetch(ctx, log, 0, tok(0), 0, 0); !errors.As(err, &ee) || ee.Open != 1 {
		t.Errorf("read of an expired epoch: %v", err)
	}
	if f, err := c.Fetch(ctx, log, 1, tok(1), 0, 0); err != nil || fmt.Sprint(bodies(t, f.Entries)) != "[b]" {
		t.Errorf("epoch 1: %+v, %v", f, err)
	}
	// An entry past its TTL is not served even before the sweep.
	r.clock.Advance(30 * time.Minute)
	if f, err := c.Fetch(ctx, log, 1, tok(1), 0, 0); err != nil || len(f.Entries) != 0 {
		t.Errorf("epoch 1 after its TTL: %+v, %v", f, err)
	}
	// Idle: a day without an append (and the hour the deadline is rounded
	// to) deletes the log.
	r.clock.Advance(25 * time.Hour)
	if _, err := r.srv.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(ctx, log, 1, tok(1), 0, 0); !errors.Is(err, protocol.ErrUnknownLog) {
		t.Errorf("idle log: %v", err)
	}
	if tot, _ := r.srv.Totals(ctx); tot != (store.RelayGroupTotals{}) {
		t.Errorf("totals after the idle log went: %+v", tot)
	}
}

// TestRestart: what was answered survives the service's restart, and
// sequence numbers go on.
func TestRestart(t *testing.T) {
	r := newRelay(t, testResources())
	c := r.dial()
	log, err := create(c, 0, tok(0))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		mustAppend(t, c, log, 0, fmt.Sprint(i))
	}
	r.stop()
	r.start()
	c = r.dial()
	f, err := c.Fetch(ctx, log, 0, tok(0), 0, 0)
	if err != nil || len(f.Entries) != 10 {
		t.Fatalf("after restart: %d entries, %v", len(f.Entries), err)
	}
	if a := mustAppend(t, c, log, 0, "after"); a.Seq != 11 {
		t.Errorf("seq after restart %d", a.Seq)
	}
}

// TestLimits: every limit is answered with its code, and nothing crashes.
func TestLimits(t *testing.T) {
	res := testResources()
	res.MaxEntry = 1000
	res.LogMaxCount = 5
	res.CommitBurst = 2
	res.CommitRate = 0.001
	res.CreateBurst = 2
	r := newRelay(t, res)
	c := r.dial()
	log, err := create(c, 0, tok(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(ctx, log, 0, tok(0), entry(t, 0, protocol.GroupApplication, string(make([]byte, 1001))), false, protocol.TokenHash{}); !errors.Is(err, protocol.ErrTooLarge) {
		t.Errorf("entry over MaxEntry: %v", err)
	}
	if _, err := commit(c, log, 0, "c0"); err != nil {
		t.Fatal(err)
	}
	if _, err := commit(c, log, 1, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := commit(c, log, 2, "c2"); !errors.Is(err, protocol.ErrRateLimited) {
		t.Errorf("commit over the rate: %v", err)
	}
	for i := range 3 {
		mustAppend(t, c, log, 2, fmt.Sprint(i))
	}
	if _, err := c.Append(ctx, log, 2, tok(2), entry(t, 2, protocol.GroupApplication, "full"), false, protocol.TokenHash{}); !errors.Is(err, protocol.ErrQuotaExceeded) {
		t.Errorf("over the log's count: %v", err)
	}
	if _, err := create(c, 0, tok(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := create(c, 0, tok(0)); !errors.Is(err, protocol.ErrRateLimited) {
		t.Errorf("creations over the burst: %v", err)
	}
	// The Conn still works after refusals.
	if _, err := c.Fetch(ctx, log, 2, tok(2), 0, 0); err != nil {
		t.Errorf("fetch after refusals: %v", err)
	}
}

// TestBadFrame: a frame that does not decode is answered with its code and
// the stream reset; the service goes on.
func TestBadFrame(t *testing.T) {
	r := newRelay(t, testResources())
	h, err := libp2p.New(libp2p.NoListenAddrs, libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.Connect(ctx, peer.AddrInfo{ID: r.h.ID(), Addrs: r.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	for _, frame := range [][]byte{
		{0x05, 1, 2, 3, 4, 5},          // not a request
		{0xff, 0xff, 0xff, 0xff, 0x0f}, // a length over the limit
	} {
		str, err := h.NewStream(ctx, r.h.ID(), libp2pproto.ID(protocol.GroupLogProtocol))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := str.Write(frame); err != nil {
			t.Fatal(err)
		}
		str.SetReadDeadline(time.Now().Add(time.Minute))
		var resp protocol.GroupLogResponse
		if err := protocol.NewFrameReader(str, protocol.MaxGroupLogFrame).Read(&resp); err != nil {
			t.Fatalf("no answer to a bad frame: %v", err)
		}
		if resp.Code == protocol.CodeOK || resp.ID != 0 {
			t.Errorf("answer %+v", resp)
		}
		var buf [1]byte
		if _, err := str.Read(buf[:]); err == nil {
			t.Error("stream not ended after a bad frame")
		}
		str.Reset()
	}
	c := r.dial()
	if _, err := create(c, 0, tok(0)); err != nil {
		t.Errorf("after bad frames: %v", err)
	}
}

// TestPipelined: many appends in flight on one stream are answered in
// order, each once durable, and the log holds them in that order.
func TestPipelined(t *testing.T) {
	r := newRelay(t, testResources())
	c := r.dial()
	log, err := create(c, 0, tok(0))
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var wg sync.WaitGroup
	seqs := make([]uint64, n)
	for i := range n {
		wg.Go(func() {
			a, err := c.Append(ctx, log, 0, tok(0), entry(t, 0, protocol.GroupApplication, fmt.Sprint(i)), false, protocol.TokenHash{})
			if err != nil {
				t.Error(err)
			}
			seqs[i] = a.Seq
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, s := range seqs {
		if s == 0 || s > n || seen[s] {
			t.Fatalf("sequence numbers %v", seqs)
		}
		seen[s] = true
	}
	var all []grouplog.Entry
	for after := uint64(0); ; {
		f, err := c.Fetch(ctx, log, 0, tok(0), after, 0)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, f.Entries...)
		if !f.More {
			break
		}
		after = f.Entries[len(f.Entries)-1].Seq
	}
	if len(all) != n {
		t.Fatalf("%d entries of %d", len(all), n)
	}
	for i, e := range all {
		if e.Seq != uint64(i+1) || !bytes.Contains(e.Entry, []byte("")) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
	}
}
