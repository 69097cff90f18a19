// Package files_test runs the sealpost binary as real processes on
// 127.0.0.1 and sends files: to a recipient online, to a recipient offline
// through its relay, which is killed in the middle of the upload, with the
// sender and the recipient killed in the middle of a download, and with
// bad input (names, sizes, a relay's altered copy). Every file arrives bit
// for bit or not at all, with the states and errors the CLI shows.
package files_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/cmd/sealpost/e2e/harness"
	"github.com/sealpost/sealpost/node/api"
)

var bin *harness.Binary

func TestMain(m *testing.M) { os.Exit(harness.Main(m, &bin)) }

// fileJSON is the part of a file (file ls --json) these tests read.
type fileJSON struct {
	ID       string `json:"id"`
	Outgoing bool   `json:"outgoing"`
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	State    string `json:"state"`
	Error    string `json:"error"`
	Digest   string `json:"digest"`
	Blobs    int    `json:"blobs"`
	Have     int    `json:"have"`
	Relays   []struct {
		Done  int    `json:"done"`
		Error string `json:"error"`
	} `json:"relays"`
}

// msgJSON is the part of an inbox --json line these tests read.
type msgJSON struct {
	ID   string `json:"id"`
	Text string `json:"text"`
	File *struct {
		ID    string `json:"id"`
		Name  string `json:"name"`
		Size  int64  `json:"size"`
		MIME  string `json:"mime"`
		State string `json:"state"`
	} `json:"file"`
}

type node struct {
	t    *testing.T
	name string
	home *harness.Home
	d    *harness.Daemon
	args []string
	id   struct {
		UserID string   `json:"user_id"`
		Addrs  []string `json:"addrs"`
	}
}

func newNode(t *testing.T, name string, args ...string) *node {
	n := &node{t: t, name: name, home: bin.Home(t)}
	n.home.Init(append([]string{"--name", name}, args...)...)
	return n
}

func (n *node) start(args ...string) {
	n.t.Helper()
	if args != nil {
		n.args = args
	}
	n.d = n.home.Start(append([]string{"--no-mdns"}, n.args...)...)
	n.home.JSON(&n.id, "id")
}

func (n *node) addr() string {
	for _, a := range n.id.Addrs {
		if strings.HasPrefix(a, "/ip4/127.0.0.1/tcp/") {
			return a
		}
	}
	n.t.Fatalf("%s has no loopback TCP address", n.name)
	return ""
}

func (n *node) files() []fileJSON {
	n.t.Helper()
	var l struct {
		Files []fileJSON `json:"files"`
	}
	n.home.JSON(&l, "file", "ls")
	return l.Files
}

func (n *node) file(id string) fileJSON {
	n.t.Helper()
	for _, f := range n.files() {
		if f.ID == id {
			return f
		}
	}
	n.t.Fatalf("%s has no file %s", n.name, id)
	return fileJSON{}
}

func (n *node) inbox() []msgJSON {
	n.t.Helper()
	r := n.home.Run("--json", "inbox")
	if r.Code != 0 {
		return nil
	}
	return harness.DecodeLines[msgJSON](n.t, r.Stdout)
}

// randomFile writes size random bytes to dir/name and returns the path
// and the SHA-256.
func randomFile(t *testing.T, dir, name string, size int) (string, string) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return p, hex.EncodeToString(sum[:])
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// waitMessage waits until r's inbox holds the file message id.
func waitMessage(t *testing.T, r *node, id string) msgJSON {
	t.Helper()
	var m msgJSON
	harness.Eventually(t, 90*time.Second, r.name+" received file message "+id, func() bool {
		for _, x := range r.inbox() {
			if x.ID == id {
				m = x
				return true
			}
		}
		return false
	})
	return m
}

// save runs file save id into dir and checks what it wrote against sum.
func save(t *testing.T, r *node, id, dir, sum string) string {
	t.Helper()
	var res struct {
		Path   string `json:"path"`
		Digest string `json:"digest"`
	}
	r.home.JSON(&res, "file", "save", id, dir)
	if filepath.Dir(res.Path) != dir {
		t.Fatalf("saved to %s, outside %s", res.Path, dir)
	}
	if got := sha256File(t, res.Path); got != sum || res.Digest != sum {
		t.Fatalf("saved file's sha256 %s (reported %s), sent %s", got, res.Digest, sum)
	}
	return res.Path
}

// blobFiles counts the blob files a relay keeps.
func blobFiles(t *testing.T, relay *node) int {
	t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(relay.home.Dir, "blobs"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
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
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("metric %s: %q", sample, v)
			}
			return f
		}
	}
	return 0
}

// TestFiles: a 20 MiB file to a recipient online goes directly; as it is
// over the automatic download size it waits for file save, which
// downloads and checks it. A second one to the recipient, offline, goes to
// its relay, which is killed in the middle of the upload and restarted;
// the upload resumes, the pointer follows, and the recipient, started
// again, saves it. Both are bit for bit what was sent, the sender's show
// delivered, the recipient's saved, and the relay drops the blobs once the
// recipient has them.
func TestFiles(t *testing.T) {
	const size = 20 << 20
	relay := newNode(t, "relay", "--profile", "relay")
	metrics := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	relay.start("--relay-service", "--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", harness.FreePort(t)), "--metrics", metrics)
	sam := newNode(t, "sam")
	sam.start("--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", relay.addr())
	rita := newNode(t, "rita")
	rita.start("--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", relay.addr())
	rita.home.MustRun("relays", "add", relay.addr())
	var inv struct {
		Link string `json:"link"`
	}
	rita.home.JSON(&inv, "invite")
	sam.home.MustRun("contact", "add", inv.Link, "--name", "rita")
	sam.home.MustRun("send", "rita", "files follow", "--wait", "delivered", "--timeout", "60s")
	src := t.TempDir()

	// Online: directly from sam's device.
	path1, sum1 := randomFile(t, src, "online.bin", size)
	var sent struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	start := time.Now()
	sam.home.JSON(&sent, "send", "rita", "--file", path1, "--caption", "the first", "--wait", "sent", "--timeout", "60s")
	m := waitMessage(t, rita, sent.ID)
	if m.Text != "the first" || m.File == nil || m.File.Name != "online.bin" || m.File.Size != size || m.File.ID != sent.ID {
		t.Fatalf("rita's message: %+v", m)
	}
	if m.File.State != "queued" {
		t.Errorf("a file over auto_download is %s before file save, want queued", m.File.State)
	}
	out1 := t.TempDir()
	save(t, rita, sent.ID, out1, sum1)
	t.Logf("online: %d MiB sent and saved in %v", size>>20, time.Since(start).Round(time.Millisecond))
	if f := rita.file(sent.ID); f.State != "saved" || f.Outgoing {
		t.Errorf("rita's file: %+v", f)
	}
	harness.Eventually(t, 30*time.Second, "sam's first file delivered", func() bool { return sam.file(sent.ID).State == "delivered" })
	// Saving again picks a free name: nothing is overwritten.
	if p := save(t, rita, sent.ID, out1, sum1); filepath.Base(p) != "online (2).bin" {
		t.Errorf("second save wrote %s", p)
	}

	// Offline: through the relay, killed during the upload.
	rita.d.Stop(syscall.SIGTERM)
	path2, sum2 := randomFile(t, src, "offline.bin", size)
	var second struct {
		ID string `json:"id"`
	}
	sam.home.JSON(&second, "send", "rita", "--file", path2, "--caption", "the second")
	var during fileJSON
	harness.Eventually(t, 60*time.Second, "the upload under way", func() bool {
		during = sam.file(second.ID)
		return len(during.Relays) > 0 && during.Relays[0].Done > 0
	})
	// Freeze the relay at once, then kill it: whatever it acknowledged is
	// on its disk.
	syscall.Kill(relay.d.Pid(), syscall.SIGSTOP)
	relay.d.Stop(syscall.SIGKILL)
	// Once sam's upload has failed, what it recorded as acknowledged is
	// final.
	harness.Eventually(t, 60*time.Second, "sam's upload failed with the relay", func() bool {
		during = sam.file(second.ID)
		return during.Relays[0].Error != ""
	})
	acked := during.Relays[0].Done
	t.Logf("relay killed with %d of %d blobs acknowledged (%s)", acked, during.Blobs, during.Relays[0].Error)
	if acked == 0 || acked >= during.Blobs {
		t.Fatalf("the relay had acknowledged %d of %d blobs when it was killed; the kill was not during the upload", acked, during.Blobs)
	}
	if during.State != "queued" {
		t.Errorf("sam's file during the upload is %s, want queued (the pointer goes after the blobs)", during.State)
	}
	relay.start()
	harness.Eventually(t, 180*time.Second, "the upload resumed and the pointer sent", func() bool {
		f := sam.file(second.ID)
		return f.State == "sent"
	})
	if blobFiles(t, relay) == 0 {
		t.Fatal("the relay holds no blob files")
	}
	// The restarted relay was asked for the blobs it had not acknowledged
	// only: an acknowledged blob is never sent twice.
	if puts := metric(t, metrics, `sealpost_relay_attachment_requests_total{op="put"}`); puts > float64(during.Blobs-acked) {
		t.Errorf("after the restart the relay got %v uploads; %d of %d blobs were not acknowledged", puts, during.Blobs-acked, during.Blobs)
	} else {
		t.Logf("after the restart: %v uploads for the %d blobs not acknowledged", puts, during.Blobs-acked)
	}

	rita.start()
	m = waitMessage(t, rita, second.ID)
	if m.Text != "the second" || m.File == nil || m.File.Name != "offline.bin" {
		t.Fatalf("rita's second message: %+v", m)
	}
	save(t, rita, second.ID, t.TempDir(), sum2)
	harness.Eventually(t, 60*time.Second, "sam's second file delivered", func() bool { return sam.file(second.ID).State == "delivered" })
	harness.Eventually(t, 60*time.Second, "the relay dropped the blobs", func() bool { return blobFiles(t, relay) == 0 })
}

// TestFileRefusals: what the CLI refuses before anything is sent, and the
// file names it will not write under.
func TestFileRefusals(t *testing.T) {
	a := newNode(t, "alice")
	a.start("--listen", "/ip4/127.0.0.1/tcp/0")
	b := newNode(t, "bob")
	b.start("--listen", "/ip4/127.0.0.1/tcp/0")
	var inv struct {
		Link string `json:"link"`
	}
	b.home.JSON(&inv, "invite")
	a.home.MustRun("contact", "add", inv.Link, "--name", "bob")
	dir := t.TempDir()
	small, _ := randomFile(t, dir, "small.bin", 1000)
	tiny, _ := randomFile(t, dir, "tiny.bin", 100)
	// Over max_size: limit, exit 5.
	cfg := filepath.Join(a.home.Dir, "config.toml")
	b0, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b0), `max_size = '100MiB'`) {
		t.Fatalf("config.toml has no [files] max_size:\n%s", b0)
	}
	os.WriteFile(cfg, []byte(strings.Replace(string(b0), `max_size = '100MiB'`, `max_size = '500B'`, 1)), 0o600)
	a.d.Stop(syscall.SIGTERM)
	a.start()
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"send", "bob", "--file", small}, 5, "max_size"},
		{[]string{"send", "bob", "--file", filepath.Join(dir, "missing")}, 1, "no such file"},
		{[]string{"send", "bob", "--file", dir}, 1, "not a regular file"},
		{[]string{"send", "nobody", "--file", tiny}, 1, "unknown contact"},
		{[]string{"send", "bob", "text", "--caption", "x"}, 1, "--caption goes with --file"},
		{[]string{"file", "save", strings.Repeat("ab", 16)}, 1, "unknown file"},
	} {
		r := a.home.Run(c.args...)
		if r.Code != c.code || !strings.Contains(r.Stderr, c.says) {
			t.Errorf("sealpost %s: %s\nwant exit %d saying %q", strings.Join(c.args, " "), r, c.code, c.says)
		}
	}
	if l := a.files(); len(l) != 0 {
		t.Errorf("files after the refusals: %+v", l)
	}
	if matches, _ := filepath.Glob(filepath.Join(a.home.Dir, "files", "*")); len(matches) != 0 {
		t.Errorf("left in HOME/files: %v", matches)
	}
}

// setConfig replaces the line key = ... of n's config.toml with key = value.
func setConfig(t *testing.T, n *node, key, value string) {
	t.Helper()
	p := filepath.Join(n.home.Dir, "config.toml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	found := false
	for i, l := range lines {
		if strings.HasPrefix(l, key+" = ") {
			lines[i], found = key+" = "+value, true
		}
	}
	if !found {
		t.Fatalf("config.toml has no %s:\n%s", key, b)
	}
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// pair starts sam and rita, on fixed ports (so a restarted daemon is
// where the pointer says), and makes rita sam's contact.
func pair(t *testing.T, ritaConfig ...string) (sam, rita *node) {
	sam = newNode(t, "sam")
	sam.start("--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", harness.FreePort(t)))
	rita = newNode(t, "rita")
	for i := 0; i+1 < len(ritaConfig); i += 2 {
		setConfig(t, rita, ritaConfig[i], ritaConfig[i+1])
	}
	rita.start("--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", harness.FreePort(t)))
	var inv struct {
		Link string `json:"link"`
	}
	rita.home.JSON(&inv, "invite")
	sam.home.MustRun("contact", "add", inv.Link, "--name", "rita")
	sam.home.MustRun("send", "rita", "files follow", "--wait", "delivered", "--timeout", "60s")
	return sam, rita
}

// TestKills: rita downloads a file from sam's device as it arrives; sam is
// frozen in the middle, rita is killed, then sam. Both start again: the
// download resumes with the blobs rita had (none fetched twice from
// zero), and the file is saved bit for bit; sam's shows delivered.
func TestKills(t *testing.T) {
	const size = 48 << 20
	sam, rita := pair(t, "auto_download", "'64MiB'")
	src := t.TempDir()
	var id string
	var have, blobs int
	// A fast machine may finish a download before the poll sees it under
	// way: then another file is sent (at most three).
	for try := 0; try < 3 && have == 0; try++ {
		path, _ := randomFile(t, src, fmt.Sprintf("big%d.bin", try), size)
		var sent struct {
			ID string `json:"id"`
		}
		sam.home.JSON(&sent, "send", "rita", "--file", path)
		harness.Eventually(t, 90*time.Second, "rita downloading "+sent.ID, func() bool {
			for _, f := range rita.files() {
				if f.ID == sent.ID && f.Have > 0 {
					if f.Have < f.Blobs {
						syscall.Kill(sam.d.Pid(), syscall.SIGSTOP)
						id, blobs = f.ID, f.Blobs
						have = rita.file(f.ID).Have
					}
					return true
				}
			}
			return false
		})
		if have == blobs {
			have = 0
		}
	}
	if have == 0 {
		t.Fatal("three downloads finished before the poll saw one under way")
	}
	sum := sha256File(t, filepath.Join(src, rita.file(id).Name))
	rita.d.Stop(syscall.SIGKILL)
	sam.d.Stop(syscall.SIGKILL)
	t.Logf("rita and sam killed with %d of %d blobs downloaded", have, blobs)

	sam.start()
	rita.start()
	if f := rita.file(id); f.Have < have {
		t.Errorf("after the restart rita has %d blobs, before the kill %d: the download started again", f.Have, have)
	}
	harness.Eventually(t, 120*time.Second, "rita's download resumed and saved", func() bool { return rita.file(id).State == "saved" })
	save(t, rita, id, t.TempDir(), sum)
	harness.Eventually(t, 60*time.Second, "sam's file delivered", func() bool { return sam.file(id).State == "delivered" })
}

// TestBadInput: names that would leave a directory are refused by the
// API; a file over the recipient's limit is not downloaded there, and
// file save says why (exit 5); a relay's altered copies of blobs are refused by
// the recipient, which names the damage and gets the file from the
// sender's device once it answers.
func TestBadInput(t *testing.T) {
	relay := newNode(t, "relay", "--profile", "relay")
	relay.start("--relay-service", "--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", harness.FreePort(t)))
	sam, rita := pair(t, "max_size", "'2MiB'")
	rita.home.MustRun("relays", "add", relay.addr())
	src := t.TempDir()

	// Names: the API takes a base name only.
	cl := api.NewUnixClient(filepath.Join(sam.home.Dir, "api.sock"))
	for _, name := range []string{"../../etc/passwd", "/etc/passwd", `..\win.ini`, "..", "a/b", "nul\x00.txt"} {
		_, err := cl.SendFile(context.Background(), "rita", name, "", "", strings.NewReader("x"), 1)
		if err == nil || !strings.Contains(err.Error(), "name") {
			t.Errorf("a file named %q: %v", name, err)
		}
	}

	// Over the recipient's max_size: sent, not downloaded there, and file
	// save says why.
	big, _ := randomFile(t, src, "big.bin", 3<<20)
	var sent struct {
		ID string `json:"id"`
	}
	sam.home.JSON(&sent, "send", "rita", "--file", big)
	waitMessage(t, rita, sent.ID)
	if f := rita.file(sent.ID); f.State != "queued" || f.Have != 0 {
		t.Errorf("rita's oversize file: %+v, want queued and nothing downloaded", f)
	}
	if r := rita.home.Run("file", "save", sent.ID, t.TempDir()); r.Code != 5 || !strings.Contains(r.Stderr, "max_size") {
		t.Errorf("file save of the oversize file: %s", r)
	}
	var f fileJSON

	// A relay's altered copy: rita offline, the blobs go to the relay;
	// sam stops; every blob on the relay's disk is damaged, one cut short.
	rita.d.Stop(syscall.SIGTERM)
	path, sum := randomFile(t, src, "small.bin", 1<<20)
	sam.home.JSON(&sent, "send", "rita", "--file", path, "--wait", "sent", "--timeout", "90s")
	sam.d.Stop(syscall.SIGTERM)
	var blobPaths []string
	filepath.WalkDir(filepath.Join(relay.home.Dir, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			blobPaths = append(blobPaths, p)
		}
		return nil
	})
	if len(blobPaths) == 0 {
		t.Fatal("the relay holds no blob")
	}
	for i, p := range blobPaths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			b = b[:len(b)/2]
		} else {
			b[len(b)/3] ^= 1
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rita.start()
	waitMessage(t, rita, sent.ID)
	harness.Eventually(t, 60*time.Second, "rita's download refused the relay's copy", func() bool {
		f = rita.file(sent.ID)
		return f.Error != "" && f.State != "saved"
	})
	t.Logf("the altered copy: %s: %s", f.State, f.Error)
	sam.start()
	harness.Eventually(t, 120*time.Second, "rita got the file from sam", func() bool { return rita.file(sent.ID).State == "saved" })
	save(t, rita, sent.ID, t.TempDir(), sum)
}
