package testnet

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/node/messaging"
)

func defaults(t *testing.T, o Options) Options {
	t.Helper()
	o, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestPlanSameSeedSameScenario(t *testing.T) {
	o := defaults(t, Options{Nodes: 30, Relays: 3, Messages: 500, Offline: 0.3, Seed: 7,
		Chaos: []string{KillRelay, RestartNodes, Partition, ClockSkew}})
	a, b := newPlan(o), newPlan(o)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two plans of the same options differ")
	}
	o.Seed = 8
	if c := newPlan(o); reflect.DeepEqual(a.msgs, c.msgs) || reflect.DeepEqual(a.edges, c.edges) {
		t.Fatal("plans of seeds 7 and 8 have the same messages or contacts")
	}
}

func TestPlanShape(t *testing.T) {
	o := defaults(t, Options{Nodes: 40, Relays: 4, Messages: 1000, Offline: 0.3, Seed: 3,
		Chaos: []string{KillRelay, RestartNodes, Partition, ClockSkew, Drop}})
	p := newPlan(o)
	if len(p.msgs) != o.Messages {
		t.Fatalf("%d messages, want %d", len(p.msgs), o.Messages)
	}
	off := 0
	for i := range o.Nodes {
		if p.offline[i] {
			off++
		}
		for _, c := range p.contacts[i] {
			if c == i || !slices.Contains(p.contacts[c], i) {
				t.Errorf("contact %d of %d is not mutual", c, i)
			}
		}
		if n := len(p.nodeRelays[i]); n != 2 {
			t.Errorf("node %d has %d relays, want 2", i, n)
		}
		if d := p.skew[i]; d != 0 && (d.Abs() < minSkew || d.Abs() > maxSkew) {
			t.Errorf("node %d skew %v outside %v..%v", i, d, minSkew, maxSkew)
		}
	}
	if off != 12 {
		t.Errorf("%d nodes offline, want 12", off)
	}
	for i, m := range p.msgs {
		if p.offline[m.from] || !slices.Contains(p.contacts[m.from], m.to) {
			t.Fatalf("message %d: %d -> %d: want an online sender and one of its contacts", i, m.from, m.to)
		}
	}
	restartIdx := int(restartAt * float64(o.Messages))
	for j, r := range p.restart {
		if p.offline[r] {
			t.Errorf("restarting node %d is offline", r)
		}
		if m := p.msgs[restartIdx-len(p.restart)+j]; m.from != r || !p.offline[m.to] {
			t.Errorf("message before the restart %+v: want node %d to an offline contact", m, r)
		}
	}
	if p.killRelay < 0 || len(p.restart) != 2 {
		t.Errorf("kill relay %d, restart %v: want a relay and 2 nodes", p.killRelay, p.restart)
	}
	var what []string
	for k, s := range p.steps {
		if k > 0 && s.at < p.steps[k-1].at {
			t.Errorf("steps out of order: %+v", p.steps)
		}
		what = append(what, s.what)
	}
	if want := []string{stepPartition, stepKill, stepRestart, stepHeal, stepRevive}; !slices.Equal(what, want) {
		t.Errorf("steps %v, want %v", what, want)
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, o := range []Options{
		{Nodes: 1},
		{Nodes: MaxNodes + 1},
		{Relays: -1},
		{Relays: MaxRelays + 1},
		{Messages: -1},
		{Offline: 1},
		{Offline: -0.1},
		{Duration: -time.Second},
		{Chaos: []string{"meteor"}},
		{Relays: 0, Chaos: []string{KillRelay}},
		{Nodes: 3, Contacts: 6},
	} {
		if _, err := o.withDefaults(); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%+v: err %v, want ErrBadOptions", o, err)
		}
	}
}

func TestParseChaos(t *testing.T) {
	got, err := ParseChaos([]string{"partition,drop", " drop", "kill-relay", ""})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{Drop, KillRelay, Partition}; !slices.Equal(got, want) {
		t.Errorf("ParseChaos = %v, want %v", got, want)
	}
	if _, err := ParseChaos([]string{"drop,nap"}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("unknown fault: err %v", err)
	}
}

func TestPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	p := percentiles(ds)
	if p != (Percentiles{P50: 51, P95: 96, P99: 100, Count: 100}) {
		t.Errorf("percentiles = %+v", p)
	}
	if percentiles(nil) != (Percentiles{}) {
		t.Error("percentiles of nothing are not zero")
	}
}

func TestLedger(t *testing.T) {
	o := defaults(t, Options{Nodes: 3, Messages: 3, Contacts: 2})
	nw := newNetwork(o, t.TempDir())
	for i, m := range nw.nodes {
		m.uid = "user-" + m.name
		m.back = time.Now().Add(time.Duration(i) * time.Hour)
	}
	l := nw.ledger
	for i := range l.recs {
		l.sending(i, i == 0)
		l.sendDone(i, "id")
	}
	msg := func(i int, from *member) *messaging.Message {
		r := l.recs[i]
		return &messaging.Message{Text: messageText(i, nw.nodes[r.from].name, nw.nodes[r.to].name),
			From: from.uid, ReceivedAt: time.Now()}
	}
	r0 := l.recs[0]
	to, from := nw.nodes[r0.to], nw.nodes[r0.from]
	l.shown(to, msg(0, from))
	l.shown(to, msg(0, from))
	other := nw.nodes[3-r0.to-r0.from]
	l.shown(other, msg(0, from))                               // not the recipient
	l.shown(to, msg(0, other))                                 // not the sender
	l.shown(to, &messaging.Message{Text: "hello from node-1"}) // wiring
	if l.recs[0].shown != 2 || l.stray != 2 {
		t.Errorf("shown %d, stray %d; want 2 and 2", l.recs[0].shown, l.stray)
	}
	if sent, shown := l.counts(); sent != 3 || shown != 1 {
		t.Errorf("counts %d, %d; want 3 sent, 1 shown", sent, shown)
	}
	if l.allShown() {
		t.Error("allShown with two messages not shown")
	}
	if d, r := l.latencies(); d.Count != 0 || r.Count != 1 {
		t.Errorf("latencies %+v %+v: want one message to an offline node", d, r)
	}
	if parseIndex("testnet message 12 from a to b") != 12 || parseIndex("testnet message x") != -1 {
		t.Error("parseIndex")
	}
}

func TestCut(t *testing.T) {
	c := newCut()
	a, b := peer.ID("a"), peer.ID("b")
	c.set(a, 0)
	c.set(b, 1)
	g := &gater{cut: c, side: 0}
	if !g.InterceptPeerDial(b) {
		t.Error("refused before the cut")
	}
	c.setActive(true)
	if g.InterceptPeerDial(b) || g.InterceptSecured(network.DirInbound, b, nil) {
		t.Error("crossed the cut")
	}
	if !g.InterceptPeerDial(a) || !g.InterceptPeerDial("unknown") {
		t.Error("refused a peer on the same side or of no side")
	}
	g.dead.Store(true)
	if g.InterceptPeerDial(a) || g.InterceptAccept(nil) {
		t.Error("a dead host connected")
	}
	if !c.setActive(false) || c.setActive(false) {
		t.Error("setActive does not report the previous state")
	}
}

// fakeStream is a network.Stream that counts resets; its other methods
// are not called.
type fakeStream struct {
	network.Stream
	resets int
}

func (f *fakeStream) Read(b []byte) (int, error)  { return len(b), nil }
func (f *fakeStream) Write(b []byte) (int, error) { return len(b), nil }
func (f *fakeStream) Reset() error                { f.resets++; return nil }

func TestDropper(t *testing.T) {
	d := newDropper(1)
	f := &fakeStream{}
	s := d.wrap(f)
	buf := make([]byte, 8)
	for range 1000 {
		s.Write(buf)
	}
	if f.resets != 0 {
		t.Fatalf("%d resets while off", f.resets)
	}
	d.on.Store(true)
	for range 1000 {
		s.Read(buf)
		s.Write(buf)
	}
	if f.resets < 10 || f.resets > 100 || d.resets.Load() != int64(f.resets) {
		t.Errorf("%d resets (counted %d) in 2000 calls at %v", f.resets, d.resets.Load(), dropRate)
	}
}

func TestCopyDir(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "data"), 0o700)
	os.WriteFile(filepath.Join(src, "data", "000001.vlog"), []byte("log"), 0o600)
	os.WriteFile(filepath.Join(src, "key"), []byte("key"), 0o600)
	dst := filepath.Join(t.TempDir(), "copy")
	if err := copyDir(src, dst); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"data/000001.vlog": "log", "key": "key"} {
		if b, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v", name, b, err)
		}
	}
}

func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadState(dir); !errors.Is(err, ErrNoNetwork) {
		t.Fatalf("LoadState of an empty directory: %v", err)
	}
	// This process's PID is alive, but it is no daemon of this home.
	st := &State{Dir: dir, Members: []Proc{
		newProc(dir, "relay-0", true), newProc(dir, "node-0", false), newProc(dir, "node-1", false)}}
	st.Members[1].PID = os.Getpid()
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(dir)
	if err != nil || !reflect.DeepEqual(got, st) {
		t.Fatalf("LoadState = %+v, %v; want %+v", got, err, st)
	}
	if p, err := got.Member("1"); err != nil || p.Name != "node-1" || p.EnvLine() != "SEALPOST_HOME="+filepath.Join(dir, "node-1") {
		t.Errorf("Member(1) = %+v, %v", p, err)
	}
	if p, err := got.Member("relay-0"); err != nil || !p.Relay {
		t.Errorf("Member(relay-0) = %+v, %v", p, err)
	}
	if _, err := got.Member("node-9"); !errors.Is(err, ErrNoMember) {
		t.Errorf("Member(node-9): %v", err)
	}
	if got.Members[1].alive() {
		t.Error("this test process counts as node-0's daemon")
	}
	// Down signals nothing that is not a daemon of the network.
	if _, err := Down(dir, io.Discard); err != nil {
		t.Fatal(err)
	}
	if st, _ := LoadState(dir); st.Members[1].PID != 0 {
		t.Error("Down kept a PID")
	}
}
