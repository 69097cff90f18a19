// Package groups_test runs the sealpost binary as real processes on
// 127.0.0.1 — one relay, three personal nodes — and drives group chats
// only through the command line: a group is created on the relay,
// contacts join it, messages reach every member with per-member delivery,
// a member offline catches up from the relay when it is back, a member
// removed reads nothing sent after, and a file sent to the group reaches
// every member.
package groups_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/cmd/sealpost/e2e/harness"
)

var bin *harness.Binary

func TestMain(m *testing.M) { os.Exit(harness.Main(m, &bin)) }

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
	n.t.Helper()
	for _, a := range n.id.Addrs {
		if strings.HasPrefix(a, "/ip4/127.0.0.1/tcp/") {
			return a
		}
	}
	n.t.Fatalf("%s has no loopback TCP address: %v", n.name, n.id.Addrs)
	return ""
}

type groupJSON struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Members int    `json:"members"`
	Epoch   uint64 `json:"epoch"`
	State   string `json:"state"`
}

type delivery struct {
	UserID string `json:"user_id"`
	State  string `json:"state"`
}

type groupMsg struct {
	ID       string     `json:"id"`
	Group    string     `json:"group"`
	From     string     `json:"from"`
	Outgoing bool       `json:"outgoing"`
	Text     string     `json:"text"`
	State    string     `json:"state"`
	Members  []delivery `json:"members"`
}

func (n *node) groups() []groupJSON {
	n.t.Helper()
	var l struct {
		Groups []groupJSON `json:"groups"`
	}
	n.home.JSON(&l, "group", "ls")
	return l.Groups
}

func (n *node) group(id string) groupJSON {
	for _, g := range n.groups() {
		if g.ID == id {
			return g
		}
	}
	return groupJSON{}
}

func (n *node) messages(group string) []groupMsg {
	n.t.Helper()
	r := n.home.MustRun("--json", "group", "messages", group)
	return harness.DecodeLines[groupMsg](n.t, r.Stdout)
}

func texts(ms []groupMsg) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Text)
	}
	return out
}

func eventually(t *testing.T, limit time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestGroupChat: create, join, exchange, one member offline and back
// (it receives what it missed), one member removed (it gets nothing
// after).
func TestGroupChat(t *testing.T) {
	relay := newNode(t, "relay", "--profile", "relay")
	relay.start("--relay-service", "--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", harness.FreePort(t)))
	var a, b, c *node
	for _, p := range []**node{&a, &b, &c} {
		name := map[**node]string{&a: "alice", &b: "bob", &c: "carol"}[p]
		*p = newNode(t, name)
		(*p).start("--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", harness.FreePort(t)), "--bootstrap", relay.addr())
	}
	for _, x := range []*node{b, c} {
		var inv struct {
			Link string `json:"link"`
		}
		x.home.JSON(&inv, "invite")
		a.home.MustRun("contact", "add", inv.Link, "--name", x.name)
	}

	var g groupJSON
	a.home.JSON(&g, "group", "create", "club", "--relay", relay.addr())
	if len(g.ID) != 64 || g.Name != "club" || g.Epoch != 0 {
		t.Fatalf("group create --json printed %+v", g)
	}
	a.home.MustRun("group", "add", "club", "bob", "carol")
	for _, n := range []*node{a, b, c} {
		eventually(t, time.Minute, n.name+" in the group with 3 members", func() bool {
			x := n.group(g.ID)
			return x.State == "active" && x.Members == 3
		})
	}

	var sent struct {
		ID      string     `json:"id"`
		State   string     `json:"state"`
		Members []delivery `json:"members"`
	}
	b.home.JSON(&sent, "group", "send", g.ID, "hello from bob", "--wait", "delivered", "--timeout", "60s")
	if sent.State != "delivered" || len(sent.Members) != 2 {
		t.Fatalf("send --wait delivered: %+v", sent)
	}
	for _, d := range sent.Members {
		if d.State != "delivered" {
			t.Errorf("member %s: %s", d.UserID, d.State)
		}
	}
	// The inbox names the group.
	r := c.home.MustRun("--json", "inbox")
	inbox := harness.DecodeLines[groupMsg](t, r.Stdout)
	if len(inbox) != 1 || inbox[0].Group != "club" || inbox[0].Text != "hello from bob" {
		t.Fatalf("carol's inbox: %+v", inbox)
	}

	// Carol goes offline; alice and bob write; carol comes back and reads
	// everything from the relay.
	c.d.Stop(syscall.SIGTERM)
	var want []string
	for i := range 5 {
		for _, n := range []*node{a, b} {
			text := fmt.Sprintf("%s %d while carol is away", n.name, i)
			n.home.MustRun("group", "send", g.ID, text, "--wait", "sent", "--timeout", "30s")
			want = append(want, text)
		}
	}
	c.start()
	eventually(t, time.Minute, "carol caught up", func() bool {
		got := texts(c.messages(g.ID))
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false
			}
		}
		return true
	})
	got := texts(c.messages(g.ID))
	if len(got) != len(want)+1 {
		t.Errorf("carol holds %d messages, want %d: %q", len(got), len(want)+1, got)
	}

	// Carol is removed; what follows never reaches her.
	a.home.MustRun("group", "rm", g.ID, "carol")
	eventually(t, time.Minute, "carol removed", func() bool { return c.group(g.ID).State == "left" })
	eventually(t, time.Minute, "bob sees 2 members", func() bool { return b.group(g.ID).Members == 2 })
	a.home.JSON(&sent, "group", "send", g.ID, "after carol", "--wait", "delivered", "--timeout", "60s")
	if sent.State != "delivered" || len(sent.Members) != 1 {
		t.Fatalf("send after the removal: %+v", sent)
	}
	eventually(t, 30*time.Second, "bob reads it", func() bool { return slices.Contains(texts(b.messages(g.ID)), "after carol") })
	if got := texts(c.messages(g.ID)); slices.Contains(got, "after carol") {
		t.Errorf("a removed member read a message sent after its removal")
	}
	if r := c.home.Run("group", "send", g.ID, "still here?"); r.Code != 1 {
		t.Errorf("a removed member sends: %s", r)
	}
}

type fileJSON struct {
	ID     string `json:"id"`
	Group  string `json:"group"`
	State  string `json:"state"`
	Blobs  int    `json:"blobs"`
	Relays []struct {
		Done int `json:"done"`
	} `json:"relays"`
}

// file returns n's file id (zero if n has none).
func (n *node) file(id string) fileJSON {
	n.t.Helper()
	var l struct {
		Files []fileJSON `json:"files"`
	}
	n.home.JSON(&l, "file", "ls")
	for _, f := range l.Files {
		if f.ID == id {
			return f
		}
	}
	return fileJSON{}
}

// saveSum saves n's file id and returns the saved content's SHA-256.
func (n *node) saveSum(id string) string {
	n.t.Helper()
	var res struct {
		Path string `json:"path"`
	}
	n.home.JSON(&res, "file", "save", id, n.t.TempDir())
	b, err := os.ReadFile(res.Path)
	if err != nil {
		n.t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestGroupFile: group send --file sends one file to a group of three:
// bob, online, saves it; carol, offline when it was sent, comes back
// after alice stopped and saves it from the group's home relay. Both
// copies have the sha256 of the file sent.
func TestGroupFile(t *testing.T) {
	relay := newNode(t, "relay", "--profile", "relay")
	relay.start("--relay-service", "--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", harness.FreePort(t)))
	var a, b, c *node
	for _, p := range []**node{&a, &b, &c} {
		name := map[**node]string{&a: "alice", &b: "bob", &c: "carol"}[p]
		*p = newNode(t, name)
		(*p).start("--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", harness.FreePort(t)), "--bootstrap", relay.addr())
	}
	for _, x := range []*node{b, c} {
		var inv struct {
			Link string `json:"link"`
		}
		x.home.JSON(&inv, "invite")
		a.home.MustRun("contact", "add", inv.Link, "--name", x.name)
	}
	var g groupJSON
	a.home.JSON(&g, "group", "create", "club", "--relay", relay.addr())
	a.home.MustRun("group", "add", "club", "bob", "carol")
	for _, n := range []*node{a, b, c} {
		eventually(t, time.Minute, n.name+" in the group with 3 members", func() bool {
			x := n.group(g.ID)
			return x.State == "active" && x.Members == 3
		})
	}
	c.d.Stop(syscall.SIGTERM)

	content := make([]byte, 5<<20+777)
	rand.Read(content)
	path := filepath.Join(t.TempDir(), "photos.bin")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	want := hex.EncodeToString(sum[:])
	var sent struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	a.home.JSON(&sent, "group", "send", "club", "--file", path, "--caption", "the climb", "--wait", "sent", "--timeout", "60s")
	if sent.State != "sent" && sent.State != "delivered" {
		t.Fatalf("group send --file --wait sent: %+v", sent)
	}
	if f := a.file(sent.ID); f.Group != g.ID {
		t.Fatalf("alice's file: %+v", f)
	}

	// bob is online: the message comes with the file.
	eventually(t, 2*time.Minute, "bob saved the file", func() bool { return b.file(sent.ID).State == "saved" })
	if got := b.saveSum(sent.ID); got != want {
		t.Fatalf("bob's file sha256 %s, sent %s", got, want)
	}
	type fileMsg struct {
		ID   string `json:"id"`
		Text string `json:"text"`
		File *struct {
			Name  string `json:"name"`
			Size  int64  `json:"size"`
			State string `json:"state"`
		} `json:"file"`
	}
	r := b.home.MustRun("--json", "group", "messages", "club")
	msgs := harness.DecodeLines[fileMsg](t, r.Stdout)
	if len(msgs) != 1 || msgs[0].ID != sent.ID || msgs[0].Text != "the climb" || msgs[0].File == nil ||
		msgs[0].File.Name != "photos.bin" || msgs[0].File.Size != int64(len(content)) || msgs[0].File.State != "saved" {
		t.Fatalf("bob's group messages: %s", r.Stdout)
	}
	if out := b.home.MustRun("group", "messages", "club").Stdout; !strings.Contains(out, "[file photos.bin") {
		t.Errorf("bob's group messages do not show the file: %s", out)
	}

	// The home holds every blob; alice stops, so carol can only take the
	// file from the home.
	eventually(t, 2*time.Minute, "the home holds every blob", func() bool {
		f := a.file(sent.ID)
		return len(f.Relays) == 1 && f.Blobs > 0 && f.Relays[0].Done == f.Blobs
	})
	a.d.Stop(syscall.SIGTERM)
	c.start()
	eventually(t, 2*time.Minute, "carol saved the file", func() bool { return c.file(sent.ID).State == "saved" })
	if got := c.saveSum(sent.ID); got != want {
		t.Fatalf("carol's file sha256 %s, sent %s", got, want)
	}
}
