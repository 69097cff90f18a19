package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sealpost/sealpost/node/api"
	"github.com/sealpost/sealpost/node/testnet"
)

// testnetCommand is `sealpost testnet run | up | down | env | status`:
// local multi-node networks (package node/testnet).
func (c *cli) testnetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "testnet run | up | down | env I | status",
		Short: "Local multi-node networks: scenarios with faults, or daemons to drive by hand",
		Long: `Build a whole sealpost network on this machine.

  testnet run      an in-process network of nodes and relays on loopback, each
                   with its own store, wired by invites; it sends messages while
                   nodes are offline and faults are injected, heals, and reports
                   what every recipient shows (exit 2 if anything was lost or
                   shown twice)
  testnet up       real daemon processes of this binary on loopback ports, each
                   with its own home under --dir; relays first, nodes
                   bootstrapped from them and receiving through them
  testnet env I    the SEALPOST_HOME=... line of member I (a node's number, or a
                   name such as relay-0), to drive it with the normal CLI:
                   export $(sealpost testnet env 3)
  testnet status   each member: running or not, and its own status
  testnet down     stop every daemon of the network (SIGTERM, then SIGKILL after
                   20 s); the homes stay for inspection
  testnet lab      (root) daemons in network namespaces behind NAT routers, with
                   relays on a private internet: hole punching, relayed
                   connections and mailboxes, measured`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(c.testnetRunCommand(), c.testnetUpCommand(), c.testnetDownCommand(),
		c.testnetEnvCommand(), c.testnetStatusCommand(), c.testnetLabCommand())
	return cmd
}

func (c *cli) testnetRunCommand() *cobra.Command {
	var (
		o        testnet.Options
		chaos    []string
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run a scenario on an in-process network and report what arrived",
		Long: `Run a scenario on an in-process network: --nodes personal nodes and --relays
relays, each a libp2p host on 127.0.0.1 with its own badger store in a
temporary directory. Each node receives through up to two relays, and contacts
are made by invite as users make them. Then --offline of the nodes go down,
--messages messages are sent over --duration from random online nodes to
random contacts while the --chaos faults happen, the network heals (offline
nodes come back, faults end), and the run waits at most --drain for every
message to arrive and every outbox to empty.

Faults (--chaos, comma-separated or repeated):
  kill-relay      a relay is dropped without a clean shutdown a third of the
                  way in, and started again from its store at two thirds
  restart-nodes   a tenth of the online nodes restart halfway, right after
                  sending to offline contacts (with messages queued)
  partition       the network is cut in two halves (a connection gater) from
                  a fifth to three fifths of the way
  drop            during the send phase, each read or write on a message
                  stream resets the stream with a 2% chance
  clock-skew      a fifth of the nodes run clocks 2 to 4.5 minutes off (within
                  the 5 minutes of clock tolerance)
  admin-race      with --groups: the two admins of every group commit at once
                  (an update each) at two fifths and four fifths of the way

Groups (--groups G --group-size S): G group chats of S members drawn from
the nodes, each on a relay of its admin's, with a second admin; the admin
adds the members it needs as contacts. --group-messages group messages
(default 20 per group) go out from random online members during the send
phase, with the faults. The report adds their deliveries (per member), lost,
duplicated, the admins' commits accepted and refused (a refused one is made
again), and forks: groups whose members hold different states of one epoch
(must be 0).

The report: sent, delivered (shown in the recipient's history), lost,
duplicated (shown twice), latency p50/p95/p99 of direct messages and of
messages to nodes that were offline (counted from their return), relay stored
bytes, address record lookups and publications in the DHT, CPU time and peak
memory. The same --seed gives the same scenario.
Progress goes to standard error. Exit status 2 if any message was lost or
duplicated, or a group forked.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.Chaos, err = testnet.ParseChaos(chaos); err != nil {
				return userError(err)
			}
			if logLevel != "" {
				var level slog.Level
				if err := level.UnmarshalText([]byte(logLevel)); err != nil {
					return userErrorf("bad --log-level %q: want debug, info, warn or error", logLevel)
				}
				o.Logger = slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))
			}
			p := newProgress(c.stderr)
			o.Progress = p.show
			rep, err := testnet.Run(cmd.Context(), o)
			p.done()
			if errors.Is(err, testnet.ErrBadOptions) {
				return userError(err)
			}
			if err != nil {
				return err
			}
			if err := c.print(rep, func(w io.Writer) { printReport(w, rep) }); err != nil {
				return err
			}
			if !rep.OK() {
				return &exitError{code: api.ExitInternal, err: fmt.Errorf("testnet: %d lost, %d duplicated, %d send errors of %d sent", rep.Lost, rep.Duplicated, rep.SendErrors, rep.Sent)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&o.Nodes, "nodes", "n", 10, "personal nodes")
	f.IntVar(&o.Relays, "relays", 2, "relays")
	f.IntVar(&o.Messages, "messages", 200, "messages to send")
	f.IntVar(&o.Contacts, "contacts", 4, "average contacts per node")
	f.IntVar(&o.Groups, "groups", 0, "group chats")
	f.IntVar(&o.GroupSize, "group-size", 5, "members of each group")
	f.IntVar(&o.GroupMessages, "group-messages", 0, "group messages to send (0: 20 per group)")
	f.Float64Var(&o.Offline, "offline", 0, "fraction of the nodes down while the messages are sent")
	f.StringSliceVar(&chaos, "chaos", nil, "faults to inject: "+strings.Join(testnet.Faults, ", "))
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "spread the sends over this time")
	f.DurationVar(&o.Drain, "drain", 2*time.Minute, "wait at most this long, once healed, for every message to arrive")
	f.Int64Var(&o.Seed, "seed", 1, "scenario seed: the same seed, the same scenario")
	f.StringVar(&o.Dir, "dir", "", "make the stores under this directory (default: the system's temporary directory)")
	f.BoolVar(&o.Keep, "keep", false, "keep the stores afterwards")
	f.BoolVar(&o.TCP, "tcp", false, "connect over TCP only (a descriptor per connection), not QUIC first (one socket per host)")
	f.StringVar(&logLevel, "log-level", "", "print the nodes' logs at this level to standard error (debug, info, warn, error)")
	return cmd
}

// progress shows a run's progress on standard error: a line rewritten in
// place on a terminal, a plain line every progressPlain otherwise.
type progress struct {
	mu   sync.Mutex
	w    io.Writer
	tty  bool
	last time.Time
	line bool // a line is shown and not ended
}

// progressPlain is the period of progress lines when standard error is not
// a terminal.
const progressPlain = 5 * time.Second

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		p.tty = term.IsTerminal(int(f.Fd()))
	}
	return p
}

func (p *progress) show(s testnet.Progress) {
	line := fmt.Sprintf("testnet %5.1fs %-5s members up %d/%d, sent %d/%d, shown %d",
		s.Elapsed.Seconds(), s.Phase, s.Up, s.Members, s.Sent, s.Messages, s.Shown)
	if s.Groups > 0 {
		line += fmt.Sprintf("; groups ready %d/%d, group messages sent %d/%d", s.GroupsReady, s.Groups, s.GroupSent, s.GroupMessages)
	}
	p.print(line)
}

// print shows one progress line.
func (p *progress) print(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprintf(p.w, "\r\x1b[K%s", line)
		p.line = true
		return
	}
	if time.Since(p.last) >= progressPlain {
		p.last = time.Now()
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.line {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.line = false
	}
}

// printReport is the text form of a run's report.
func printReport(w io.Writer, r *testnet.Report) {
	chaos := strings.Join(r.Chaos, ",")
	if chaos == "" {
		chaos = "none"
	}
	fmt.Fprintf(w, "network     %d nodes, %d relays, %d messages, %.0f%% offline, chaos %s, seed %d\n",
		r.Nodes, r.Relays, r.Messages, 100*r.Offline, chaos, r.Seed)
	fmt.Fprintf(w, "sent        %d\ndelivered   %d\nlost        %d\nduplicated  %d\n", r.Sent, r.Delivered, r.Lost, r.Duplicated)
	if r.SendErrors > 0 || r.Stray > 0 {
		fmt.Fprintf(w, "send errors %d\nstray       %d\n", r.SendErrors, r.Stray)
	}
	lat := func(name string, p testnet.Percentiles) {
		fmt.Fprintf(w, "%-11s p50 %.1f ms, p95 %.1f ms, p99 %.1f ms (%d messages)\n", name, p.P50, p.P95, p.P99, p.Count)
	}
	lat("direct", r.Latency.Direct)
	lat("via relay", r.Latency.ViaRelay)
	fmt.Fprintf(w, "relay bytes %d stored at most\n", r.RelayStoredBytes)
	fmt.Fprintf(w, "dht         %d address record lookups, %d publications\n", r.DHTLookups, r.DHTPublishes)
	fmt.Fprintf(w, "cpu time    %.1f s (start %.1f, wire %.1f, send %.1f, drain %.1f)\npeak memory %.0f MiB\n",
		r.CPUTimeSeconds, r.CPUSeconds.Start, r.CPUSeconds.Wire, r.CPUSeconds.Send, r.CPUSeconds.Drain, float64(r.PeakMemoryBytes)/(1<<20))
	fmt.Fprintf(w, "wall time   %.1f s (start %.1f, wire %.1f, send %.1f, drain %.1f)\n",
		r.Seconds.Total, r.Seconds.Start, r.Seconds.Wire, r.Seconds.Send, r.Seconds.Drain)
	for _, f := range r.Faults {
		fmt.Fprintf(w, "fault      %s\n", f)
	}
	for _, l := range r.LostMessages {
		fmt.Fprintf(w, "lost        %s\n", l)
	}
	if g := r.Groups; g != nil {
		fmt.Fprintf(w, "groups      %d groups, %d members\n", g.Groups, g.Members)
		fmt.Fprintf(w, "  sent      %d (%d skipped, %d send errors)\n  delivered %d of %d member deliveries (%d messages delivered to every member per their senders)\n",
			g.Sent, g.Skipped, g.SendErrors, g.Delivered, g.Expected, g.DeliveredState)
		fmt.Fprintf(w, "  lost      %d\n  duplicated %d\n  commits   %d accepted, %d refused and made again\n  forks     %d\n  behind    %d\n",
			g.Lost, g.Duplicated, g.CommitsAccepted, g.CommitsRefused, g.Forks, g.Behind)
		lat("  latency", g.Latency)
		for _, l := range g.LostMessages {
			fmt.Fprintf(w, "  lost      %s\n", l)
		}
	}
}

func (c *cli) testnetUpCommand() *cobra.Command {
	var o testnet.UpOptions
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a network of daemon processes on loopback",
		Long: `Start a network of real daemon processes of this binary on random loopback
ports: --relays relays (daemon --relay-service) first, then --nodes nodes
bootstrapped from them, each receiving through up to two of them. Each member
has its own home under --dir (initialized with --profile test --no-passphrase;
its daemon logs to HOME/daemon.log); the process IDs are recorded in
DIR/testnet.json for status, env and down. The daemons keep running after this
command returns.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !c.json {
				o.Log = c.stdout
			}
			st, err := testnet.Up(cmd.Context(), o)
			if errors.Is(err, testnet.ErrBadOptions) || errors.Is(err, testnet.ErrRunning) {
				return userError(err)
			}
			if err != nil {
				if st != nil {
					fmt.Fprintf(c.stderr, "sealpost: the network in %s is partly up; stop it with: sealpost testnet down --dir %s\n", st.Dir, st.Dir)
				}
				return err
			}
			return c.print(st, func(w io.Writer) {
				fmt.Fprintf(w, "%d members up in %s\ndrive node 0 with: export $(%s testnet env 0 --dir %s)\n",
					len(st.Members), st.Dir, os.Args[0], st.Dir)
			})
		},
	}
	f := cmd.Flags()
	f.IntVarP(&o.Nodes, "nodes", "n", 3, "personal nodes")
	f.IntVar(&o.Relays, "relays", 1, "relays")
	f.StringVar(&o.Dir, "dir", testnet.DefaultDir(), "directory of the homes and testnet.json")
	return cmd
}

func (c *cli) testnetDownCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the daemons of a network started by testnet up (the homes stay)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var log io.Writer
			if !c.json {
				log = c.stdout
			}
			st, err := testnet.Down(dir, log)
			if err != nil {
				return userError(err)
			}
			return c.print(st, func(w io.Writer) { fmt.Fprintf(w, "network down; homes kept in %s\n", st.Dir) })
		},
	}
	cmd.Flags().StringVar(&dir, "dir", testnet.DefaultDir(), "directory of the network")
	return cmd
}

func (c *cli) testnetEnvCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "env I",
		Short: "Print the SEALPOST_HOME=... line of member I",
		Long: `Print the SEALPOST_HOME=... line of member I of the network in --dir: I is a
node's number (0, 1, ...) or a member's name (node-0, relay-0). Use it as
export $(sealpost testnet env 3), then run sealpost commands as that node.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := testnet.LoadState(dir)
			if err != nil {
				return userError(err)
			}
			p, err := st.Member(args[0])
			if err != nil {
				return userError(err)
			}
			return c.print(map[string]string{"name": p.Name, "home": p.Home, "env": p.EnvLine()}, func(w io.Writer) {
				fmt.Fprintln(w, p.EnvLine())
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", testnet.DefaultDir(), "directory of the network")
	return cmd
}

func (c *cli) testnetStatusCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each member of a network started by testnet up",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ms, err := testnet.Status(cmd.Context(), dir)
			if err != nil {
				return userError(err)
			}
			return c.print(map[string]any{"members": ms}, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "MEMBER\tPID\tSTATE\tPEERS\tOUTBOX\tRELAYS\tADDRESS")
				for _, m := range ms {
					state, peers, outbox, relays := "stopped", "-", "-", "-"
					if m.Running {
						state = "running"
					}
					if m.Status != nil {
						peers, outbox, relays = fmt.Sprint(m.Status.Peers), fmt.Sprint(m.Status.Outbox), fmt.Sprint(m.Status.Relays)
					} else if m.Error != "" {
						state += " (" + m.Error + ")"
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.PID, state, peers, outbox, relays, m.Addr)
				}
				tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", testnet.DefaultDir(), "directory of the network")
	return cmd
}

func (c *cli) testnetLabCommand() *cobra.Command {
	var (
		o       testnet.LabOptions
		cleanup bool
	)
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run daemons behind NAT routers in network namespaces and report how they reach each other (root)",
		Long: `Build a private internet in network namespaces (root only) and run real daemons
of this binary in it: an internet namespace with a bridge, --relays community
relays with public addresses, and --pairs pairs of personal nodes, each node in
a namespace of its own behind its own home router namespace that NATs with
nftables (--nat, given to the pairs in turn):

  eim        endpoint-independent mapping (masquerade): hole punching works
  symmetric  address- and port-dependent mapping (masquerade fully-random):
             no hole punching; relayed connections and mailboxes
  none       the node sits on the internet with a public address
  A/B        the pair's first node behind A, its second behind B

Every address is in 198.18.0.0/15 (the internet 198.18.0.0/16, every home LAN
198.19.0.0/24) and lives only in the lab's namespaces: nothing is routed to
the host or beyond, and mDNS is off. The daemons run with --lab-addressing,
which makes them count 198.18.0.0/16 as public and 198.19.0.0/16 as private.

Each pair becomes contacts by invite (the second node invites, the first adds
the link and sends the first message at once), then exchanges --messages
messages over --duration while the --faults happen:

  offline     a quarter of the pairs' second nodes stop for the middle half
  flush-nat   halfway, a third of the NAT routers forget their mappings
  kill-relay  relay-0 is killed (SIGKILL) at a third and restarted at two thirds

then waits at most --drain for every message to be shown. The report: per
pair, how the first message travelled (direct, hole_punched, relayed,
mailbox), how long after the invite it was shown, and whether and when a
direct connection appeared; totals and time-to-first-message percentiles.
Exit status 2 if any message was lost or shown twice.

The lab removes its namespaces (and the processes in them) when it ends, also
on SIGINT or SIGTERM; after a crash or SIGKILL, the next run with the same
--prefix or 'testnet lab --cleanup' removes them. Links get --latency only
where the kernel has the netem qdisc (the report says whether it had).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if cleanup {
				removed, err := testnet.CleanupLab(ctx, o.Prefix)
				if errors.Is(err, testnet.ErrBadOptions) || errors.Is(err, testnet.ErrLabTools) || errors.Is(err, testnet.ErrRunning) {
					return userError(err)
				}
				if err != nil {
					return err
				}
				return c.print(map[string]any{"removed": removed}, func(w io.Writer) {
					fmt.Fprintf(w, "removed %d namespaces of lab %q\n", len(removed), o.Prefix)
				})
			}
			if !c.json {
				o.Log = c.stderr
			}
			p := newProgress(c.stderr)
			o.Progress = func(s testnet.LabProgress) {
				p.print(fmt.Sprintf("lab %5.1fs %-5s daemons up %d/%d, pairs linked %d/%d, sent %d, shown %d",
					s.Elapsed.Seconds(), s.Phase, s.Up, s.Members, s.Linked, s.Pairs, s.Sent, s.Shown))
			}
			rep, err := testnet.RunLab(ctx, o)
			p.done()
			if errors.Is(err, testnet.ErrBadOptions) || errors.Is(err, testnet.ErrLabTools) || errors.Is(err, testnet.ErrRunning) {
				return userError(err)
			}
			if err != nil {
				return err
			}
			if err := c.print(rep, func(w io.Writer) { printLabReport(w, rep) }); err != nil {
				return err
			}
			if !rep.OK() {
				return &exitError{code: api.ExitInternal, err: fmt.Errorf("testnet lab: %d lost, %d duplicated, %d send errors of %d sent", rep.Lost, rep.Duplicated, rep.SendErrors, rep.Sent)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Pairs, "pairs", 4, "pairs of personal nodes")
	f.IntVar(&o.Relays, "relays", 2, "community relays (1 or 2)")
	f.StringSliceVar(&o.NAT, "nat", nil, "NAT kinds of the pairs, in turn: eim, symmetric, none, or A/B (default eim,symmetric,eim/none,eim/symmetric)")
	f.IntVar(&o.Messages, "messages", 10, "messages per pair after the first two")
	f.DurationVar(&o.Duration, "duration", 30*time.Second, "spread the messages and faults over this time")
	f.DurationVar(&o.Drain, "drain", 2*time.Minute, "wait at most this long for every message to be shown")
	f.StringSliceVar(&o.Faults, "faults", nil, "faults to inject: "+strings.Join(testnet.LabFaults, ", "))
	f.DurationVar(&o.Latency, "latency", 0, "round trip added to each link with tc netem, where the kernel has it")
	f.StringVar(&o.Prefix, "prefix", testnet.DefaultLabPrefix, "prefix of the lab's namespaces, interfaces and nftables tables")
	f.StringVar(&o.Dir, "dir", "", "make the homes under this directory (default: a temporary one, removed afterwards)")
	f.BoolVar(&o.Keep, "keep", false, "keep the homes (and their daemon.log) afterwards")
	f.Int64Var(&o.Seed, "seed", 1, "seed of the message order")
	f.StringVar(&o.LogLevel, "log-level", "", "the daemons' log level (debug, info, warn, error; logs in HOME/daemon.log, see --keep)")
	f.BoolVar(&cleanup, "cleanup", false, "only remove what a crashed lab with --prefix left (namespaces and their processes)")
	return cmd
}

// printLabReport is the text form of a lab's report.
func printLabReport(w io.Writer, r *testnet.LabReport) {
	faults := strings.Join(r.Faults, ",")
	if faults == "" {
		faults = "none"
	}
	latency := "no netem in this kernel"
	if r.Netem {
		latency = fmt.Sprintf("%.0f ms round trip per link", r.LatencyMs)
	}
	fmt.Fprintf(w, "lab          %d pairs (%s), %d relays, faults %s, %s\n", r.Pairs, strings.Join(r.NAT, ","), r.Relays, faults, latency)
	fmt.Fprintf(w, "reservations %d of %d nodes behind NATs\n", r.Reserved, r.NATed)
	fmt.Fprintf(w, "first        direct %d, hole_punched %d, relayed %d, via_mailbox %d, not arrived %d\n",
		r.Direct, r.HolePunched, r.Relayed, r.ViaMailbox, r.NotArrived)
	fmt.Fprintf(w, "first msg    p50 %.0f ms, p95 %.0f ms (%d pairs)\n", r.FirstMessageMs.P50, r.FirstMessageMs.P95, r.FirstMessageMs.Count)
	fmt.Fprintf(w, "upgraded     %d of %d pairs to a direct connection, p50 %.0f ms after the invite\n", r.Upgraded, r.Pairs, r.UpgradeMs.P50)
	fmt.Fprintf(w, "sent         %d\ndelivered    %d\nlost         %d\nduplicated   %d\n", r.Sent, r.Delivered, r.Lost, r.Duplicated)
	if r.SendErrors > 0 {
		fmt.Fprintf(w, "send errors  %d\n", r.SendErrors)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PAIR\tNAT\tFIRST\tFIRST MS\tDIRECT AFTER MS\tSENT\tSHOWN\tLOST\tDUP")
	for _, p := range r.List {
		direct := "-"
		if p.Direct {
			direct = fmt.Sprintf("%.0f", p.DirectMs)
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%.0f\t%s\t%d\t%d\t%d\t%d\n", p.A, p.B, p.NAT, p.First, p.FirstMs, direct, p.Sent, p.Delivered, p.Lost, p.Duplicated)
	}
	tw.Flush()
	fmt.Fprintf(w, "wall time    %.1f s\n", r.Seconds)
}
