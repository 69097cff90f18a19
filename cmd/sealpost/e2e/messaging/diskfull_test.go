package messaging_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/store/storetest"
)

// TestFullDisk runs alice's daemon on a small tmpfs and fills it under
// the running daemon: sending is refused with exit 5 and the disk_full
// message, reads and status go on, a message bob sends meanwhile waits;
// once room returns, both resume by themselves. Stopped on the full disk,
// the daemon closes cleanly, and starting it again fails with one line
// until there is room. The daemon never dies.
func TestFullDisk(t *testing.T) {
	fs := storetest.Tmpfs(t, 256<<20)
	alice := &user{t: t, name: "alice", h: bin.Home(t)}
	alice.h.Dir = filepath.Join(fs, "alice")
	alice.h.Init("--name", "alice")
	alice.start("0")
	bob := newUser(t, "bob")
	befriend(t, alice, bob, "bob")
	bob.send("alice", "before", "--wait", "delivered", "--timeout", "30s")

	alive := func(when string) {
		t.Helper()
		if alice.d.Exited() {
			t.Fatalf("alice's daemon died %s:\n%s", when, alice.d.Output())
		}
	}
	filler := filepath.Join(fs, "filler")
	storetest.FillDisk(t, filler)
	alive("when the disk filled")

	r := alice.wantExit(5, "send", "bob", "on a full disk")
	if !strings.Contains(r.Stderr, "is full") || strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
		t.Errorf("send on a full disk: want one line saying the disk is full, got %q", r.Stderr)
	}
	t.Logf("send on a full disk: exit %d: %s", r.Code, r.Stderr)
	st := alice.h.MustRun("status")
	t.Logf("status on a full disk:\n%s", st.Stdout)
	if !strings.Contains(st.Stdout, "disk") || !strings.Contains(st.Stdout, "full") {
		t.Errorf("status on a full disk does not say so:\n%s", st.Stdout)
	}
	hist := alice.messages("bob")
	if len(hist) != 2 {
		t.Errorf("alice reads %d messages with bob on a full disk, want 2", len(hist))
	}
	queued := bob.send("alice", "while alice's disk is full")
	for range 3 {
		time.Sleep(time.Second)
		alive("while full")
		if n := len(alice.messages("bob")); n != 2 {
			t.Fatalf("alice stored a message on a full disk (%d messages)", n)
		}
	}

	// Room returns: alice writes again, and bob's message arrives.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		if r := alice.h.Run("send", "bob", "after"); r.Code != 0 {
			return "alice cannot send after room returned: " + r.Stderr
		}
		return ""
	})
	eventually(t, 90*time.Second, func() string {
		for _, m := range bob.messages("alice") {
			if m.ID == queued.ID {
				if rank(m.State) < rank("delivered") {
					return "bob's message sent while alice's disk was full is " + m.State
				}
				return ""
			}
		}
		return "bob's message is gone"
	})
	eventually(t, 60*time.Second, func() string {
		for _, m := range bob.messages("alice") {
			if m.Text == "after" {
				return ""
			}
		}
		return "alice's message after room returned has not arrived"
	})
	if st := alice.h.MustRun("status"); strings.Contains(st.Stdout, "full") {
		t.Errorf("status after room returned still says full:\n%s", st.Stdout)
	}
	alive("after room returned")

	// Full again and stopped: a clean stop; a start without room is one
	// clear line with exit 5.
	storetest.FillDisk(t, filler)
	alice.wantExit(5, "send", "bob", "full again")
	if code := alice.d.Stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("stopping alice's daemon on a full disk: exit %d\n%s", code, alice.d.Output())
	}
	d := alice.h.Spawn("--listen", "/ip4/127.0.0.1/tcp/0")
	if code := d.Wait(); code != 5 {
		t.Fatalf("starting on a full disk: exit %d, want 5\n%s", code, d.Output())
	}
	t.Logf("start on a full disk: %s", d.Output())
	if out := strings.TrimSpace(d.Output()); !strings.HasPrefix(out, "sealpost: the disk holding") || strings.Contains(out, "\n") {
		t.Errorf("starting on a full disk: want one line naming the full disk, got:\n%s", out)
	}
	os.Remove(filler)
	t.Logf("alice's daemon:\n%s", alice.d.Output())
	alice.start("0")
	if hist := alice.messages("bob"); len(hist) != 4 {
		t.Errorf("after the restart alice has %d messages with bob, want 4", len(hist))
	}
}
