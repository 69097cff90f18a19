package messaging_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/sealpost/sealpost/cmd/sealpost/e2e/harness"
	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// TestMeasureRequestFlood floods a real daemon (personal profile, on
// loopback) with message requests: for SEALPOST_FLOOD_DURATION (60 s),
// SEALPOST_FLOOD_WORKERS (8) strangers at a time, each a fresh identity on
// a fresh libp2p host (a new peer ID) in this process, add the daemon
// from a link it revoked and send it SEALPOST_FLOOD_MESSAGES (5) texts of
// SEALPOST_FLOOD_BYTES (1000) bytes, waiting until the daemon acknowledged
// each (sent). At most SEALPOST_FLOOD_MAX (100000) strangers. Progress goes
// to standard error every 5 s. It reports the messages the daemon
// accepted, the requests and messages it kept against its caps, what it
// dropped (its metrics), and its home's disk use (du's and the files'
// sizes), resident memory
// (VmRSS, RssAnon) and Go heap in use, CPU time, goroutines and open files before, right
// after, and after 30 s of rest and a restart. It fails if the daemon
// keeps more than the caps allow. Only with SEALPOST_MEASURE=1:
//
//	SEALPOST_MEASURE=1 go test ./cmd/sealpost/e2e/messaging -run TestMeasureRequestFlood -v -timeout 15m
func TestMeasureRequestFlood(t *testing.T) {
	if os.Getenv("SEALPOST_MEASURE") == "" {
		t.Skip("set SEALPOST_MEASURE=1 to flood a daemon with message requests")
	}
	duration := envDuration(t, "SEALPOST_FLOOD_DURATION", time.Minute)
	workers := envInt(t, "SEALPOST_FLOOD_WORKERS", 8)
	perStranger := envInt(t, "SEALPOST_FLOOD_MESSAGES", 5)
	size := envInt(t, "SEALPOST_FLOOD_BYTES", 1000)
	maxStrangers := envInt(t, "SEALPOST_FLOOD_MAX", 100000)

	bob := &user{t: t, name: "bob", h: bin.Home(t)}
	bob.h.MustRun("init", "--profile", "personal", "--no-passphrase", "--name", "bob")
	metrics := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	bob.start("0", "--no-mdns", "--metrics", metrics)
	link := bob.invite()
	bob.h.MustRun("invite", "--revoke", link)

	before := sampleDaemon(t, bob, metrics)
	text := strings.Repeat("x", size)
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var (
		next, done, accepted, failed atomic.Int64
		firstErr                     atomic.Value
		wg                           sync.WaitGroup
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(maxStrangers) {
					return
				}
				n, err := flood(ctx, link, fmt.Sprintf("stranger %d", i), text, perStranger)
				accepted.Add(int64(n))
				if err != nil && ctx.Err() == nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				if n == perStranger {
					done.Add(1)
				}
			}
		})
	}
	progress := time.NewTicker(5 * time.Second)
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	for wait := true; wait; {
		select {
		case <-stopped:
			wait = false
		case <-progress.C:
			s := sampleDaemon(t, bob, metrics)
			fmt.Fprintf(os.Stderr, "flood %3.0f s: %d strangers done, %d failed, %d messages accepted; daemon home %.1f MB, RSS %.1f MB, heap %.1f MB, CPU %.1f s, %d goroutines\n",
				time.Since(start).Seconds(), done.Load(), failed.Load(), accepted.Load(), mb(s.home), mb(s.rss), mb(s.heap), s.cpu.Seconds(), s.goroutines)
		}
	}
	progress.Stop()
	elapsed := time.Since(start)
	right := sampleDaemon(t, bob, metrics)

	// What the daemon kept: its requests and the messages they hold.
	var requests, kept int
	var keptBytes int64
	var list struct {
		Contacts []contactJSON `json:"contacts"`
	}
	bob.h.JSON(&list, "contact", "ls")
	for _, c := range list.Contacts {
		if c.State == "request" {
			requests++
		}
	}
	for _, m := range bob.inbox() {
		if m.Request {
			kept++
			keptBytes += int64(len(m.Text))
		}
	}
	time.Sleep(30 * time.Second) // rest: what the daemon gives back
	rested := sampleDaemon(t, bob, metrics)
	bob.d.Stop(syscall.SIGTERM)
	bob.start(bob.port, "--no-mdns", "--metrics", metrics)
	restarted := sampleDaemon(t, bob, metrics)

	t.Logf("flood: %d workers for %v, %d-byte texts, %d per stranger: %d strangers done, %d failed (first: %v), %d messages accepted (%.0f/s)",
		workers, elapsed.Round(time.Second), size, perStranger, done.Load(), failed.Load(), firstErr.Load(), accepted.Load(), float64(accepted.Load())/elapsed.Seconds())
	t.Logf("kept: %d requests, %d messages (%d text bytes) of requests; limit 2000 messages and 8 MiB in all; dropped: %d messages, %d requests whole",
		requests, kept, keptBytes, int64(right.dropMsgs), int64(right.dropReqs))
	t.Logf("%-12s %10s %10s %10s %10s %10s %8s %10s %6s", "daemon", "home MB", "files MB", "RSS MB", "anon MB", "heap MB", "CPU s", "goroutines", "fds")
	for _, r := range []struct {
		name string
		s    daemonSample
	}{{"before", before}, {"after flood", right}, {"after 30 s", rested}, {"restarted", restarted}} {
		t.Logf("%-12s %10.1f %10.1f %10.1f %10.1f %10.1f %8.1f %10d %6d", r.name, mb(r.s.home), mb(r.s.files), mb(r.s.rss), mb(r.s.anon), mb(r.s.heap), r.s.cpu.Seconds(), r.s.goroutines, r.s.fds)
	}
	if kept > 2000 || keptBytes > 8<<20 {
		t.Errorf("the daemon keeps %d messages (%d bytes) of requests, over the caps (2000 messages, 8 MiB)", kept, keptBytes)
	}
	if accepted.Load() == 0 {
		t.Errorf("the daemon accepted no message of the flood (first error: %v)", firstErr.Load())
	}
}

// flood is one stranger: a fresh identity and device key on a fresh
// libp2p host, which adds link's node and sends it n texts, waiting until
// each was acknowledged. It returns how many were.
func flood(ctx context.Context, link, name, text string, n int) (int, error) {
	st := store.NewMemory()
	defer st.Close()
	if err := node.Provision(ctx, st, name, nil); err != nil {
		return 0, err
	}
	self, err := node.ReadSelf(ctx, st)
	if err != nil {
		return 0, err
	}
	h, err := libp2p.New(libp2p.Identity(self.Key), libp2p.NoListenAddrs, libp2p.DisableRelay())
	if err != nil {
		return 0, err
	}
	defer h.Close()
	m, err := messaging.New(ctx, messaging.Config{Host: h, Store: st})
	if err != nil {
		return 0, err
	}
	defer m.Close()
	if _, err := m.AddContact(ctx, link, "target"); err != nil {
		return 0, fmt.Errorf("contact add: %w", err)
	}
	var ids []protocol.MessageID
	for range n {
		res, err := m.Send(ctx, "target", text)
		if err != nil {
			return 0, fmt.Errorf("send: %w", err)
		}
		var id protocol.MessageID
		if _, err := hex.Decode(id[:], []byte(res.ID)); err != nil {
			return 0, err
		}
		ids = append(ids, id)
	}
	for i, id := range ids {
		if _, err := m.WaitState(ctx, id, messaging.StateSent); err != nil {
			return i, fmt.Errorf("wait sent: %w", err)
		}
	}
	return n, nil
}

// daemonSample is what the flood measures of the daemon.
type daemonSample struct {
	home, files        int64 // bytes: on disk (as du counts) and the files' sizes
	rss, anon, heap    int64
	cpu                time.Duration
	goroutines, fds    int
	dropMsgs, dropReqs float64
}

func sampleDaemon(t *testing.T, u *user, metrics string) daemonSample {
	t.Helper()
	var s daemonSample
	filepath.WalkDir(u.h.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				s.home += st.Blocks * 512
			}
			s.files += fi.Size()
		}
		return nil
	})
	pid := u.d.Pid()
	if f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			switch k {
			case "VmRSS":
				s.rss = kb << 10
			case "RssAnon":
				s.anon = kb << 10
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// utime and stime are fields 14 and 15, after the command in
		// parentheses.
		if _, rest, ok := strings.Cut(string(b), ") "); ok {
			f := strings.Fields(rest)
			if len(f) > 12 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				sy, _ := strconv.ParseInt(f[12], 10, 64)
				s.cpu = time.Duration(u+sy) * time.Second / 100 // USER_HZ
			}
		}
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.fds = len(fds)
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Logf("metrics: %v", err)
		return s
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		f, _ := strconv.ParseFloat(v, 64)
		switch name {
		case "go_memstats_heap_inuse_bytes":
			s.heap = int64(f)
		case "go_goroutines":
			s.goroutines = int(f)
		case "sealpost_request_messages_dropped_total":
			s.dropMsgs = f
		case "sealpost_requests_dropped_total":
			s.dropReqs = f
		}
	}
	return s
}

func mb(b int64) float64 { return float64(b) / 1e6 }

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}
