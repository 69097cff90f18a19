// Package messaging_test runs the sealpost binary as real processes on
// 127.0.0.1 and drives messaging only through the command line of
// DESIGN.md §6: invites, contacts, message requests, sending with --wait,
// conversations, the inbox, identity changes and exit codes, across
// daemon crashes.
package messaging_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/cmd/sealpost/e2e/harness"
)

var bin *harness.Binary

func TestMain(m *testing.M) { os.Exit(harness.Main(m, &bin)) }

// msg is the part of a message of `inbox --json` and `messages --json`
// these tests read.
type msg struct {
	ID         string    `json:"id"`
	From       string    `json:"from"`
	FromName   string    `json:"from_name"`
	Outgoing   bool      `json:"outgoing"`
	Text       string    `json:"text"`
	Seq        uint64    `json:"seq"`
	SentAt     time.Time `json:"sent_at"`
	ReceivedAt time.Time `json:"received_at"`
	State      string    `json:"state"`
	Request    bool      `json:"request"`
	Gap        uint64    `json:"gap"`
	Cursor     uint64    `json:"cursor"`
}

type contactJSON struct {
	Name                string `json:"name"`
	UserID              string `json:"user_id"`
	State               string `json:"state"`
	Verified            bool   `json:"verified"`
	SafetyNumber        string `json:"safety_number"`
	IdentityChanged     bool   `json:"identity_changed"`
	PendingUserID       string `json:"pending_user_id"`
	PendingSafetyNumber string `json:"pending_safety_number"`
}

type sendJSON struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

// user is one node: its home, its daemon and its user ID.
type user struct {
	t    *testing.T
	name string
	h    *harness.Home
	d    *harness.Daemon
	uid  string
	port string // the loopback TCP port it listens on
}

// newUser initializes a home with display name name and starts its daemon
// on a loopback TCP port reserved for the test, which a restart reuses.
func newUser(t *testing.T, name string) *user {
	t.Helper()
	u := &user{t: t, name: name, h: bin.Home(t)}
	u.h.Init("--name", name)
	u.start(strconv.Itoa(harness.FreePort(t)))
	return u
}

// start starts the daemon listening on the loopback TCP port, with more
// daemon flags if given.
func (u *user) start(port string, flags ...string) {
	u.t.Helper()
	u.d = u.h.Start(append([]string{"--listen", "/ip4/127.0.0.1/tcp/" + port}, flags...)...)
	var id struct {
		UserID string   `json:"user_id"`
		Addrs  []string `json:"addrs"`
	}
	u.h.JSON(&id, "id")
	u.uid = id.UserID
	for _, a := range id.Addrs {
		if rest, ok := strings.CutPrefix(a, "/ip4/127.0.0.1/tcp/"); ok {
			u.port, _, _ = strings.Cut(rest, "/")
		}
	}
	if u.uid == "" || u.port == "" {
		u.t.Fatalf("%s: id --json has no user ID or loopback TCP address: %+v", u.name, id)
	}
}

// invite returns a new invite link of u.
func (u *user) invite() string {
	u.t.Helper()
	var inv struct {
		Link string `json:"link"`
	}
	u.h.JSON(&inv, "invite")
	if !strings.HasPrefix(inv.Link, "sealpost://") {
		u.t.Fatalf("%s: invite --json printed %+v", u.name, inv)
	}
	return inv.Link
}

// send sends text to contact and fails the test unless it exits 0.
func (u *user) send(contact, text string, args ...string) sendJSON {
	u.t.Helper()
	var res sendJSON
	u.h.JSON(&res, append([]string{"send", contact, text}, args...)...)
	if len(res.ID) != 32 || res.State == "" {
		u.t.Fatalf("%s: send --json printed %+v", u.name, res)
	}
	return res
}

// lines runs a command with --json whose output is one object a line.
func (u *user) lines(args ...string) []msg {
	u.t.Helper()
	r := u.h.MustRun(append([]string{"--json"}, args...)...)
	return harness.DecodeLines[msg](u.t, r.Stdout)
}

func (u *user) messages(contact string) []msg { return u.lines("messages", contact) }
func (u *user) inbox() []msg                  { return u.lines("inbox") }

func (u *user) contact(name string) contactJSON {
	u.t.Helper()
	var c contactJSON
	u.h.JSON(&c, "contact", "show", name)
	return c
}

// wantExit runs a command and fails the test unless it exits code with a
// "sealpost: " error.
func (u *user) wantExit(code int, args ...string) harness.Result {
	u.t.Helper()
	r := u.h.Run(args...)
	if r.Code != code || (code != 0 && !strings.HasPrefix(r.Stderr, "sealpost: ")) {
		u.t.Fatalf("%s: sealpost %s: %s\nwant exit %d with a sealpost: error", u.name, strings.Join(args, " "), r, code)
	}
	return r
}

// befriend makes b a contact of a (named bname) through b's invite, and a
// one of b (by a's display name, accepted through the invite): a's first
// message is delivered.
func befriend(t *testing.T, a, b *user, bname string) {
	t.Helper()
	a.h.MustRun("contact", "add", b.invite(), "--name", bname)
	if res := a.send(bname, "hello from "+a.name, "--wait", "delivered", "--timeout", "30s"); res.State != "delivered" {
		t.Fatalf("first message: %+v, want delivered", res)
	}
	if c := b.contact(a.uid); c.State != "accepted" || c.Name != a.name {
		t.Fatalf("%s's contact for %s: %+v, want accepted under the name %q", b.name, a.name, c, a.name)
	}
}

// eventually retries f every 200 ms for up to limit, until it returns "".
// f returns what is still missing.
func eventually(t *testing.T, limit time.Duration, f func() string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		missing := f()
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// rank orders the states of an outgoing message.
func rank(state string) int {
	return map[string]int{"sent": 1, "delivered": 2, "read": 3}[state]
}

// checkHistory checks a conversation as `messages --json` shows it: it
// holds exactly the texts out (sent, in this order) and in (received, in
// this order), each once, every sender's messages in sequence order
// without gaps, and every outgoing message at least delivered. It returns
// what is wrong, or "".
func checkHistory(hist []msg, out, in []string) string {
	if len(hist) != len(out)+len(in) {
		return fmt.Sprintf("the history holds %d messages, want %d", len(hist), len(out)+len(in))
	}
	ids := map[string]bool{}
	var gotOut, gotIn []string
	var lastOut, lastIn uint64
	for _, m := range hist {
		if ids[m.ID] {
			return fmt.Sprintf("message %s twice", m.ID)
		}
		ids[m.ID] = true
		if m.Outgoing {
			if m.Seq <= lastOut {
				return fmt.Sprintf("outgoing seq %d after %d", m.Seq, lastOut)
			}
			lastOut = m.Seq
			if rank(m.State) < rank("delivered") {
				return fmt.Sprintf("outgoing %q is %s", m.Text, m.State)
			}
			gotOut = append(gotOut, m.Text)
			continue
		}
		if m.Seq <= lastIn {
			return fmt.Sprintf("received seq %d after %d", m.Seq, lastIn)
		}
		if m.Gap != 0 {
			return fmt.Sprintf("received %q after a gap of %d", m.Text, m.Gap)
		}
		lastIn = m.Seq
		gotIn = append(gotIn, m.Text)
	}
	if !slices.Equal(gotOut, out) {
		return fmt.Sprintf("sent texts differ: got %d, want %d", len(gotOut), len(out))
	}
	if !slices.Equal(gotIn, in) {
		return fmt.Sprintf("received texts differ: got %d, want %d", len(gotIn), len(in))
	}
	return ""
}

// TestConversationAcrossACrash: 200 messages each way, interleaved; the
// receiver is killed (SIGKILL) midway and restarted; in the end both
// histories hold exactly the 400 messages, in sequence order, none twice,
// all delivered.
func TestConversationAcrossACrash(t *testing.T) {
	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	befriend(t, alice, bob, "bob")
	bob.send("alice", "hello from bob", "--wait", "delivered", "--timeout", "30s")

	// The first message each way was sent above.
	const n = 200
	a2b := []string{"hello from alice"}
	b2a := []string{"hello from bob"}
	bobSends := func() {
		text := fmt.Sprintf("b2a %03d", len(b2a)+1)
		bob.send("alice", text)
		b2a = append(b2a, text)
	}
	for i := 2; i <= n; i++ {
		text := fmt.Sprintf("a2b %03d", i)
		alice.send("bob", text)
		a2b = append(a2b, text)
		switch {
		case i == 120:
			// The receiver dies with alice's last messages in flight,
			// and its own receipts and messages queued.
			if code := bob.d.Stop(syscall.SIGKILL); code != -1 {
				t.Fatalf("bob exited %d on SIGKILL", code)
			}
		case i == 150:
			bob.start(bob.port)
		case i < 120 || i > 150:
			bobSends()
		}
	}
	for len(b2a) < n {
		bobSends()
	}
	if len(a2b) != n || len(b2a) != n {
		t.Fatalf("sent %d and %d messages, want %d each", len(a2b), len(b2a), n)
	}
	// Both histories, as the users see them.
	eventually(t, 90*time.Second, func() string {
		if s := checkHistory(alice.messages("bob"), a2b, b2a); s != "" {
			return "alice: " + s
		}
		if s := checkHistory(bob.messages("alice"), b2a, a2b); s != "" {
			return "bob: " + s
		}
		return ""
	})
	// The inboxes: each received message once, in the order of arrival
	// (which for one sender is the sequence order).
	for _, c := range []struct {
		u    *user
		want []string
	}{{alice, b2a}, {bob, a2b}} {
		var got []string
		var last uint64
		for _, m := range c.u.inbox() {
			got = append(got, m.Text)
			if m.Cursor <= last || m.Request || m.From == c.u.uid {
				t.Errorf("%s: inbox message %+v (after cursor %d)", c.u.name, m, last)
			}
			last = m.Cursor
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: inbox holds %d messages, want the %d sent in order", c.u.name, len(got), len(c.want))
		}
	}
}

// TestMessageRequest: a message from someone whose invite of ours was
// revoked is a message request: shown, but no receipts until it is
// accepted; then the conversation works both ways.
func TestMessageRequest(t *testing.T) {
	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	link := bob.invite()
	var rev struct {
		Revoked bool `json:"revoked"`
	}
	bob.h.JSON(&rev, "invite", "--revoke", link)
	if !rev.Revoked {
		t.Fatalf("invite --revoke --json: %+v", rev)
	}
	alice.h.MustRun("contact", "add", link, "--name", "bob")
	first := alice.send("bob", "hi, it's alice", "--wait", "sent", "--timeout", "30s")
	if first.State != "sent" {
		t.Fatalf("first message %+v, want sent", first)
	}
	// A request gets no delivery receipt.
	r := alice.wantExit(7, "--json", "send", "bob", "still there?", "--wait", "delivered", "--timeout", "2s")
	var second sendJSON
	if err := json.Unmarshal([]byte(r.Stdout), &second); err != nil || len(second.ID) != 32 || rank(second.State) >= rank("delivered") {
		t.Errorf("send --wait delivered that timed out printed %q (%v)", r.Stdout, err)
	}
	// The second message is in bob's store once alice's node calls it sent
	// (it may still have been queued when the wait above ended).
	eventually(t, 30*time.Second, func() string {
		for _, m := range alice.messages("bob") {
			if m.ID == second.ID && rank(m.State) >= rank("sent") {
				return ""
			}
		}
		return "alice's second message is not sent"
	})

	c := bob.contact("alice")
	if c.State != "request" || c.UserID != alice.uid {
		t.Fatalf("bob's contact alice: %+v, want a request from %s", c, alice.uid)
	}
	in := bob.inbox()
	if len(in) != 2 || !in[0].Request || in[0].From != alice.uid || in[0].FromName != "alice" || in[0].Text != "hi, it's alice" {
		t.Fatalf("bob's inbox: %+v, want alice's two messages marked as requests", in)
	}
	if !strings.Contains(bob.h.MustRun("inbox").Stdout, "[request]") {
		t.Errorf("bob's inbox does not mark the request")
	}
	// No reply before accepting; then accept by user ID, twice.
	bob.wantExit(1, "send", "alice", "hello?")
	for range 2 {
		var acc contactJSON
		bob.h.JSON(&acc, "contact", "accept", alice.uid)
		if acc.State != "accepted" || acc.Name != "alice" {
			t.Fatalf("contact accept: %+v", acc)
		}
	}
	// The receipts held back go out: both of alice's messages are
	// delivered.
	eventually(t, 30*time.Second, func() string {
		for _, m := range alice.messages("bob") {
			if m.Outgoing && rank(m.State) < rank("delivered") {
				return fmt.Sprintf("alice's %q is %s", m.Text, m.State)
			}
		}
		return ""
	})
	bob.send("alice", "hi alice, accepted", "--wait", "delivered", "--timeout", "30s")
	eventually(t, 10*time.Second, func() string {
		for _, m := range alice.inbox() {
			if m.Text == "hi alice, accepted" && m.From == bob.uid && !m.Request {
				return ""
			}
		}
		return "alice's inbox lacks bob's reply"
	})
	alice.send("bob", "great", "--wait", "delivered", "--timeout", "30s")
	if s := checkHistory(bob.messages("alice"), []string{"hi alice, accepted"},
		[]string{"hi, it's alice", "still there?", "great"}); s != "" {
		t.Errorf("bob's history: %s", s)
	}
}

// TestSimultaneousInitiation: both users add each other's invite and send
// at the same moment; they end up in one working conversation and nothing
// is lost.
func TestSimultaneousInitiation(t *testing.T) {
	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	la, lb := alice.invite(), bob.invite()
	alice.h.MustRun("contact", "add", lb, "--name", "bob")
	bob.h.MustRun("contact", "add", la, "--name", "alice")

	const each = 5
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		results []string
	)
	start := make(chan struct{})
	for _, p := range []struct {
		from *user
		to   string
	}{{alice, "bob"}, {bob, "alice"}} {
		for i := range each {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := p.from.h.Run("--json", "send", p.to, fmt.Sprintf("%s %d", p.from.name, i), "--wait", "delivered", "--timeout", "60s")
				mu.Lock()
				defer mu.Unlock()
				if r.Code != 0 {
					results = append(results, fmt.Sprintf("%s: %s", p.from.name, r))
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	if len(results) > 0 {
		t.Fatalf("sends that were not delivered:\n%s", strings.Join(results, "\n"))
	}
	// One contact each, and the conversation goes on in both directions.
	for _, u := range []*user{alice, bob} {
		var list struct {
			Contacts []contactJSON `json:"contacts"`
		}
		u.h.JSON(&list, "contact", "ls")
		if len(list.Contacts) != 1 || list.Contacts[0].State != "accepted" {
			t.Errorf("%s's contacts: %+v, want one accepted", u.name, list.Contacts)
		}
	}
	for i := range 3 {
		alice.send("bob", fmt.Sprintf("alice after %d", i), "--wait", "delivered", "--timeout", "30s")
		bob.send("alice", fmt.Sprintf("bob after %d", i), "--wait", "delivered", "--timeout", "30s")
	}
	for _, c := range []struct {
		u      *user
		peer   string
		others *user
	}{{alice, "bob", bob}, {bob, "alice", alice}} {
		var out, in []string
		hist := c.u.messages(c.peer)
		for _, m := range hist {
			if m.Outgoing {
				out = append(out, m.Text)
			} else {
				in = append(in, m.Text)
			}
		}
		// The concurrent sends were queued in any order; the later ones
		// in order.
		if s := checkHistory(hist, out, in); s != "" {
			t.Errorf("%s: %s", c.u.name, s)
		}
		if len(out) != each+3 || len(in) != each+3 {
			t.Errorf("%s holds %d sent and %d received messages, want %d each", c.u.name, len(out), len(in), each+3)
		}
		for i := range each {
			if !slices.Contains(in, fmt.Sprintf("%s %d", c.others.name, i)) {
				t.Errorf("%s lacks %q", c.u.name, fmt.Sprintf("%s %d", c.others.name, i))
			}
		}
	}
}

// TestIdentityChange: bob's device starts over with a new identity (a new
// home that keeps the device key); alice adding his new invite, sending to
// him and accepting him all stop with exit code 4 until she verifies the
// new key.
func TestIdentityChange(t *testing.T) {
	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	befriend(t, alice, bob, "bob")
	old := alice.contact("bob")

	bob.d.Stop(syscall.SIGTERM)
	bob.h.NewIdentity("--name", "bob")
	bob.start(bob.port)
	if bob.uid == old.UserID {
		t.Fatal("the new home has the old identity")
	}
	link := bob.invite()

	alice.wantExit(4, "contact", "add", link, "--name", "bob")
	alice.wantExit(4, "send", "bob", "are you really bob?")
	if r := alice.h.RunStdin("are you?\n", "send", "bob", "-", "--wait", "delivered"); r.Code != 4 {
		t.Errorf("send - --wait delivered to a changed identity: %s\nwant exit 4", r)
	}
	alice.wantExit(4, "contact", "accept", "bob")
	c := alice.contact("bob")
	if !c.IdentityChanged || c.UserID != old.UserID || c.PendingUserID != bob.uid ||
		c.PendingSafetyNumber == "" || c.PendingSafetyNumber == c.SafetyNumber {
		t.Fatalf("alice's contact bob after the change: %+v", c)
	}
	if !strings.Contains(alice.h.MustRun("contact", "ls").Stdout, "key changed") {
		t.Errorf("contact ls does not show the key change")
	}
	// The wrong safety number (the old one) is refused.
	alice.wantExit(1, "contact", "verify", "bob", "--safety-number", old.SafetyNumber)
	alice.wantExit(4, "send", "bob", "still blocked?")
	// Bob tells alice his new safety number over another channel.
	var bc contactJSON
	bob.h.JSON(&bc, "contact", "add", alice.invite(), "--name", "alice")
	if bc.SafetyNumber != c.PendingSafetyNumber {
		t.Fatalf("bob sees safety number %q, alice is offered %q", bc.SafetyNumber, c.PendingSafetyNumber)
	}
	var v contactJSON
	alice.h.JSON(&v, "contact", "verify", "bob", "--safety-number", strings.ReplaceAll(bc.SafetyNumber, " ", ""))
	if v.IdentityChanged || v.UserID != bob.uid || !v.Verified || v.Name != "bob" {
		t.Fatalf("after verify: %+v", v)
	}
	alice.send("bob", "welcome back", "--wait", "delivered", "--timeout", "30s")
	bob.send("alice", "thanks", "--wait", "delivered", "--timeout", "30s")
	// Alice's history with bob is kept under the name, the old messages
	// too.
	var texts []string
	for _, m := range alice.messages("bob") {
		texts = append(texts, m.Text)
	}
	for _, want := range []string{"hello from alice", "welcome back", "thanks"} {
		if !slices.Contains(texts, want) {
			t.Errorf("alice's history with bob lacks %q: %q", want, texts)
		}
	}
}

// TestWaitTimeout: --wait delivered exits 7 when the peer is down; the
// message stays queued and is delivered when the peer is back.
func TestWaitTimeout(t *testing.T) {
	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	befriend(t, alice, bob, "bob")
	bob.d.Stop(syscall.SIGTERM)
	r := alice.wantExit(7, "--json", "send", "bob", "are you there?", "--wait", "delivered", "--timeout", "2s")
	var res sendJSON
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil || len(res.ID) != 32 || rank(res.State) >= rank("delivered") {
		t.Fatalf("send printed %q (%v), want the ID and a state before delivered", r.Stdout, err)
	}
	if !strings.Contains(r.Stderr, "timed out") || !strings.Contains(r.Stderr, res.ID) {
		t.Errorf("stderr %q does not say the wait timed out for %s", r.Stderr, res.ID)
	}
	alice.wantExit(7, "send", "bob", "and now?", "--wait", "sent", "--timeout", "500ms")
	bob.start(bob.port)
	eventually(t, 60*time.Second, func() string {
		var got []string
		for _, m := range bob.inbox() {
			got = append(got, m.Text)
		}
		if !slices.Equal(got, []string{"hello from alice", "are you there?", "and now?"}) {
			return fmt.Sprintf("bob's inbox: %q", got)
		}
		return ""
	})
}

// TestExitCodes: the exit codes of DESIGN.md §6 for messaging mistakes.
func TestExitCodes(t *testing.T) {
	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	befriend(t, alice, bob, "bob")
	link := bob.invite()

	alice.wantExit(1, "send", "nobody", "hi")
	alice.wantExit(1, "messages", "nobody")
	alice.wantExit(1, "contact", "show", "nobody")
	alice.wantExit(1, "contact", "accept", "nobody")
	alice.wantExit(1, "contact", "rm", "nobody")
	alice.wantExit(1, "contact", "add", "sealpost://garbage")
	alice.wantExit(1, "contact", "add", alice.invite())
	alice.wantExit(1, "contact", "verify", "bob", "--safety-number", "12345")
	alice.wantExit(1, "send", "bob", "")
	alice.wantExit(1, "send", "bob", "hi", "--wait", "forever")
	alice.wantExit(1, "send", "bob", "hi", "--timeout", "1s")
	alice.wantExit(1, "invite", "--qr", "--json")
	alice.wantExit(1, "contact")
	alice.wantExit(5, "send", "bob", strings.Repeat("x", 32<<10+1))
	// Text that is not UTF-8 is refused, not changed.
	alice.wantExit(1, "send", "bob", "bad \xff text")
	if r := alice.h.RunStdin("bad \xfe text", "send", "bob", "-"); r.Code != 1 {
		t.Errorf("send - with text that is not UTF-8: %s\nwant exit 1", r)
	}
	// A request body over the API's limit: exit 5, naming the limit.
	if r := alice.wantExit(5, "contact", "add", strings.Repeat("x", 100<<10)); !strings.Contains(r.Stderr, "larger than") {
		t.Errorf("contact add of a 100 KiB link: %s", r)
	}
	if r := alice.h.RunStdin(strings.Repeat("y", 32<<10+1), "send", "bob", "-"); r.Code != 5 {
		t.Errorf("send - with too long a text: %s\nwant exit 5", r)
	}
	// The longest text goes, from standard input, without its final line
	// break.
	long := strings.Repeat("é", 16<<10)
	if r := alice.h.RunStdin(long+"\n", "--json", "send", "bob", "-", "--wait", "delivered", "--timeout", "30s"); r.Code != 0 {
		t.Fatalf("send - of %d bytes: %s", len(long), r)
	}
	eventually(t, 10*time.Second, func() string {
		for _, m := range bob.inbox() {
			if m.Text == long {
				return ""
			}
		}
		return "bob lacks the longest text"
	})
	// Renaming a contact to a taken name, or to the form of a user ID.
	carol := newUser(t, "carol")
	carolLink := carol.invite()
	// Another identity under a contact's name is a name clash, and bob
	// stays as he was.
	if r := alice.wantExit(1, "contact", "add", carolLink, "--name", "bob"); !strings.Contains(r.Stderr, "another identity") {
		t.Errorf("contact add of carol's link as bob: %s", r)
	}
	if c := alice.contact("bob"); c.IdentityChanged || c.UserID != bob.uid {
		t.Errorf("bob after the name clash: %+v", c)
	}
	alice.h.MustRun("contact", "add", carolLink, "--name", "carol")
	alice.wantExit(1, "contact", "add", link, "--name", "carol")
	alice.wantExit(1, "contact", "add", link, "--name", carol.uid)
	// An inviter that is down: a network error.
	dave := newUser(t, "dave")
	dl := dave.invite()
	dave.d.Stop(syscall.SIGTERM)
	alice.wantExit(3, "contact", "add", dl, "--name", "dave")
	// Removing a contact: it is gone, and its name is free.
	var rm struct {
		Contact string `json:"contact"`
		Removed bool   `json:"removed"`
	}
	alice.h.JSON(&rm, "contact", "rm", "carol")
	if !rm.Removed || rm.Contact != "carol" {
		t.Errorf("contact rm --json: %+v", rm)
	}
	alice.wantExit(1, "send", "carol", "hi")
	// No daemon.
	alice.d.Stop(syscall.SIGTERM)
	for _, args := range [][]string{{"invite"}, {"contact", "ls"}, {"send", "bob", "hi"}, {"inbox"}, {"messages", "bob"}} {
		alice.wantExit(6, args...)
	}
}

// TestInboxFollow: inbox --follow prints the backlog and then each new
// message once, as it arrives, and ends on SIGINT with exit 0.
func TestInboxFollow(t *testing.T) {
	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	befriend(t, alice, bob, "bob")
	for i := range 3 {
		alice.send("bob", fmt.Sprintf("before %d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.Path, "--home", bob.h.Dir, "--json", "inbox", "--follow")
	cmd.SysProcAttr = harness.ProcAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan msg, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var m msg
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				lines <- m
			} else {
				t.Errorf("inbox --follow printed %q", sc.Text())
			}
		}
	}()
	var got []string
	next := func() {
		t.Helper()
		select {
		case m, ok := <-lines:
			if !ok {
				t.Fatalf("inbox --follow ended; got %q; stderr %s", got, stderr.String())
			}
			got = append(got, m.Text)
		case <-ctx.Done():
			t.Fatalf("inbox --follow printed only %q", got)
		}
	}
	for range 4 {
		next()
	}
	// New messages, sent while it follows, some at once.
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			alice.h.Run("send", "bob", fmt.Sprintf("after %d", i))
		}()
	}
	wg.Wait()
	for range 6 {
		next()
	}
	cmd.Process.Signal(syscall.SIGINT)
	for m := range lines { // until the process closes its output
		got = append(got, m.Text)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("inbox --follow after SIGINT: %v; stderr %s", err, stderr.String())
	}
	want := []string{"hello from alice", "before 0", "before 1", "before 2"}
	if !slices.Equal(got[:4], want) {
		t.Errorf("backlog %q, want %q", got[:4], want)
	}
	rest := slices.Clone(got[4:])
	slices.Sort(rest)
	if !slices.Equal(rest, []string{"after 0", "after 1", "after 2", "after 3", "after 4", "after 5"}) {
		t.Errorf("followed %q, want each new message once", got[4:])
	}
}

// TestInviteQRAndHelp: invite --qr draws a QR code; the help texts name
// every flag and subcommand.
func TestInviteQRAndHelp(t *testing.T) {
	alice := newUser(t, "alice")
	r := alice.h.MustRun("invite", "--qr")
	link, qr, _ := strings.Cut(r.Stdout, "\n")
	if !strings.HasPrefix(link, "sealpost://") || len(link) > 300 {
		t.Errorf("invite --qr: link %q", link)
	}
	if rows := strings.Count(qr, "\n"); rows < 15 || !strings.Contains(qr, "▀") {
		t.Errorf("invite --qr drew %d rows:\n%s", rows, qr)
	}
	h := alice.h
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"invite", "contact", "send", "messages", "inbox"}},
		{[]string{"invite", "--help"}, []string{"--qr", "--revoke", "{\"link\"}"}},
		{[]string{"contact", "--help"}, []string{"add", "ls", "show", "verify", "accept", "rm"}},
		{[]string{"contact", "add", "--help"}, []string{"--name", "exit code 4"}},
		{[]string{"contact", "verify", "--help"}, []string{"--safety-number"}},
		{[]string{"send", "--help"}, []string{"--wait", "--timeout", "exits 7", "standard input", "{\"id\", \"state\"}"}},
		{[]string{"messages", "--help"}, []string{"--limit", "read"}},
		{[]string{"inbox", "--help"}, []string{"--follow", "one JSON object a line"}},
	} {
		out := h.MustRun(c.args...).Stdout
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("sealpost %s lacks %q:\n%s", strings.Join(c.args, " "), w, out)
			}
		}
	}
}

// TestBenchDelivery: sealpost bench measures direct delivery between two
// nodes, batched and unbatched, with the storage figures next to it.
func TestBenchDelivery(t *testing.T) {
	h := bin.Home(t)
	var report struct {
		Figures []struct {
			Name  string  `json:"name"`
			Unit  string  `json:"unit"`
			Value float64 `json:"value"`
			Limit float64 `json:"limit"`
		} `json:"figures"`
	}
	h.JSON(&report, "bench", "--only", "delivery", "--duration", "300ms", "--dir", t.TempDir())
	got := map[string]float64{}
	for _, f := range report.Figures {
		got[f.Name] = f.Value
		if f.Name == "direct_delivery_unbatched" && f.Limit <= 0 {
			t.Errorf("direct_delivery_unbatched has no limit: %+v", f)
		}
	}
	for _, name := range []string{"direct_delivery", "direct_delivery_unbatched", "store_durable_write", "store_batch_write",
		"delivery_latency_p50", "delivery_latency_p99"} {
		if got[name] <= 0 {
			t.Errorf("bench --only delivery: %s = %v", name, got[name])
		}
	}
	if len(got) != len(report.Figures) {
		t.Errorf("a figure appears twice: %+v", report.Figures)
	}
	if r := h.Run("bench", "--only", "nothing"); r.Code != 1 {
		t.Errorf("bench --only nothing: %s\nwant exit 1", r)
	}
}

// TestReadReceipt: opening the conversation (messages NAME) marks it read,
// and the sender's --wait read returns.
func TestReadReceipt(t *testing.T) {
	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	befriend(t, alice, bob, "bob")
	done := make(chan harness.Result, 1)
	go func() {
		done <- alice.h.Run("--json", "send", "bob", "read me", "--wait", "read", "--timeout", "50s")
	}()
	eventually(t, 30*time.Second, func() string {
		for _, m := range bob.inbox() {
			if m.Text == "read me" {
				return ""
			}
		}
		return "bob's inbox lacks the message"
	})
	for _, m := range alice.messages("bob") {
		if m.Text == "read me" && m.State == "read" {
			t.Fatalf("read before bob opened the conversation: %+v", m)
		}
	}
	select {
	case r := <-done:
		t.Fatalf("send --wait read returned before bob read it: %s", r)
	default:
	}
	var states []string
	for _, m := range bob.messages("alice") {
		states = append(states, m.State)
	}
	if !slices.Equal(states, []string{"read", "read"}) {
		t.Errorf("bob's messages after opening: %q, want both read", states)
	}
	r := <-done
	var res sendJSON
	if err := json.Unmarshal([]byte(r.Stdout), &res); r.Code != 0 || err != nil || res.State != "read" {
		t.Errorf("send --wait read: %s", r)
	}
}
