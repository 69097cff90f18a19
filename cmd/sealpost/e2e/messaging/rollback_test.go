package messaging_test

import (
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/cmd/sealpost/e2e/harness"
)

// encrypted matches the debug line of every message a daemon encrypted
// and committed, with the nonce of its message key (derived from the key
// with it: one nonce, one key).
var encrypted = regexp.MustCompile(`msg="messaging: encrypted" id=([0-9a-f]+) nonce=([0-9a-f]+)`)

// nonces returns, for each nonce in the daemons' output, the IDs of the
// messages encrypted under it.
func nonces(ds ...*harness.Daemon) map[string][]string {
	out := map[string][]string{}
	for _, d := range ds {
		for _, m := range encrypted.FindAllStringSubmatch(d.Output(), -1) {
			out[m[2]] = append(out[m[2]], m[1])
		}
	}
	return out
}

// TestRestoreFromCopy puts an older copy of alice's stopped home back
// after she sent 5 messages in one chain of her session with bob, and
// has her send again: with the marker in her state directory her daemon
// finds the store behind, says so once (log, status), and ends its
// sessions, so the new messages go in a new session and no message key
// (no nonce) is used twice; they reach delivered. Where the copy is
// opened without its marker (as on another machine), alice's session
// sends again under the keys of those 5 messages — the nonces repeat,
// which shows the check can fail (the first message does, at least: a
// message from bob that arrives first makes alice's next one start a new
// chain) — and bob, who used those keys, asks for each such message
// again, so they reach delivered all the same.
func TestRestoreFromCopy(t *testing.T) {
	for _, marker := range []bool{true, false} {
		name := "marker"
		if !marker {
			name = "no_marker"
		}
		t.Run(name, func(t *testing.T) { restoreFromCopy(t, marker) })
	}
}

func restoreFromCopy(t *testing.T, marker bool) {
	alice := &user{t: t, name: "alice", h: bin.Home(t)}
	alice.h.Init("--name", "alice")
	alice.start("0", "--log-level", "debug")
	bob := newUser(t, "bob")
	befriend(t, alice, bob, "bob")
	bob.send("alice", "hi", "--wait", "delivered", "--timeout", "30s")
	daemons := []*harness.Daemon{alice.d}

	// With bob away, no receipt arrives: what alice sends from here on
	// is one chain of the session, each message under the next key.
	bob.d.Stop(syscall.SIGTERM)
	alice.send("bob", "m0")
	alice.d.Stop(syscall.SIGTERM)
	old := t.TempDir() + "/home"
	if err := os.CopyFS(old, os.DirFS(alice.h.Dir)); err != nil {
		t.Fatal(err)
	}
	alice.start("0", "--log-level", "debug")
	daemons = append(daemons, alice.d)
	var sent []sendJSON
	for i := 1; i <= 5; i++ {
		sent = append(sent, alice.send("bob", "m"+string(rune('0'+i))))
	}
	bob.start(bob.port)
	waitDelivered(t, alice, "bob", sent, 60*time.Second)
	alice.d.Stop(syscall.SIGTERM)

	// The copy goes back.
	if err := os.RemoveAll(alice.h.Dir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(alice.h.Dir, os.DirFS(old)); err != nil {
		t.Fatal(err)
	}
	if !marker {
		os.RemoveAll(alice.h.State)
	}
	alice.start("0", "--log-level", "debug")
	daemons = append(daemons, alice.d)
	st := alice.h.MustRun("status").Stdout
	if said := strings.Contains(st, "older state"); said != marker {
		t.Errorf("status after the restore says it (%v), want %v:\n%s", said, marker, st)
	}
	if logged := strings.Contains(alice.d.Output(), "the store went back to an older state"); logged != marker {
		t.Errorf("the daemon's log says it (%v), want %v", logged, marker)
	}
	var again []sendJSON
	for i := 1; i <= 5; i++ {
		again = append(again, alice.send("bob", "n"+string(rune('0'+i))))
	}
	waitDelivered(t, alice, "bob", again, 90*time.Second)

	// Every message alice encrypted, over her three daemons.
	ns := nonces(daemons...)
	var reused []string
	total := 0
	for n, ids := range ns {
		total += len(ids)
		if len(ids) > 1 {
			reused = append(reused, n)
		}
	}
	if total < 11 {
		t.Fatalf("only %d encryptions in alice's debug logs, want at least 11 (m0..m5, n1..n5)", total)
	}
	if marker && len(reused) > 0 {
		t.Fatalf("%d message keys used twice after a restore that the marker caught", len(reused))
	}
	if !marker && len(reused) == 0 {
		t.Fatal("without the marker no message key was used twice: the check could not fail")
	}
	reportedByBob := strings.Count(bob.d.Output(), "reused a message key")
	if !marker && reportedByBob == 0 {
		t.Error("bob did not notice the message keys used again")
	}
	if marker && reportedByBob > 0 {
		t.Errorf("bob noticed %d messages under keys used before", reportedByBob)
	}
	t.Logf("%d encryptions, %d keys used twice; bob noticed %d; status:\n%s", total, len(reused), reportedByBob, st)
}

// waitDelivered waits until u's messages to contact are delivered (or
// read).
func waitDelivered(t *testing.T, u *user, contact string, sent []sendJSON, limit time.Duration) {
	t.Helper()
	eventually(t, limit, func() string {
		state := map[string]string{}
		for _, m := range u.messages(contact) {
			state[m.ID] = m.State
		}
		for _, s := range sent {
			if rank(state[s.ID]) < rank("delivered") {
				return "message " + s.ID + " is " + state[s.ID]
			}
		}
		return ""
	})
}
