package testnet

import (
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	dto "github.com/prometheus/client_model/go"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/groups"
)

// BenchmarkGroup100 measures a group of 100 members, all online, on an
// in-process testnet (loopback, QUIC, a badger store per node, a personal
// node's connection limits, the group on one home relay): 100 messages
// one after the other, each from the next member in turn, each once every
// other member has committed the one before, so the figure is the latency
// of a message, not the wait in a queue of them. The group is made once per call (minutes), so an
// iteration is all 100 messages, and the default -benchtime runs one.
//
// One after the other, a message meets the receipts of the few before it
// (each member sends its own a receipt delay and a random part of a
// window later, over a connection to the sender): in this process, they
// take the same two cores as the message. SEALPOST_GROUP_PACE=delivered
// sends each message once the one before is delivered to every member
// (the sender has every receipt), as in a conversation whose messages
// are seconds apart; SEALPOST_GROUP_MESSAGES sets how many messages (a
// message then takes as long as its receipts, about 5 s at 100 members).
//
// Reported, in milliseconds unless named otherwise:
//
//	p50-ms, p99-ms   Send to a member's commit (decrypted, its write
//	                 begun: the message's ReceivedAt), over every member
//	                 and message
//	sent-p50-ms,     Send to the sender's event that the message is sent
//	sent-p99-ms      (on its home relay, published, and that state
//	                 durable): the part of the latency before the fan-out
//	delivered-p50-ms, Send to the sender's message delivered to every
//	delivered-p99-ms member (paced runs only)
//	last-p99-ms      Send to the commit of the last member, per message
//	shown-p99-ms     Send to the member's event (its write durable, the
//	                 message shown to the user; for a member whose event
//	                 was missed, when its messages were read)
//	hop-p50-ms,      the limit: a round trip between two libp2p hosts on
//	hop-p99-ms       loopback (QUIC ping) in this process, one before
//	                 each message, so under the same load
//	p99/hop          p99-ms over hop-p99-ms
//	gossip-p50-ms,   the limit of the fan-out: a bare gossipsub network
//	gossip-p99-ms    of as many hosts in this process (sealpost's gossip
//	                 transport, each host with as many peers as a member
//	                 has (peers/member), no decryption, store or relay),
//	                 publish to each host's delivery, measured after the
//	                 messages with the group's nodes still up
//	p99/gossip       p99-ms over gossip-p99-ms
//	p99/target       p99-ms over the 50 ms the figure aims at
//	gc-hit-msgs      messages whose fan-out (Send until every member
//	                 committed it) a cycle of the garbage collector
//	                 overlapped (gcWatch): the nodes share this process's
//	                 heap, and a cycle marks all of it at once, slowing
//	                 every member together, as no node alone is
//	nogc-p50-ms,     p50-ms and p99-ms over the other messages
//	nogc-p99-ms
//	setup-s          seconds to make the group (every member joined)
//	cpu-ms/msg       the process's CPU time per message (all members'
//	                 work: gossip, decryption, writes, receipts), which
//	                 bounds the messages a second the machine can carry
//	cores            CPU time over wall time while the messages went
//	idle-cores       CPU time over wall time of the same network with
//	                 the group idle (10 s before the messages, once the
//	                 setup's work settled for 30 s): the base load of
//	                 its nodes
//	msg-cpu-ms/msg   cpu-ms/msg less the idle cores' share of the time
//	                 the messages took: what the messages themselves cost
//	syncs/msg        disk syncs of all the stores per message (each is
//	                 one group commit of the Updates waiting at once)
//	state-writes/msg writes of a member's MLS state (whole, or only its
//	                 keys) per message, all members
//	                 (sealpost_groups_state_writes_total)
//	state-KiB        the size of a state or keys written (their mean)
//	state-KiB/msg    the states' bytes written per message, all members
//	dials/msg        connections the process opened per message (a
//	                 receipt to a sender not connected dials it)
//	received/msg ... the message's path, per message, over all nodes
//	ihave-ids/msg    (messagePath): decryptions, copies skipped, log
//	                 entries fetched, receipts through the group and
//	                 straight to the sender, tries of those that failed,
//	                 commits, message IDs gossip announced (IHAVE)
//	peers/member     the connections of a member (its peers) after the
//	                 messages, on average
//	wait-p50-ms,     how long the process's goroutines waited, runnable,
//	wait-p99-ms      before they ran, while the messages went (the Go
//	                 scheduler's histogram): a hop-p99-ms close to it is
//	                 the process short of CPU, not the network
//
// SEALPOST_GROUP_MEMBERS sets another size (a smaller group to profile),
// SEALPOST_GROUP_PROFILE=FILE writes a CPU profile of the messages alone
// (-cpuprofile would take in the minutes of setup), and
// SEALPOST_GROUP_FANOUT_PROFILES=DIR one profile per message, from its
// Send until every member committed it, to merge (go tool pprof -proto
// DIR/*.prof): where the CPU goes while a message fans out:
//
//	go test ./node/testnet -run '^$' -bench BenchmarkGroup100 -timeout 30m
func BenchmarkGroup100(b *testing.B) {
	size := 100
	if s := os.Getenv("SEALPOST_GROUP_MEMBERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2 || n > groups.MaxMembers {
			b.Fatalf("SEALPOST_GROUP_MEMBERS=%q: want 2 to %d", s, groups.MaxMembers)
		}
		size = n
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	messages := 100
	if s := os.Getenv("SEALPOST_GROUP_MESSAGES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("SEALPOST_GROUP_MESSAGES=%q: want a number of messages", s)
		}
		messages = n
	}
	paced := false
	switch s := os.Getenv("SEALPOST_GROUP_PACE"); s {
	case "", "committed":
	case "delivered":
		paced = true
	default:
		b.Fatalf("SEALPOST_GROUP_PACE=%q: want committed or delivered", s)
	}
	fanoutProfiles := os.Getenv("SEALPOST_GROUP_FANOUT_PROFILES")
	if _, err := RaiseFileLimit(); err != nil {
		b.Fatal(err)
	}
	o, err := Options{Nodes: size, Relays: 1, Messages: 1, Contacts: 1, Groups: 1, GroupSize: size, Dir: b.TempDir()}.withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	work, err := workDir(o.Dir)
	if err != nil {
		b.Fatal(err)
	}
	nw := newNetwork(o, work)
	// The members take connections as a user's node does: the test
	// profile's limits are half of them, and a message's receipts are
	// each a connection to its sender.
	personal, err := node.Defaults(node.Personal)
	if err != nil {
		b.Fatal(err)
	}
	nw.personal = func(c *node.Config) {
		c.ConnLow, c.ConnHigh, c.MaxFDs, c.MaxMemory = personal.ConnLow, personal.ConnHigh, personal.MaxFDs, personal.MaxMemory
	}
	defer nw.stopAll()
	start := time.Now()
	if err := nw.up(ctx); err != nil {
		b.Fatal(err)
	}
	if err := nw.wire(ctx); err != nil {
		b.Fatal(err)
	}
	if err := nw.setupGroups(ctx); err != nil {
		b.Fatal(err)
	}
	setup := time.Since(start)
	gid := nw.groups.ids[0]
	members := nw.plan.groups[0].members

	// Every member's commits, from its events (a subscriber that fell
	// behind subscribes again; what it missed the wait below reads from
	// the member's messages).
	type seen struct{ received, shown time.Time }
	var mu sync.Mutex
	got := map[string]map[int]seen{} // message ID -> member -> when
	sentAt := map[string]time.Time{} // message ID -> its sender's sent event
	note := func(mi int, m groups.Message, shown time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if got[m.ID] == nil {
			got[m.ID] = map[int]seen{}
		}
		if _, ok := got[m.ID][mi]; !ok {
			got[m.ID][mi] = seen{m.ReceivedAt, shown}
		}
	}
	arrived := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, mi := range members {
		n := nw.nodes[mi].node()
		wg.Go(func() {
			for ctx.Err() == nil {
				for e := range n.Subscribe(ctx) {
					if st, ok := e.Data.(groups.StateEvent); ok && e.Type == groups.EventMessageState && st.State == groups.StateSent {
						mu.Lock()
						sentAt[st.ID] = e.Time
						mu.Unlock()
						continue
					}
					m, ok := e.Data.(groups.Message)
					if e.Type != groups.EventMessage || !ok || m.Outgoing {
						continue
					}
					note(mi, m, e.Time)
					select {
					case arrived <- struct{}{}:
					default:
					}
				}
			}
		})
	}
	// missed reads the newest messages of the members whose event for
	// message id has not come.
	missed := func(id string) (lacking []string) {
		mu.Lock()
		have := maps.Clone(got[id])
		mu.Unlock()
		for _, mi := range members {
			if _, ok := have[mi]; ok || nw.nodes[mi].node() == nil {
				continue
			}
			ms, err := nw.nodes[mi].node().Groups().Messages(ctx, gid, 8)
			held := false
			for _, m := range ms {
				if m.ID == id && !m.Outgoing {
					note(mi, m, time.Now())
					held = true
				}
			}
			if !held {
				lacking = append(lacking, fmt.Sprintf("%s (%d read, %v)", nw.nodes[mi].name, len(ms), err))
			}
		}
		return lacking
	}
	hop := newPinger(b)

	// The process's CPU with the group idle, over idleFor, so that the
	// CPU the messages themselves take can be told from the base load.
	// The members go on connecting to one another (QUIC and noise
	// handshakes, identify) for a while after every member joined: the
	// window begins once settleFor has passed.
	const settleFor, idleFor = 30 * time.Second, 10 * time.Second
	select {
	case <-time.After(settleFor):
	case <-ctx.Done():
	}
	idle0, _ := usage()
	select {
	case <-time.After(idleFor):
	case <-ctx.Done():
	}
	idle1, _ := usage()
	idleCores := (idle1 - idle0).Seconds() / idleFor.Seconds()

	var lat, last, shown, hops, sent, delivered, latNoGC []time.Duration
	gcHit := 0
	gcw := watchGC(ctx)
	syncs0, conns0 := syncs(nw), connsOpened(b, nw)
	states0, stateBytes0 := counterSum(b, nw, "sealpost_groups_state_writes_total"), counterSum(b, nw, "sealpost_groups_state_bytes_total")
	path0 := messagePath(b, nw)
	sched0 := schedLatencies()
	cpu0, _ := usage()
	wall0 := time.Now()
	if f := os.Getenv("SEALPOST_GROUP_PROFILE"); f != "" {
		pf, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			b.Fatal(err)
		}
		defer pf.Close()
		defer pprof.StopCPUProfile()
	}
	b.ResetTimer()
	for i := range b.N * messages {
		from := nw.nodes[members[i%len(members)]]
		if d, err := hop.rtt(ctx); err == nil {
			hops = append(hops, d)
		}
		var fanout *os.File
		if fanoutProfiles != "" {
			if fanout, err = os.Create(fmt.Sprintf("%s/fanout-%03d.prof", fanoutProfiles, i)); err != nil {
				b.Fatal(err)
			}
			if err := pprof.StartCPUProfile(fanout); err != nil {
				b.Fatal(err)
			}
		}
		t0 := time.Now()
		r, err := from.node().Groups().Send(ctx, gid, fmt.Sprintf("group message %d from %s", i, from.name))
		if err != nil {
			b.Fatal(err)
		}
		deadline := time.NewTimer(2 * time.Minute)
		look := time.NewTicker(5 * time.Second)
		for {
			mu.Lock()
			n := len(got[r.ID])
			mu.Unlock()
			if n == len(members)-1 {
				break
			}
			select {
			case <-arrived:
			case <-look.C:
				missed(r.ID)
			case <-deadline.C:
				b.Fatalf("message %d: %d of %d members committed it in 2 minutes; lacking: %v", i, n, len(members)-1, missed(r.ID))
			}
		}
		deadline.Stop()
		look.Stop()
		hitByGC := gcw.overlaps(t0, time.Now())
		if hitByGC {
			gcHit++
		}
		if fanout != nil {
			pprof.StopCPUProfile()
			if err := fanout.Close(); err != nil {
				b.Fatal(err)
			}
		}
		if paced {
			id, err := groups.ParseMessageID(r.ID)
			if err != nil {
				b.Fatal(err)
			}
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
			res, err := from.node().Groups().WaitState(wctx, id, groups.StateDelivered)
			wcancel()
			if err != nil {
				b.Fatalf("message %d not delivered to every member in 5 minutes: %v (%+v)", i, err, res)
			}
			delivered = append(delivered, time.Since(t0))
		}
		mu.Lock()
		var slowest time.Duration
		for _, s := range got[r.ID] {
			d := s.received.Sub(t0)
			lat = append(lat, d)
			if !hitByGC {
				latNoGC = append(latNoGC, d)
			}
			shown = append(shown, s.shown.Sub(t0))
			slowest = max(slowest, d)
		}
		delete(got, r.ID)
		if at, ok := sentAt[r.ID]; ok {
			sent = append(sent, at.Sub(t0))
			delete(sentAt, r.ID)
		}
		mu.Unlock()
		last = append(last, slowest)
	}
	b.StopTimer()
	cpu1, _ := usage()
	sched := schedLatencies().since(sched0)
	wall := time.Since(wall0)
	p, l, s, h := percentiles(lat), percentiles(last), percentiles(shown), percentiles(hops)
	b.ReportMetric(p.P50, "p50-ms")
	b.ReportMetric(p.P99, "p99-ms")
	b.ReportMetric(l.P99, "last-p99-ms")
	b.ReportMetric(s.P99, "shown-p99-ms")
	b.ReportMetric(h.P50, "hop-p50-ms")
	b.ReportMetric(h.P99, "hop-p99-ms")
	if h.P99 > 0 {
		b.ReportMetric(p.P99/h.P99, "p99/hop")
	}
	b.ReportMetric(p.P99/50, "p99/target")
	b.ReportMetric(float64(gcHit), "gc-hit-msgs")
	if len(latNoGC) > 0 {
		ng := percentiles(latNoGC)
		b.ReportMetric(ng.P50, "nogc-p50-ms")
		b.ReportMetric(ng.P99, "nogc-p99-ms")
	}
	se := percentiles(sent)
	b.ReportMetric(se.P50, "sent-p50-ms")
	b.ReportMetric(se.P99, "sent-p99-ms")
	if paced {
		d := percentiles(delivered)
		b.ReportMetric(d.P50, "delivered-p50-ms")
		b.ReportMetric(d.P99, "delivered-p99-ms")
	}
	b.ReportMetric(setup.Seconds(), "setup-s")
	syncs1, conns1 := syncs(nw), connsOpened(b, nw)
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/1000/float64(b.N*messages), "cpu-ms/msg")
	b.ReportMetric((cpu1-cpu0).Seconds()/wall.Seconds(), "cores")
	b.ReportMetric(sched.quantile(0.5)*1000, "wait-p50-ms")
	b.ReportMetric(sched.quantile(0.99)*1000, "wait-p99-ms")
	b.ReportMetric(idleCores, "idle-cores")
	b.ReportMetric(((cpu1-cpu0).Seconds()-idleCores*wall.Seconds())*1000/float64(b.N*messages), "msg-cpu-ms/msg")
	b.ReportMetric(float64(syncs1-syncs0)/float64(b.N*messages), "syncs/msg")
	states1, stateBytes1 := counterSum(b, nw, "sealpost_groups_state_writes_total"), counterSum(b, nw, "sealpost_groups_state_bytes_total")
	b.ReportMetric((states1-states0)/float64(b.N*messages), "state-writes/msg")
	if states1 > states0 {
		b.ReportMetric((stateBytes1-stateBytes0)/(states1-states0)/1024, "state-KiB")
	}
	b.ReportMetric((stateBytes1-stateBytes0)/1024/float64(b.N*messages), "state-KiB/msg")
	b.ReportMetric((conns1-conns0)/float64(b.N*messages), "dials/msg")
	for i, v := range messagePath(b, nw) {
		b.ReportMetric((v-path0[i])/float64(b.N*messages), messagePathUnits[i])
	}
	peers := 0
	for _, mi := range members {
		peers += len(nw.nodes[mi].node().Peers())
	}
	meanPeers := float64(peers) / float64(len(members))
	b.ReportMetric(meanPeers, "peers/member")
	// Each host of the bare network dials connect others and is dialed by
	// as many: as many peers as a member, less its home relay.
	connect := max(groups.DefaultConnect, int(math.Round((meanPeers-1)/2)))
	fl := percentiles(gossipFloor(ctx, b, size, connect, 100))
	b.ReportMetric(fl.P50, "gossip-p50-ms")
	b.ReportMetric(fl.P99, "gossip-p99-ms")
	if fl.P99 > 0 {
		b.ReportMetric(p.P99/fl.P99, "p99/gossip")
	}
	b.ReportMetric(0, "ns/op") // the time of the messages one after the other says nothing more
}

// syncs is the number of disk syncs of the network's stores so far
// (badgerstore's group commits: one for every Update waiting at once).
func syncs(nw *cluster) (n int64) {
	for _, m := range append(slices.Clone(nw.nodes), nw.relays...) {
		if st, ok := m.store().(interface{ Syncs() int64 }); ok {
			n += st.Syncs()
		}
	}
	return n
}

// connsOpened is the number of connections opened so far in this process
// (libp2p_swarm_connections_opened_total, outbound: libp2p's swarm
// metrics count for the whole process, whichever host's registry
// gathers them, so one node's is read).
func connsOpened(b *testing.B, nw *cluster) (n float64) {
	nd := nw.nodes[0].node()
	if nd == nil {
		return 0
	}
	mfs, err := nd.Registry().Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "libp2p_swarm_connections_opened_total" {
			continue
		}
		for _, c := range mf.GetMetric() {
			for _, l := range c.GetLabel() {
				if l.GetName() == "dir" && l.GetValue() == "outbound" {
					n += c.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// messagePathUnits name what messagePath counts, per message sent.
var messagePathUnits = [...]string{"received/msg", "duplicates/msg", "fetched/msg", "group-receipts/msg", "direct-receipts/msg", "receipt-fails/msg", "commits/msg", "ihave-ids/msg"}

// messagePath counts, over the network's nodes, the group messages
// decrypted (texts and receipts of others), those skipped as copies, the
// log entries fetched, the receipts sent through the group and straight
// to their sender, the tries to send receipts to their sender that
// failed, the commits made, and the message IDs gossipsub announced to
// peers (IHAVE, received): a message sent to the group should cost about
// one decryption a member and one direct receipt a member, and nothing
// else.
func messagePath(b *testing.B, nw *cluster) [len(messagePathUnits)]float64 {
	return [...]float64{
		counterSum(b, nw, "sealpost_groups_received_total"),
		counterSum(b, nw, "sealpost_groups_duplicates_total"),
		counterSum(b, nw, "sealpost_groups_fetched_total"),
		counterSum(b, nw, "sealpost_groups_receipts_total", "way", "group"),
		counterSum(b, nw, "sealpost_groups_receipts_total", "way", "direct"),
		counterSum(b, nw, "sealpost_groups_receipt_failures_total"),
		counterSum(b, nw, "sealpost_groups_commits_total"),
		counterSum(b, nw, "sealpost_gossip_control_total", "kind", "ihave"),
	}
}

// counterSum is the sum of the counter name over the network's nodes: of
// all its labels, or, with labels (name, value pairs), of the series that
// carry them.
func counterSum(b *testing.B, nw *cluster, name string, labels ...string) (n float64) {
	for _, m := range nw.nodes {
		nd := m.node()
		if nd == nil {
			continue
		}
		mfs, err := nd.Registry().Gather()
		if err != nil {
			b.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		series:
			for _, c := range mf.GetMetric() {
				for i := 0; i+1 < len(labels); i += 2 {
					if !slices.ContainsFunc(c.GetLabel(), func(l *dto.LabelPair) bool {
						return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
					}) {
						continue series
					}
				}
				n += c.GetCounter().GetValue()
			}
		}
	}
	return n
}

// pinger measures one loopback round trip between two libp2p hosts.
type pinger struct {
	ps *ping.PingService
	to peer.ID
}

func newPinger(b testing.TB) *pinger {
	b.Helper()
	var hs []interface{ Close() error }
	mk := func() *pinger {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"), libp2p.DisableRelay())
		if err != nil {
			b.Fatal(err)
		}
		hs = append(hs, h)
		return &pinger{ps: ping.NewPingService(h), to: h.ID()}
	}
	a, c := mk(), mk()
	b.Cleanup(func() {
		for _, h := range hs {
			h.Close()
		}
	})
	ha, hc := a.ps.Host, c.ps.Host
	if err := ha.Connect(context.Background(), peer.AddrInfo{ID: hc.ID(), Addrs: hc.Addrs()}); err != nil {
		b.Fatal(err)
	}
	return &pinger{ps: a.ps, to: hc.ID()}
}

func (p *pinger) rtt(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r := <-p.ps.Ping(ctx, p.to)
	return r.RTT, r.Error
}
