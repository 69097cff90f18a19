package testnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/internal/clock"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/store"
)

// Options describe a run. Each zero field takes the default named.
type Options struct {
	// Nodes is the number of personal nodes. Default 10.
	Nodes int
	// Relays is the number of relays (zero: none; the command's default
	// is 2).
	Relays int
	// Messages is the number of scenario messages. Default 200.
	Messages int
	// Contacts is the average number of contacts of a node. Default 4.
	Contacts int
	// Offline is the fraction of nodes that are down while the messages
	// are sent; they come back when the send phase ends.
	Offline float64
	// Chaos names the faults to inject (KillRelay, ...; ParseChaos).
	Chaos []string
	// Groups is the number of group chats (zero: none); GroupSize their
	// members (default 5, at most Nodes); GroupMessages the group
	// messages of the scenario (default 20 per group). Groups need a
	// relay: each lives on a relay of its admin's.
	Groups, GroupSize, GroupMessages int
	// Duration spreads the sends evenly over this time. Default 10 s.
	Duration time.Duration
	// Drain bounds the wait, once the network has healed, for every
	// message to arrive and every outbox to empty. Default 2 min.
	Drain time.Duration
	// Seed decides the scenario: the same seed gives the same contacts,
	// offline nodes, messages and faults.
	Seed int64
	// TCP makes every host listen on TCP only. By default hosts listen on
	// QUIC and TCP, as a user's node does, and libp2p dials QUIC first:
	// one UDP socket per host, where TCP takes a descriptor per
	// connection (and per end, in one process).
	TCP bool
	// Dir is where the network's stores go (in a new directory, removed
	// afterwards unless Keep). Default: the system's temporary directory.
	Dir  string
	Keep bool
	// Logger receives the harness's logs and, at debug level, the nodes'.
	// Zero: discarded.
	Logger *slog.Logger
	// Progress, if set, is called about every ProgressEvery while the run
	// goes on. It must not block.
	Progress func(Progress)
}

// ErrBadOptions is wrapped by the errors of options that Run refuses.
var ErrBadOptions = errors.New("testnet: bad options")

// Limits of Options.
const (
	MaxNodes    = 5000
	MaxRelays   = 64
	MaxMessages = 1_000_000
)

// ProgressEvery is the period of Options.Progress.
const ProgressEvery = 250 * time.Millisecond

func (o Options) withDefaults() (Options, error) {
	if o.Nodes == 0 {
		o.Nodes = 10
	}
	if o.Messages == 0 {
		o.Messages = 200
	}
	if o.Contacts == 0 {
		o.Contacts = 4
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Drain == 0 {
		o.Drain = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Groups > 0 && o.GroupSize == 0 {
		o.GroupSize = 5
	}
	if o.Groups > 0 && o.GroupMessages == 0 {
		o.GroupMessages = 20 * o.Groups
	}
	switch {
	case o.Groups < 0 || o.Groups > MaxGroups:
		return o, fmt.Errorf("%w: %d groups: want 0 to %d", ErrBadOptions, o.Groups, MaxGroups)
	case o.Groups > 0 && o.Relays == 0:
		return o, fmt.Errorf("%w: groups need at least one relay", ErrBadOptions)
	case o.Groups > 0 && (o.GroupSize < 2 || o.GroupSize > groups.MaxMembers):
		return o, fmt.Errorf("%w: groups of %d: want 2 to %d members", ErrBadOptions, o.GroupSize, groups.MaxMembers)
	case o.GroupMessages < 0 || o.GroupMessages > MaxGroupMessages:
		return o, fmt.Errorf("%w: %d group messages: want 0 to %d", ErrBadOptions, o.GroupMessages, MaxGroupMessages)
	}
	switch {
	case o.Nodes < 2 || o.Nodes > MaxNodes:
		return o, fmt.Errorf("%w: %d nodes: want 2 to %d", ErrBadOptions, o.Nodes, MaxNodes)
	case o.Relays < 0 || o.Relays > MaxRelays:
		return o, fmt.Errorf("%w: %d relays: want 0 to %d", ErrBadOptions, o.Relays, MaxRelays)
	case o.Messages < 0 || o.Messages > MaxMessages:
		return o, fmt.Errorf("%w: %d messages: want 0 to %d", ErrBadOptions, o.Messages, MaxMessages)
	case o.Contacts < 1 || o.Contacts >= o.Nodes+o.Nodes:
		return o, fmt.Errorf("%w: %d contacts per node: want 1 to %d", ErrBadOptions, o.Contacts, 2*o.Nodes-1)
	case !(o.Offline >= 0 && o.Offline < 1):
		return o, fmt.Errorf("%w: offline fraction %v: want at least 0 and below 1", ErrBadOptions, o.Offline)
	case o.Duration < 0 || o.Drain < 0:
		return o, fmt.Errorf("%w: negative duration", ErrBadOptions)
	}
	chaos, err := ParseChaos(o.Chaos)
	if err != nil {
		return o, err
	}
	if slices.Contains(chaos, KillRelay) && o.Relays == 0 {
		return o, fmt.Errorf("%w: %s needs at least one relay", ErrBadOptions, KillRelay)
	}
	o.Chaos = chaos
	return o, nil
}

// Progress is a run's state while it goes on.
type Progress struct {
	Phase   string
	Elapsed time.Duration
	// Sent and Shown count scenario messages; Messages is their total.
	Sent, Shown, Messages int
	// Up is the number of members (nodes and relays) running, of Members.
	Up, Members int
	// GroupsReady counts the groups every member has joined, of Groups;
	// GroupSent the group messages sent, of GroupMessages.
	GroupsReady, Groups, GroupSent, GroupMessages int
}

// Phases of a run, as Progress.Phase shows them.
const (
	PhaseStart = "start"
	PhaseWire  = "wire"
	PhaseSend  = "send"
	PhaseHeal  = "heal"
	PhaseDrain = "drain"
	PhaseCheck = "check"
)

// Report is the outcome of a run.
type Report struct {
	Nodes    int      `json:"nodes"`
	Relays   int      `json:"relays"`
	Messages int      `json:"messages"`
	Offline  float64  `json:"offline"`
	Chaos    []string `json:"chaos"`
	Seed     int64    `json:"seed"`

	// Sent is the number of scenario messages Send accepted; Delivered
	// those the recipient's history shows; Lost those it does not
	// (Sent-Delivered); Duplicated those it shows more than once.
	Sent       int `json:"sent"`
	Delivered  int `json:"delivered"`
	Lost       int `json:"lost"`
	Duplicated int `json:"duplicated"`
	// SendErrors counts Send calls that failed (the message was not sent).
	SendErrors int `json:"send_errors"`
	// Stray counts messages in a history that no scenario message
	// explains (wrong recipient or sender).
	Stray int `json:"stray"`

	// Latency, in milliseconds, from Send to the recipient's commit:
	// Direct for recipients up when the message was sent, ViaRelay for
	// recipients down then (counted from their return).
	Latency struct {
		Direct   Percentiles `json:"direct"`
		ViaRelay Percentiles `json:"via_relay"`
	} `json:"latency_ms"`

	// RelayStoredBytes is the most the relays held at once, summed over
	// the relays (envelopes and their records, as the relays count them).
	RelayStoredBytes int64 `json:"relay_stored_bytes"`

	// DHTLookups and DHTPublishes count the address record lookups and
	// publications in the DHT of every member over the whole run (their
	// sealpost_addr_record_lookup_total and _publish_total). A node looks
	// a contact's device up only when the addresses it knows fail.
	DHTLookups   int64 `json:"dht_lookups"`
	DHTPublishes int64 `json:"dht_publishes"`

	// CPUTimeSeconds is the process's user and system time; PeakMemory
	// its peak resident set; PeakGoroutines the most goroutines seen.
	CPUTimeSeconds  float64 `json:"cpu_time_seconds"`
	PeakMemoryBytes int64   `json:"peak_memory_bytes"`
	PeakGoroutines  int     `json:"peak_goroutines"`
	// CPUSeconds is the process's CPU time in each phase.
	CPUSeconds struct {
		Start float64 `json:"start"`
		Wire  float64 `json:"wire"`
		Send  float64 `json:"send"`
		Drain float64 `json:"drain"`
	} `json:"cpu_seconds"`
	// Seconds is the wall time of each phase and in all.
	Seconds struct {
		Start float64 `json:"start"`
		Wire  float64 `json:"wire"`
		Send  float64 `json:"send"`
		Drain float64 `json:"drain"`
		Total float64 `json:"total"`
	} `json:"seconds"`

	// Faults is what the chaos did, in order.
	Faults []string `json:"faults"`
	// StreamsReset counts the streams Drop reset.
	StreamsReset int64 `json:"streams_reset"`
	// LostMessages lists the first lost messages.
	LostMessages []string `json:"lost_messages,omitempty"`
	// FDLimit is the soft limit of open files the run had.
	FDLimit uint64 `json:"fd_limit"`
	// Groups is what the group chats delivered (nil without groups).
	Groups *GroupReport `json:"groups,omitempty"`
}

// OK reports whether nothing was lost, duplicated or refused, and no
// group forked.
func (r *Report) OK() bool {
	ok := r.Lost == 0 && r.Duplicated == 0 && r.SendErrors == 0 && r.Stray == 0 && r.Delivered == r.Sent
	if g := r.Groups; g != nil {
		ok = ok && g.Lost == 0 && g.Duplicated == 0 && g.Forks == 0 && g.SendErrors == 0 && g.Unreadable == 0 &&
			g.Delivered == g.Expected
	}
	return ok
}

// maxListed bounds Report.LostMessages.
const maxListed = 20

// RaiseFileLimit raises the soft limit of open files to the hard limit
// and returns the soft limit in force afterwards. Each node holds a few
// descriptors per connection and store, so a large network needs many.
func RaiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, err
		}
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, err
		}
	}
	return l.Cur, nil
}

// usage returns the process's CPU time and peak resident set.
func usage() (cpu time.Duration, peak int64) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Maxrss * 1024
}

// Run builds an in-process network as o describes, runs its scenario, and
// reports. The error is for a run that could not be carried out (a node
// that does not start, a contact that cannot be made); lost or duplicated
// messages are in the report (Report.OK).
func Run(ctx context.Context, o Options) (*Report, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	limit, err := RaiseFileLimit()
	if err != nil {
		return nil, fmt.Errorf("testnet: raise the open-file limit: %w", err)
	}
	work, err := workDir(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	if !o.Keep {
		defer os.RemoveAll(work)
	} else {
		o.Logger.Info("keeping the network's stores", "dir", work)
	}
	cpu0, _ := usage()
	nw := newNetwork(o, work)
	rep, err := nw.run(ctx)
	stopErr := nw.stopAll()
	if err != nil {
		return nil, err
	}
	if stopErr != nil {
		o.Logger.Warn("stopping the network", "err", stopErr)
	}
	cpu1, peak := usage()
	rep.CPUTimeSeconds = (cpu1 - cpu0).Seconds()
	rep.PeakMemoryBytes = peak
	rep.FDLimit = limit
	return rep, nil
}

// cluster is an in-process network of members.
type cluster struct {
	o      Options
	work   string
	log    *slog.Logger
	plan   *plan
	ledger *ledger
	relays []*member
	nodes  []*member
	cut    *cut
	drop   *dropper

	start   time.Time
	phase   atomicString
	faults  []string
	faultMu sync.Mutex
	peakG   int
	// relayBytes is the most the relays held at once (progress samples).
	relayBytes int64
	// groups is the run's group chats (nil without), made with the plan.
	groups *groupRun
	// personal, if set, changes the configuration of every personal node
	// (benchmarks that need a user's limits, not the test profile's).
	personal func(*node.Config)
}

func newNetwork(o Options, work string) *cluster {
	p := newPlan(o)
	nw := &cluster{
		o:      o,
		work:   work,
		log:    o.Logger,
		plan:   p,
		ledger: newLedger(p),
		cut:    newCut(),
		drop:   newDropper(o.Seed),
		groups: newGroupRun(p),
	}
	for j := range o.Relays {
		m := &member{net: nw, name: fmt.Sprintf("relay-%d", j), index: j, relay: true, side: p.relaySide[j]}
		m.dir = memberDir(work, m.name)
		m.gater = &gater{cut: nw.cut, side: m.side}
		nw.relays = append(nw.relays, m)
	}
	for i := range o.Nodes {
		m := &member{net: nw, name: fmt.Sprintf("node-%d", i), index: i, side: p.side[i], skew: p.skew[i]}
		m.dir = memberDir(work, m.name)
		m.gater = &gater{cut: nw.cut, side: m.side}
		nw.nodes = append(nw.nodes, m)
	}
	return nw
}

// Messaging options of every node: retries sooner than a user's node
// (1 s to 10 min), so that a scenario of a minute sees several retries and
// its drain is bounded.
var testMessaging = messaging.Options{
	RetryMin:    250 * time.Millisecond,
	RetryMax:    3 * time.Second,
	DialTimeout: 5 * time.Second,
	AckTimeout:  10 * time.Second,
}

// nodeConfig returns the node configuration of m.
func (nw *cluster) nodeConfig(m *member) (node.Config, error) {
	cfg, err := node.Defaults(node.Test)
	if err != nil {
		return cfg, err
	}
	cfg.Listen = nw.listen()
	cfg.Clock = clock.Offset(m.skew)
	cfg.ConnGater = m.gater
	cfg.Logger = nw.log.With("member", m.name)
	cfg.Messaging = testMessaging
	cfg.Groups = testGroups
	if slices.Contains(nw.o.Chaos, Drop) {
		cfg.WrapStream = nw.drop.wrap
	}
	if m.relay {
		// A community relay, as `sealpost daemon --relay-service` runs
		// it: node.New runs the relay service (node/relay, with its
		// default resources) and circuit relay v2 on the node's own host,
		// over its store, and serves the DHT.
		cfg.RelayService = true
		cfg.Relay = relay.DefaultResources()
		cfg.DHTMode = node.DHTServer
		// Its connection and resource limits are the relay profile's,
		// raised as an operator would for a relay that every node of the
		// network uses: each node's device host, mailbox host and
		// deposit hosts connect to its relays.
		rp, err := node.Defaults(node.Relay)
		if err != nil {
			return cfg, err
		}
		n := nw.o.Nodes
		cfg.ConnLow = max(rp.ConnLow, 4*n+64)
		cfg.ConnHigh = max(rp.ConnHigh, 8*n+128)
		cfg.MaxFDs = max(rp.MaxFDs, 4*cfg.ConnHigh)
		cfg.MaxMemory = rp.MaxMemory
	} else {
		// A personal node on loopback finds no public address, so it
		// stays a DHT client, as it would behind a NAT; the relays serve
		// the DHT.
		cfg.DHTMode = node.DHTClient
		if nw.personal != nil {
			nw.personal(&cfg)
		}
	}
	// Every member bootstraps from the other relays that have started
	// (not from itself: start holds m.mu, which m.addrs takes).
	for _, r := range nw.relays {
		if r == m {
			continue
		}
		if a := r.addrs(); len(a) > 0 {
			cfg.Bootstrap = append(cfg.Bootstrap, a[0])
		}
	}
	return cfg, nil
}

// listen returns the listen addresses of a new member: QUIC and TCP, or
// TCP with Options.TCP.
func (nw *cluster) listen() []string {
	if nw.o.TCP {
		return []string{"/ip4/127.0.0.1/tcp/0"}
	}
	return []string{"/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0"}
}

// note records a fault action for the report.
func (nw *cluster) note(format string, args ...any) {
	s := fmt.Sprintf("%6.1fs ", time.Since(nw.start).Seconds()) + fmt.Sprintf(format, args...)
	nw.faultMu.Lock()
	nw.faults = append(nw.faults, s)
	nw.faultMu.Unlock()
	nw.log.Info("fault", "what", s)
}

// members returns the relays and the nodes.
func (nw *cluster) members() []*member {
	return append(slices.Clone(nw.relays), nw.nodes...)
}

// stopAll stops every member that is up.
func (nw *cluster) stopAll() error {
	var errs []error
	var mu sync.Mutex
	forEach(nw.members(), 16, func(m *member) error {
		if err := m.stop(); err != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("%s: %w", m.name, err))
			mu.Unlock()
		}
		return nil
	})
	return errors.Join(errs...)
}

// forEach runs f on every element of xs, at most par at once, and returns
// the first error.
func forEach[T any](xs []T, par int, f func(T) error) error {
	sem := make(chan struct{}, par)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for _, x := range xs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(x); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// sample keeps the peak goroutine count and the most the relays hold.
func (nw *cluster) sample() {
	nw.peakG = max(nw.peakG, runtime.NumGoroutine())
	var sum int64
	for _, r := range nw.relays {
		st := r.store()
		if st == nil {
			continue
		}
		st.View(context.Background(), func(tx *store.Tx) error {
			t, err := tx.Relay().Totals()
			if err == nil {
				sum += int64(t.EnvelopeBytes + t.BlobBytes)
			}
			return nil
		})
	}
	nw.relayBytes = max(nw.relayBytes, sum)
}

// atomicString is a string set by one goroutine and read by others.
type atomicString struct {
	mu sync.Mutex
	s  string
}

func (a *atomicString) Store(s string) {
	a.mu.Lock()
	a.s = s
	a.mu.Unlock()
}

func (a *atomicString) Load() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.s
}
