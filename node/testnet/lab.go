package testnet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/node/api"
	"github.com/sealpost/sealpost/node/home"
	"github.com/sealpost/sealpost/node/messaging"
)

// The lab (`sealpost testnet lab`): real daemon processes of the sealpost
// binary, each in a network namespace of its own, on a private internet
// of namespaces (labnet.go): community relays with public addresses and
// personal nodes behind home routers that NAT. Pairs of nodes become
// contacts by invite and exchange messages while nodes go offline, NAT
// mappings are flushed and a relay is killed; the report says for each
// pair how its first message travelled and whether (and when) a direct
// connection appeared, and counts what was lost or shown twice.

// Lab faults (LabOptions.Faults).
const (
	// LabOffline: a quarter of the pairs' second nodes stop (SIGTERM) for
	// the middle half of the message phase and start again.
	LabOffline = "offline"
	// LabFlushNAT: halfway, the home routers of a third of the nodes
	// behind NATs forget every mapping (conntrack -F).
	LabFlushNAT = "flush-nat"
	// LabKillRelay: relay 0 is killed (SIGKILL) a third of the way in and
	// started again from its home at two thirds.
	LabKillRelay = "kill-relay"
)

// LabFaults are the faults a lab knows.
var LabFaults = []string{LabOffline, LabFlushNAT, LabKillRelay}

// Bounds and timings of a lab.
const (
	// MaxLabPairs bounds LabOptions.Pairs (two nodes each; indices stay
	// under maxLabIndex).
	MaxLabPairs = (maxLabIndex + 1) / 2
	// labReserveWait bounds the wait for the nodes behind NATs to hold a
	// relay reservation before the pairs are made.
	labReserveWait = 90 * time.Second
	// labFirstWait bounds the wait for a pair's first message.
	labFirstWait = 2 * time.Minute
	// labPoll is the period of the direct-connection watch and the drain.
	labPoll = 250 * time.Millisecond
	// labParallel pairs are made at once.
	labParallel = 4
	// labPort is the port every lab daemon listens on (TCP and QUIC).
	labPort = 7710
)

// LabOptions describe a lab run.
type LabOptions struct {
	// Pairs is the number of node pairs. Default 4.
	Pairs int
	// Relays is the number of community relays, 1 or 2. Default 2.
	Relays int
	// NAT lists the NAT kinds of the pairs' routers, given to the pairs in
	// turn: "eim" (both nodes of the pair behind endpoint-independent
	// NATs), "symmetric", "none", or two kinds "eim/symmetric" (first
	// node, second node). Default: eim, symmetric, eim/none,
	// eim/symmetric.
	NAT []string
	// Messages is the number of messages each pair exchanges after the
	// first two, alternating directions. Default 10.
	Messages int
	// Duration spreads the messages and the faults. Default 30 s.
	Duration time.Duration
	// Drain bounds the wait, after the faults healed, for every message
	// to be shown. Default 2 minutes.
	Drain time.Duration
	// Faults are injected during the message phase (LabFaults). Default
	// none.
	Faults []string
	// Latency is each link's added round-trip time (tc netem, ± a third),
	// when the kernel has netem; the report says whether it had. Zero:
	// none.
	Latency time.Duration
	// Prefix starts the name of every namespace, interface and nftables
	// table of the lab. Default DefaultLabPrefix.
	Prefix string
	// Dir holds the homes. Default: a new temporary directory, removed
	// afterwards unless Keep.
	Dir  string
	Keep bool
	// Binary is the sealpost executable. Default: this process's.
	Binary string
	// LogLevel is the daemons' --log-level (their logs are HOME/daemon.log).
	// Zero: info.
	LogLevel string
	// Seed draws the offline nodes, the flushed routers and the order of
	// the messages. Default 1.
	Seed int64
	// Progress receives the lab's progress every ProgressEvery. Zero:
	// none.
	Progress func(LabProgress)
	// Log receives a line per step (network built, daemons up, faults).
	// Zero: discarded.
	Log io.Writer
}

// LabProgress is the state of a running lab.
type LabProgress struct {
	Elapsed time.Duration
	Phase   string
	Up      int // daemons running
	Members int
	Linked  int // pairs whose first message arrived
	Pairs   int
	Sent    int
	Shown   int
}

func (o LabOptions) withDefaults() (LabOptions, error) {
	bad := func(format string, args ...any) (LabOptions, error) {
		return o, fmt.Errorf("%w: %s", ErrBadOptions, fmt.Sprintf(format, args...))
	}
	if o.Pairs == 0 {
		o.Pairs = 4
	}
	if o.Relays == 0 {
		o.Relays = 2
	}
	if len(o.NAT) == 0 {
		o.NAT = []string{"eim", "symmetric", "eim/none", "eim/symmetric"}
	}
	if o.Messages == 0 {
		o.Messages = 10
	}
	if o.Duration == 0 {
		o.Duration = 30 * time.Second
	}
	if o.Drain == 0 {
		o.Drain = 2 * time.Minute
	}
	if o.Prefix == "" {
		o.Prefix = DefaultLabPrefix
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	switch {
	case o.Pairs < 1 || o.Pairs > MaxLabPairs:
		return bad("%d pairs: want 1 to %d", o.Pairs, MaxLabPairs)
	case o.Relays < 1 || o.Relays > 2:
		return bad("%d relays: want 1 or 2", o.Relays)
	case o.Messages < 0 || o.Messages > 10000:
		return bad("%d messages per pair: want 0 to 10000", o.Messages)
	case o.Duration < 0 || o.Drain < 0 || o.Latency < 0 || o.Latency > 10*time.Second:
		return bad("negative duration, or latency over 10 s")
	case !prefixRE.MatchString(o.Prefix):
		return bad("lab prefix %q: want a lowercase letter and up to 7 letters or digits", o.Prefix)
	}
	for _, k := range o.NAT {
		if _, _, err := pairKinds(k); err != nil {
			return o, err
		}
	}
	for _, f := range o.Faults {
		if !slices.Contains(LabFaults, f) {
			return bad("fault %q: want %s", f, strings.Join(LabFaults, ", "))
		}
	}
	if slices.Contains(o.Faults, LabKillRelay) && o.Relays < 2 {
		// With one relay killed, the nodes behind symmetric NATs would
		// have no path at all while it is down; that is a fault of the
		// setup, not of the node.
		return bad("%s needs 2 relays", LabKillRelay)
	}
	return o, nil
}

// pairKinds parses "eim" or "eim/symmetric".
func pairKinds(s string) (a, b string, err error) {
	a, b, ok := strings.Cut(s, "/")
	if !ok {
		b = a
	}
	if !slices.Contains(NATKinds, a) || !slices.Contains(NATKinds, b) {
		return "", "", fmt.Errorf("%w: NAT kind %q: want %s, or two of them as eim/symmetric", ErrBadOptions, s, strings.Join(NATKinds, ", "))
	}
	return a, b, nil
}

// How a pair's first message travelled (LabPair.First).
const (
	PathDirect      = "direct"       // a direct connection, one side without NAT
	PathHolePunched = "hole_punched" // a direct connection between two nodes behind NATs
	PathRelayed     = "relayed"      // a relayed (circuit) connection
	PathMailbox     = "mailbox"      // the recipient's mailbox on a relay
	PathNone        = "none"         // it did not arrive within labFirstWait
)

// LabPair is one pair in the report.
type LabPair struct {
	A   string `json:"a"`
	B   string `json:"b"`
	NAT string `json:"nat"`
	// First is how the first message (A to B, sent right after A added
	// B's invite) travelled; FirstMs how long from the invite to B's
	// commit of it.
	First   string  `json:"first"`
	FirstMs float64 `json:"first_ms"`
	// Direct tells whether a direct connection between A and B appeared
	// during the run, DirectMs how long after the invite.
	Direct   bool    `json:"direct"`
	DirectMs float64 `json:"direct_ms,omitempty"`
	// Sent counts the pair's messages, both ways; Delivered those shown
	// to their recipient; Lost and Duplicated as in the totals.
	Sent       int `json:"sent"`
	Delivered  int `json:"delivered"`
	Lost       int `json:"lost"`
	Duplicated int `json:"duplicated"`
}

// LabReport is what a lab run shows.
type LabReport struct {
	Pairs    int      `json:"pairs"`
	Relays   int      `json:"relays"`
	NAT      []string `json:"nat"`
	Faults   []string `json:"faults"`
	Seed     int64    `json:"seed"`
	Messages int      `json:"messages_per_pair"`
	// Netem tells whether the kernel had the netem qdisc (LatencyMs is
	// the round trip that was added to each link; 0 without netem).
	Netem     bool    `json:"netem"`
	LatencyMs float64 `json:"latency_ms"`
	// Reserved counts the nodes behind NATs that held a relay
	// reservation (a circuit address) before the pairs were made, of
	// NATed.
	Reserved int `json:"reserved"`
	NATed    int `json:"nated"`
	// How the pairs' first messages travelled.
	Direct      int `json:"direct"`
	HolePunched int `json:"hole_punched"`
	Relayed     int `json:"relayed"`
	ViaMailbox  int `json:"via_mailbox"`
	NotArrived  int `json:"not_arrived"`
	// Upgraded counts the pairs between which a direct connection
	// appeared; UpgradeMs the time from the invite to it.
	Upgraded  int         `json:"upgraded"`
	UpgradeMs Percentiles `json:"upgrade_ms"`
	// FirstMessageMs is the time from the invite to the first message's
	// commit at the recipient.
	FirstMessageMs Percentiles `json:"first_message_ms"`
	Sent           int         `json:"sent"`
	Delivered      int         `json:"delivered"`
	Lost           int         `json:"lost"`
	Duplicated     int         `json:"duplicated"`
	SendErrors     int         `json:"send_errors"`
	Events         []string    `json:"events"`
	Seconds        float64     `json:"seconds"`
	List           []LabPair   `json:"pair_list"`
}

// OK reports whether nothing was lost or duplicated and every send
// was accepted.
func (r *LabReport) OK() bool { return r.Lost == 0 && r.Duplicated == 0 && r.SendErrors == 0 }

// labMember is one daemon of the lab.
type labMember struct {
	name  string
	ns    string
	kind  string // NAT kind; "" for relays
	relay bool
	home  string
	args  []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	peerID string
	addr   string   // relays: the public TCP multiaddr with /p2p/
	addrs  []string // relays: the public QUIC and TCP multiaddrs with /p2p/
	c      *api.Client
	via    map[string]string // message text -> how it arrived (events)
}

// lab is one run.
type lab struct {
	o     LabOptions
	net   *labNet
	dir   string
	start time.Time
	rnd   *rand.Rand

	relays []*labMember
	nodes  []*labMember

	phase   atomicString
	linked  atomic.Int32
	sentN   atomic.Int32
	shownN  atomic.Int32
	mu      sync.Mutex
	events  []string
	ledger  map[string]*labMsg // text -> message
	sendErr int
}

// labMsg is one message of the run.
type labMsg struct {
	pair     int
	from, to *labMember
	sent     bool
	shown    int
}

// RunLab builds the lab, runs its scenario and removes the lab again,
// whatever happens (also when ctx is cancelled, as on SIGINT). It needs
// root and the tools CheckLab names.
func RunLab(ctx context.Context, o LabOptions) (rep *LabReport, err error) {
	o, err = o.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := CheckLab(); err != nil {
		return nil, err
	}
	if o.Binary == "" {
		if o.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("testnet: find the sealpost binary: %w", err)
		}
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	lock, err := lockLab(o.Prefix)
	if err != nil {
		return nil, err
	}
	defer lock.release()
	// What a crashed run with this prefix left.
	if left, err := removeLab(ctx, o.Prefix); err != nil {
		return nil, err
	} else if len(left) > 0 {
		fmt.Fprintf(o.Log, "removed %d namespaces a previous lab left\n", len(left))
	}
	l := &lab{o: o, net: &labNet{prefix: o.Prefix}, start: time.Now(), rnd: rand.New(rand.NewPCG(uint64(o.Seed), 15)),
		ledger: map[string]*labMsg{}}
	l.dir = o.Dir
	if l.dir == "" {
		if l.dir, err = os.MkdirTemp("", "sealpost-lab-"); err != nil {
			return nil, fmt.Errorf("testnet: %w", err)
		}
	} else if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	defer func() {
		// Teardown on a context of its own: ctx may be cancelled.
		tctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		l.stopAll()
		if _, rerr := removeLab(tctx, o.Prefix); rerr != nil {
			err = errors.Join(err, rerr)
		}
		if !o.Keep {
			os.RemoveAll(l.dir)
		} else {
			fmt.Fprintf(o.Log, "homes kept in %s\n", l.dir)
		}
	}()
	stop := l.progress()
	defer stop()
	return l.run(ctx)
}

func (l *lab) note(format string, args ...any) {
	s := fmt.Sprintf("%6.1fs ", time.Since(l.start).Seconds()) + fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.events = append(l.events, s)
	l.mu.Unlock()
	fmt.Fprintln(l.o.Log, s)
}

func (l *lab) progress() func() {
	if l.o.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			all := append(slices.Clone(l.relays), l.nodes...)
			up := 0
			for _, m := range all {
				if m.running() {
					up++
				}
			}
			l.o.Progress(LabProgress{Elapsed: time.Since(l.start), Phase: l.phase.Load(), Up: up, Members: len(all),
				Linked: int(l.linked.Load()), Pairs: l.o.Pairs, Sent: int(l.sentN.Load()), Shown: int(l.shownN.Load())})
		}
	})
	return func() { close(done); wg.Wait() }
}

func (l *lab) run(ctx context.Context) (*LabReport, error) {
	o := l.o
	rep := &LabReport{Pairs: o.Pairs, Relays: o.Relays, NAT: o.NAT, Faults: o.Faults, Seed: o.Seed, Messages: o.Messages}
	if rep.Faults == nil {
		rep.Faults = []string{}
	}

	l.phase.Store("build")
	if err := l.net.build(ctx); err != nil {
		return nil, err
	}
	rep.Netem = l.net.netem
	delay := o.Latency
	if !l.net.netem {
		delay = 0
	}
	rep.LatencyMs = float64(delay.Microseconds()) / 1000
	for j := range o.Relays {
		ns, err := l.net.addRelay(ctx, j, delay)
		if err != nil {
			return nil, err
		}
		l.relays = append(l.relays, &labMember{name: fmt.Sprintf("relay-%d", j), ns: ns, relay: true})
	}
	for k := range o.Pairs {
		ka, kb, _ := pairKinds(o.NAT[k%len(o.NAT)])
		for side, kind := range []string{ka, kb} {
			i := 2*k + side
			ns, err := l.net.addNode(ctx, i, kind, delay)
			if err != nil {
				return nil, err
			}
			l.nodes = append(l.nodes, &labMember{name: fmt.Sprintf("node-%d", i), ns: ns, kind: kind, via: map[string]string{}})
			if kind != NATNone {
				rep.NATed++
			}
		}
	}
	netemNote := "no netem qdisc in this kernel: links have no added latency"
	if l.net.netem {
		netemNote = fmt.Sprintf("netem: %v round trip added to each link", delay)
	}
	l.note("network built: %d relays, %d nodes (%d behind NATs) in namespaces %s-*; %s", o.Relays, len(l.nodes), rep.NATed, o.Prefix, netemNote)

	l.phase.Store("start")
	// Nodes bootstrap from every address of the relays (QUIC and TCP);
	// they add each relay's TCP address, as a user adds the address a
	// relay's operator publishes.
	var boot, relayAddrs []string
	for _, r := range l.relays {
		if err := l.startMember(ctx, r, boot); err != nil {
			return nil, err
		}
		boot = append(boot, r.addrs...)
		relayAddrs = append(relayAddrs, r.addr)
	}
	if err := forEach(l.nodes, procParallel, func(m *labMember) error { return l.startMember(ctx, m, boot) }); err != nil {
		return nil, err
	}
	if err := forEach(l.nodes, procParallel, func(m *labMember) error {
		for _, r := range relayAddrs {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, err := m.client().AddRelay(rctx, r)
			cancel()
			if err != nil {
				return fmt.Errorf("testnet: %s: relays add %s: %w", m.name, r, err)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	for _, m := range l.nodes {
		go l.watch(ctx, m)
	}
	l.note("daemons up: %d relays, %d nodes", len(l.relays), len(l.nodes))
	rep.Reserved = l.waitReservations(ctx)
	l.note("%d of %d nodes behind NATs hold a relay reservation", rep.Reserved, rep.NATed)

	l.phase.Store("pair")
	pairs := make([]LabPair, o.Pairs)
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	idx := make([]int, o.Pairs)
	for k := range idx {
		idx[k] = k
	}
	err := forEach(idx, labParallel, func(k int) error {
		a, b := l.nodes[2*k], l.nodes[2*k+1]
		pairs[k] = LabPair{A: a.name, B: b.name, NAT: a.kind + "/" + b.kind, First: PathNone}
		t0 := time.Now()
		watchers.Go(func() { l.watchDirect(watchCtx, a, b, t0, &pairs[k]) })
		return l.link(ctx, k, a, b, t0, &pairs[k])
	})
	if err != nil {
		stopWatch()
		watchers.Wait()
		return nil, err
	}

	l.phase.Store("send")
	heal, err := l.send(ctx)
	if err != nil {
		stopWatch()
		watchers.Wait()
		return nil, err
	}
	l.phase.Store("heal")
	if err := heal(); err != nil {
		stopWatch()
		watchers.Wait()
		return nil, err
	}
	l.phase.Store("drain")
	l.drain(ctx)
	stopWatch()
	watchers.Wait()
	l.phase.Store("check")
	if err := l.check(ctx, rep, pairs); err != nil {
		return nil, err
	}
	rep.Seconds = time.Since(l.start).Seconds()
	l.mu.Lock()
	rep.Events = slices.Clone(l.events)
	l.mu.Unlock()
	return rep, nil
}

// startMember initializes m's home if needed and starts its daemon in its
// namespace.
func (l *lab) startMember(ctx context.Context, m *labMember, boot []string) error {
	if m.home == "" {
		m.home = filepath.Join(l.dir, m.name)
		profile := "personal"
		if m.relay {
			profile = "relay"
		}
		ictx, cancel := context.WithTimeout(ctx, initTimeout)
		defer cancel()
		cmd := exec.CommandContext(ictx, l.o.Binary, "--home", m.home, "init", "--no-passphrase", "--profile", profile, "--name", m.name)
		cmd.Env = environ()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("testnet: init %s: %v: %s", m.name, err, lastLine(out.String()))
		}
		m.args = []string{l.o.Binary, "--home", m.home, "daemon", "--no-mdns", "--lab-addressing",
			"--listen", fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", labPort), "--listen", fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", labPort)}
		for _, b := range boot {
			m.args = append(m.args, "--bootstrap", b)
		}
		if l.o.LogLevel != "" {
			m.args = append(m.args, "--log-level", l.o.LogLevel)
		}
	}
	if err := m.startDaemon(ctx, l.net); err != nil {
		return err
	}
	if m.relay {
		m.addr, m.addrs = "", nil
		info, err := m.client().ID(ctx)
		if err != nil {
			return fmt.Errorf("testnet: %s: %w", m.name, err)
		}
		for _, a := range info.Addrs {
			if !strings.HasPrefix(a, "/ip4/198.18.0.") || strings.Contains(a, "/p2p-circuit") {
				continue
			}
			m.addrs = append(m.addrs, a)
			if strings.Contains(a, "/tcp/") {
				m.addr = a
			}
		}
		if m.addr == "" {
			return fmt.Errorf("testnet: %s shows no public TCP address: %v", m.name, info.Addrs)
		}
	}
	return nil
}

// startDaemon starts m's daemon in its namespace and waits for its API.
func (m *labMember) startDaemon(ctx context.Context, n *labNet) error {
	logf, err := os.OpenFile(filepath.Join(m.home, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("testnet: %s: %w", m.name, err)
	}
	defer logf.Close()
	cmd := n.command(m.ns, m.args...)
	cmd.Env = environ()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C on the terminal reaches the lab,
	// which stops the daemons in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testnet: start %s: %w", m.name, err)
	}
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		exited <- err
		close(done)
	}()
	m.mu.Lock()
	m.cmd, m.exited = cmd, done
	m.mu.Unlock()
	info, err := waitReady(ctx, home.Home{Dir: m.home}, exited)
	if err != nil {
		m.signal(syscall.SIGKILL)
		return fmt.Errorf("testnet: %s: %w (log: %s)", m.name, err, filepath.Join(m.home, "daemon.log"))
	}
	m.mu.Lock()
	m.peerID = info.PeerID
	m.mu.Unlock()
	return nil
}

func (m *labMember) client() *api.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		if c, err := api.Dial(home.Home{Dir: m.home}); err == nil {
			m.c = c
		} else {
			return api.NewUnixClient(filepath.Join(m.home, "api.sock"))
		}
	}
	return m.c
}

func (m *labMember) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.exited == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

func (m *labMember) signal(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil && m.cmd.Process != nil {
		m.cmd.Process.Signal(sig)
	}
}

// stop ends m's daemon: SIGTERM, then SIGKILL after StopTimeout.
func (m *labMember) stop() {
	m.mu.Lock()
	done := m.exited
	m.mu.Unlock()
	if done == nil {
		return
	}
	m.signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(StopTimeout):
		m.signal(syscall.SIGKILL)
		<-done
	}
}

// kill ends m's daemon with SIGKILL, as a crash or power loss does.
func (m *labMember) kill() {
	m.mu.Lock()
	done := m.exited
	m.mu.Unlock()
	if done == nil {
		return
	}
	m.signal(syscall.SIGKILL)
	<-done
}

func (l *lab) stopAll() {
	all := append(slices.Clone(l.nodes), l.relays...)
	forEach(all, len(all)+1, func(m *labMember) error { m.stop(); return nil })
}

// watch records, from m's event stream, how each message reached m (the
// via of message.received); it subscribes again after m restarts.
func (l *lab) watch(ctx context.Context, m *labMember) {
	for ctx.Err() == nil {
		err := m.client().Events(ctx, func(ev api.Event) error {
			if ev.Type != messaging.EventMessageReceived {
				return nil
			}
			var msg messaging.Message
			if json.Unmarshal(ev.Data, &msg) == nil {
				m.mu.Lock()
				if _, ok := m.via[msg.Text]; !ok {
					m.via[msg.Text] = msg.Via
				}
				m.mu.Unlock()
			}
			return nil
		})
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(labPoll):
		}
	}
}

// waitReservations waits, at most labReserveWait, until every node behind
// a NAT shows a circuit address, and returns how many do.
func (l *lab) waitReservations(ctx context.Context) int {
	deadline := time.Now().Add(labReserveWait)
	for {
		n := 0
		for _, m := range l.nodes {
			if m.kind == NATNone {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			info, err := m.client().ID(rctx)
			cancel()
			if err == nil && slices.ContainsFunc(info.Addrs, func(a string) bool { return strings.Contains(a, "/p2p-circuit") }) {
				n++
			}
		}
		nated := 0
		for _, m := range l.nodes {
			if m.kind != NATNone {
				nated++
			}
		}
		if n == nated || time.Now().After(deadline) || ctx.Err() != nil {
			return n
		}
		time.Sleep(time.Second)
	}
}

// text is the body of message i of pair k from a to b: the lab finds it
// in histories by it.
func labText(k, i int, from, to *labMember) string {
	return fmt.Sprintf("lab pair %d message %d from %s to %s", k, i, from.name, to.name)
}

// link makes a and b contacts by b's invite and sends the first message
// each way; the first (a to b) is the pair's first message.
func (l *lab) link(ctx context.Context, k int, a, b *labMember, t0 time.Time, p *LabPair) error {
	rctx, cancel := context.WithTimeout(ctx, labFirstWait)
	defer cancel()
	inv, err := b.client().Invite(rctx)
	if err != nil {
		return fmt.Errorf("testnet: %s: invite: %w", b.name, err)
	}
	if _, err := a.client().AddContact(rctx, inv.Link, b.name); err != nil {
		return fmt.Errorf("testnet: %s: contact add %s's invite: %w", a.name, b.name, err)
	}
	first := labText(k, 0, a, b)
	if !l.sendText(rctx, k, a, b, first) {
		return fmt.Errorf("testnet: %s: the first message to %s was not accepted", a.name, b.name)
	}
	// The first message is B's contact request, accepted by the invite:
	// B names A after A's card.
	at, how := l.waitShown(rctx, b, first)
	if at.IsZero() {
		l.note("pair %d (%s): the first message did not arrive within %v", k, p.NAT, labFirstWait)
		return nil
	}
	p.FirstMs = float64(at.Sub(t0).Microseconds()) / 1000
	p.First = classify(how, a, b)
	l.linked.Add(1)
	l.sendText(rctx, k, b, a, labText(k, 1, b, a))
	return nil
}

// classify names the path of a message that arrived via how.
func classify(how string, a, b *labMember) string {
	switch how {
	case messaging.ViaDirect:
		if a.kind != NATNone && b.kind != NATNone {
			return PathHolePunched
		}
		return PathDirect
	case messaging.ViaRelayed:
		return PathRelayed
	case messaging.ViaMailbox:
		return PathMailbox
	}
	return PathNone
}

// waitShown waits until m's history shows text and returns when m
// committed it and how it arrived.
func (l *lab) waitShown(ctx context.Context, m *labMember, text string) (time.Time, string) {
	for ctx.Err() == nil {
		var at time.Time
		cursor := uint64(0)
		for {
			page, err := m.client().Inbox(ctx, cursor, 500)
			if err != nil {
				break
			}
			for _, msg := range page.Messages {
				if msg.Text == text {
					at = msg.ReceivedAt
				}
			}
			if len(page.Messages) == 0 || page.Cursor == cursor {
				break
			}
			cursor = page.Cursor
		}
		if !at.IsZero() {
			// The event may trail the commit a little.
			for range 40 {
				m.mu.Lock()
				how := m.via[text]
				m.mu.Unlock()
				if how != "" {
					return at, how
				}
				time.Sleep(50 * time.Millisecond)
			}
			return at, ""
		}
		select {
		case <-ctx.Done():
		case <-time.After(labPoll / 2):
		}
	}
	return time.Time{}, ""
}

// sendText sends one message of pair k and records it.
func (l *lab) sendText(ctx context.Context, k int, from, to *labMember, text string) bool {
	msg := &labMsg{pair: k, from: from, to: to}
	l.mu.Lock()
	l.ledger[text] = msg
	l.mu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := from.client().Send(sctx, to.name, text)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.sendErr++
		fmt.Fprintf(l.o.Log, "%s: send to %s: %v\n", from.name, to.name, err)
		return false
	}
	msg.sent = true
	l.sentN.Add(1)
	return true
}

// watchDirect polls a's connections until a direct (not relayed) one to
// b appears, and records when.
func (l *lab) watchDirect(ctx context.Context, a, b *labMember, t0 time.Time, p *LabPair) {
	b.mu.Lock()
	bid := b.peerID
	b.mu.Unlock()
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		peers, err := a.client().Peers(rctx)
		cancel()
		if err == nil {
			for _, pi := range peers {
				if pi.PeerID == bid && !pi.Limited {
					p.Direct = true
					p.DirectMs = float64(time.Since(t0).Microseconds()) / 1000
					return
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(labPoll):
		}
	}
}

// send runs the message phase with its faults and returns the function
// that heals what is still broken.
func (l *lab) send(ctx context.Context) (func() error, error) {
	o := l.o
	type sendStep struct {
		at   time.Duration
		k, i int
		fwd  bool
	}
	var steps []sendStep
	for k := range o.Pairs {
		for i := range o.Messages {
			at := time.Duration(l.rnd.Int64N(int64(o.Duration) + 1))
			steps = append(steps, sendStep{at: at, k: k, i: i + 2, fwd: i%2 == 0})
		}
	}
	slices.SortFunc(steps, func(a, b sendStep) int { return int(a.at - b.at) })

	type fault struct {
		at time.Duration
		do func() error
	}
	var faults []fault
	var offline []*labMember
	var down sync.Map // *labMember -> true while stopped
	if slices.Contains(o.Faults, LabOffline) {
		for k := range o.Pairs {
			if k%4 == 3 || (o.Pairs < 4 && k == 0) {
				offline = append(offline, l.nodes[2*k+1])
			}
		}
		faults = append(faults, fault{o.Duration / 4, func() error {
			for _, m := range offline {
				down.Store(m, true)
			}
			forEach(offline, procParallel, func(m *labMember) error { m.stop(); return nil })
			l.note("offline: %s stopped", names(offline))
			return nil
		}}, fault{3 * o.Duration / 4, func() error {
			err := forEach(offline, procParallel, func(m *labMember) error { return m.startDaemon(ctx, l.net) })
			for _, m := range offline {
				down.Delete(m)
			}
			l.note("offline: %s back", names(offline))
			return err
		}})
	}
	if slices.Contains(o.Faults, LabFlushNAT) {
		var nated []*labMember
		for i, m := range l.nodes {
			if m.kind != NATNone && (i%3 == 0) {
				nated = append(nated, m)
			}
		}
		faults = append(faults, fault{o.Duration / 2, func() error {
			for _, m := range nated {
				var i int
				fmt.Sscanf(m.name, "node-%d", &i)
				if err := l.net.flushNAT(ctx, i); err != nil {
					return err
				}
			}
			l.note("flush-nat: the routers of %s forgot their mappings", names(nated))
			return nil
		}})
	}
	relayDown := false
	if slices.Contains(o.Faults, LabKillRelay) {
		r := l.relays[0]
		faults = append(faults, fault{o.Duration / 3, func() error {
			r.kill()
			relayDown = true
			l.note("kill-relay: %s killed (SIGKILL)", r.name)
			return nil
		}}, fault{2 * o.Duration / 3, func() error {
			if err := r.startDaemon(ctx, l.net); err != nil {
				return err
			}
			relayDown = false
			l.note("kill-relay: %s started again", r.name)
			return nil
		}})
	}
	slices.SortFunc(faults, func(a, b fault) int { return int(a.at - b.at) })

	start := time.Now()
	var sends sync.WaitGroup
	sem := make(chan struct{}, 8)
	fi := 0
	for _, s := range steps {
		for fi < len(faults) && faults[fi].at <= s.at {
			sends.Wait()
			if err := sleepUntil(ctx, start.Add(faults[fi].at)); err != nil {
				return nil, err
			}
			if err := faults[fi].do(); err != nil {
				return nil, err
			}
			fi++
		}
		if err := sleepUntil(ctx, start.Add(s.at)); err != nil {
			return nil, err
		}
		a, b := l.nodes[2*s.k], l.nodes[2*s.k+1]
		from, to := a, b
		if !s.fwd {
			from, to = b, a
		}
		if _, off := down.Load(from); off {
			from, to = to, from // an offline node sends nothing: its contact does
		}
		text := labText(s.k, s.i, from, to)
		sem <- struct{}{}
		sends.Go(func() {
			defer func() { <-sem }()
			l.sendText(ctx, s.k, from, to, text)
		})
	}
	sends.Wait()
	for ; fi < len(faults); fi++ {
		if err := sleepUntil(ctx, start.Add(faults[fi].at)); err != nil {
			return nil, err
		}
		if err := faults[fi].do(); err != nil {
			return nil, err
		}
	}
	if err := sleepUntil(ctx, start.Add(o.Duration)); err != nil {
		return nil, err
	}
	return func() error {
		// Whatever is still down comes back.
		var back []*labMember
		down.Range(func(k, _ any) bool { back = append(back, k.(*labMember)); return true })
		if relayDown {
			back = append(back, l.relays[0])
		}
		return forEach(back, procParallel, func(m *labMember) error { return m.startDaemon(ctx, l.net) })
	}, nil
}

func names(ms []*labMember) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.name)
	}
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

// shown reads every node's history and counts, per message of the ledger,
// how often its recipient shows it.
func (l *lab) shown(ctx context.Context) (map[string]int, error) {
	counts := map[string]int{}
	var mu sync.Mutex
	err := forEach(l.nodes, procParallel, func(m *labMember) error {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := m.client().AllInbox(rctx, 0, func(msg messaging.Message) error {
			if !strings.HasSuffix(msg.Text, " to "+m.name) || msg.Outgoing {
				return nil
			}
			mu.Lock()
			counts[msg.Text]++
			mu.Unlock()
			return nil
		})
		if err != nil {
			return fmt.Errorf("testnet: %s: inbox: %w", m.name, err)
		}
		return nil
	})
	return counts, err
}

// drain waits, at most Options.Drain, until every sent message is shown.
func (l *lab) drain(ctx context.Context) {
	deadline := time.Now().Add(l.o.Drain)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		counts, err := l.shown(ctx)
		if err == nil {
			l.mu.Lock()
			missing, shown := 0, 0
			for text, msg := range l.ledger {
				if msg.sent && counts[text] == 0 {
					missing++
				} else if msg.sent {
					shown++
				}
			}
			l.mu.Unlock()
			l.shownN.Store(int32(shown))
			if missing == 0 {
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// check fills the report from the nodes' histories.
func (l *lab) check(ctx context.Context, rep *LabReport, pairs []LabPair) error {
	counts, err := l.shown(ctx)
	if err != nil {
		return err
	}
	l.mu.Lock()
	for text, msg := range l.ledger {
		p := &pairs[msg.pair]
		if !msg.sent {
			continue
		}
		p.Sent++
		rep.Sent++
		switch n := counts[text]; {
		case n == 0:
			p.Lost++
			rep.Lost++
			l.events = append(l.events, "lost: "+text)
		case n > 1:
			p.Duplicated++
			rep.Duplicated++
			p.Delivered++
			rep.Delivered++
		default:
			p.Delivered++
			rep.Delivered++
		}
	}
	rep.SendErrors = l.sendErr
	l.mu.Unlock()
	var first, upgrade []time.Duration
	for _, p := range pairs {
		switch p.First {
		case PathDirect:
			rep.Direct++
		case PathHolePunched:
			rep.HolePunched++
		case PathRelayed:
			rep.Relayed++
		case PathMailbox:
			rep.ViaMailbox++
		default:
			rep.NotArrived++
		}
		if p.First != PathNone {
			first = append(first, time.Duration(p.FirstMs*float64(time.Millisecond)))
		}
		if p.Direct {
			rep.Upgraded++
			upgrade = append(upgrade, time.Duration(p.DirectMs*float64(time.Millisecond)))
		}
	}
	rep.FirstMessageMs = percentiles(first)
	rep.UpgradeMs = percentiles(upgrade)
	rep.List = pairs
	return nil
}
