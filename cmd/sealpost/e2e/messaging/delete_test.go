package messaging_test

import (
	"slices"
	"strings"
	"syscall"
	"testing"
)

// texts returns the texts of the messages hist holds, in order.
func texts(hist []msg) []string {
	var out []string
	for _, m := range hist {
		out = append(out, m.Text)
	}
	return out
}

// TestMessagesRm: messages rm ID deletes one message on this node only,
// for good (still gone after a restart), and an unknown or malformed ID
// exits 1 saying so; messages rm --all NAME deletes the conversation and
// keeps the contact, and the conversation goes on after it.
func TestMessagesRm(t *testing.T) {
	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	befriend(t, alice, bob, "bob")
	for _, text := range []string{"one", "two", "three"} {
		alice.send("bob", text, "--wait", "delivered", "--timeout", "30s")
	}
	if res := bob.send("alice", "four", "--wait", "delivered", "--timeout", "30s"); res.State != "delivered" {
		t.Fatalf("bob's reply: %+v", res)
	}
	hist := bob.messages("alice")
	want := []string{"hello from alice", "one", "two", "three", "four"}
	if got := texts(hist); !slices.Equal(got, want) {
		t.Fatalf("bob's conversation: %q, want %q", got, want)
	}
	two, four := hist[2].ID, hist[4].ID

	// One received message, then one sent, the first in words and the
	// second in JSON.
	if r := bob.h.MustRun("messages", "rm", two); strings.TrimSpace(r.Stdout) != "deleted "+two {
		t.Errorf("messages rm %s printed %q, want %q", two, r.Stdout, "deleted "+two)
	}
	var del struct {
		ID      string `json:"id"`
		Deleted bool   `json:"deleted"`
	}
	bob.h.JSON(&del, "messages", "rm", four)
	if del.ID != four || !del.Deleted {
		t.Errorf("messages rm --json: %+v, want {id: %s, deleted: true}", del, four)
	}
	want = []string{"hello from alice", "one", "three"}
	if got := texts(bob.messages("alice")); !slices.Equal(got, want) {
		t.Errorf("bob's conversation after two rm: %q, want %q", got, want)
	}
	// Nothing is deleted on the other side.
	if got, want := texts(alice.messages("bob")), []string{"hello from alice", "one", "two", "three", "four"}; !slices.Equal(got, want) {
		t.Errorf("alice's conversation after bob's rm: %q, want %q", got, want)
	}

	// A deleted, a never seen and a malformed ID: exit 1, naming it.
	for _, id := range []string{two, strings.Repeat("0", 32), "not-a-message"} {
		r := bob.wantExit(1, "messages", "rm", id)
		if !strings.Contains(r.Stderr, "unknown message") {
			t.Errorf("messages rm %s: %s\nwant an unknown message error", id, r)
		}
	}
	bob.wantExit(1, "messages", "rm")
	bob.wantExit(1, "messages", "rm", "--all", "nobody")

	// Deleted for good: still gone after a restart.
	bob.d.Stop(syscall.SIGTERM)
	bob.start(bob.port)
	if got := texts(bob.messages("alice")); !slices.Equal(got, want) {
		t.Errorf("bob's conversation after a restart: %q, want %q", got, want)
	}

	// The whole conversation; the contact stays.
	if r := bob.h.MustRun("messages", "rm", "--all", "alice"); strings.TrimSpace(r.Stdout) != "deleted 3 messages with alice" {
		t.Errorf("messages rm --all alice printed %q", r.Stdout)
	}
	if hist := bob.messages("alice"); len(hist) != 0 {
		t.Errorf("bob's conversation after rm --all: %q", texts(hist))
	}
	if c := bob.contact("alice"); c.State != "accepted" || c.UserID != alice.uid {
		t.Errorf("alice after rm --all: %+v, want her an accepted contact still", c)
	}
	var all struct {
		Contact string `json:"contact"`
		Deleted int    `json:"deleted"`
	}
	bob.h.JSON(&all, "messages", "rm", "--all", alice.uid)
	if all.Deleted != 0 {
		t.Errorf("messages rm --all of an empty conversation --json: %+v, want 0 deleted", all)
	}

	// The conversation goes on, both ways.
	alice.send("bob", "five", "--wait", "delivered", "--timeout", "30s")
	if res := bob.send("alice", "six", "--wait", "delivered", "--timeout", "30s"); res.State != "delivered" {
		t.Errorf("bob's message after rm --all: %+v", res)
	}
	if got, want := texts(bob.messages("alice")), []string{"five", "six"}; !slices.Equal(got, want) {
		t.Errorf("bob's conversation after rm --all and two messages: %q, want %q", got, want)
	}
}
