package home

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/store"
)

// forgetChildEnv makes the test binary the child of
// TestForgetEnvPassphrase.
const forgetChildEnv = "SEALPOST_HOME_FORGET_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(forgetChildEnv) != "" {
		forgetChild()
		return
	}
	os.Exit(m.Run())
}

// forgetChild forgets SEALPOST_PASSPHRASE and then reports what is left of
// it: in the runtime's environment and in the kernel's copy.
func forgetChild() {
	if err := ForgetEnvPassphrase(); err != nil {
		os.Stdout.WriteString("error: " + err.Error() + "\n")
	}
	if v, ok := os.LookupEnv(EnvPassphrase); ok {
		os.Stdout.WriteString("runtime: " + v + "\n")
	}
	env, err := os.ReadFile("/proc/self/environ")
	if err != nil {
		os.Stdout.WriteString("read environ: " + err.Error() + "\n")
	}
	if bytes.Contains(env, []byte("correct horse")) || bytes.Contains(env, []byte(EnvPassphrase)) {
		os.Stdout.WriteString("kernel: still there\n")
	}
	if !bytes.Contains(env, []byte(forgetChildEnv)) {
		os.Stdout.WriteString("kernel: other variables gone\n")
	}
	os.Exit(0)
}

// TestForgetEnvPassphrase runs a process with SEALPOST_PASSPHRASE set,
// forgets it, and checks that neither the runtime nor /proc/PID/environ
// still has it while the other variables stay.
func TestForgetEnvPassphrase(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("checks /proc/PID/environ")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), forgetChildEnv+"=1", EnvPassphrase+"=correct horse")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if len(out) != 0 {
		t.Errorf("after ForgetEnvPassphrase:\n%s", out)
	}
}

func TestOpenStoreClearsPassphrase(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	pass := []byte("correct horse")
	st, _, err := h.Init(context.Background(), InitOptions{Name: "a", Profile: ProfileTest, Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if !bytes.Equal(pass, make([]byte, len(pass))) {
		t.Errorf("Init left the passphrase in its buffer: %q", pass)
	}
	pass = []byte("correct horse")
	st, err = h.OpenStore(context.Background(), pass, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if !bytes.Equal(pass, make([]byte, len(pass))) {
		t.Errorf("OpenStore left the passphrase in its buffer: %q", pass)
	}
}

func TestChangePassphrase(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	st, _, err := h.Init(context.Background(), InitOptions{Name: "a", Profile: ProfileTest, Passphrase: []byte("one")})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := h.ChangePassphrase([]byte("wrong"), []byte("two")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("ChangePassphrase with a wrong passphrase: got %v, want ErrWrongPassphrase", err)
	}
	old, new := []byte("one"), []byte("two")
	if err := h.ChangePassphrase(old, new); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(old, []byte{0, 0, 0}) || !bytes.Equal(new, []byte{0, 0, 0}) {
		t.Errorf("ChangePassphrase left the passphrases in their buffers: %q %q", old, new)
	}
	if _, err := h.OpenStore(context.Background(), []byte("one"), nil); !errors.Is(err, store.ErrWrongPassphrase) {
		t.Errorf("old passphrase: got %v, want ErrWrongPassphrase", err)
	}
	st, err = h.OpenStore(context.Background(), []byte("two"), nil)
	if err != nil {
		t.Fatalf("new passphrase: %v", err)
	}
	st.Close()

	relay := Home{Dir: t.TempDir()}
	st, _, err = relay.Init(context.Background(), InitOptions{Name: "r", Profile: ProfileRelay, NoPassphrase: true})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := relay.ChangePassphrase(nil, []byte("x")); !errors.Is(err, ErrNotEncrypted) {
		t.Errorf("ChangePassphrase of an unencrypted store: got %v, want ErrNotEncrypted", err)
	}
	if err := (Home{Dir: t.TempDir()}).ChangePassphrase(nil, []byte("x")); err == nil || !strings.Contains(err.Error(), "holds no store") {
		t.Errorf("ChangePassphrase without a store: got %v", err)
	}
}
