// Package testnet_test runs `sealpost testnet` as a user would: a small
// in-process scenario with its JSON report and exit status, and a network
// of daemon processes brought up, inspected, driven through `testnet env`,
// and brought down.
package testnet_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/cmd/sealpost/e2e/harness"
)

var bin *harness.Binary

func TestMain(m *testing.M) { os.Exit(harness.Main(m, &bin)) }

type report struct {
	Sent       int      `json:"sent"`
	Delivered  int      `json:"delivered"`
	Lost       int      `json:"lost"`
	Duplicated int      `json:"duplicated"`
	Chaos      []string `json:"chaos"`
	Latency    struct {
		Direct   map[string]float64 `json:"direct"`
		ViaRelay map[string]float64 `json:"via_relay"`
	} `json:"latency_ms"`
	CPU  float64 `json:"cpu_time_seconds"`
	Peak int64   `json:"peak_memory_bytes"`
}

func TestRun(t *testing.T) {
	h := bin.Home(t)
	// A run of its own duration and drain: longer than an ordinary command.
	r := h.RunFor(5*time.Minute, "--json", "testnet", "run", "-n", "4", "--relays", "1", "--messages", "30", "--offline", "0.25",
		"--duration", "1s", "--seed", "3", "--dir", t.TempDir())
	if r.Code != 0 {
		t.Fatalf("testnet run: %s", r)
	}
	var rep report
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, r.Stdout)
	}
	if rep.Sent != 30 || rep.Delivered != 30 || rep.Lost != 0 || rep.Duplicated != 0 {
		t.Errorf("report %+v: want 30 sent and delivered, none lost or duplicated", rep)
	}
	if rep.Latency.Direct["count"]+rep.Latency.ViaRelay["count"] != 30 || rep.CPU <= 0 || rep.Peak <= 0 {
		t.Errorf("report %+v: want 30 latencies, CPU time and peak memory", rep)
	}
	if _, err := os.Stat(filepath.Join(h.Dir, "config.toml")); err == nil {
		t.Error("testnet run wrote into the home")
	}

	for _, args := range [][]string{
		{"testnet", "run", "--chaos", "meteor"},
		{"testnet", "run", "-n", "1"},
		{"testnet", "run", "--offline", "1"},
		{"testnet", "run", "--relays", "0", "--chaos", "kill-relay"},
	} {
		if r := h.Run(args...); r.Code != 1 || !strings.Contains(r.Stderr, "sealpost: testnet: bad options") {
			t.Errorf("%v: %s; want exit 1 naming the bad option", args, r)
		}
	}
}

type state struct {
	Dir     string `json:"dir"`
	Members []struct {
		Name   string `json:"name"`
		Relay  bool   `json:"relay"`
		Home   string `json:"home"`
		PID    int    `json:"pid"`
		PeerID string `json:"peer_id"`
		Addr   string `json:"addr"`
	} `json:"members"`
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	if pid <= 0 || errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestUpEnvStatusDown(t *testing.T) {
	h := bin.Home(t)
	dir := filepath.Join(t.TempDir(), "net")
	var st state
	t.Cleanup(func() { h.Run("testnet", "down", "--dir", dir) })
	h.JSON(&st, "testnet", "up", "-n", "2", "--relays", "1", "--dir", dir)
	if len(st.Members) != 3 || !st.Members[0].Relay || st.Members[1].Name != "node-0" {
		t.Fatalf("state %+v: want relay-0, node-0, node-1", st)
	}
	for _, m := range st.Members {
		if !running(m.PID) || m.PeerID == "" || !strings.Contains(m.Addr, "/ip4/127.0.0.1/") {
			t.Errorf("member %+v: want a running daemon with a loopback address", m)
		}
	}

	if r := h.Run("testnet", "up", "-n", "2", "--dir", dir); r.Code != 1 {
		t.Errorf("up on a running network: %s; want exit 1", r)
	}

	r := h.MustRun("testnet", "env", "1", "--dir", dir)
	if want := "SEALPOST_HOME=" + filepath.Join(dir, "node-1") + "\n"; r.Stdout != want {
		t.Errorf("env 1 = %q, want %q", r.Stdout, want)
	}
	if r := h.MustRun("testnet", "env", "relay-0", "--dir", dir); !strings.HasSuffix(r.Stdout, "/relay-0\n") {
		t.Errorf("env relay-0 = %q", r.Stdout)
	}
	if r := h.Run("testnet", "env", "7", "--dir", dir); r.Code != 1 {
		t.Errorf("env 7: %s; want exit 1", r)
	}

	// The env line drives node-1 with the normal CLI.
	n1 := bin.Home(t)
	n1.Dir = st.Members[2].Home
	var id struct {
		PeerID string `json:"peer_id"`
	}
	n1.JSON(&id, "id")
	if id.PeerID != st.Members[2].PeerID {
		t.Errorf("id of node-1 = %s, want %s", id.PeerID, st.Members[2].PeerID)
	}
	// The nodes bootstrapped from the relay.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var s struct {
			Members []struct {
				Name    string `json:"name"`
				Running bool   `json:"running"`
				Status  *struct {
					Peers int `json:"peers"`
				} `json:"status"`
			} `json:"members"`
		}
		h.JSON(&s, "testnet", "status", "--dir", dir)
		ok := len(s.Members) == 3
		for _, m := range s.Members {
			ok = ok && m.Running && m.Status != nil && m.Status.Peers > 0
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after 30 s: %+v; want every member running with a peer", s)
		}
		time.Sleep(200 * time.Millisecond)
	}

	h.MustRun("testnet", "down", "--dir", dir)
	for _, m := range st.Members {
		if running(m.PID) {
			t.Errorf("%s (pid %d) still runs after down", m.Name, m.PID)
		}
		if _, err := os.Stat(filepath.Join(m.Home, "config.toml")); err != nil {
			t.Errorf("%s: home gone after down: %v", m.Name, err)
		}
	}
	if r := h.MustRun("testnet", "status", "--dir", dir); strings.Contains(r.Stdout, "running") {
		t.Errorf("status after down:\n%s", r.Stdout)
	}

	// Up again: the same homes, the same identities.
	var again state
	h.JSON(&again, "testnet", "up", "-n", "2", "--relays", "1", "--dir", dir)
	for k := range st.Members {
		if again.Members[k].PeerID != st.Members[k].PeerID {
			t.Errorf("%s came back as %s, want %s", st.Members[k].Name, again.Members[k].PeerID, st.Members[k].PeerID)
		}
	}
	h.MustRun("testnet", "down", "--dir", dir)
}
