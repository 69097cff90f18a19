package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/home"
)

// maxResponseBody bounds a JSON response the client reads; maxEventLine
// bounds one line of an event stream.
const (
	maxResponseBody = 16 << 20
	maxEventLine    = 1 << 20
)

// Client calls a daemon's API. It is what the sealpost command uses for
// everything but init, bench and version.
type Client struct {
	hc    *http.Client
	base  string
	token string
}

// Dial returns a client for the daemon running on home h, over its unix
// socket. It does not connect: a request returns ErrNoDaemon when nothing
// listens there (no socket, or a stale one left by a daemon that died).
func Dial(h home.Home) (*Client, error) {
	path, err := h.SocketPath()
	if errors.Is(err, home.ErrNoSocket) {
		return nil, ErrNoDaemon
	}
	if err != nil {
		return nil, err
	}
	return NewUnixClient(path), nil
}

// NewUnixClient returns a client for the API socket at path.
func NewUnixClient(path string) *Client {
	dialer := &net.Dialer{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}
	return &Client{hc: &http.Client{Transport: tr}, base: "http://sealpost"}
}

// NewTCPClient returns a client for the API over TCP at addr (host:port on
// loopback) with the bearer token from HOME/api.token.
func NewTCPClient(addr, token string) *Client {
	tr := &http.Transport{DisableCompression: true, Proxy: nil}
	return &Client{hc: &http.Client{Transport: tr}, base: "http://" + addr, token: token}
}

// CloseIdleConnections closes the client's idle connections.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// request sends one request; in is sent as JSON unless nil.
func (c *Client) request(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("api: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(ctx, req)
}

// send sends req with the client's token, and turns a failed answer into
// an *Error.
func (c *Client) send(ctx context.Context, req *http.Request) (*http.Response, error) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, ErrNoDaemon
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if broken(err) {
			return nil, stopped(err)
		}
		return nil, fmt.Errorf("api: %w", err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// do sends a request and decodes the JSON response into out (unless nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.request(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
		return nil
	}
	if err := decodeJSON(resp, out); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if broken(err) {
			return stopped(err)
		}
		return fmt.Errorf("api: decode %s %s: %w", method, path, err)
	}
	return nil
}

// decodeJSON decodes a JSON response of at most maxResponseBody bytes.
func decodeJSON(resp *http.Response, out any) error {
	return json.NewDecoder(io.LimitReader(resp.Body, maxResponseBody)).Decode(out)
}

// broken reports whether err is a connection to the daemon that broke
// before the answer was whole: the daemon stopped or died meanwhile.
func broken(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// stopped is the error of a request whose daemon stopped before it
// answered: CodeNoDaemon. What was asked may have been done or not.
func stopped(err error) error {
	return Errorf(CodeNoDaemon, "the daemon stopped before it answered (%v); what was asked may or may not have been done", err)
}

// decodeError turns a failed response into an *Error.
func decodeError(resp *http.Response) error {
	var body errorBody
	b, _ := io.ReadAll(io.LimitReader(resp.Body, MaxRequestBody))
	if err := json.Unmarshal(b, &body); err != nil || body.Error == nil || body.Error.Code == "" {
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("daemon answered %s", resp.Status)}
	}
	return body.Error
}

// Health calls GET /healthz.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil)
}

// OpenAPI returns the daemon's OpenAPI document.
func (c *Client) OpenAPI(ctx context.Context) (json.RawMessage, error) {
	var doc json.RawMessage
	err := c.do(ctx, http.MethodGet, "/openapi.json", nil, &doc)
	return doc, err
}

// Events streams the daemon's events (GET /v1/events) to fn until ctx ends,
// the daemon closes the stream, or fn returns an error, which Events returns.
// It returns nil when ctx ends, and io.ErrUnexpectedEOF when the daemon
// ends the stream (as it does when it shuts down).
func (c *Client) Events(ctx context.Context, fn func(Event) error) error {
	resp, err := c.request(ctx, http.MethodGet, "/v1/events", nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	err = readEvents(resp.Body, fn)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// readEvents parses a server-sent event stream, calling fn for each event
// whose data is one JSON Event.
func readEvents(r io.Reader, fn func(Event) error) error {
	p := newEventParser(r)
	for {
		ev, err := p.next()
		if err != nil {
			return err
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// eventParser reads the events of a server-sent event stream one by one.
type eventParser struct {
	sc   *bufio.Scanner
	data strings.Builder
}

func newEventParser(r io.Reader) *eventParser {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	return &eventParser{sc: sc}
}

// next returns the next event whose data is one JSON Event, or
// io.ErrUnexpectedEOF at the end of the stream.
func (p *eventParser) next() (Event, error) {
	for p.sc.Scan() {
		line := p.sc.Text()
		switch {
		case line == "":
			if p.data.Len() == 0 {
				continue
			}
			var ev Event
			err := json.Unmarshal([]byte(p.data.String()), &ev)
			p.data.Reset()
			if err != nil {
				return Event{}, fmt.Errorf("api: bad event: %w", err)
			}
			return ev, nil
		case strings.HasPrefix(line, "data:"):
			if p.data.Len() > 0 {
				p.data.WriteByte('\n')
			}
			p.data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
			if p.data.Len() > maxEventLine {
				return Event{}, fmt.Errorf("api: event larger than %d bytes", maxEventLine)
			}
		}
		// "event:", "id:", "retry:" and comments need nothing: the JSON data
		// carries the type.
	}
	if err := p.sc.Err(); err != nil {
		return Event{}, fmt.Errorf("api: event stream: %w", err)
	}
	return Event{}, io.ErrUnexpectedEOF
}

// EventStream is a subscription to the daemon's events (Client.Subscribe).
// It is not safe for concurrent use.
type EventStream struct {
	body io.ReadCloser
	p    *eventParser
	ctx  context.Context
}

// Subscribe opens the daemon's event stream (GET /v1/events). It returns
// once the daemon has subscribed: every event from then on is on the
// stream, in order, until it ends. A caller that must not miss a change
// subscribes first and then reads the state it waits on (or starts the
// action it waits for), so that nothing falls between the two.
func (c *Client) Subscribe(ctx context.Context) (*EventStream, error) {
	resp, err := c.request(ctx, http.MethodGet, "/v1/events", nil)
	if err != nil {
		return nil, err
	}
	return &EventStream{body: resp.Body, p: newEventParser(resp.Body), ctx: ctx}, nil
}

// Next returns the next event. At the end of the stream it returns
// io.ErrUnexpectedEOF (the daemon shut down; after an overflow event the
// daemon also ends the stream), and ctx's error once ctx has ended.
func (s *EventStream) Next() (Event, error) {
	ev, err := s.p.next()
	if err != nil && s.ctx.Err() != nil {
		return Event{}, s.ctx.Err()
	}
	return ev, err
}

// Close ends the subscription.
func (s *EventStream) Close() error { return s.body.Close() }

// ID calls GET /v1/id: the node's user ID, peer ID, addresses and relays.
func (c *Client) ID(ctx context.Context) (node.Info, error) {
	var info node.Info
	err := c.do(ctx, http.MethodGet, "/v1/id", nil, &info)
	return info, err
}

// Status calls GET /v1/status.
func (c *Client) Status(ctx context.Context) (node.Status, error) {
	var st node.Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Peers calls GET /v1/peers: the connected peers.
func (c *Client) Peers(ctx context.Context) ([]node.PeerInfo, error) {
	var list PeerList
	err := c.do(ctx, http.MethodGet, "/v1/peers", nil, &list)
	return list.Peers, err
}

// Connect calls POST /v1/peers/connect: the daemon connects the peer at
// maddr (which ends in /p2p/<peer ID>).
func (c *Client) Connect(ctx context.Context, maddr string) (ConnectResult, error) {
	var res ConnectResult
	err := c.do(ctx, http.MethodPost, "/v1/peers/connect", ConnectRequest{Addr: maddr}, &res)
	return res, err
}
