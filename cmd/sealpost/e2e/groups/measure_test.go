package groups_test

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/cmd/sealpost/e2e/harness"
)

// TestMeasureIdleGroups reports what being in 50 groups costs an idle
// daemon: alice creates 50 groups on the relay and adds bob to each; carol
// is in none. After a settling minute, each daemon's CPU time per second
// of wall time, RssAnon and Go heap in use are taken over
// SEALPOST_MEASURE_IDLE (default 2 min), and alice's and bob's set against
// carol's, measured in the same run. Only with SEALPOST_MEASURE=1:
//
//	SEALPOST_MEASURE=1 go test ./cmd/sealpost/e2e/groups -run TestMeasureIdleGroups -v -timeout 20m
func TestMeasureIdleGroups(t *testing.T) {
	if os.Getenv("SEALPOST_MEASURE") != "1" {
		t.Skip("a measurement: set SEALPOST_MEASURE=1")
	}
	const count = 50
	idle := 2 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("SEALPOST_MEASURE_IDLE")); err == nil && d > 0 {
		idle = d
	}
	relay := newNode(t, "relay", "--profile", "relay")
	relay.start("--relay-service", "--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", harness.FreePort(t)))
	names := []string{"alice", "bob", "carol"}
	nodes := make([]*node, len(names))
	metrics := make([]string, len(names))
	for i, name := range names {
		nodes[i] = newNode(t, name)
		metrics[i] = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
		nodes[i].start("--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", harness.FreePort(t)), "--bootstrap", relay.addr(), "--metrics", metrics[i])
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	for _, x := range []*node{b, c} {
		var inv struct {
			Link string `json:"link"`
		}
		x.home.JSON(&inv, "invite")
		a.home.MustRun("contact", "add", inv.Link, "--name", x.name)
	}
	a.home.MustRun("send", "carol", "hello", "--wait", "delivered", "--timeout", "60s")
	for i := range count {
		var g groupJSON
		a.home.JSON(&g, "group", "create", fmt.Sprintf("g%d", i), "--relay", relay.addr())
		a.home.MustRun("group", "add", g.ID, "bob")
	}
	eventually(t, 5*time.Minute, "bob in 50 groups", func() bool {
		active := 0
		for _, g := range b.groups() {
			if g.State == "active" && g.Members == 2 {
				active++
			}
		}
		return active == count
	})
	time.Sleep(time.Minute)

	type sample struct {
		cpu       time.Duration
		rss, heap float64
	}
	take := func() []sample {
		out := make([]sample, len(nodes))
		for i, n := range nodes {
			out[i] = sample{cpu: cpuTime(t, n.d.Pid()), rss: rssAnon(t, n.d.Pid()), heap: metric(t, metrics[i], "go_memstats_heap_inuse_bytes")}
		}
		return out
	}
	t0, s0 := time.Now(), take()
	time.Sleep(idle)
	t1, s1 := time.Now(), take()
	wall := t1.Sub(t0)
	base := s1[2]
	baseCPU := float64(s1[2].cpu-s0[2].cpu) / float64(wall)
	for i, n := range nodes {
		cpu := float64(s1[i].cpu-s0[i].cpu) / float64(wall)
		t.Logf("%s (%s): CPU %.4f s/s (%.2fx carol's), RssAnon %.1f MiB (%+.1f MiB against carol), heap in use %.1f MiB (%+.1f MiB)",
			n.name, map[int]string{0: "admin of 50 groups", 1: "member of 50 groups", 2: "no group"}[i],
			cpu, cpu/baseCPU, s1[i].rss/(1<<20), (s1[i].rss-base.rss)/(1<<20), s1[i].heap/(1<<20), (s1[i].heap-base.heap)/(1<<20))
	}
	t.Logf("over %s idle", wall.Round(time.Second))
}

// cpuTime reads a process's user and system CPU time from /proc.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command (which may hold spaces) in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// rssAnon reads a process's RssAnon from /proc, in bytes.
func rssAnon(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssAnon:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb * 1024
		}
	}
	t.Fatalf("no RssAnon in /proc/%d/status", pid)
	return 0
}

// metric reads one sample of a daemon's /metrics (0 when it is absent).
func metric(t *testing.T, addr, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %q", sample, v)
			}
			return f
		}
	}
	return 0
}
