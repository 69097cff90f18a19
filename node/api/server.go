package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Limits of the server.
const (
	// MaxRequestBody bounds a request body.
	MaxRequestBody = 64 << 10
	// heartbeat is the interval of SSE comments that keep idle streams open
	// through proxies and let the server notice a gone client.
	heartbeat = 15 * time.Second
)

//go:embed openapi.json
var openAPIDocument []byte

// Config is what New needs.
type Config struct {
	// Node is the node the API serves. Required.
	Node Node
	// Messaging is the node's messaging service (node.Node.Messaging).
	// Zero: the messaging routes answer unavailable.
	Messaging Messaging
	// Files is the node's attachment service (node.Node.Files). Zero: the
	// file routes answer unavailable.
	Files Files
	// Groups is the node's group engine (node.Node.Groups). Zero: the
	// group routes answer unavailable.
	Groups Groups
	// RelayService is the relay service the node runs (node.Node.Relay),
	// for GET /v1/relay/stats. Zero: that route answers unavailable.
	RelayService RelayService
	// Gatherer is served at /metrics; nil serves no metrics.
	Gatherer prometheus.Gatherer
	// Token is the bearer token required of requests over TCP (all routes but
	// /healthz and /metrics) that carry no session of App. Empty refuses
	// TCP listeners unless App is set.
	Token string
	// App is the web app the TCP listener serves besides the API (node/ui).
	// Zero: no app, and POST /v1/ui/login answers unavailable.
	App App
	// UIListen is the loopback address POST /v1/ui/login starts the TCP
	// listener on when none runs yet (ListenTCP, falling back to a free
	// port when it is taken). Zero: 127.0.0.1:DefaultPort.
	UIListen string
	// Logger receives request failures; nil discards them.
	Logger *slog.Logger
}

// Server is the daemon's local API. Its routes are one table (see routes);
// each listener given to Serve decides who may call it: a unix socket is
// trusted by its file mode, a TCP listener needs the bearer token (or a
// session of the web app) and passes guardTCP.
type Server struct {
	cfg       Config
	log       *slog.Logger
	tokenHash [sha256.Size]byte
	handler   http.Handler

	// ctx ends with Shutdown, which ends long-lived streams (SSE).
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	servers []*http.Server
	closed  bool
	tcp     *net.TCPAddr   // where ListenTCP serves; nil before
	wg      sync.WaitGroup // the goroutines ListenTCP started
}

// route is one entry of the API: its ServeMux pattern ("GET /v1/id"),
// whether TCP callers may use it without the token, and its handler.
type route struct {
	pattern string
	public  bool
	handler http.Handler
}

// New returns a Server for cfg. It listens on nothing until Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Node == nil {
		return nil, errors.New("api: Config.Node is nil")
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.tokenHash = sha256.Sum256([]byte(cfg.Token))
	if s.cfg.UIListen == "" {
		s.cfg.UIListen = net.JoinHostPort("127.0.0.1", strconv.Itoa(DefaultPort))
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	mux := http.NewServeMux()
	paths := map[string]bool{}
	for _, r := range s.routes() {
		h := r.handler
		if !r.public {
			h = s.requireAuth(h)
		}
		mux.Handle(r.pattern, h)
		_, path, _ := strings.Cut(r.pattern, " ")
		paths[path] = true
	}
	notFound := s.requireAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if paths[r.URL.Path] {
			s.writeError(w, Errorf(CodeBadRequest, "method %s not allowed on %s", r.Method, r.URL.Path))
			return
		}
		s.writeError(w, Errorf(CodeNotFound, "no route %s %s", r.Method, r.URL.Path))
	}))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Over TCP, what is not the API is the web app's.
		if _, isTCP := tcpPort(r); isTCP && s.cfg.App != nil && !strings.HasPrefix(r.URL.Path, "/v1/") {
			s.cfg.App.ServeHTTP(w, r)
			return
		}
		notFound.ServeHTTP(w, r)
	}))
	s.handler = s.guardTCP(mux)
	return s, nil
}

// routes is the API. Features add their routes here (and to openapi.json;
// a test checks that the two agree).
func (s *Server) routes() []route {
	rs := []route{
		{"GET /healthz", true, http.HandlerFunc(s.healthz)},
		{"GET /openapi.json", false, http.HandlerFunc(serveOpenAPI)},
	}
	if s.cfg.Gatherer != nil {
		rs = append(rs, route{"GET /metrics", true, s.metricsHandler()})
	}
	rs = append(rs, s.nodeRoutes()...)
	rs = append(rs, s.relayRoutes()...)
	rs = append(rs, s.relayServiceRoutes()...)
	rs = append(rs, s.uiRoutes()...)
	rs = append(rs, s.fileRoutes()...)
	rs = append(rs, s.groupRoutes()...)
	return append(rs, s.messagingRoutes()...)
}

// Serve answers API requests on ln until Shutdown, and then returns nil.
// Connections accepted on a unix socket are trusted; on TCP every request
// must name a loopback Host with the listener's port and pass Go's
// cross-origin protection, and every route but /healthz and /metrics
// needs the bearer token or a session of the web app (Config.App).
func (s *Server) Serve(ln net.Listener) error {
	if _, isTCP := ln.Addr().(*net.TCPAddr); isTCP && s.cfg.Token == "" && s.cfg.App == nil {
		return errors.New("api: TCP listener without a token")
	}
	return s.serve(ln, s.handler)
}

// ListenTCP serves the API and the web app on the loopback TCP address
// addr (host:port) from now until Shutdown, unless an earlier ListenTCP
// does already: the daemon has one TCP listener, and ListenTCP returns
// its address. With fallback, a port that is taken gives way to a free
// one on the same host. An address that is not loopback is refused.
func (s *Server) ListenTCP(addr string, fallback bool) (*net.TCPAddr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcp != nil {
		return s.tcp, nil
	}
	if s.closed {
		return nil, errors.New("api: server shut down")
	}
	if s.cfg.Token == "" && s.cfg.App == nil {
		return nil, errors.New("api: TCP listener without a token")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen on %q: want HOST:PORT", addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("api: listen on %s: not a loopback address (127.0.0.1, [::1] or localhost)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil && fallback && errors.Is(err, syscall.EADDRINUSE) {
		ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
	}
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	// localhost could resolve to anything: check what was bound.
	tcp, ok := ln.Addr().(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("api: listen on %s: bound %s, which is not loopback", addr, ln.Addr())
	}
	s.tcp = tcp
	srv := s.httpServer(s.handler)
	s.servers = append(s.servers, srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := run(srv, ln); err != nil {
			s.log.Error("api: TCP listener failed", "addr", tcp, "err", err)
		}
	}()
	return tcp, nil
}

// tcpAddr is where ListenTCP serves (host:port), or "" before.
func (s *Server) tcpAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcp == nil {
		return ""
	}
	return s.tcp.String()
}

// ServeMetrics answers only GET /metrics on ln (the --metrics address),
// without token or Host checks: the metrics carry no per-contact labels.
func (s *Server) ServeMetrics(ln net.Listener) error {
	if s.cfg.Gatherer == nil {
		return errors.New("api: ServeMetrics without a Gatherer")
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metricsHandler())
	return s.serve(ln, mux)
}

func (s *Server) serve(ln net.Listener, h http.Handler) error {
	srv := s.httpServer(h)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	return run(srv, ln)
}

// run serves srv on ln until srv shuts down.
func run(srv *http.Server, ln net.Listener) error {
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: %w", err)
	}
	return nil
}

// httpServer returns the HTTP server of h.
func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10, // a file's caption travels in the query
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, localAddrKey{}, c.LocalAddr())
		},
	}
}

// Shutdown stops accepting requests, ends event streams, and waits for
// running requests until ctx ends; then it closes what is left. It closes
// every listener given to Serve and ServeMetrics, and ListenTCP's. It is
// idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	s.cancel()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

type localAddrKey struct{}

// tcpPort returns the local port of a request that came over TCP, or false
// for a unix socket.
func tcpPort(r *http.Request) (int, bool) {
	a, ok := r.Context().Value(localAddrKey{}).(*net.TCPAddr)
	if !ok {
		return 0, false
	}
	return a.Port, true
}

// contentSecurityPolicy is sent with every answer over TCP: the app loads
// only its own scripts, styles, images and connections (no inline script
// or style, no eval), can be framed by nobody, and may assign no string to
// an HTML sink (innerHTML and the like): with Trusted Types and no policy,
// the browser itself refuses to parse text as HTML.
const contentSecurityPolicy = "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; " +
	"frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"

// guardTCP applies the TCP listener's rules before anything else: the
// Host header must be a loopback name with the listener's port (a web
// page that rebinds its own DNS name to 127.0.0.1 sends its own name as
// Host); a state-changing request from a browser must come from the
// listener's own origin (Go's CrossOriginProtection: Sec-Fetch-Site, else
// Origin against Host); and every answer carries the security headers
// (Content-Security-Policy, X-Frame-Options: DENY, no sniffing, no
// referrer). No answer carries CORS headers, so no other origin can read
// one. Requests on the unix socket pass untouched.
func (s *Server) guardTCP(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		port, ok := tcpPort(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if !allowedHost(r.Host, port) {
			s.writeError(w, Errorf(CodeForbiddenHost, "host %q is not allowed; use localhost, 127.0.0.1 or [::1] with the port", r.Host))
			return
		}
		if err := cop.Check(r); err != nil {
			s.writeError(w, Errorf(CodeForbiddenOrigin, "%s %s refused: %v", r.Method, r.URL.Path, err))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func allowedHost(host string, port int) bool {
	p := strconv.Itoa(port)
	for _, name := range []string{"localhost", "127.0.0.1", "[::1]"} {
		if strings.EqualFold(host, name+":"+p) {
			return true
		}
	}
	return false
}

// requireAuth refuses TCP requests that carry neither the bearer token nor
// a session of the web app. The token comparison is over hashes, in
// constant time.
func (s *Server) requireAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := tcpPort(r); ok && (s.cfg.App == nil || !s.cfg.App.Authorized(r)) {
			token, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			got := sha256.Sum256([]byte(token))
			if !found || s.cfg.Token == "" || subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sealpost"`)
				s.writeError(w, Errorf(CodeUnauthorized, "not logged in: run sealpost ui, or send the bearer token of HOME/api.token"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIDocument)
}

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// handle adapts a handler that returns a value to send as JSON, or an error.
func (s *Server) handle(fn func(r *http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		if err != nil {
			s.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
}

// decodeBody reads a JSON request body of at most MaxRequestBody bytes into
// v, refusing unknown fields and trailing data.
func decodeBody(r *http.Request, v any) error {
	return decodeBodyLimit(r, v, MaxRequestBody)
}

// decodeBodyLimit is decodeBody with another limit, for the routes that
// take larger bodies. A body over the limit is refused with 413 and
// CodeLimit; text that encoding/json would quietly replace with U+FFFD
// (bytes that are not UTF-8, escapes of lone surrogates) with
// CodeBadRequest.
func decodeBodyLimit(r *http.Request, v any, limit int64) error {
	if r.ContentLength > limit {
		return tooLarge(limit)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return Errorf(CodeBadRequest, "read the request body: %v", err)
	}
	if int64(len(b)) > limit {
		return tooLarge(limit)
	}
	if err := checkJSONText(b); err != nil {
		return Errorf(CodeBadRequest, "bad request body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(CodeBadRequest, "bad request body: %v", err)
	}
	if dec.More() {
		return Errorf(CodeBadRequest, "bad request body: data after the JSON object")
	}
	return nil
}

// tooLarge is the error of a request body over limit bytes.
func tooLarge(limit int64) *Error {
	e := Errorf(CodeLimit, "request body larger than %d bytes", limit)
	e.status = http.StatusRequestEntityTooLarge
	return e
}

// checkJSONText refuses what encoding/json would decode, without a word,
// as U+FFFD: bytes that are not UTF-8, and \u escapes of surrogates that
// are not a high one followed by a low one.
func checkJSONText(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	hex4 := func(i int) (rune, bool) {
		if i+4 > len(b) {
			return 0, false
		}
		n, err := strconv.ParseUint(string(b[i:i+4]), 16, 16)
		return rune(n), err == nil
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 == len(b) {
			continue
		}
		if b[i+1] != 'u' {
			i++ // an escape of one character: \\ among them
			continue
		}
		r, ok := hex4(i + 2)
		if !ok {
			continue // the decoder refuses it
		}
		i += 5
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return errors.New("a lone surrogate in a \\u escape")
		case r >= 0xD800 && r <= 0xDBFF:
			if i+2 < len(b) && b[i+1] == '\\' && b[i+2] == 'u' {
				if lo, ok := hex4(i + 3); ok && lo >= 0xDC00 && lo <= 0xDFFF {
					i += 6
					continue
				}
			}
			return errors.New("a lone surrogate in a \\u escape")
		}
	}
	return nil
}

func (s *Server) writeError(w http.ResponseWriter, err error) {
	e, internal := toAPIError(err)
	if internal {
		s.log.Error("api request failed", "err", err)
	}
	status := e.Code.HTTPStatus()
	if e.status != 0 {
		status = e.status
	}
	writeJSON(w, status, errorBody{Error: e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: &Error{Code: CodeInternal, Message: "internal error"}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
