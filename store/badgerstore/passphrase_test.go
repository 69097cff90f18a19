package badgerstore

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/sealpost/sealpost/store"
)

// killStepEnv names the step at which the child of
// TestChangePassphraseKilled kills itself, and the store's directory.
const (
	killStepEnv = "SEALPOST_STORE_KILL_STEP"
	killDirEnv  = "SEALPOST_STORE_KILL_DIR"
)

// keyFileSteps are the steps writeKeyFile reports, in order; a kill from
// "renamed" on leaves the new key file in place.
var keyFileSteps = []string{"created", "written", "synced", "renamed", "dir synced"}

// killChildMain is the child side of TestChangePassphraseKilled: it changes
// the passphrase of the store in the directory named by the environment
// from "correct horse" to "battery staple" and SIGKILLs itself at the
// named step.
func killChildMain() bool {
	at := os.Getenv(killStepEnv)
	if at == "" {
		return false
	}
	err := changePassphrase(os.Getenv(killDirEnv), []byte("correct horse"), []byte("battery staple"), fastKDF, func(step string) {
		if step == at {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal arrives
		}
	})
	if err != nil {
		os.Stderr.WriteString("change passphrase: " + err.Error() + "\n")
		os.Exit(2)
	}
	os.Exit(3) // the step never came
	return true
}

// TestChangePassphraseKilled kills a passphrase change at each of its steps
// in a real child process and checks that the store then opens with
// exactly one of the two passphrases (the old one until the rename, the new
// one from it on), that no temporary key file outlives the next open, and
// that the passphrase can be changed again.
func TestChangePassphraseKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	for i, step := range keyFileSteps {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			s := createStore(t, dir, ModePassphrase)
			putSelf(t, s, "alice")
			s.Close()

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), killStepEnv+"="+step, killDirEnv+"="+dir)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child: %v (want killed by SIGKILL)\n%s", err, out)
			}

			works, fails := "correct horse", "battery staple"
			if i >= 3 { // renamed
				works, fails = fails, works
			}
			if _, err := openWith(dir, fails); !errors.Is(err, store.ErrWrongPassphrase) {
				t.Errorf("killed after %s: %q: got %v, want ErrWrongPassphrase", step, fails, err)
			}
			s, err = openWith(dir, works)
			if err != nil {
				t.Fatalf("killed after %s: open with %q: %v", step, works, err)
			}
			if got := selfName(t, s); got != "alice" {
				t.Errorf("name %q after a killed change", got)
			}
			s.Close()
			if tmps, _ := filepath.Glob(filepath.Join(dir, keyFileName+tempSuffix)); len(tmps) != 0 {
				t.Errorf("killed after %s: temporary key files left after open: %v", step, tmps)
			}
			if err := ChangePassphrase(dir, []byte(works), []byte("third"), fastKDF); err != nil {
				t.Fatalf("change again: %v", err)
			}
			s, err = openWith(dir, "third")
			if err != nil {
				t.Fatalf("open after changing again: %v", err)
			}
			s.Close()
		})
	}
}
