package testnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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
