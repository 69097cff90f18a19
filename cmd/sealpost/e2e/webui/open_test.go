package webui_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestUIOpensBrowser: on a desktop `sealpost ui` hands the login link to
// the desktop's opener (xdg-open on Linux; here a script in PATH that
// writes down what it was given), and the link it handed over logs a
// browser in. --no-open and --json open nothing; without a display
// nothing is opened and the link is still printed.
func TestUIOpensBrowser(t *testing.T) {
	alice := newUser(t, "alice")
	dir := t.TempDir()
	opened := filepath.Join(dir, "opened")
	script := "#!/bin/sh\nprintf '%s\\n' \"$*\" >> " + opened + "\n"
	if err := os.WriteFile(filepath.Join(dir, "xdg-open"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	read := func() []string {
		b, err := os.ReadFile(opened)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(b))
	}
	path := dir + string(os.PathListSeparator) + os.Getenv("PATH")

	// No display: the link only.
	alice.h.Env = []string{"DISPLAY=", "WAYLAND_DISPLAY=", "PATH=" + path}
	r := alice.h.MustRun("ui")
	if !strings.Contains(r.Stdout, "/login?token=") || r.Stderr != "" {
		t.Errorf("sealpost ui without a display: %s", r)
	}
	alice.h.Env = []string{"DISPLAY=:0", "PATH=" + path}
	alice.h.MustRun("ui", "--no-open")
	alice.loginURL() // --json
	if got := read(); len(got) != 0 {
		t.Fatalf("opened %q without a display, with --no-open or --json", got)
	}

	r = alice.h.MustRun("ui")
	var got []string
	eventually(t, waitFor, func() string {
		if got = read(); len(got) != 1 {
			return "the opener was not run once"
		}
		return ""
	})
	if !strings.Contains(r.Stdout, got[0]) || !strings.Contains(got[0], "/login?token=") {
		t.Fatalf("sealpost ui printed %q and opened %q", r.Stdout, got[0])
	}
	ctx := newTab(t)
	do(t, ctx, chromedp.Navigate(got[0]))
	waitJS(t, ctx, "the app to be ready", `document.body.dataset.ready === 'true'`)
	if me := js[string](t, ctx, `document.getElementById('me-name').textContent`); me != "alice" {
		t.Errorf("the link the browser was given opened the app of %q, want alice's", me)
	}
}
