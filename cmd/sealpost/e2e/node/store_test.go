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

	"github.com/sealpost/sealpost/cmd/sealpost/e2e/harness"
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

// TestStoreDamage damages a stopped home's store in each of the ways a disk
// or a person can, and checks that the daemon stops with one clear line
// naming the damaged file, never a Go panic or advice that destroys data.
func TestStoreDamage(t *testing.T) {
	firstTable := func(t *testing.T, h *harness.Home) string {
		t.Helper()
		tables, _ := filepath.Glob(filepath.Join(h.Dir, "store", "data", "*.sst"))
		if len(tables) == 0 {
			t.Fatal("no table in a stopped home's store")
		}
		return tables[0]
	}
	flip := func(t *testing.T, path string, at int) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if at < 0 {
			at += len(b)
		}
		b[at] ^= 0x10
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, h *harness.Home)
		file   string // named in the error
	}{
		{"KEYREGISTRY deleted", func(t *testing.T, h *harness.Home) {
			os.Remove(filepath.Join(h.Dir, "store", "data", "KEYREGISTRY"))
		}, "KEYREGISTRY"},
		{"MANIFEST deleted", func(t *testing.T, h *harness.Home) {
			os.Remove(filepath.Join(h.Dir, "store", "data", "MANIFEST"))
		}, "MANIFEST"},
		{"table truncated", func(t *testing.T, h *harness.Home) {
			os.Truncate(firstTable(t, h), 100)
		}, ".sst"},
		{"table index damaged", func(t *testing.T, h *harness.Home) {
			flip(t, firstTable(t, h), -40)
		}, ".sst"},
		{"key file damaged", func(t *testing.T, h *harness.Home) {
			flip(t, filepath.Join(h.Dir, "store", "key"), 22)
		}, "store/key"},
		{"epoch file deleted", func(t *testing.T, h *harness.Home) {
			os.Remove(filepath.Join(h.Dir, "store", "epochs"))
		}, "store/epochs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := bin.Home(t)
			h.Init()
			h.Start().Stop(syscall.SIGTERM)
			tt.damage(t, h)
			d := h.Spawn()
			code := d.Wait()
			out := d.Output()
			if code != 2 || !strings.Contains(out, "sealpost: ") || !strings.Contains(out, "damaged") ||
				!strings.Contains(out, tt.file) || strings.Contains(out, "panic") || strings.Contains(out, "goroutine") {
				t.Errorf("daemon on a store with %s exited %d:\n%s\nwant exit 2 and one line saying the store is damaged, naming %s", tt.name, code, out, tt.file)
			}
			if strings.Contains(out, "sealpost init") {
				t.Errorf("daemon on a damaged store advises init:\n%s", out)
			}
		})
	}
}

// TestMissingConfig deletes a home's config.toml: the daemon says how to
// get one back, and init writes a default one and keeps the store and its
// identity.
func TestMissingConfig(t *testing.T) {
	h := bin.Home(t)
	h.Env = []string{"SEALPOST_PASSPHRASE=correct horse"}
	h.MustRun("init", "--profile", "test")
	type id struct {
		UserID string `json:"user_id"`
	}
	var before, after id
	d := h.Start()
	h.JSON(&before, "id")
	d.Stop(syscall.SIGTERM)
	os.Remove(filepath.Join(h.Dir, "config.toml"))

	sp := h.Spawn()
	if code := sp.Wait(); code != 1 || !strings.Contains(sp.Output(), "no config.toml") || !strings.Contains(sp.Output(), "kept") {
		t.Errorf("daemon without config.toml exited %d:\n%s\nwant exit 1 saying init writes one and keeps the store", code, sp.Output())
	}
	r := h.MustRun("init", "--profile", "test")
	if !strings.Contains(r.Stderr, "kept the store") {
		t.Errorf("init on a store without config.toml: %s\nwant it to say it kept the store", r)
	}
	h.Start()
	h.JSON(&after, "id")
	if after.UserID != before.UserID || before.UserID == "" {
		t.Errorf("user id %q after init restored config.toml, want %q", after.UserID, before.UserID)
	}
}
