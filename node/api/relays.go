package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/sealpost/sealpost/node/messaging"
)

// Relays is what the relay routes serve: the relays a node receives
// through (relays add, ls, rm). *messaging.Service implements it; the
// server uses Config.Messaging when it does.
type Relays interface {
	AddRelay(ctx context.Context, addr string) (messaging.Relay, error)
	Relays(ctx context.Context) ([]messaging.Relay, error)
	RemoveRelay(ctx context.Context, id string) error
}

var _ Relays = (*messaging.Service)(nil)

// AddRelayRequest is the body of POST /v1/relays.
type AddRelayRequest struct {
	// Addr is the relay's multiaddr with /p2p/<peer ID>.
	Addr string `json:"addr"`
}

// RelayList is the answer to GET /v1/relays.
type RelayList struct {
	Relays []messaging.Relay `json:"relays"`
}

// RemoveRelayResult is the answer to DELETE /v1/relays/{id}.
type RemoveRelayResult struct {
	ID      string `json:"id"`
	Removed bool   `json:"removed"`
}

var errNoRelays = Errorf(CodeUnavailable, "relays are not available on this node")

func (s *Server) relayRoutes() []route {
	rel, _ := s.cfg.Messaging.(Relays)
	with := func(fn func(r *http.Request) (any, error)) http.Handler {
		return s.handle(func(r *http.Request) (any, error) {
			if rel == nil {
				return nil, errNoRelays
			}
			return fn(r)
		})
	}
	return []route{
		{"POST /v1/relays", false, with(func(r *http.Request) (any, error) {
			var req AddRelayRequest
			if err := decodeBody(r, &req); err != nil {
				return nil, err
			}
			return rel.AddRelay(r.Context(), req.Addr)
		})},
		{"GET /v1/relays", false, with(func(r *http.Request) (any, error) {
			list, err := rel.Relays(r.Context())
			if err != nil {
				return nil, err
			}
			if list == nil {
				list = []messaging.Relay{}
			}
			return RelayList{Relays: list}, nil
		})},
		{"DELETE /v1/relays/{id}", false, with(func(r *http.Request) (any, error) {
			id := r.PathValue("id")
			if err := rel.RemoveRelay(r.Context(), id); err != nil {
				return nil, err
			}
			return RemoveRelayResult{ID: id, Removed: true}, nil
		})},
	}
}

// AddRelay calls POST /v1/relays: make a mailbox on the relay at addr and
// receive through it.
func (c *Client) AddRelay(ctx context.Context, addr string) (messaging.Relay, error) {
	var r messaging.Relay
	err := c.do(ctx, http.MethodPost, "/v1/relays", AddRelayRequest{Addr: addr}, &r)
	return r, err
}

// Relays calls GET /v1/relays: the relays the node receives through.
func (c *Client) Relays(ctx context.Context) ([]messaging.Relay, error) {
	var list RelayList
	err := c.do(ctx, http.MethodGet, "/v1/relays", nil, &list)
	return list.Relays, err
}

// RemoveRelay calls DELETE /v1/relays/{id}: stop receiving through the
// relay with that peer ID (or mailbox ID).
func (c *Client) RemoveRelay(ctx context.Context, id string) (RemoveRelayResult, error) {
	var res RemoveRelayResult
	err := c.do(ctx, http.MethodDelete, "/v1/relays/"+url.PathEscape(id), nil, &res)
	return res, err
}
