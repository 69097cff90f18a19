package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/sealpost/sealpost/node"
)

// connectTimeout bounds POST /v1/peers/connect.
const connectTimeout = 30 * time.Second

// Node is what the API serves; *node.Node implements it. Features that add
// routes add the methods they need here.
type Node interface {
	Info() node.Info
	Peers() []node.PeerInfo
	Connect(ctx context.Context, maddr string) error
	Status(ctx context.Context) (node.Status, error)
	Subscribe(ctx context.Context) <-chan node.Event
}

// PeerList is the body of GET /v1/peers.
type PeerList struct {
	Peers []node.PeerInfo `json:"peers"`
}

// ConnectRequest is the body of POST /v1/peers/connect.
type ConnectRequest struct {
	// Addr is the peer's multiaddr, ending in /p2p/<peer ID>.
	Addr string `json:"addr"`
}

// ConnectResult is the answer to POST /v1/peers/connect.
type ConnectResult struct {
	PeerID string `json:"peer_id"`
	Addr   string `json:"addr"`
}

func (s *Server) nodeRoutes() []route {
	n := s.cfg.Node
	return []route{
		{"GET /v1/id", false, s.handle(func(r *http.Request) (any, error) {
			info := n.Info()
			info.API = s.tcpAddr()
			return info, nil
		})},
		{"GET /v1/status", false, s.handle(func(r *http.Request) (any, error) {
			st, err := n.Status(r.Context())
			st.API = s.tcpAddr()
			return st, err
		})},
		{"GET /v1/peers", false, s.handle(func(r *http.Request) (any, error) {
			return PeerList{Peers: n.Peers()}, nil
		})},
		{"POST /v1/peers/connect", false, s.handle(func(r *http.Request) (any, error) {
			var req ConnectRequest
			if err := decodeBody(r, &req); err != nil {
				return nil, err
			}
			ctx, cancel := context.WithTimeout(r.Context(), connectTimeout)
			defer cancel()
			if err := n.Connect(ctx, req.Addr); err != nil {
				return nil, err
			}
			// Connect accepts only addresses that end in /p2p/<peer ID>.
			id := req.Addr[strings.LastIndex(req.Addr, "/p2p/")+len("/p2p/"):]
			return ConnectResult{PeerID: id, Addr: req.Addr}, nil
		})},
		{"GET /v1/events", false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.streamEvents(w, r, n.Subscribe(r.Context()))
		})},
	}
}
