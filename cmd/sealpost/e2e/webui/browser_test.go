package webui_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// stepTimeout bounds one browser step (a click, a wait for an element):
// it keeps a broken page from stalling the test; it is no claim of speed.
const stepTimeout = 30 * time.Second

// The one Chromium of the package, started by the first test that needs
// it and stopped by TestMain; each test gets a tab of its own.
var chrome struct {
	once    sync.Once
	ctx     context.Context // the browser's
	cancel  func()
	dataDir string
	err     error
}

// chromiumPath finds Debian's chromium (the binary itself rather than its
// launcher script, when both are there), or $SEALPOST_CHROMIUM.
func chromiumPath() (string, error) {
	if p := os.Getenv("SEALPOST_CHROMIUM"); p != "" {
		return p, nil
	}
	if _, err := os.Stat("/usr/lib/chromium/chromium"); err == nil {
		return "/usr/lib/chromium/chromium", nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium: install it (apt-get install chromium; .ci/run does) or set SEALPOST_CHROMIUM")
}

func startChrome() {
	path, err := chromiumPath()
	if err != nil {
		chrome.err = err
		return
	}
	chrome.dataDir, err = os.MkdirTemp("", "sealpost-chromium-")
	if err != nil {
		chrome.err = err
		return
	}
	// The machine's network is closed: without these flags Chromium keeps
	// trying (and failing) to reach Google's services.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.UserDataDir(chrome.dataDir),
		chromedp.WindowSize(1280, 800),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	// The browser belongs to the context of its first action: bctx itself,
	// not one with a deadline.
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		bcancel()
		acancel()
		chrome.err = fmt.Errorf("start %s: %w", path, err)
		return
	}
	chrome.ctx = bctx
	chrome.cancel = func() { bcancel(); acancel() }
}

// stopChrome ends the browser, if one started, and removes its profile.
func stopChrome() {
	if chrome.cancel != nil {
		chrome.cancel()
	}
	if chrome.dataDir != "" {
		os.RemoveAll(chrome.dataDir)
	}
}

// newTab opens a tab of the package's Chromium, closed when the test
// ends. Without chromium the test is skipped, saying why.
func newTab(t *testing.T) context.Context {
	t.Helper()
	chrome.once.Do(startChrome)
	if chrome.err != nil {
		if strings.HasPrefix(chrome.err.Error(), "no chromium") {
			t.Skip(chrome.err)
		}
		t.Fatal(chrome.err)
	}
	ctx, cancel := chromedp.NewContext(chrome.ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return ctx
}

// do runs browser actions, each within stepTimeout.
func do(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	for i, a := range actions {
		sctx, cancel := context.WithTimeout(ctx, stepTimeout)
		err := chromedp.Do(sctx, a)
		cancel()
		if err != nil {
			t.Fatalf("browser step %d of %d: %v", i+1, len(actions), err)
		}
	}
}

// run runs one browser action that returns a value, within stepTimeout.
func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return v
}

// js evaluates expr in the page and decodes its value.
func js[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	return run(t, ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// role selects the elements by their accessible role and name, as
// assistive technology sees them (Chromium's accessibility tree), so the
// tests find controls the way a person does.
func role(role, name string) chromedp.QueryOption {
	return chromedp.ByFunc(func(ctx context.Context, t *chromedp.Target, n *chromedp.Node) ([]cdp.NodeID, error) {
		res, err := cdp.Call(ctx, t, accessibility.QueryAXTree, accessibility.QueryAXTreeParams{NodeID: n.NodeID, Role: role, AccessibleName: name})
		if err != nil {
			return nil, err
		}
		var backend []cdp.BackendNodeID
		for _, a := range res.Nodes {
			if !a.Ignored && a.BackendDOMNodeID != 0 {
				backend = append(backend, a.BackendDOMNodeID)
			}
		}
		if len(backend) == 0 {
			return nil, nil
		}
		pushed, err := cdp.Call(ctx, t, dom.PushNodesByBackendIDsToFrontend, dom.PushNodesByBackendIDsToFrontendParams{BackendNodeIDs: backend})
		if err != nil {
			return nil, err
		}
		return pushed.NodeIDs, nil
	})
}

// a names an element by role and name in a selector's label, for errors.
func a(r, name string) string { return r + " " + fmt.Sprintf("%q", name) }

// click clicks the visible element with that role and name. When the page
// replaced the element between finding it and clicking it (a list redrawn
// by a live update), it finds it again, up to three times: a person's
// click lands on whatever is there.
func click(r, name string) chromedp.Action[chromedp.Void] {
	c := chromedp.Click(a(r, name), role(r, name), chromedp.NodeVisible)
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		for try := 1; ; try++ {
			v, err := c(ctx, t)
			var cerr *cdproto.Error
			if err == nil || try == 3 || !errors.As(err, &cerr) || !strings.Contains(cerr.Message, "Could not find node") {
				return v, err
			}
		}
	}
}

// typeInto types text into the visible element with that role and name.
func typeInto(r, name, text string) chromedp.Action[chromedp.Void] {
	return chromedp.SendKeys(a(r, name), text, role(r, name), chromedp.NodeVisible)
}

// visible waits until the element with that role and name is visible.
func visible(r, name string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(a(r, name), role(r, name))
}

// textOf is the visible text of the element with that role and name.
func textOf(t *testing.T, ctx context.Context, r, name string) string {
	t.Helper()
	return run(t, ctx, chromedp.Text(a(r, name), role(r, name)))
}

// eventually retries cond every 100 ms for up to limit, until it returns
// ""; cond returns what is still missing.
func eventually(t *testing.T, limit time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		missing := cond()
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// screenshot writes the viewport as NAME.png into the directory of
// $SEALPOST_UI_SCREENSHOTS, when it is set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("SEALPOST_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := run(t, ctx, chromedp.CaptureScreenshot())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitJS waits until expr is true in the page (evaluated in Go's loop,
// not with an injected poller: the app's CSP forbids eval).
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	eventually(t, stepTimeout, func() string {
		if js[bool](t, ctx, expr) {
			return ""
		}
		return what
	})
}

// controlRoles are the roles of what a person operates; each needs an
// accessible name. Images need one too (their alternative text).
var controlRoles = map[string]bool{
	"button": true, "link": true, "textbox": true, "searchbox": true, "combobox": true,
	"checkbox": true, "radio": true, "switch": true, "slider": true, "spinbutton": true,
	"tab": true, "menuitem": true, "listbox": true, "image": true,
}

// allNamed checks that every control the page shows now has an accessible
// name in Chromium's accessibility tree; where says what the page shows.
func allNamed(t *testing.T, ctx context.Context, where string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	tree, err := chromedp.Call(sctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	if err != nil {
		t.Fatalf("accessibility tree: %v", err)
	}
	controls := 0
	for _, n := range tree.Nodes {
		if n.Ignored || n.Role == nil {
			continue
		}
		var r string
		if json.Unmarshal(n.Role.Value, &r) != nil || !controlRoles[r] {
			continue
		}
		controls++
		var name string
		if n.Name != nil {
			json.Unmarshal(n.Name.Value, &name)
		}
		if strings.TrimSpace(name) == "" {
			t.Errorf("%s: an element of role %s has no accessible name (DOM node %d)", where, r, n.BackendDOMNodeID)
		}
	}
	if controls == 0 {
		t.Errorf("%s: no controls in the accessibility tree", where)
	}
}

// countDialogs counts (and dismisses) every JavaScript dialog the tab
// opens from now on: text that ran as HTML would open one.
func countDialogs(ctx context.Context) *atomic.Int32 {
	var n atomic.Int32
	events := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range events {
			if err != nil {
				return
			}
			n.Add(1)
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	return &n
}

// conversationOrder is the names in the conversation list, top first.
func conversationOrder(t *testing.T, ctx context.Context) []string {
	t.Helper()
	return js[[]string](t, ctx, `[...document.querySelectorAll('#conv-list a')].map(a => a.textContent)`)
}
