// Package webui_test drives the web app that the daemon serves in headless
// Chromium (chromedp), against real daemons on 127.0.0.1, and checks what
// it does against the other side's command line: log in through the link
// `sealpost ui` prints, add a contact, send and receive live with delivery
// states, the newest conversation first with its unread count, message
// requests, text that looks like HTML, safety numbers, key changes,
// relays, groups (create, members, invitations, leave), files (sent with
// progress, pictures inline, saved, names as text), keyboard-only use, the
// narrow layout, an accessible name on every control, and the requests a
// foreign page or a rebinding DNS name would send. With SEALPOST_UI_SCREENSHOTS=DIR the
// tests write screenshots of the main views there (docs/screenshots holds
// the committed ones).
package webui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/sealpost/sealpost/cmd/sealpost/e2e/harness"
)

var bin *harness.Binary

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, &bin, stopChrome))
}

// waitFor bounds waits for the network (delivery, receipts).
const waitFor = 30 * time.Second

// msg is the part of a message of `inbox --json` and `messages --json`
// the tests read.
type msg struct {
	ID       string `json:"id"`
	From     string `json:"from"`
	Outgoing bool   `json:"outgoing"`
	Text     string `json:"text"`
	State    string `json:"state"`
}

type contactJSON struct {
	Name         string `json:"name"`
	UserID       string `json:"user_id"`
	Verified     bool   `json:"verified"`
	SafetyNumber string `json:"safety_number"`
}

// user is one node: its home, its daemon and its identity.
type user struct {
	t    *testing.T
	name string
	h    *harness.Home
	d    *harness.Daemon
	id   struct {
		UserID string   `json:"user_id"`
		PeerID string   `json:"peer_id"`
		Addrs  []string `json:"addrs"`
	}
}

func newUser(t *testing.T, name string, args ...string) *user {
	t.Helper()
	u := &user{t: t, name: name, h: bin.Home(t)}
	u.h.Init("--name", name)
	u.start(args...)
	return u
}

func (u *user) start(args ...string) {
	u.t.Helper()
	u.d = u.h.Start(append([]string{"--listen", "/ip4/127.0.0.1/tcp/0"}, args...)...)
	u.h.JSON(&u.id, "id")
}

// addr is the daemon's loopback TCP multiaddr with /p2p/.
func (u *user) addr() string {
	for _, a := range u.id.Addrs {
		if strings.HasPrefix(a, "/ip4/127.0.0.1/tcp/") {
			return a
		}
	}
	u.t.Fatalf("%s has no loopback TCP address: %v", u.name, u.id.Addrs)
	return ""
}

func (u *user) invite() string {
	u.t.Helper()
	var inv struct {
		Link string `json:"link"`
	}
	u.h.JSON(&inv, "invite")
	return inv.Link
}

func (u *user) lines(args ...string) []msg {
	u.t.Helper()
	r := u.h.MustRun(append([]string{"--json"}, args...)...)
	return harness.DecodeLines[msg](u.t, r.Stdout)
}

func (u *user) contact(name string) contactJSON {
	u.t.Helper()
	var c contactJSON
	u.h.JSON(&c, "contact", "show", name)
	return c
}

// loginURL is what `sealpost ui --json` prints.
func (u *user) loginURL() string {
	u.t.Helper()
	var l struct {
		URL string `json:"url"`
	}
	u.h.JSON(&l, "ui")
	if !strings.HasPrefix(l.URL, "http://127.0.0.1:") || !strings.Contains(l.URL, "/login?token=") {
		u.t.Fatalf("sealpost ui --json printed %+v", l)
	}
	return l.URL
}

// openApp logs the tab in with u's login link and waits until the app is
// ready; it returns the app's origin.
func openApp(t *testing.T, ctx context.Context, u *user) string {
	t.Helper()
	login := u.loginURL()
	lu, _ := url.Parse(login)
	origin := lu.Scheme + "://" + lu.Host
	do(t, ctx, chromedp.Navigate(login))
	waitJS(t, ctx, "the app to be ready", `document.body.dataset.ready === 'true'`)
	if href := js[string](t, ctx, `location.href`); href != origin+"/" {
		t.Errorf("after login the address bar shows %q, want %q (the token removed)", href, origin+"/")
	}
	return origin
}

// inConversation is the text of the open conversation's messages.
func inConversation(t *testing.T, ctx context.Context) string {
	return textOf(t, ctx, "region", "Messages")
}

// lastOutgoingState is the state shown on the newest outgoing message.
func lastOutgoingState(t *testing.T, ctx context.Context) string {
	return js[string](t, ctx, `(() => { const m = [...document.querySelectorAll('#msg-list li.out')].at(-1); return m ? m.querySelector('.state').textContent : ''; })()`)
}

// TestWebApp is one person's session in the app against a friend on the
// command line; the subtests run in order on one tab.
func TestWebApp(t *testing.T) {
	ctx := newTab(t)
	alice := newUser(t, "alice")
	bob := newUser(t, "bob")

	dialogs := countDialogs(ctx)

	do(t, ctx, chromedp.EmulateViewport(1280, 800))
	origin := openApp(t, ctx, alice)
	var bobPath string // the hash of bob's conversation

	t.Run("start", func(t *testing.T) {
		do(t, ctx, visible("navigation", "Conversations"), visible("button", "Create invite"),
			visible("button", "Add contact"), visible("button", "Relays"))
		allNamed(t, ctx, "the empty app")
		if me := js[string](t, ctx, `document.getElementById('me-name').textContent`); me != "alice" {
			t.Errorf("the app shows the name %q, want alice", me)
		}
		do(t, ctx, click("button", "sealpost alice"), visible("heading", "This node"))
		facts := textOf(t, ctx, "dialog", "This node")
		if !strings.Contains(facts, alice.id.UserID) || !strings.Contains(facts, "Peers") {
			t.Errorf("the node dialog lacks the user ID or the status:\n%s", facts)
		}
		allNamed(t, ctx, "the node dialog")
		do(t, ctx, chromedp.KeyEvent(kb.Escape))
	})

	t.Run("add contact from a link", func(t *testing.T) {
		do(t, ctx,
			click("button", "Add contact"),
			visible("textbox", "Invite link"),
		)
		allNamed(t, ctx, "the Add contact dialog")
		do(t, ctx,
			typeInto("textbox", "Invite link", bob.invite()),
			click("button", "Add"),
			visible("link", "bob"),
		)
		waitJS(t, ctx, "bob's conversation to open", `document.body.dataset.conversation === `+jsString(bob.id.UserID))
		allNamed(t, ctx, "a conversation")
		bobPath = js[string](t, ctx, `location.hash`)
		if nav := textOf(t, ctx, "navigation", "Conversations"); !strings.Contains(nav, "bob") {
			t.Errorf("the conversation list lacks bob: %q", nav)
		}
	})

	t.Run("send from the app", func(t *testing.T) {
		const text = "hello bob, from the web"
		do(t, ctx, typeInto("textbox", "Message", text), click("button", "Send"))
		eventually(t, waitFor, func() string {
			for _, m := range bob.lines("inbox") {
				if m.Text == text && m.From == alice.id.UserID {
					return ""
				}
			}
			return "bob's inbox lacks alice's message"
		})
		if v := js[string](t, ctx, `document.getElementById('msg-input').value`); v != "" {
			t.Errorf("the composer still holds %q", v)
		}
		// The state moves on live: delivered, then read once bob reads.
		eventually(t, waitFor, func() string {
			if s := lastOutgoingState(t, ctx); s != "delivered" && s != "read" {
				return "the message shows " + s + ", not delivered"
			}
			return ""
		})
		bob.lines("messages", "alice")
		eventually(t, waitFor, func() string {
			if s := lastOutgoingState(t, ctx); s != "read" {
				return "the message shows " + s + " after bob read it, not read"
			}
			return ""
		})
	})

	t.Run("receive live and mark read", func(t *testing.T) {
		js[bool](t, ctx, `window.notReloaded = true`)
		const text = "hi alice, from the terminal"
		var res struct {
			State string `json:"state"`
		}
		// --wait read returns once the app has shown the message and
		// marked it read.
		bob.h.JSON(&res, "send", "alice", text, "--wait", "read", "--timeout", waitFor.String())
		if res.State != "read" {
			t.Errorf("bob's message is %s, want read", res.State)
		}
		if got := inConversation(t, ctx); !strings.Contains(got, text) {
			t.Errorf("the conversation lacks %q:\n%s", text, got)
		}
		if !js[bool](t, ctx, `window.notReloaded === true`) {
			t.Error("the page reloaded")
		}
	})

	t.Run("text is text", func(t *testing.T) {
		const evil = `<img src=x onerror=alert(1)>`
		bob.h.MustRun("send", "alice", evil, "--wait", "read", "--timeout", waitFor.String())
		got := js[string](t, ctx, `[...document.querySelectorAll('#msg-list li.in .text')].at(-1).textContent`)
		if got != evil {
			t.Errorf("the message shows %q, want the characters %q", got, evil)
		}
		if n := js[int](t, ctx, `document.querySelectorAll('#app img').length`); n != 0 {
			t.Errorf("the page holds %d img elements", n)
		}
		eventually(t, waitFor, func() string {
			if preview := textOf(t, ctx, "navigation", "Conversations"); !strings.Contains(preview, evil) {
				return fmt.Sprintf("the list's preview lacks the characters: %q", preview)
			}
			return ""
		})
		if n := dialogs.Load(); n != 0 {
			t.Errorf("%d JavaScript dialogs opened", n)
		}
	})

	t.Run("keyboard only", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(origin+"/#/"))
		waitJS(t, ctx, "the app to be ready", `document.body.dataset.ready === 'true' && !document.body.classList.contains('conv-open')`)
		// Tab to bob's conversation (bounded), open it with Enter, type and
		// send with Enter.
		onLink := `document.activeElement && document.activeElement.textContent === 'bob' && document.activeElement.tagName === 'A'`
		for i := 0; !js[bool](t, ctx, onLink); i++ {
			if i == 20 {
				t.Fatal("20 presses of Tab did not reach bob's conversation")
			}
			do(t, ctx, chromedp.KeyEvent(kb.Tab))
		}
		// A message that arrives meanwhile redraws the list; the focus
		// stays on bob's conversation.
		const incoming = "a message while alice tabs through the list"
		bob.h.MustRun("send", "alice", incoming, "--wait", "delivered", "--timeout", waitFor.String())
		waitJS(t, ctx, "the list to show bob's new message", `document.getElementById('conv-list').textContent.includes(`+jsString(incoming)+`)`)
		if !js[bool](t, ctx, onLink) {
			t.Errorf("after the list was redrawn the focus is on %q", js[string](t, ctx, `document.activeElement.outerHTML.slice(0, 80)`))
		}
		do(t, ctx, chromedp.KeyEvent(kb.Enter))
		waitJS(t, ctx, "the composer to have the focus", `document.activeElement && document.activeElement.id === 'msg-input'`)
		const text = "typed and sent with the keyboard alone"
		do(t, ctx, chromedp.KeyEvent(text), chromedp.KeyEvent(kb.Enter))
		// The app took it (what the keyboard did), then bob has it (what
		// the network did): a failure says which.
		waitJS(t, ctx, "the app to show the message typed with the keyboard", `[...document.querySelectorAll('#msg-list li.out .text')].some(e => e.textContent === `+jsString(text)+`) && document.getElementById('msg-input').value === ''`)
		eventually(t, waitFor, func() string {
			for _, m := range bob.lines("inbox") {
				if m.Text == text {
					return ""
				}
			}
			return "bob's inbox lacks the message typed with the keyboard; the app: " + appState(t, ctx) + "; alice's CLI: " + fmt.Sprint(alice.lines("messages", "bob", "--limit", "2"))
		})
	})

	t.Run("failed, then delivered", func(t *testing.T) {
		// Bob's node is down and alice has no relay: every attempt fails,
		// and after a few the message says so, with the reason.
		bob.d.Stop(syscall.SIGTERM)
		const text = "are you there, bob?"
		do(t, ctx, typeInto("textbox", "Message", text), click("button", "Send"))
		lastOut := `(() => { const m = [...document.querySelectorAll('#msg-list li.out')].at(-1); return m ? [m.querySelector('.text').textContent, m.querySelector('.state').textContent, m.querySelector('.state').title] : []; })()`
		var shown []string
		eventually(t, 2*time.Minute, func() string {
			shown = js[[]string](t, ctx, lastOut)
			if len(shown) != 3 || shown[0] != text || !strings.HasPrefix(shown[1], "failed: ") {
				return fmt.Sprintf("the message shows %q, not failed with a reason", shown)
			}
			return ""
		})
		if shown[1] != "failed: "+shown[2] {
			t.Errorf("the state reads %q, its title %q: want the reason in both", shown[1], shown[2])
		}
		var cli msg
		for _, m := range alice.lines("messages", "bob", "--limit", "1") {
			cli = m
		}
		if cli.Text != text || cli.State != "failed" {
			t.Errorf("alice's command line shows %+v, want the message failed", cli)
		}
		screenshot(t, ctx, "failed")
		allNamed(t, ctx, "a failed message")
		// The daemon keeps trying: once bob is back (and writes, so the
		// two connect), the same message reaches him and its state moves
		// on, live.
		bob.start()
		bob.h.MustRun("send", "alice", "back online", "--wait", "delivered", "--timeout", waitFor.String())
		eventually(t, waitFor, func() string {
			if !slices.ContainsFunc(bob.lines("inbox"), func(m msg) bool { return m.Text == text }) {
				return "bob's inbox lacks the message that failed"
			}
			return ""
		})
		eventually(t, waitFor, func() string {
			shown = js[[]string](t, ctx, lastOut)
			if len(shown) != 3 || shown[0] != text || (shown[1] != "delivered" && shown[1] != "read") {
				return fmt.Sprintf("the message shows %q after it reached bob, not delivered", shown)
			}
			return ""
		})
	})

	t.Run("safety number", func(t *testing.T) {
		want := bob.contact("alice").SafetyNumber
		do(t, ctx, click("button", "Verify"), visible("button", "Mark as verified"))
		if got := js[string](t, ctx, `document.getElementById('verify-number').textContent`); got != want || want == "" {
			t.Errorf("the app shows safety number %q, bob's command line %q", got, want)
		}
		screenshot(t, ctx, "safety-number")
		allNamed(t, ctx, "the safety number dialog")
		do(t, ctx, click("button", "Mark as verified"))
		waitJS(t, ctx, "bob to show as verified", `document.getElementById('conv-sub').textContent.includes('verified') && !document.getElementById('conv-sub').textContent.includes('not verified')`)
		if !alice.contact("bob").Verified {
			t.Error("the command line does not show bob verified")
		}
	})

	t.Run("invite", func(t *testing.T) {
		do(t, ctx, click("button", "Create invite"), visible("textbox", "Your invite link"))
		link := js[string](t, ctx, `document.getElementById('invite-link').value`)
		if !strings.HasPrefix(link, "sealpost://") {
			t.Errorf("the invite link is %q", link)
		}
		waitJS(t, ctx, "the QR code to load", `document.getElementById('invite-qr').complete && document.getElementById('invite-qr').naturalWidth > 0`)
		// The code is an SVG of the link, drawn by the daemon.
		qr := js[[]string](t, ctx, `fetch(document.getElementById('invite-qr').src).then(async r => [r.headers.get('Content-Type'), (await r.text()).slice(0, 200)])`)
		if !strings.HasPrefix(qr[0], "image/svg+xml") || !strings.Contains(qr[1], "<svg") {
			t.Errorf("the QR code is %q: %q, want an SVG", qr[0], qr[1])
		}
		if text := js[string](t, ctx, `new URL(document.getElementById('invite-qr').src).searchParams.get('text')`); text != link {
			t.Errorf("the QR code is of %q, want the link %q", text, link)
		}
		screenshot(t, ctx, "invite")
		allNamed(t, ctx, "the invite dialog")
		do(t, ctx, chromedp.KeyEvent(kb.Escape))
		// The link works: carol adds alice through it and writes, while
		// bob's conversation is open.
		carol := newUser(t, "carol")
		carol.h.MustRun("contact", "add", link, "--name", "alice")
		carol.h.MustRun("send", "alice", "hi, carol here", "--wait", "delivered", "--timeout", waitFor.String())
		do(t, ctx, visible("link", "carol"))
		// Carol's conversation is the newest: first, with one unread
		// message, counted in the window's title.
		waitJS(t, ctx, "carol's unread count", `document.querySelector('.conv.unread .badge') !== null`)
		if order := conversationOrder(t, ctx); len(order) != 2 || order[0] != "carol" {
			t.Errorf("the conversation list is %q, want carol's (the newest) first", order)
		}
		if badge := js[string](t, ctx, `document.querySelector('.conv.unread .badge').textContent`); badge != "Unread: 1" {
			t.Errorf("carol's unread count reads %q, want \"Unread: 1\"", badge)
		}
		if title := js[string](t, ctx, `document.title`); title != "(1) sealpost" {
			t.Errorf("the title is %q, want \"(1) sealpost\"", title)
		}
		// Opening it reads it.
		do(t, ctx, click("link", "carol"))
		waitJS(t, ctx, "carol's conversation read", `document.querySelector('.conv.unread') === null && document.title === 'sealpost'`)
		if got := inConversation(t, ctx); !strings.Contains(got, "hi, carol here") {
			t.Errorf("carol's conversation shows %q", got)
		}
	})

	t.Run("message request: accept, reply, remove", func(t *testing.T) {
		// Dave writes through an invite alice revoked: his messages arrive
		// as a message request.
		link := alice.invite()
		alice.h.MustRun("invite", "--revoke", link)
		dave := newUser(t, "dave")
		dave.h.MustRun("contact", "add", link, "--name", "alice")
		dave.h.MustRun("send", "alice", "hi, this is dave", "--wait", "sent", "--timeout", waitFor.String())
		do(t, ctx, visible("link", "dave"))
		if nav := textOf(t, ctx, "navigation", "Conversations"); !strings.Contains(nav, "Message request") {
			t.Errorf("the list does not mark dave's request: %q", nav)
		}
		if order := conversationOrder(t, ctx); len(order) != 3 || order[0] != "dave" {
			t.Errorf("the conversation list is %q, want dave's (the newest) first", order)
		}
		do(t, ctx, click("link", "dave"), visible("button", "Accept"))
		if !js[bool](t, ctx, `document.getElementById('composer').hidden`) {
			t.Error("the composer shows for a message request")
		}
		screenshot(t, ctx, "request")
		allNamed(t, ctx, "a message request")
		do(t, ctx, click("button", "Accept"))
		waitJS(t, ctx, "the composer after accepting", `!document.getElementById('composer').hidden && document.getElementById('request-bar').hidden`)
		const reply = "welcome, dave"
		do(t, ctx, typeInto("textbox", "Message", reply), click("button", "Send"))
		eventually(t, waitFor, func() string {
			if !slices.ContainsFunc(dave.lines("inbox"), func(m msg) bool { return m.Text == reply }) {
				return "dave's inbox lacks alice's reply"
			}
			return ""
		})
		do(t, ctx, click("button", "Remove"), click("button", "Remove"))
		waitJS(t, ctx, "dave to leave the list", `![...document.querySelectorAll('#conv-list a')].some(a => a.textContent === 'dave')`)
		if r := alice.h.Run("contact", "show", "dave"); r.Code == 0 {
			t.Errorf("dave is still a contact after Remove: %s", r.Stdout)
		}
	})

	t.Run("screenshots", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(origin+"/"+bobPath))
		waitJS(t, ctx, "bob's conversation", `document.body.dataset.ready === 'true' && document.body.dataset.conversation === `+jsString(bob.id.UserID))
		screenshot(t, ctx, "conversation")
		// Narrow: the list or the conversation, not both; Back returns.
		do(t, ctx, chromedp.EmulateViewport(390, 844))
		if !js[bool](t, ctx, `getComputedStyle(document.getElementById('conversations')).display === 'none'`) {
			t.Error("the narrow layout shows the list next to the conversation")
		}
		screenshot(t, ctx, "narrow-conversation")
		allNamed(t, ctx, "the narrow conversation")
		do(t, ctx, click("link", "Back to conversations"), visible("link", "bob"))
		if js[bool](t, ctx, `getComputedStyle(document.getElementById('conversation')).display !== 'none'`) {
			t.Error("the narrow list shows the conversation beside it")
		}
		screenshot(t, ctx, "narrow-list")
		do(t, ctx, chromedp.EmulateViewport(1280, 800))
	})

	t.Run("relays", func(t *testing.T) {
		relay := newUser(t, "relay", "--relay-service")
		do(t, ctx, click("button", "Relays"), typeInto("textbox", "Relay address", relay.addr()), click("button", "Add relay"))
		remove := "Remove relay " + relay.id.PeerID
		do(t, ctx, visible("button", remove))
		waitJS(t, ctx, "the relay to be subscribed", `[...document.querySelectorAll('#relay-list .relay-state')].some(e => e.textContent === 'subscribed')`)
		screenshot(t, ctx, "relays")
		allNamed(t, ctx, "the relays dialog")
		do(t, ctx, click("button", remove))
		waitJS(t, ctx, "the relay to go", `document.querySelectorAll('#relay-list li').length === 0`)
		do(t, ctx, chromedp.KeyEvent(kb.Escape))
	})

	t.Run("refused", func(t *testing.T) {
		host := strings.TrimPrefix(origin, "http://")
		_, port, _ := strings.Cut(host, ":")
		// Cookies are kept per host, not per port: the browser holds the
		// sessions of every daemon the package's tests logged into, each
		// under its own port's name.
		cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{origin}})
		if err != nil {
			t.Fatal(err)
		}
		var c *network.Cookie
		for _, k := range cookies.Cookies {
			if k.Name == "sealpost-session-"+port {
				c = k
			}
		}
		if c == nil {
			t.Fatalf("the browser holds no cookie sealpost-session-%s", port)
		}
		if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Path != "/" {
			t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/", c)
		}
		session := c.Name + "=" + c.Value
		send := `{"to":"` + bob.id.UserID + `","text":"forged"}`
		for _, tt := range []struct {
			name, method, path string
			headers            map[string]string
			status             int
		}{
			{"with the session", "GET", "/v1/id", map[string]string{"Cookie": session, "Sec-Fetch-Site": "same-origin"}, 200},
			{"without the cookie", "GET", "/v1/id", map[string]string{"Sec-Fetch-Site": "same-origin"}, 401},
			{"without the cookie, send", "POST", "/v1/messages", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": origin}, 401},
			{"foreign origin", "POST", "/v1/messages", map[string]string{"Cookie": session, "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, 403},
			{"foreign origin, no fetch metadata", "POST", "/v1/messages", map[string]string{"Cookie": session, "Origin": "http://evil.example"}, 403},
			{"foreign host", "GET", "/v1/id", map[string]string{"Cookie": session, "Sec-Fetch-Site": "same-origin", "Host": "evil.example:" + port}, 403},
			{"foreign host, app", "GET", "/", map[string]string{"Host": "rebound.example:" + port}, 403},
		} {
			req, _ := http.NewRequest(tt.method, origin+tt.path, strings.NewReader(send))
			for k, v := range tt.headers {
				if k == "Host" {
					req.Host = v
				} else {
					req.Header.Set(k, v)
				}
			}
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("%s: %s %s answered %s %s, want %d", tt.name, tt.method, tt.path, resp.Status, body, tt.status)
			}
			if resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("%s: answered with CORS headers", tt.name)
			}
		}

		// A page of another origin on this machine (another port: the same
		// site for cookies) tries, in the real browser, to send as alice,
		// to read her API and to load an image with her session.
		attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, `<!doctype html><title>not sealpost</title><p>hello</p>`)
		}))
		defer attacker.Close()
		tab := newTab(t)
		do(t, tab, chromedp.Navigate(attacker.URL))
		got := js[map[string]string](t, tab, `(async () => {
			const app = `+jsString(origin)+`;
			const out = {};
			try {
				await fetch(app + '/v1/messages', {method: 'POST', mode: 'no-cors', credentials: 'include',
					headers: {'Content-Type': 'text/plain'}, body: `+jsString(send)+`});
				out.post = 'sent';
			} catch (e) { out.post = 'failed'; }
			try {
				const r = await fetch(app + '/v1/id', {credentials: 'include'});
				out.read = 'read ' + (await r.text()).slice(0, 40);
			} catch (e) { out.read = 'failed'; }
			out.image = await new Promise((resolve) => {
				const img = new Image();
				img.onload = () => resolve('loaded');
				img.onerror = () => resolve('refused');
				img.src = app + '/qr.svg?text=x';
			});
			return out;
		})()`)
		if got["read"] != "failed" || got["image"] != "refused" {
			t.Errorf("a foreign page: %v; want the read to fail and the image refused", got)
		}
		for _, m := range alice.lines("messages", "bob") {
			if m.Text == "forged" {
				t.Fatalf("a foreign page sent a message as alice (%v)", got)
			}
		}
	})

	t.Run("key change blocks sending until verified", func(t *testing.T) {
		bob.d.Stop(syscall.SIGTERM)
		bob.h.NewIdentity("--name", "bob")
		bob.start()
		// Alice adds bob's new link under the name she knows him by.
		do(t, ctx,
			click("button", "Add contact"),
			typeInto("textbox", "Invite link", bob.invite()),
			typeInto("textbox", "Name (optional)", "bob"),
			click("button", "Add"),
		)
		waitJS(t, ctx, "the dialog to answer", `!document.getElementById('add-error').hidden || !document.getElementById('dlg-add').open`)
		if e := js[string](t, ctx, `document.getElementById('add-error').textContent`); !strings.Contains(e, "identity") {
			t.Errorf("adding bob's new invite says %q, want an identity error", e)
		}
		do(t, ctx, chromedp.KeyEvent(kb.Escape), click("link", "bob"))
		waitJS(t, ctx, "the key-change warning", `!document.getElementById('identity-warning').hidden`)
		if !js[bool](t, ctx, `document.getElementById('msg-input').disabled && document.getElementById('send').disabled`) {
			t.Error("the composer is enabled after the key change")
		}
		screenshot(t, ctx, "key-change")
		allNamed(t, ctx, "the key-change warning")
		// Bob tells alice his new safety number.
		var bc contactJSON
		bob.h.JSON(&bc, "contact", "add", alice.invite(), "--name", "alice")
		do(t, ctx, click("button", "Verify"), visible("button", "Verify the new key"))
		if got := js[string](t, ctx, `document.getElementById('verify-number').textContent`); got != bc.SafetyNumber {
			t.Errorf("the app offers safety number %q, bob sees %q", got, bc.SafetyNumber)
		}
		do(t, ctx, click("button", "Verify the new key"))
		waitJS(t, ctx, "the warning to go", `document.getElementById('identity-warning').hidden && !document.getElementById('msg-input').disabled`)
		const text = "welcome back, bob"
		do(t, ctx, typeInto("textbox", "Message", text), click("button", "Send"))
		eventually(t, waitFor, func() string {
			if !slices.ContainsFunc(bob.lines("inbox"), func(m msg) bool { return m.Text == text }) {
				return "bob's new node lacks alice's message"
			}
			return ""
		})
	})
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// appState says what the app shows where a test waits: the focus, the
// composer, the newest outgoing message and its state, and a toast.
func appState(t *testing.T, ctx context.Context) string {
	return js[string](t, ctx, `(() => {
		const out = [...document.querySelectorAll('#msg-list li.out')].at(-1);
		const toast = document.getElementById('toast');
		return JSON.stringify({
			hash: location.hash,
			focus: document.activeElement ? document.activeElement.tagName + '#' + document.activeElement.id : '',
			composer: document.getElementById('msg-input').value,
			last_out: out ? out.querySelector('.text')?.textContent + ' [' + out.querySelector('.state')?.textContent + ']' : '',
			toast: toast.hidden ? '' : toast.textContent,
		});
	})()`)
}
