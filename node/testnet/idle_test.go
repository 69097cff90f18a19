package testnet

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/nodetest"
)

// TestMeasureIdle reports the CPU that idle nodes take: N personal nodes
// of an in-process testnet (loopback, QUIC, a badger store each, one
// relay), with one group of all of them on the relay or none, settled and
// then left alone. Over a fixed window it reports the process's CPU
// seconds per second, for all the nodes and per node, next to the limit
// measured in the same window: the round trip of a QUIC ping between two
// other libp2p hosts of the process, once a second (a saturated process
// delays it). It asserts nothing about the figures. Only with
// SEALPOST_MEASURE=1:
//
//	SEALPOST_MEASURE=1 go test ./node/testnet -run TestMeasureIdle -v -timeout 30m
//
//	SEALPOST_MEASURE_NODES       nodes (default 100)
//	SEALPOST_MEASURE_GROUP=1     one group of all the nodes (as BenchmarkGroup100)
//	SEALPOST_MEASURE_MESSAGES    group messages sent before settling, one
//	                             every 100 ms from member after member
//	                             (default 0), to see what traffic leaves behind
//	SEALPOST_MEASURE_SETTLE      wait after setup before the window (default 30s)
//	SEALPOST_MEASURE_IDLE        the window (default 60s)
//	SEALPOST_MEASURE_CPUPROFILE  write the window's CPU profile to this file
func TestMeasureIdle(t *testing.T) {
	if os.Getenv("SEALPOST_MEASURE") == "" {
		t.Skip("set SEALPOST_MEASURE=1 to measure")
	}
	count := 100
	if s := os.Getenv("SEALPOST_MEASURE_NODES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2 || n > groups.MaxMembers {
			t.Fatalf("SEALPOST_MEASURE_NODES=%q: want 2 to %d", s, groups.MaxMembers)
		}
		count = n
	}
	withGroup := os.Getenv("SEALPOST_MEASURE_GROUP") == "1"
	dur := func(name string, def time.Duration) time.Duration {
		if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
			return d
		}
		return def
	}
	settle, window := dur("SEALPOST_MEASURE_SETTLE", 30*time.Second), dur("SEALPOST_MEASURE_IDLE", 60*time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := RaiseFileLimit(); err != nil {
		t.Fatal(err)
	}
	o := Options{Nodes: count, Relays: 1, Messages: 1, Contacts: 1, Dir: t.TempDir()}
	if withGroup {
		o.Groups, o.GroupSize = 1, count
	}
	o, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	work, err := workDir(o.Dir)
	if err != nil {
		t.Fatal(err)
	}
	nw := newNetwork(o, work)
	defer nw.stopAll()
	start := time.Now()
	if err := nw.up(ctx); err != nil {
		t.Fatal(err)
	}
	if withGroup {
		if err := nw.wire(ctx); err != nil {
			t.Fatal(err)
		}
		if err := nw.setupGroups(ctx); err != nil {
			t.Fatal(err)
		}
	}
	setup := time.Since(start)
	sent, _ := strconv.Atoi(os.Getenv("SEALPOST_MEASURE_MESSAGES"))
	if sent > 0 && !withGroup {
		t.Fatal("SEALPOST_MEASURE_MESSAGES needs SEALPOST_MEASURE_GROUP=1")
	}
	for i := range sent {
		from := nw.nodes[nw.plan.groups[0].members[i%count]]
		if _, err := from.node().Groups().Send(ctx, nw.groups.ids[0], fmt.Sprintf("idle message %d", i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	hop := newPinger(t)
	time.Sleep(settle)

	stopProfile := nodetest.CPUProfile(t, "SEALPOST_MEASURE_CPUPROFILE")
	defer stopProfile()
	var hops []time.Duration
	sched0 := schedLatencies()
	cpu0, _ := usage()
	wall0 := time.Now()
	tick := time.NewTicker(time.Second)
	for end := wall0.Add(window); time.Now().Before(end); {
		<-tick.C
		if d, err := hop.rtt(ctx); err == nil {
			hops = append(hops, d)
		}
	}
	tick.Stop()
	cpu1, _ := usage()
	wall := time.Since(wall0)
	sched := schedLatencies().since(sched0)
	stopProfile()

	busy := (cpu1 - cpu0).Seconds() / wall.Seconds()
	h := percentiles(hops)
	var conns int
	for _, m := range nw.nodes {
		if n := m.node(); n != nil {
			conns += len(n.Peers())
		}
	}
	t.Logf("%d idle nodes (group: %v, %d messages before; setup %.0f s, settled %s) over %.1f s: %.3f CPU-s/s, %.5f per node; ping p50 %.2f ms p99 %.2f ms (%d); goroutines waited to run p50 %.3f ms p99 %.3f ms; %d goroutines, %.1f peers per node",
		count, withGroup, sent, setup.Seconds(), settle, wall.Seconds(), busy, busy/float64(count), h.P50, h.P99, h.Count, sched.quantile(0.5)*1000, sched.quantile(0.99)*1000,
		runtime.NumGoroutine(), float64(conns)/float64(count))
}

// latencies is a histogram of runtime/metrics: how long goroutines
// waited, runnable, before they ran (/sched/latencies:seconds).
type latencies struct {
	counts  []uint64
	buckets []float64
}

func schedLatencies() latencies {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return latencies{}
	}
	h := s[0].Value.Float64Histogram()
	return latencies{counts: slices.Clone(h.Counts), buckets: h.Buckets}
}

// since returns the histogram of what was added after l0.
func (l latencies) since(l0 latencies) latencies {
	d := latencies{counts: slices.Clone(l.counts), buckets: l.buckets}
	for i := range d.counts {
		if i < len(l0.counts) {
			d.counts[i] -= l0.counts[i]
		}
	}
	return d
}

// quantile returns the upper bound of the bucket that holds quantile q,
// in seconds (the bucket's lower bound if it is the last, unbounded one).
func (l latencies) quantile(q float64) float64 {
	var total uint64
	for _, c := range l.counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	var sum uint64
	for i, c := range l.counts {
		sum += c
		if sum > want {
			if math.IsInf(l.buckets[i+1], 1) {
				return l.buckets[i]
			}
			return l.buckets[i+1]
		}
	}
	return l.buckets[len(l.buckets)-1]
}

func TestLatencyQuantile(t *testing.T) {
	inf := math.Inf(1)
	l := latencies{counts: []uint64{1, 1, 1}, buckets: []float64{math.Inf(-1), 1, 2, inf}}
	for _, c := range []struct{ q, want float64 }{{0, 1}, {0.33, 1}, {0.34, 2}, {0.5, 2}, {0.99, 2}} {
		if got := l.quantile(c.q); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := (latencies{counts: []uint64{0, 0}, buckets: []float64{0, 1, inf}}).quantile(0.5); got != 0 {
		t.Errorf("quantile of an empty histogram = %v, want 0", got)
	}
	d := latencies{counts: []uint64{3, 5, 2}, buckets: l.buckets}.since(latencies{counts: []uint64{3, 1, 2}})
	if !slices.Equal(d.counts, []uint64{0, 4, 0}) || d.quantile(0.5) != 2 {
		t.Errorf("since: counts %v, median %v; want [0 4 0] and 2", d.counts, d.quantile(0.5))
	}
	// The runtime's histogram of waits to run is there and counts.
	if s := schedLatencies(); len(s.counts) == 0 || len(s.buckets) != len(s.counts)+1 {
		t.Errorf("/sched/latencies:seconds: %d counts, %d bucket bounds", len(s.counts), len(s.buckets))
	}
}
