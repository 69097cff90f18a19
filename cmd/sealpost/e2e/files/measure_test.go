package files_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/cmd/sealpost/e2e/harness"
)

// TestMeasureLargeFile sends a file of SEALPOST_MEASURE_SIZE bytes
// (default 1 GiB) between two daemons on loopback, directly, and reports
// the largest RssAnon of each daemon, sampled every 100 ms from before the
// send until the recipient saved the file (downloaded, synced and checked
// against its digest); over 64 MiB is an error. Only with
// SEALPOST_MEASURE=1 (it writes about three times the size to the disk):
//
//	SEALPOST_MEASURE=1 go test ./cmd/sealpost/e2e/files -run TestMeasureLargeFile -v -timeout 30m
func TestMeasureLargeFile(t *testing.T) {
	if os.Getenv("SEALPOST_MEASURE") != "1" {
		t.Skip("a measurement: set SEALPOST_MEASURE=1")
	}
	size := int64(1 << 30)
	if v, err := strconv.ParseInt(os.Getenv("SEALPOST_MEASURE_SIZE"), 10, 64); err == nil && v > 0 {
		size = v
	}
	const limit = 64 << 20
	a, b := newNode(t, "alice"), newNode(t, "bob")
	for _, n := range []*node{a, b} {
		cfg := filepath.Join(n.home.Dir, "config.toml")
		c, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Replace(string(c), `max_size = '100MiB'`, `max_size = '2GiB'`, 1)
		s = strings.Replace(s, `auto_download = '16MiB'`, `auto_download = '2GiB'`, 1)
		if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		n.start("--listen", "/ip4/127.0.0.1/tcp/0")
	}
	var inv struct {
		Link string `json:"link"`
	}
	b.home.JSON(&inv, "invite")
	a.home.MustRun("contact", "add", inv.Link, "--name", "bob")
	a.home.MustRun("send", "bob", "hello", "--wait", "delivered", "--timeout", "60s")

	dir := t.TempDir()
	path, sum := pseudoRandomFile(t, dir, "large.bin", size)
	var (
		mu    sync.Mutex
		peak  [2]int64
		stop  = make(chan struct{})
		done  = make(chan struct{})
		pids  = [2]int{a.d.Pid(), b.d.Pid()}
		names = [2]string{"alice (sender)", "bob (recipient)"}
	)
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			for i, pid := range pids {
				if v, err := rssAnon(pid); err == nil {
					mu.Lock()
					peak[i] = max(peak[i], v)
					mu.Unlock()
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	start := time.Now()
	var sent struct {
		ID string `json:"id"`
	}
	a.home.JSON(&sent, "send", "bob", "--file", path)
	harness.Eventually(t, 20*time.Minute, "bob saved the file", func() bool {
		for _, f := range b.files() {
			if f.ID == sent.ID {
				if f.State == "failed" {
					t.Fatalf("bob's file failed: %+v", f)
				}
				return f.State == "saved"
			}
		}
		return false
	})
	el := time.Since(start)
	close(stop)
	<-done
	save(t, b, sent.ID, t.TempDir(), sum)
	t.Logf("%d MiB in %.1f s (%.1f MiB/s, encrypting included)", size>>20, el.Seconds(), float64(size)/(1<<20)/el.Seconds())
	for i := range peak {
		t.Logf("%s: largest RssAnon %.1f MiB, limit %d MiB, ratio %.2f", names[i], float64(peak[i])/(1<<20), limit>>20, float64(peak[i])/limit)
		if peak[i] == 0 || peak[i] > limit {
			t.Errorf("%s: RssAnon %d bytes", names[i], peak[i])
		}
	}
}

// pseudoRandomFile writes size pseudo-random bytes to dir/name without
// holding them, and returns the path and the SHA-256.
func pseudoRandomFile(t *testing.T, dir, name string, size int64) (string, string) {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if _, err := io.Copy(w, io.LimitReader(mrand.NewChaCha8([32]byte{42}), size)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return p, hex.EncodeToString(h.Sum(nil))
}

// rssAnon reads a process's RssAnon from /proc, in bytes.
func rssAnon(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssAnon:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb); err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no RssAnon in /proc/%d/status", pid)
}
