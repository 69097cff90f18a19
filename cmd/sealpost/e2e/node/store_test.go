package node_test

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func writePassphrase(t *testing.T, pass string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(f, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestPassphraseCommand changes a home's passphrase while its daemon runs,
// then removes it, and checks which passphrases open the home afterwards.
func TestPassphraseCommand(t *testing.T) {
	h := bin.Home(t)
	h.Env = []string{"SEALPOST_PASSPHRASE=one"}
	h.MustRun("init", "--profile", "test")
	d := h.Start()
	h.Env = nil
	one, two := writePassphrase(t, "one"), writePassphrase(t, "two")

	if r := h.Run("passphrase", "--new-passphrase-file", two); r.Code != 1 || !strings.Contains(r.Stderr, "sealpost: no passphrase") {
		t.Errorf("passphrase without the current one: %s\nwant exit 1 and 'no passphrase'", r)
	}
	if r := h.Run("passphrase", "--passphrase-file", two, "--new-passphrase-file", one); r.Code != 1 || !strings.Contains(r.Stderr, "wrong passphrase") {
		t.Errorf("passphrase with a wrong current one: %s\nwant exit 1 and 'wrong passphrase'", r)
	}
	if r := h.Run("passphrase", "--passphrase-file", one); r.Code != 1 || !strings.Contains(r.Stderr, "--new-passphrase-file") {
		t.Errorf("passphrase without a new one and no terminal: %s\nwant exit 1 naming --new-passphrase-file", r)
	}
	r := h.MustRun("passphrase", "--passphrase-file", one, "--new-passphrase-file", two)
	if !strings.Contains(r.Stdout, "changed the passphrase") {
		t.Errorf("passphrase: %s", r)
	}
	// The running daemon goes on.
	h.MustRun("status")
	d.Stop(syscall.SIGTERM)

	sp := h.Spawn("--passphrase-file", one)
	if code := sp.Wait(); code != 1 || !strings.Contains(sp.Output(), "sealpost: wrong passphrase") {
		t.Errorf("daemon with the old passphrase exited %d:\n%s\nwant exit 1 and 'wrong passphrase'", code, sp.Output())
	}
	h.Start("--passphrase-file", two).Stop(syscall.SIGTERM)

	h.Env = []string{"SEALPOST_PASSPHRASE=two"}
	r = h.MustRun("--json", "passphrase", "--no-passphrase")
	if !strings.Contains(r.Stdout, `"protected": false`) || !strings.Contains(r.Stderr, "disk theft") {
		t.Errorf("passphrase --no-passphrase: %s\nwant protected false and the disk theft warning", r)
	}
	h.Env = nil
	h.Start().Stop(syscall.SIGTERM)
	if r := h.Run("passphrase", "--no-passphrase"); r.Code != 1 || !strings.Contains(r.Stderr, "no passphrase to remove") {
		t.Errorf("removing a passphrase twice: %s", r)
	}
	h.MustRun("passphrase", "--new-passphrase-file", one)
	h.Start("--passphrase-file", one)
}

// TestDaemonForgetsPassphrase checks that the passphrase a daemon read
// from SEALPOST_PASSPHRASE is gone from its environment once it runs.
func TestDaemonForgetsPassphrase(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/PID/environ")
	}
	h := bin.Home(t)
	h.Env = []string{"SEALPOST_PASSPHRASE=correct horse battery"}
	h.MustRun("init", "--profile", "test")
	d := h.Start()
	env, err := os.ReadFile("/proc/" + strconv.Itoa(d.Pid()) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(env, []byte("correct horse battery")) || bytes.Contains(env, []byte("SEALPOST_PASSPHRASE")) {
		t.Errorf("the daemon's /proc/PID/environ still holds the passphrase")
	}
	if !bytes.Contains(env, []byte("PATH=")) {
		t.Errorf("the daemon's environment lost its other variables")
	}
}
