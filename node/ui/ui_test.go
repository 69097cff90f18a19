package ui

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"rsc.io/qr"

	"github.com/sealpost/sealpost/node/internal/clock/clocktest"
)

func newApp(t testing.TB) (*App, *clocktest.Fake) {
	t.Helper()
	clk := clocktest.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	a, err := New(Config{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return a, clk
}

// exchange follows a login path on a; it returns the session cookie, or
// nil when the login was refused.
func exchange(t testing.TB, a *App, loginPath string) *http.Cookie {
	t.Helper()
	r := httptest.NewRequest("GET", "http://127.0.0.1:7711"+loginPath, nil)
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	if w.Code == http.StatusForbidden {
		return nil
	}
	if w.Code != http.StatusSeeOther {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	cs := w.Result().Cookies()
	if len(cs) != 1 || cs[0].Name != "sealpost-session-7711" {
		t.Fatalf("login cookies %v", cs)
	}
	return cs[0]
}

func authorized(a *App, c *http.Cookie) bool {
	r := httptest.NewRequest("GET", "http://127.0.0.1:7711/v1/id", nil)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.AddCookie(c)
	return a.Authorized(r)
}

func TestLoginExpires(t *testing.T) {
	a, clk := newApp(t)
	late, err := a.Login()
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(LoginTTL)
	if c := exchange(t, a, late); c != nil {
		t.Errorf("a login link %v old worked", LoginTTL)
	}
	p, err := a.Login()
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(LoginTTL - time.Second)
	c := exchange(t, a, p)
	if c == nil {
		t.Fatal("a fresh login link was refused")
	}
	if !authorized(a, c) {
		t.Fatal("the new session is not authorized")
	}
	clk.Advance(SessionTTL - time.Second)
	if !authorized(a, c) {
		t.Error("the session ended before SessionTTL")
	}
	clk.Advance(time.Second)
	if authorized(a, c) {
		t.Error("the session outlived SessionTTL")
	}
}

func TestLoginBounds(t *testing.T) {
	a, clk := newApp(t)
	var paths []string
	for range maxLogins + 1 {
		p, err := a.Login()
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		clk.Advance(time.Second)
	}
	// The oldest gave way to the newest.
	if exchange(t, a, paths[0]) != nil {
		t.Error("the oldest login link still works past the bound")
	}
	var cookies []*http.Cookie
	for _, p := range paths[1:] {
		c := exchange(t, a, p)
		if c == nil {
			t.Fatalf("login link %s refused", p)
		}
		cookies = append(cookies, c)
	}
	for range maxSessions {
		p, _ := a.Login()
		exchange(t, a, p)
		clk.Advance(time.Second)
	}
	if authorized(a, cookies[0]) {
		t.Error("the oldest session survived past the bound")
	}
	// Odd tokens are refused, not a panic.
	for _, tok := range []string{"", "x", strings.Repeat("A", 43), strings.Repeat("A", 4096), "%00"} {
		if exchange(t, a, LoginPath+"?token="+url.QueryEscape(tok)) != nil {
			t.Errorf("token %q logged in", tok)
		}
	}
}

// TestQRSVG draws the modules of the SVG's path back into a grid and
// compares it with the QR code itself.
func TestQRSVG(t *testing.T) {
	for _, text := range []string{"x", "sealpost://" + strings.Repeat("invite", 50)} {
		svg, err := QRSVG(text)
		if err != nil {
			t.Fatal(err)
		}
		code, err := qr.Encode(text, qr.M)
		if err != nil {
			t.Fatal(err)
		}
		n := code.Size + 2*quietZone
		if !strings.HasPrefix(string(svg), fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d"`, n, n)) {
			t.Fatalf("SVG starts %.80s", svg)
		}
		grid := make([][]bool, n)
		for i := range grid {
			grid[i] = make([]bool, n)
		}
		runs := regexp.MustCompile(`M(\d+) (\d+)h(\d+)v1h-(\d+)z`).FindAllStringSubmatch(string(svg), -1)
		for _, m := range runs {
			x, _ := strconv.Atoi(m[1])
			y, _ := strconv.Atoi(m[2])
			w, _ := strconv.Atoi(m[3])
			if m[3] != m[4] {
				t.Fatalf("run %q does not close", m[0])
			}
			for i := range w {
				grid[y][x+i] = true
			}
		}
		for y := range n {
			for x := range n {
				want := x >= quietZone && y >= quietZone && x < n-quietZone && y < n-quietZone && code.Black(x-quietZone, y-quietZone)
				if grid[y][x] != want {
					t.Fatalf("%q: module (%d,%d) is %v in the SVG, %v in the code", text, x, y, grid[y][x], want)
				}
			}
		}
		if strings.Contains(string(svg), "invite") {
			t.Error("the SVG holds the text")
		}
	}
	if _, err := QRSVG(strings.Repeat("x", MaxQRText+1)); err == nil {
		t.Error("QRSVG took a text over MaxQRText")
	}
}

// FuzzLogin feeds the login path and the session check what a browser
// (or anything else on this machine) may send: nothing but the tokens the
// app handed out ever logs in, and nothing panics.
func FuzzLogin(f *testing.F) {
	f.Add("", "")
	f.Add(strings.Repeat("A", 43), strings.Repeat("A", 43))
	f.Add("%zz", "\x00")
	f.Add(strings.Repeat("-", 4096), "a=b; c")
	a, _ := newApp(f)
	f.Fuzz(func(t *testing.T, token, cookie string) {
		if c := exchange(t, a, LoginPath+"?token="+url.QueryEscape(token)); c != nil {
			t.Fatalf("token %q logged in", token)
		}
		r := httptest.NewRequest("GET", "http://127.0.0.1:7711/v1/id", nil)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		r.Header.Set("Cookie", "sealpost-session-7711="+cookie)
		if a.Authorized(r) {
			t.Fatalf("cookie %q is a session", cookie)
		}
	})
}
