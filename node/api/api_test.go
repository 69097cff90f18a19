package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/home"
	"github.com/sealpost/sealpost/node/nodetest"
)

func TestMain(m *testing.M) { nodetest.VerifyTestMain(m) }

// fakeNode is a Node whose answers the tests set.
type fakeNode struct {
	info       node.Info
	connectErr error
	statusErr  error
	events     chan node.Event
	// subscribed counts the Subscribe calls.
	subscribed atomic.Int32

	mu        sync.Mutex
	connected []string
}

func (f *fakeNode) Info() node.Info { return f.info }
func (f *fakeNode) Peers() []node.PeerInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ps []node.PeerInfo
	for _, a := range f.connected {
		ps = append(ps, node.PeerInfo{PeerID: a[strings.LastIndex(a, "/")+1:], Addrs: []string{a}, Direction: "outbound"})
	}
	return ps
}
func (f *fakeNode) Connect(ctx context.Context, maddr string) error {
	if f.connectErr != nil {
		return f.connectErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.connected = append(f.connected, maddr)
	return nil
}
func (f *fakeNode) Status(ctx context.Context) (node.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return node.Status{Peers: len(f.connected), DHTMode: "server"}, f.statusErr
}
func (f *fakeNode) Subscribe(ctx context.Context) <-chan node.Event {
	f.subscribed.Add(1)
	out := make(chan node.Event)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-f.events:
				if !ok {
					return
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

const testToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func newFake() *fakeNode {
	return &fakeNode{
		info:   node.Info{UserID: "spuser", PeerID: "12D3KooWpeer", Addrs: []string{"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWpeer"}, Relays: []string{}},
		events: make(chan node.Event),
	}
}

// serve starts a server for n on a unix socket and a loopback TCP port. It
// is shut down when the test ends.
func serve(t *testing.T, n Node) (s *Server, sock string, tcpAddr string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	s, err := New(Config{Node: n, Gatherer: reg, Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(t.TempDir(), "api.sock")
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, ln := range []net.Listener{uln, tln} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Serve(ln); err != nil {
				t.Errorf("Serve: %v", err)
			}
		}()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		wg.Wait()
	})
	return s, sock, tln.Addr().String()
}

func unixClient(t *testing.T, sock string) *Client {
	c := NewUnixClient(sock)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestRoutesMatchOpenAPI(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi version %q, want 3.x", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	s, err := New(Config{Node: newFake(), Gatherer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	var served []string
	for _, r := range s.routes() {
		served = append(served, r.pattern)
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Errorf("routes and openapi.json differ:\nserved:     %v\ndocumented: %v", served, documented)
	}
}

func TestCodes(t *testing.T) {
	// The exit codes of DESIGN.md §6.
	want := map[Code]int{
		CodeBadRequest: 1, CodeNotFound: 1, CodeUnauthorized: 1, CodeForbiddenHost: 1,
		CodeInternal: 2, CodeNetwork: 3, CodeUntrustedIdentity: 4, CodeLimit: 5,
		CodeNoDaemon: 6, CodeTimeout: 7,
	}
	for c, exit := range want {
		if got := c.ExitCode(); got != exit {
			t.Errorf("%s: exit %d, want %d", c, got, exit)
		}
	}
	for c, e := range codes {
		if e.status < 400 || e.status > 599 {
			t.Errorf("%s: HTTP status %d", c, e.status)
		}
	}
	if got := Code("from_a_newer_daemon").ExitCode(); got != ExitInternal {
		t.Errorf("unknown code: exit %d, want %d", got, ExitInternal)
	}
	// Every documented code is in the table.
	if !bytes.Contains(openAPIDocument, []byte(`"enum": ["bad_request"`)) {
		t.Fatal("openapi.json lists no error codes")
	}
	for c := range codes {
		if c != CodeNoDaemon && !bytes.Contains(openAPIDocument, []byte(`"`+string(c)+`"`)) {
			t.Errorf("openapi.json does not list error code %s", c)
		}
	}
}

func TestUnixAPI(t *testing.T) {
	f := newFake()
	_, sock, _ := serve(t, f)
	c := unixClient(t, sock)
	ctx := context.Background()

	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := c.ID(ctx)
	if err != nil || info.UserID != "spuser" || info.PeerID != "12D3KooWpeer" || info.Relays == nil {
		t.Errorf("ID = %+v, %v", info, err)
	}
	res, err := c.Connect(ctx, "/ip4/127.0.0.1/tcp/2/p2p/12D3KooWother")
	if err != nil || res.PeerID != "12D3KooWother" {
		t.Errorf("Connect = %+v, %v", res, err)
	}
	peers, err := c.Peers(ctx)
	if err != nil || len(peers) != 1 || peers[0].PeerID != "12D3KooWother" {
		t.Errorf("Peers = %+v, %v", peers, err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Peers != 1 {
		t.Errorf("Status = %+v, %v", st, err)
	}
	doc, err := c.OpenAPI(ctx)
	if err != nil || !bytes.Equal(bytes.TrimSpace(doc), bytes.TrimSpace(openAPIDocument)) {
		t.Errorf("OpenAPI: %v", err)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code Code
		msg  string
	}{
		{"bad addr", fmt.Errorf("%w %q: no /p2p/", node.ErrBadAddr, "x"), CodeBadRequest, "bad multiaddr"},
		{"unreachable", fmt.Errorf("%w: peer: dial refused", node.ErrUnreachable), CodeNetwork, "unreachable"},
		{"unreachable after a timeout", fmt.Errorf("%w: %w", node.ErrUnreachable, context.DeadlineExceeded), CodeNetwork, "unreachable"},
		{"timeout", context.DeadlineExceeded, CodeTimeout, "deadline"},
		{"closed", node.ErrClosed, CodeUnavailable, "closed"},
		{"api error", Errorf(CodeLimit, "too many"), CodeLimit, "too many"},
		{"other", errors.New("disk on fire at /secret/path"), CodeInternal, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			f.connectErr = tt.err
			_, sock, _ := serve(t, f)
			_, err := unixClient(t, sock).Connect(context.Background(), "/ip4/127.0.0.1/tcp/2/p2p/x")
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code || !strings.Contains(e.Message, tt.msg) {
				t.Fatalf("got %#v, want code %s with %q", err, tt.code, tt.msg)
			}
			if strings.Contains(e.Message, "/secret/path") {
				t.Errorf("internal error text sent to the client: %q", e.Message)
			}
		})
	}
}

func TestRequests(t *testing.T) {
	_, sock, _ := serve(t, newFake())
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	defer hc.CloseIdleConnections()
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     Code
	}{
		{"unknown route", "GET", "/v1/nope", "", 404, CodeNotFound},
		{"wrong method", "DELETE", "/v1/id", "", 400, CodeBadRequest},
		{"unknown field", "POST", "/v1/peers/connect", `{"addr":"x","port":1}`, 400, CodeBadRequest},
		{"trailing data", "POST", "/v1/peers/connect", `{"addr":"x"} {}`, 400, CodeBadRequest},
		{"not json", "POST", "/v1/peers/connect", `addr=x`, 400, CodeBadRequest},
		{"too large", "POST", "/v1/peers/connect", `{"addr":"` + strings.Repeat("a", MaxRequestBody) + `"}`, 413, CodeLimit},
		{"300 KB", "POST", "/v1/peers/connect", `{"addr":"` + strings.Repeat("a", 300<<10) + `"}`, 413, CodeLimit},
		{"not UTF-8", "POST", "/v1/peers/connect", "{\"addr\":\"a\xffb\"}", 400, CodeBadRequest},
		{"lone low surrogate", "POST", "/v1/peers/connect", `{"addr":"a\udc00b"}`, 400, CodeBadRequest},
		{"lone high surrogate", "POST", "/v1/peers/connect", `{"addr":"a\ud83d"}`, 400, CodeBadRequest},
		{"high surrogate then another escape", "POST", "/v1/peers/connect", `{"addr":"a\ud83d\u0041"}`, 400, CodeBadRequest},
		{"surrogate pair", "POST", "/v1/peers/connect", `{"addr":"/p2p/\ud83d\ude00"}`, 200, ""},
		{"escaped backslash before u", "POST", "/v1/peers/connect", `{"addr":"/p2p/\\udc00"}`, 200, ""},
		{"healthz", "GET", "/healthz", "", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://sealpost"+tt.path, strings.NewReader(tt.body))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.code == "" {
				return
			}
			if err := decodeError(resp); err.(*Error).Code != tt.code {
				t.Errorf("got %v, want code %s", err, tt.code)
			}
		})
	}
}

func TestTCPAuth(t *testing.T) {
	_, _, addr := serve(t, newFake())
	_, port, _ := net.SplitHostPort(addr)
	tests := []struct {
		name, path, host, token string
		code                    Code
	}{
		{"no token", "/v1/id", "", "", CodeUnauthorized},
		{"wrong token", "/v1/id", "", "nope", CodeUnauthorized},
		{"token prefix", "/v1/id", "", testToken[:32], CodeUnauthorized},
		{"foreign host", "/v1/id", "evil.example:" + port, testToken, CodeForbiddenHost},
		{"loopback name without port", "/v1/id", "localhost", testToken, CodeForbiddenHost},
		{"another port", "/v1/id", "127.0.0.1:1", testToken, CodeForbiddenHost},
		{"unknown route without token", "/v1/nope", "", "", CodeUnauthorized},
		{"openapi without token", "/openapi.json", "", "", CodeUnauthorized},
		{"localhost", "/v1/id", "localhost:" + port, testToken, ""},
		{"LOCALHOST", "/v1/id", "LOCALHOST:" + port, testToken, ""},
		{"ipv6 name", "/v1/id", "[::1]:" + port, testToken, ""},
		{"127.0.0.1", "/v1/id", "", testToken, ""},
		{"healthz without token", "/healthz", "", "", ""},
		{"metrics without token", "/metrics", "", "", ""},
		{"metrics from a foreign host", "/metrics", "evil.example:" + port, "", CodeForbiddenHost},
	}
	c := NewTCPClient(addr, "")
	defer c.CloseIdleConnections()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+addr+tt.path, nil)
			if tt.host != "" {
				req.Host = tt.host
			}
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := c.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if tt.code == "" {
				if resp.StatusCode != 200 {
					t.Fatalf("status %d, want 200: %v", resp.StatusCode, decodeError(resp))
				}
				return
			}
			if err := decodeError(resp).(*Error); err.Code != tt.code || resp.StatusCode != tt.code.HTTPStatus() {
				t.Errorf("got %d %v, want %d %s", resp.StatusCode, err.Code, tt.code.HTTPStatus(), tt.code)
			}
		})
	}
	tc := NewTCPClient(addr, testToken)
	defer tc.CloseIdleConnections()
	if info, err := tc.ID(context.Background()); err != nil || info.PeerID != "12D3KooWpeer" {
		t.Errorf("TCP client with the token: %+v, %v", info, err)
	}
}

func TestTCPNeedsToken(t *testing.T) {
	s, err := New(Config{Node: newFake()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := s.Serve(ln); err == nil {
		t.Error("Serve on TCP without a token succeeded")
	}
}

func TestMetricsListener(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	s, err := New(Config{Node: newFake(), Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- s.ServeMetrics(ln) }()
	c := NewTCPClient(ln.Addr().String(), "")
	resp, err := c.request(context.Background(), "GET", "/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte("go_goroutines")) {
		t.Errorf("metrics lack go_goroutines:\n%.300s", body)
	}
	if _, err := c.request(context.Background(), "GET", "/v1/id", nil); err == nil {
		t.Error("the metrics listener serves /v1/id")
	}
	c.CloseIdleConnections()
	s.Shutdown(context.Background())
	if err := <-done; err != nil {
		t.Errorf("ServeMetrics: %v", err)
	}
}

func TestEvents(t *testing.T) {
	f := newFake()
	s, sock, _ := serve(t, f)
	c := unixClient(t, sock)
	got := make(chan Event)
	done := make(chan error, 1)
	go func() {
		done <- c.Events(context.Background(), func(ev Event) error {
			got <- ev
			return nil
		})
	}()
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, id := range []string{"a", "b"} {
		f.events <- node.Event{Type: node.EventPeerConnected, Time: now, Data: node.PeerEvent{PeerID: id, Direction: "inbound"}}
		ev := <-got
		var pe node.PeerEvent
		if err := json.Unmarshal(ev.Data, &pe); err != nil || ev.Type != node.EventPeerConnected || !ev.Time.Equal(now) || pe.PeerID != id {
			t.Errorf("event %+v (%s), %v", ev, ev.Data, err)
		}
	}
	// Shutdown ends the stream; the client sees the end.
	s.Shutdown(context.Background())
	if err := <-done; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Events after Shutdown: %v, want io.ErrUnexpectedEOF", err)
	}
}

// TestEventsCancel: Events returns nil when its context ends, whether the
// stream is open (an event came through) or the daemon has not answered
// yet (the context ended before the request went out, the earliest point
// of that window).
func TestEventsCancel(t *testing.T) {
	f := newFake()
	_, sock, _ := serve(t, f)
	c := unixClient(t, sock)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Events(ctx, func(Event) error { return nil }); err != nil {
		t.Errorf("Events with its context ended before the answer: %v, want nil", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	got := make(chan struct{}, 1)
	done := make(chan error)
	go func() {
		done <- c.Events(ctx, func(Event) error {
			select {
			case got <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	// An event through the stream: the client holds the response.
	f.events <- node.Event{Type: node.EventPeerConnected, Time: time.Now(), Data: node.PeerEvent{PeerID: "a"}}
	<-got
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Events after cancel: %v, want nil", err)
	}
}

func TestNoDaemon(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	// No socket: Dial works, the first request says no daemon.
	c, err := Dial(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Health(context.Background()); err != ErrNoDaemon {
		t.Errorf("no socket: %v, want ErrNoDaemon", err)
	}
	// A stale socket file.
	ln, err := net.Listen("unix", h.Path(home.SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(h.Path(home.SocketFile)); err != nil {
		t.Fatal(err)
	}
	var e *Error
	if err := c.Health(context.Background()); !errors.As(err, &e) || e.Code != CodeNoDaemon || e.Code.ExitCode() != ExitNoDaemon {
		t.Errorf("stale socket: %v, want no_daemon", err)
	}
	// A long home whose HOME/api names no socket.
	long := home.Home{Dir: filepath.Join(t.TempDir(), strings.Repeat("x", 120))}
	if _, err := Dial(long); err != ErrNoDaemon {
		t.Errorf("long home without HOME/api: %v, want ErrNoDaemon", err)
	}
}

// TestDaemonStopsDuringRequest: a daemon that takes a request and goes
// away before it answers is no_daemon (exit 6), not an internal error.
func TestDaemonStopsDuringRequest(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	nodetest.HangUp(t, ln)
	c := unixClient(t, sock)
	var e *Error
	_, err = c.Status(context.Background())
	if !errors.As(err, &e) || e.Code != CodeNoDaemon || !strings.Contains(e.Message, "stopped before it answered") {
		t.Errorf("Status from a daemon that went away: %#v, want no_daemon", err)
	}
	_, err = c.Connect(context.Background(), "/ip4/127.0.0.1/tcp/2/p2p/x")
	if !errors.As(err, &e) || e.Code != CodeNoDaemon {
		t.Errorf("Connect to a daemon that went away: %#v, want no_daemon", err)
	}
}

// TestAPIAddress: id and status name the TCP listener's address, the port
// bound when asked for port 0.
func TestAPIAddress(t *testing.T) {
	s, sock, _ := serve(t, newFake())
	c := unixClient(t, sock)
	info, err := c.ID(context.Background())
	if err != nil || info.API != "" {
		t.Fatalf("ID before ListenTCP: %+v, %v; want no api", info, err)
	}
	addr, err := s.ListenTCP("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	if addr.Port == 0 {
		t.Fatal("ListenTCP on port 0 returned port 0")
	}
	info, err = c.ID(context.Background())
	if err != nil || info.API != addr.String() {
		t.Errorf("ID: api %q, %v; want %s", info.API, err, addr)
	}
	st, err := c.Status(context.Background())
	if err != nil || st.API != addr.String() {
		t.Errorf("Status: api %q, %v; want %s", st.API, err, addr)
	}
}

func FuzzReadEvents(f *testing.F) {
	f.Add([]byte("event: peer.connected\ndata: {\"type\":\"peer.connected\",\"time\":\"2026-01-01T00:00:00Z\"}\n\n"))
	f.Add([]byte(": ping\n\ndata: {\"type\":\"x\",\n data: \"time\":\"2026-01-01T00:00:00Z\"}\n\n"))
	f.Add([]byte("data: not json\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		err := readEvents(bytes.NewReader(b), func(ev Event) error {
			n++
			return nil
		})
		if err == nil {
			t.Fatal("readEvents returned nil at the end of the stream")
		}
		if n > len(b)/2 {
			t.Fatalf("%d events from %d bytes", n, len(b))
		}
	})
}
