package ui

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path"
	"strings"

	"github.com/sealpost/sealpost/node/internal/clock"
)

// Paths the app answers besides its assets.
const (
	// LoginPath exchanges a login token (?token=) for a session cookie.
	LoginPath = "/login"
	// LogoutPath (POST) ends the session.
	LogoutPath = "/logout"
	// QRPath draws ?text= as a QR code in SVG (for a session only).
	QRPath = "/qr.svg"
)

// cookiePrefix starts the name of the session cookie; the listener's port
// ends it. Browsers keep cookies per host, not per port, so two daemons on
// one machine (or one daemon's app opened as 127.0.0.1 and as localhost)
// would otherwise overwrite each other's session.
const cookiePrefix = "sealpost-session-"

//go:embed assets
var assets embed.FS

// contentTypes are the types of the assets, by extension (fixed here
// rather than read from the system's MIME tables).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".txt":  "text/plain; charset=utf-8",
}

// Clock is the source of time of login and session expiry.
type Clock = clock.Clock

// Config is what New needs. Each field documents its zero value.
type Config struct {
	// Clock decides when logins and sessions expire. Zero: the system
	// clock.
	Clock Clock
	// Rand makes login tokens and session IDs; it must be a cryptographic
	// source outside tests. Zero: crypto/rand.Reader.
	Rand io.Reader
}

// App is the web app: its assets, its login and its sessions. It is safe
// for concurrent use.
type App struct {
	clock  Clock
	rand   io.Reader
	s      *sessions
	assets map[string]*asset
}

// asset is one embedded file, ready to serve.
type asset struct {
	body, gzipped []byte
	contentType   string
	etag          string
}

// New returns the app.
func New(cfg Config) (*App, error) {
	a := &App{clock: cfg.Clock, rand: cfg.Rand, s: newSessions(), assets: map[string]*asset{}}
	if a.clock == nil {
		a.clock = clock.System()
	}
	if a.rand == nil {
		a.rand = rand.Reader
	}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		as := &asset{body: body, contentType: contentTypes[path.Ext(p)], etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		if as.contentType == "" {
			return fmt.Errorf("no content type for %s", p)
		}
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		zw.Write(body)
		if err := zw.Close(); err != nil {
			return err
		}
		if z.Len() < len(body) {
			as.gzipped = z.Bytes()
		}
		a.assets["/"+strings.TrimPrefix(p, "assets/")] = as
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ui: assets: %w", err)
	}
	a.assets["/"] = a.assets["/index.html"]
	delete(a.assets, "/index.html")
	if a.assets["/"] == nil {
		return nil, errors.New("ui: assets: no index.html")
	}
	return a, nil
}

// Login returns the path and query of a new login link: it works once,
// within LoginTTL.
func (a *App) Login() (string, error) {
	now := a.clock.Now()
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	token, err := a.s.logins.add(a.rand, now, now.Add(LoginTTL))
	if err != nil {
		return "", err
	}
	return LoginPath + "?token=" + token, nil
}

// Authorized reports whether r carries a live session cookie and comes
// from the app itself (Sec-Fetch-Site: same-origin). Requiring the
// browser's own word that the request is same-origin, even for GET, means
// no other page can use the session: not another site (SameSite=Strict
// keeps the cookie from those anyway), and not a page on another port of
// this machine, which is the same site for cookies.
func (a *App) Authorized(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Site") != "same-origin" {
		return false
	}
	c, err := r.Cookie(cookieName(r))
	if err != nil {
		return false
	}
	now := a.clock.Now()
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	return a.s.live.valid(c.Value, now)
}

// cookieName is the session cookie's name for the port r came to.
func cookieName(r *http.Request) string {
	_, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		port = "0"
	}
	return cookiePrefix + port
}

// ServeHTTP answers the app's paths: the assets, LoginPath, LogoutPath and
// QRPath. The caller (the API server's TCP listener) has checked Host and
// Origin and set the security headers.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case LoginPath:
		a.login(w, r)
		return
	case LogoutPath:
		a.logout(w, r)
		return
	case QRPath:
		a.qr(w, r)
		return
	}
	as := a.assets[r.URL.Path]
	if as == nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", as.contentType)
	h.Set("ETag", as.etag)
	h.Set("Cache-Control", "no-cache")
	h.Set("Vary", "Accept-Encoding")
	if r.Header.Get("If-None-Match") == as.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := as.body
	if as.gzipped != nil && acceptsGzip(r) {
		h.Set("Content-Encoding", "gzip")
		body = as.gzipped
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(body)
}

func acceptsGzip(r *http.Request) bool {
	for _, enc := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(enc), ";")
		if strings.TrimSpace(name) == "gzip" && strings.ReplaceAll(params, " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// login exchanges a login token for a session: the cookie is HttpOnly,
// SameSite=Strict, for the whole app, and lasts SessionTTL; the redirect
// takes the token out of the address bar.
func (a *App) login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	now := a.clock.Now()
	a.s.mu.Lock()
	ok := a.s.logins.take(r.URL.Query().Get("token"), now)
	var session string
	var err error
	if ok {
		session, err = a.s.live.add(a.rand, now, now.Add(SessionTTL))
	}
	a.s.mu.Unlock()
	if err != nil {
		http.Error(w, "cannot start a session", http.StatusInternalServerError)
		return
	}
	if !ok {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, loginFailedPage)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName(r),
		Value:    session,
		Path:     "/",
		MaxAge:   int(SessionTTL.Seconds()),
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

const loginFailedPage = `<!doctype html>
<html lang="en"><meta charset="utf-8"><title>sealpost: login link not valid</title>
<h1>This login link is not valid</h1>
<p>A login link works once, for 10 minutes. Run <code>sealpost ui</code> in a terminal for a new one.</p>
</html>
`

// logout ends the session of the request (POST only; the listener checks
// that it comes from the app's own origin).
func (a *App) logout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if c, err := r.Cookie(cookieName(r)); err == nil {
		a.s.mu.Lock()
		a.s.live.take(c.Value, a.clock.Now())
		a.s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName(r), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}
