package api

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/home"
	"github.com/sealpost/sealpost/node/ui"
)

// serveApp starts a server with the web app whose TCP listener starts on
// demand at uiListen; it returns the server and a unix-socket client.
func serveApp(t *testing.T, uiListen string) (*Server, *Client) {
	t.Helper()
	app, err := ui.New(ui.Config{})
	if err != nil {
		t.Fatal(err)
	}
	n := newFake()
	s, err := New(Config{Node: n, Token: testToken, App: app, UIListen: uiListen})
	if err != nil {
		t.Fatal(err)
	}
	sock := t.TempDir() + "/api.sock"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-done
	})
	return s, unixClient(t, sock)
}

// browser sends requests as a browser on the app's page would: no
// redirects followed, the cookie set by login, Sec-Fetch-Site same-origin.
type browser struct {
	t      *testing.T
	hc     *http.Client
	origin string // http://127.0.0.1:PORT
	cookie *http.Cookie
}

func newBrowser(t *testing.T, loginURL string) *browser {
	t.Helper()
	u, err := url.Parse(loginURL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &browser{t: t, origin: u.Scheme + "://" + u.Host, hc: &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends one request; headers are set after the defaults (an empty
// value deletes one).
func (b *browser) do(method, path string, headers map[string]string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.origin+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if method != http.MethodGet {
		req.Header.Set("Origin", b.origin)
	}
	if b.cookie != nil {
		req.AddCookie(b.cookie)
	}
	for k, v := range headers {
		if k == "Host" {
			req.Host = v
			continue
		}
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// login follows a login link and keeps the session cookie.
func (b *browser) login(loginURL string) {
	b.t.Helper()
	u, _ := url.Parse(loginURL)
	resp, body := b.do("GET", u.RequestURI(), map[string]string{"Sec-Fetch-Site": "none"})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		b.t.Fatalf("login: %s %v, want 303 to /: %s", resp.Status, resp.Header, body)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		b.t.Fatalf("login set %d cookies, want 1", len(cookies))
	}
	c := cookies[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || !strings.HasPrefix(c.Name, "sealpost-session-") {
		b.t.Errorf("session cookie %q: want HttpOnly, SameSite=Strict, Path=/", resp.Header.Get("Set-Cookie"))
	}
	b.cookie = &http.Cookie{Name: c.Name, Value: c.Value}
}

func TestUILogin(t *testing.T) {
	s, c := serveApp(t, "127.0.0.1:0")
	ctx := context.Background()
	first, err := c.UILogin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(first.URL)
	if err != nil || u.Scheme != "http" || u.Path != "/login" || len(u.Query().Get("token")) < 40 {
		t.Fatalf("login URL %q", first.URL)
	}
	if host, _, _ := net.SplitHostPort(u.Host); host != "127.0.0.1" {
		t.Errorf("login URL host %q, want 127.0.0.1", u.Host)
	}
	// One listener: a second link is for the same address, and ListenTCP
	// returns it whatever it is asked.
	second, err := c.UILogin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u2, _ := url.Parse(second.URL)
	if u2.Host != u.Host || u2.Query().Get("token") == u.Query().Get("token") {
		t.Errorf("second login URL %q after %q: want the same listener, another token", second.URL, first.URL)
	}
	if addr, err := s.ListenTCP("127.0.0.1:1", false); err != nil || addr.String() != u.Host {
		t.Errorf("ListenTCP with a listener running: %v, %v; want %s", addr, err, u.Host)
	}

	b := newBrowser(t, first.URL)
	b.login(first.URL)
	// A login link works once.
	if resp, _ := b.do("GET", u.RequestURI(), nil); resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("login link used twice: %s, cookies %v", resp.Status, resp.Cookies())
	}
	if resp, body := b.do("GET", "/v1/id", nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, "12D3KooWpeer") {
		t.Errorf("GET /v1/id with the session: %s %s", resp.Status, body)
	}
	if resp, _ := b.do("POST", "/v1/peers/connect", nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST with the session and no body: %s, want 400 (it passed the checks)", resp.Status)
	}
	if resp, body := b.do("GET", ui.QRPath+"?text=sealpost://x", nil); resp.StatusCode != http.StatusOK ||
		resp.Header.Get("Content-Type") != "image/svg+xml" || !strings.HasPrefix(body, "<svg") {
		t.Errorf("GET %s with the session: %s %q %.40s", ui.QRPath, resp.Status, resp.Header.Get("Content-Type"), body)
	}
	// The same session from the same cookie, bearer clients alongside.
	tc := NewTCPClient(u.Host, testToken)
	defer tc.CloseIdleConnections()
	if _, err := tc.ID(ctx); err != nil {
		t.Errorf("bearer client on the app's listener: %v", err)
	}

	// Logging out ends the session.
	if resp, _ := b.do("POST", ui.LogoutPath, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("logout: %s", resp.Status)
	}
	if resp, _ := b.do("GET", "/v1/id", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/id after logout: %s, want 401", resp.Status)
	}
}

// TestUIRefusals sends what a foreign page, a rebinding DNS name or a
// caller without the session would: each is refused.
func TestUIRefusals(t *testing.T) {
	_, c := serveApp(t, "127.0.0.1:0")
	login, err := c.UILogin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, login.URL)
	b.login(login.URL)
	port := b.origin[strings.LastIndex(b.origin, ":")+1:]
	tests := []struct {
		name, method, path string
		headers            map[string]string
		status             int
		code               Code
	}{
		{"no cookie", "GET", "/v1/id", map[string]string{"Cookie": ""}, 401, CodeUnauthorized},
		{"no cookie, POST", "POST", "/v1/invites", map[string]string{"Cookie": ""}, 401, CodeUnauthorized},
		{"no cookie, events", "GET", "/v1/events", map[string]string{"Cookie": ""}, 401, CodeUnauthorized},
		{"wrong cookie", "GET", "/v1/id", map[string]string{"Cookie": b.cookie.Name + "=" + strings.Repeat("A", 43)}, 401, CodeUnauthorized},
		{"cookie of another port", "GET", "/v1/id", map[string]string{"Cookie": "sealpost-session-1=" + b.cookie.Value}, 401, CodeUnauthorized},
		{"cookie on a cross-site GET", "GET", "/v1/id", map[string]string{"Sec-Fetch-Site": "cross-site"}, 401, CodeUnauthorized},
		{"cookie on a same-site GET from another port", "GET", "/v1/contacts/bob/messages", map[string]string{"Sec-Fetch-Site": "same-site"}, 401, CodeUnauthorized},
		{"cookie without Sec-Fetch-Site", "GET", "/v1/id", map[string]string{"Sec-Fetch-Site": ""}, 401, CodeUnauthorized},
		{"foreign origin", "POST", "/v1/invites", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, 403, CodeForbiddenOrigin},
		{"foreign origin, Origin only", "POST", "/v1/invites", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": ""}, 403, CodeForbiddenOrigin},
		{"another port's origin", "POST", "/v1/invites", map[string]string{"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}, 403, CodeForbiddenOrigin},
		{"foreign origin, logout", "POST", ui.LogoutPath, map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, 403, CodeForbiddenOrigin},
		{"foreign host", "GET", "/v1/id", map[string]string{"Host": "evil.example:" + port}, 403, CodeForbiddenHost},
		{"foreign host, app", "GET", "/", map[string]string{"Host": "evil.example:" + port}, 403, CodeForbiddenHost},
		{"foreign host, login", "GET", "/login?token=x", map[string]string{"Host": "rebound.example:" + port}, 403, CodeForbiddenHost},
		{"QR without cookie", "GET", ui.QRPath + "?text=x", map[string]string{"Cookie": ""}, 401, ""},
		{"bad login token", "GET", "/login?token=nope", map[string]string{"Cookie": "", "Sec-Fetch-Site": "none"}, 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := b.do(tt.method, tt.path, tt.headers)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s %s: %s %s, want %d", tt.method, tt.path, resp.Status, body, tt.status)
			}
			if tt.code != "" && !strings.Contains(body, `"code":"`+string(tt.code)+`"`) {
				t.Errorf("%s %s: %s, want code %s", tt.method, tt.path, body, tt.code)
			}
			if resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("%s %s answered with CORS headers", tt.method, tt.path)
			}
		})
	}
}

// TestUIHeaders checks the security headers on the app and the API, and
// that no answer allows another origin in, not even a preflight's.
func TestUIHeaders(t *testing.T) {
	_, c := serveApp(t, "127.0.0.1:0")
	login, err := c.UILogin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, login.URL)
	b.login(login.URL)
	for _, path := range []string{"/", "/app.js", "/v1/id", "/nope"} {
		resp, _ := b.do("GET", path, map[string]string{"Origin": "http://evil.example"})
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", path, h)
		}
		if h.Get("Access-Control-Allow-Origin") != "" || h.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s: CORS headers %v", path, h)
		}
	}
	resp, _ := b.do("OPTIONS", "/v1/messages", map[string]string{
		"Origin": "http://evil.example", "Access-Control-Request-Method": "POST", "Sec-Fetch-Site": "cross-site", "Cookie": ""})
	if resp.Header.Get("Access-Control-Allow-Origin") != "" || resp.Header.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("preflight answered with CORS headers: %v", resp.Header)
	}

	// The page loads its script from the app, never inline, and is served
	// compressed and revalidated by its ETag.
	resp, body := b.do("GET", "/", map[string]string{"Accept-Encoding": ""})
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" || !strings.Contains(body, `<script type="module" src="/app.js">`) {
		t.Errorf("GET /: %q %s", ct, body)
	}
	resp, _ = b.do("GET", "/app.js", map[string]string{"Accept-Encoding": "gzip"})
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("GET /app.js accepting gzip: Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	etag := resp.Header.Get("ETag")
	if resp, _ = b.do("GET", "/app.js", map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("GET /app.js with its ETag: %s, want 304", resp.Status)
	}
}

// TestListenTCP checks the fallback to a free port and the refusal of
// addresses that are not loopback.
func TestListenTCP(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, c := serveApp(t, taken.Addr().String())
	login, err := c.UILogin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(login.URL)
	if u.Host == taken.Addr().String() || !strings.HasPrefix(u.Host, "127.0.0.1:") {
		t.Errorf("login URL %q with %s taken: want another port on 127.0.0.1", login.URL, taken.Addr())
	}
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", "192.0.2.1:7711", "example.com:7711", "7711"} {
		s2, err := New(Config{Node: newFake(), Token: testToken})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s2.ListenTCP(addr, true); err == nil {
			t.Errorf("ListenTCP(%q) = %v, want an error", addr, got)
		}
		s2.Shutdown(context.Background())
	}
	// Without fallback, a taken port is an error.
	s3, err := New(Config{Node: newFake(), Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Shutdown(context.Background())
	if _, err := s3.ListenTCP(taken.Addr().String(), false); err == nil {
		t.Errorf("ListenTCP of a taken port without fallback succeeded")
	}
}

func TestDefaultUIListen(t *testing.T) {
	if want := net.JoinHostPort("127.0.0.1", strconv.Itoa(DefaultPort)); home.DefaultUIListen != want {
		t.Errorf("home.DefaultUIListen = %s, want %s", home.DefaultUIListen, want)
	}
}

func TestUILoginWithoutApp(t *testing.T) {
	c := serveConfig(t, Config{Node: newFake(), Token: testToken})
	_, err := c.UILogin(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeUnavailable {
		t.Errorf("UILogin without an app: %v, want unavailable", err)
	}
}
