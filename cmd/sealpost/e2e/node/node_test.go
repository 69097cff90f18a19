// Package node_test runs the sealpost binary as real processes on 127.0.0.1:
// the node foundation of DESIGN.md §6 (init, daemon, id, status, peers, the
// local API, lifecycle and exit codes).
package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/cmd/sealpost/e2e/harness"
	"github.com/sealpost/sealpost/node/api"
	"github.com/sealpost/sealpost/node/nodetest"
)

var bin *harness.Binary

func TestMain(m *testing.M) { os.Exit(harness.Main(m, &bin)) }

// idJSON is the part of `sealpost id --json` these tests read.
type idJSON struct {
	UserID string   `json:"user_id"`
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
	Relays []string `json:"relays"`
}

type peersJSON struct {
	Peers []struct {
		PeerID string   `json:"peer_id"`
		Addrs  []string `json:"addrs"`
	} `json:"peers"`
}

// eventually retries f every 200 ms for up to 30 s, until it returns true.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func loopbackTCP(t *testing.T, id idJSON) string {
	t.Helper()
	for _, a := range id.Addrs {
		if strings.HasPrefix(a, "/ip4/127.0.0.1/tcp/") {
			return a
		}
	}
	t.Fatalf("id has no /ip4/127.0.0.1/tcp/ address: %v", id.Addrs)
	return ""
}

func lists(h *harness.Home, peerID string) bool {
	r := h.Run("--json", "peers", "ls")
	if r.Code != 0 {
		return false
	}
	var ps peersJSON
	if json.Unmarshal([]byte(r.Stdout), &ps) != nil {
		return false
	}
	return slices.ContainsFunc(ps.Peers, func(p struct {
		PeerID string   `json:"peer_id"`
		Addrs  []string `json:"addrs"`
	}) bool {
		return p.PeerID == peerID
	})
}

func TestTwoDaemonsFindEachOther(t *testing.T) {
	a, b := bin.Home(t), bin.Home(t)
	a.Init("--name", "alice")
	b.Init("--name", "bob")
	da := a.Start("--listen", "/ip4/127.0.0.1/tcp/0")

	var ida idJSON
	a.JSON(&ida, "id")
	if ida.UserID == "" || ida.PeerID == "" {
		t.Fatalf("id --json lacks user_id or peer_id: %+v", ida)
	}
	if ida.Relays == nil {
		t.Errorf("id --json has no relays list (want [] when there are none)")
	}
	for _, addr := range ida.Addrs {
		if !strings.HasSuffix(addr, "/p2p/"+ida.PeerID) {
			t.Errorf("address %s does not end in /p2p/%s", addr, ida.PeerID)
		}
	}
	// a's event stream, open before b starts, tells of b.
	events := make(chan api.Event, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go api.NewUnixClient(filepath.Join(a.Dir, "api.sock")).Events(ctx, func(ev api.Event) error {
		events <- ev
		return nil
	})
	db := b.Start("--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", loopbackTCP(t, ida))
	var idb idJSON
	b.JSON(&idb, "id")
	if idb.UserID == ida.UserID || idb.PeerID == ida.PeerID {
		t.Fatalf("two homes share an identity: %+v %+v", ida, idb)
	}

	eventually(t, "b lists a in peers ls", func() bool { return lists(b, ida.PeerID) })
	eventually(t, "a lists b in peers ls", func() bool { return lists(a, idb.PeerID) })
	timeout := time.After(30 * time.Second)
	for seen := false; !seen; {
		select {
		case ev := <-events:
			var pe struct {
				PeerID string `json:"peer_id"`
			}
			json.Unmarshal(ev.Data, &pe)
			seen = ev.Type == "peer.connected" && pe.PeerID == idb.PeerID
		case <-timeout:
			t.Fatalf("no peer.connected event for b on a's event stream")
		}
	}

	// Plain output names the peer too.
	if r := b.MustRun("peers", "ls"); !strings.Contains(r.Stdout, ida.PeerID) {
		t.Errorf("peers ls does not show %s:\n%s", ida.PeerID, r.Stdout)
	}
	var status map[string]any
	b.JSON(&status, "status")
	if n, _ := status["peers"].(float64); n < 1 {
		t.Errorf("status of b: peers = %v, want at least 1 (%v)", status["peers"], status)
	}

	if code := db.Stop(syscall.SIGTERM); code != 0 {
		t.Errorf("b exited %d on SIGTERM, want 0", code)
	}
	if code := da.Stop(syscall.SIGTERM); code != 0 {
		t.Errorf("a exited %d on SIGTERM, want 0", code)
	}
	if r := a.Run("status"); r.Code != 6 {
		t.Errorf("status after the daemon stopped: %s\nwant exit 6", r)
	}
}

func TestConnect(t *testing.T) {
	a, b := bin.Home(t), bin.Home(t)
	a.Init()
	b.Init()
	a.Start()
	b.Start()
	var ida idJSON
	a.JSON(&ida, "id")
	var out map[string]any
	b.JSON(&out, "peers", "connect", loopbackTCP(t, ida))
	if !lists(b, ida.PeerID) {
		t.Errorf("b does not list a right after peers connect")
	}
	if r := b.Run("peers", "connect", "not-a-multiaddr"); r.Code != 1 || !strings.HasPrefix(r.Stderr, "sealpost: ") {
		t.Errorf("connect to a malformed address: %s\nwant exit 1 with a sealpost: error", r)
	}
	// A peer that is not running, at a port nothing listens on: a network
	// error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var idc struct {
		PeerID string `json:"peer_id"`
	}
	bin.Home(t).JSON(&idc, "init", "--profile", "test", "--no-passphrase")
	if idc.PeerID == "" {
		t.Fatal("init --json printed no peer_id")
	}
	if r := b.Run("peers", "connect", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", port, idc.PeerID)); r.Code != 3 {
		t.Errorf("connect to a closed port: %s\nwant exit 3", r)
	}
}

func TestSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			h := bin.Home(t)
			h.Init()
			d := h.Start()
			if code := d.Stop(sig); code != 0 {
				t.Errorf("exit %d on %v, want 0\n%s", code, sig, d.Output())
			}
			if _, err := os.Stat(filepath.Join(h.Dir, "api.sock")); !os.IsNotExist(err) {
				t.Errorf("api.sock left after a clean stop: %v", err)
			}
			// The store was closed cleanly: the next start opens it.
			h.Start().Stop(syscall.SIGTERM)
		})
	}
}

func TestSecondDaemonRefused(t *testing.T) {
	h := bin.Home(t)
	h.Init()
	first := h.Start()
	second := h.Spawn()
	if code := second.Wait(); code != 1 {
		t.Errorf("second daemon exited %d, want 1\n%s", code, second.Output())
	}
	if out := second.Output(); !strings.Contains(out, "sealpost: ") || !strings.Contains(out, "already running") {
		t.Errorf("second daemon's error does not say a daemon is already running:\n%s", out)
	}
	if r := h.Run("status"); r.Code != 0 {
		t.Errorf("first daemon no longer answers: %s", r)
	}
	if first.Exited() {
		t.Errorf("first daemon exited")
	}
}

func TestNoDaemon(t *testing.T) {
	h := bin.Home(t)
	h.Init()
	for _, cmd := range [][]string{{"status"}, {"id"}, {"peers", "ls"}} {
		r := h.Run(cmd...)
		if r.Code != 6 || !strings.Contains(r.Stderr, "sealpost: no daemon running") {
			t.Errorf("%v without a daemon: %s\nwant exit 6 and 'no daemon running'", cmd, r)
		}
	}
	// A socket file left behind by a daemon that was killed.
	ln, err := net.Listen("unix", filepath.Join(h.Dir, "api.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if r := h.Run("status"); r.Code != 6 {
		t.Errorf("status with a stale socket: %s\nwant exit 6", r)
	}
	// A daemon that dies during a request: it takes the request and
	// closes the connection without an answer.
	os.Remove(filepath.Join(h.Dir, "api.sock"))
	ln, err = net.Listen("unix", filepath.Join(h.Dir, "api.sock"))
	if err != nil {
		t.Fatal(err)
	}
	nodetest.HangUp(t, ln)
	r := h.Run("status")
	ln.Close()
	if r.Code != 6 || !strings.Contains(r.Stderr, "sealpost: the daemon stopped before it answered") {
		t.Errorf("status whose daemon died during the request: %s\nwant exit 6 and 'the daemon stopped before it answered'", r)
	}
	// A bad --listen address is the user's error.
	if r := h.Run("daemon", "--listen", "/ip4/127.0.0.1/tcp/notaport"); r.Code != 1 || !strings.HasPrefix(r.Stderr, "sealpost: ") || !strings.Contains(r.Stderr, "bad multiaddr") {
		t.Errorf("daemon with a bad --listen: %s\nwant exit 1 and 'bad multiaddr'", r)
	}
	// And a daemon starts over the stale socket.
	h.Start()
	// An uninitialized home has no daemon either.
	if r := bin.Home(t).Run("status"); r.Code != 6 {
		t.Errorf("status on an empty home: %s\nwant exit 6", r)
	}
}

// TestLongHome runs a daemon on a home whose api.sock path is too long for a
// unix socket: the socket goes to the runtime directory, named in HOME/api.
func TestLongHome(t *testing.T) {
	h := bin.Home(t)
	h.Dir = filepath.Join(h.Dir, strings.Repeat("d", 60), strings.Repeat("e", 60))
	runtimeDir := t.TempDir()
	h.Env = []string{"XDG_RUNTIME_DIR=" + runtimeDir}
	h.Init()
	d := h.Start()
	b, err := os.ReadFile(filepath.Join(h.Dir, "api"))
	if err != nil {
		t.Fatalf("HOME/api: %v", err)
	}
	sock := strings.TrimSpace(string(b))
	fi, err := os.Stat(sock)
	if err != nil || !strings.HasPrefix(sock, runtimeDir) || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %s: %v, %v; want a 0600 socket under %s", sock, fi.Mode(), err, runtimeDir)
	}
	var id idJSON
	h.JSON(&id, "id")
	if code := d.Stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d on SIGTERM", code)
	}
	if r := h.Run("status"); r.Code != 6 {
		t.Errorf("status after stop: %s\nwant exit 6", r)
	}
}

func TestKilledDaemonRestarts(t *testing.T) {
	h := bin.Home(t)
	h.Init()
	var before idJSON
	d := h.Start()
	h.JSON(&before, "id")
	d.Stop(syscall.SIGKILL)
	h.Start()
	var after idJSON
	h.JSON(&after, "id")
	if after.UserID != before.UserID || after.PeerID != before.PeerID {
		t.Errorf("identity changed across a SIGKILL: %+v -> %+v", before, after)
	}
}

func TestFileModes(t *testing.T) {
	h := bin.Home(t)
	h.Init()
	h.Start()
	for name, want := range map[string]os.FileMode{
		"":          0o700 | os.ModeDir,
		"api.sock":  0o600 | os.ModeSocket,
		"api.token": 0o600,
	} {
		fi, err := os.Stat(filepath.Join(h.Dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := fi.Mode() & (os.ModeType | os.ModePerm); got != want {
			t.Errorf("%s: mode %v, want %v", filepath.Join(h.Dir, name), got, want)
		}
	}
}

func TestConfigHasNoKeys(t *testing.T) {
	h := bin.Home(t)
	h.Init()
	b, err := os.ReadFile(filepath.Join(h.Dir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for _, want := range []string{"#", "profile", "listen", "bootstrap", "mdns", "api", "metrics", "relay_service"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config.toml lacks %q:\n%s", want, cfg)
		}
	}
	token, err := os.ReadFile(filepath.Join(h.Dir, "api.token"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToLower(cfg), "key =") || strings.Contains(cfg, strings.TrimSpace(string(token))) {
		t.Errorf("config.toml holds a key or the token:\n%s", cfg)
	}
	if r := h.Run("init", "--no-passphrase"); r.Code != 1 {
		t.Errorf("init of an initialized home: %s\nwant exit 1", r)
	}
}

func TestPassphrases(t *testing.T) {
	t.Run("no source, no terminal", func(t *testing.T) {
		for _, args := range [][]string{{"init"}, {"daemon", "--init"}} {
			h := bin.Home(t)
			r := h.Run(args...)
			if r.Code != 1 || !strings.Contains(r.Stderr, "--no-passphrase") || !strings.HasPrefix(r.Stderr, "sealpost: ") {
				t.Errorf("%v without passphrase or terminal: %s\nwant exit 1 and an error naming --no-passphrase", args, r)
			}
			if _, err := os.Stat(filepath.Join(h.Dir, "config.toml")); err == nil {
				t.Errorf("%v left an initialized home behind", args)
			}
		}
	})
	t.Run("no passphrase warns", func(t *testing.T) {
		h := bin.Home(t)
		r := h.MustRun("init", "--profile", "test", "--no-passphrase")
		if !strings.Contains(r.Stderr, "disk") {
			t.Errorf("init --no-passphrase does not warn about disk theft:\n%s", r)
		}
	})
	t.Run("env, file and wrong", func(t *testing.T) {
		h := bin.Home(t)
		h.Env = []string{"SEALPOST_PASSPHRASE=correct horse"}
		h.MustRun("init", "--profile", "test")
		h.Start().Stop(syscall.SIGTERM)

		h.Env = []string{"SEALPOST_PASSPHRASE=wrong horse"}
		d := h.Spawn()
		if code := d.Wait(); code != 1 || !strings.Contains(d.Output(), "sealpost: wrong passphrase") {
			t.Errorf("daemon with a wrong passphrase exited %d:\n%s\nwant exit 1 and 'wrong passphrase'", code, d.Output())
		}

		h.Env = nil
		file := filepath.Join(t.TempDir(), "pass")
		os.WriteFile(file, []byte("correct horse\n"), 0o600)
		h.Start("--passphrase-file", file)
	})
	t.Run("daemon without passphrase", func(t *testing.T) {
		h := bin.Home(t)
		h.Env = []string{"SEALPOST_PASSPHRASE=correct horse"}
		h.MustRun("init", "--profile", "test")
		h.Env = nil
		d := h.Spawn()
		if code := d.Wait(); code != 1 || !strings.Contains(d.Output(), "protected") || strings.Contains(d.Output(), "--no-passphrase") {
			t.Errorf("daemon of a protected home without a passphrase exited %d:\n%s\nwant exit 1 saying it is protected, without --no-passphrase", code, d.Output())
		}
		// --no-passphrase is for a new store: on this one it is refused,
		// with how to remove a passphrase.
		d = h.Spawn("--no-passphrase")
		if code := d.Wait(); code != 1 || !strings.Contains(d.Output(), "sealpost passphrase --no-passphrase") || strings.Contains(d.Output(), "pass --no-passphrase") {
			t.Errorf("daemon --no-passphrase of a protected home exited %d:\n%s\nwant exit 1 pointing to 'sealpost passphrase --no-passphrase'", code, d.Output())
		}
	})
}

// TestAPIAnyPort: --api 127.0.0.1:0 serves on a port the kernel picks, and
// the daemon tells which: in its log, in id and in status.
func TestAPIAnyPort(t *testing.T) {
	h := bin.Home(t)
	h.Init()
	d := h.Start("--api", "127.0.0.1:0")
	var id, st struct {
		API string `json:"api"`
	}
	h.JSON(&id, "id")
	h.JSON(&st, "status")
	host, port, err := net.SplitHostPort(id.API)
	if err != nil || host != "127.0.0.1" || port == "0" || port == "" {
		t.Fatalf("id --json: api %q, want 127.0.0.1 and the port bound", id.API)
	}
	if st.API != id.API {
		t.Errorf("status --json: api %q, want %q", st.API, id.API)
	}
	if !strings.Contains(h.MustRun("id").Stdout, "api: "+id.API) || !strings.Contains(h.MustRun("status").Stdout, id.API) {
		t.Errorf("id and status do not print the API address %s", id.API)
	}
	if !strings.Contains(d.Output(), "addr="+id.API) {
		t.Errorf("the daemon's log does not name %s:\n%s", id.API, d.Output())
	}
	resp, err := http.Get("http://" + id.API + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /healthz on %s: %s", id.API, resp.Status)
	}
}

// TestTCPAPI checks the API over TCP: bearer token and Host allowlist, and
// that /healthz and /metrics need no token.
func TestTCPAPI(t *testing.T) {
	h := bin.Home(t)
	h.Init()
	apiAddr := freeLoopbackAddr(t)
	metricsAddr := freeLoopbackAddr(t)
	h.Start("--api", apiAddr, "--metrics", metricsAddr)
	token, err := os.ReadFile(filepath.Join(h.Dir, "api.token"))
	if err != nil {
		t.Fatal(err)
	}
	bearer := "Bearer " + strings.TrimSpace(string(token))
	_, port, _ := net.SplitHostPort(apiAddr)

	tests := []struct {
		name, path, host, auth string
		status                 int
		code                   string
	}{
		{"no token", "/v1/id", "", "", 401, "unauthorized"},
		{"wrong token", "/v1/id", "", "Bearer nope", 401, "unauthorized"},
		{"foreign host", "/v1/id", "evil.example:" + port, bearer, 403, "forbidden_host"},
		{"foreign host without token", "/healthz", "evil.example:" + port, "", 403, "forbidden_host"},
		{"localhost", "/v1/id", "localhost:" + port, bearer, 200, ""},
		{"ip", "/v1/id", "", bearer, 200, ""},
		{"openapi needs the token", "/openapi.json", "", "", 401, "unauthorized"},
		{"healthz without token", "/healthz", "", "", 200, ""},
		{"metrics without token", "/metrics", "", "", 200, ""},
		{"unknown route", "/v1/nope", "", bearer, 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+apiAddr+tt.path, nil)
			if tt.host != "" {
				req.Host = tt.host
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if tt.code != "" {
				var e struct {
					Error struct{ Code, Message string }
				}
				if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tt.code {
					t.Errorf("body %s: want error code %q", body, tt.code)
				}
			}
		})
	}

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "go_goroutines") {
		t.Errorf("--metrics: status %d, body lacks go_goroutines", resp.StatusCode)
	}
}

// TestOpenAPIOverSocket reads the OpenAPI document and an event stream over
// the unix socket, as another program would.
func TestOpenAPIOverSocket(t *testing.T) {
	h := bin.Home(t)
	h.Init()
	h.Start()
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(h.Dir, "api.sock"))
		},
	}}
	resp, err := c.Get("http://sealpost/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.json: %v, version %q", err, doc.OpenAPI)
	}
	for _, p := range []string{"/v1/id", "/v1/status", "/v1/peers", "/v1/events", "/healthz", "/metrics"} {
		if doc.Paths[p] == nil {
			t.Errorf("openapi.json does not describe %s", p)
		}
	}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestBench(t *testing.T) {
	h := bin.Home(t)
	var report struct {
		Go      string `json:"go"`
		CPUs    int    `json:"cpus"`
		Figures []struct {
			Name  string   `json:"name"`
			Unit  string   `json:"unit"`
			Value float64  `json:"value"`
			Limit *float64 `json:"limit"`
			Ratio *float64 `json:"ratio"`
		} `json:"figures"`
	}
	// Every figure runs for the duration beside its limit, and the
	// attachment figures move 8 and 64 MiB whatever the duration: about
	// 35 s of wall time on 2 cores at load 20, longer than an ordinary
	// command is given on a loaded machine.
	r := h.RunFor(5*time.Minute, "--json", "bench", "--duration", "400ms", "--dir", t.TempDir(), "--mls-members", "10")
	if r.Code != 0 {
		t.Fatalf("bench: %s", r)
	}
	if err := json.Unmarshal([]byte(r.Stdout), &report); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, r.Stdout)
	}
	if !strings.HasPrefix(report.Go, "go") || report.CPUs < 1 {
		t.Errorf("bench --json: go %q, cpus %d", report.Go, report.CPUs)
	}
	names := map[string]bool{}
	for _, f := range report.Figures {
		names[f.Name] = true
		// A heap figure is growth over the level before a transfer, and a
		// transfer that left the live heap no higher is measured as 0.
		if f.Unit == "" || f.Value < 0 || f.Value == 0 && !strings.HasPrefix(f.Name, "attachment_heap_") {
			t.Errorf("figure %+v has no unit or value", f)
		}
		if (f.Limit == nil) != (f.Ratio == nil) {
			t.Errorf("figure %s: limit and ratio must come together", f.Name)
		}
		if f.Limit != nil && *f.Ratio <= 0 {
			t.Errorf("figure %s: ratio %v", f.Name, *f.Ratio)
		}
	}
	for _, want := range []string{"ratchet_roundtrip", "seal_open", "store_durable_write", "store_batch_write",
		"mls_app_roundtrip", "mls_update_create_pq_n10", "mls_add_welcome_bytes_pq_n10"} {
		if !names[want] {
			t.Errorf("bench --json lacks %s", want)
		}
	}
	if _, err := os.Stat(h.Dir); !os.IsNotExist(err) {
		t.Errorf("bench created the home %s", h.Dir)
	}
}

func TestCommandLine(t *testing.T) {
	h := bin.Home(t)
	r := h.MustRun("--help")
	for _, cmd := range []string{"init", "daemon", "id", "status", "peers", "bench", "version", "completion"} {
		if !strings.Contains(r.Stdout, "  "+cmd+" ") {
			t.Errorf("--help does not list %s:\n%s", cmd, r.Stdout)
		}
	}
	if r := h.MustRun("daemon", "--help"); !strings.Contains(r.Stdout, "--bootstrap") || !strings.Contains(r.Stdout, "--no-passphrase") {
		t.Errorf("daemon --help is incomplete:\n%s", r.Stdout)
	}
	var v struct{ Version, Go string }
	h.JSON(&v, "version")
	if v.Version == "" || !strings.HasPrefix(v.Go, "go") {
		t.Errorf("version --json: %+v", v)
	}
	if r := h.MustRun("completion", "bash"); !strings.Contains(r.Stdout, "sealpost") {
		t.Errorf("completion bash printed no script")
	}
	for _, tt := range []struct {
		args []string
		want string // in the error
	}{
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"status", "--frob"}, "unknown flag"},
		{[]string{"peers", "connect"}, "accepts 1 arg(s)"},
		{[]string{"peers"}, "needs a subcommand"},
		{[]string{"init", "--profile", "server", "--no-passphrase"}, "unknown profile"},
		{[]string{"init", "--passphrase-file", "x", "--no-passphrase"}, "none of the others can be"},
		{[]string{"daemon", "--api", "0.0.0.0:7711"}, "--api 0.0.0.0:7711: the API listens only on loopback"},
	} {
		r := h.Run(tt.args...)
		if r.Code != 1 || !strings.HasPrefix(r.Stderr, "sealpost: ") || r.Stdout != "" || !strings.Contains(r.Stderr, tt.want) {
			t.Errorf("%v: %s\nwant exit 1, a 'sealpost: ' error saying %q and no output", tt.args, r, tt.want)
		}
	}
}
