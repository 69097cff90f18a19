package api

import (
	"context"
	"net/http"

	"github.com/sealpost/sealpost/node/relay"
)

// RelayService is what GET /v1/relay/stats and GET /v1/relay/peers serve:
// the community relay service this node runs (node.Node.Relay).
// *relay.Server implements it.
type RelayService interface {
	Stats() relay.Stats
	RecentPeers() relay.RecentPeers
}

var _ RelayService = (*relay.Server)(nil)

var errNoRelayService = Errorf(CodeUnavailable, "this node does not run the relay service (start it with --relay-service or --profile relay)")

func (s *Server) relayServiceRoutes() []route {
	return []route{
		{"GET /v1/relay/stats", false, s.handle(func(r *http.Request) (any, error) {
			if s.cfg.RelayService == nil {
				return nil, errNoRelayService
			}
			st := s.cfg.RelayService.Stats()
			if st.Rejections == nil {
				st.Rejections = map[string]uint64{}
			}
			return st, nil
		})},
		{"GET /v1/relay/peers", false, s.handle(func(r *http.Request) (any, error) {
			if s.cfg.RelayService == nil {
				return nil, errNoRelayService
			}
			p := s.cfg.RelayService.RecentPeers()
			for _, l := range []*[]relay.SeenPeer{&p.Streams, &p.Owners, &p.Depositors} {
				if *l == nil {
					*l = []relay.SeenPeer{}
				}
			}
			return p, nil
		})},
	}
}

// RelayStats calls GET /v1/relay/stats: the figures of the relay service
// the node runs (mailboxes, stored envelopes and bytes, deposits and
// fetches per minute, refusals by reason).
func (c *Client) RelayStats(ctx context.Context) (relay.Stats, error) {
	var st relay.Stats
	err := c.do(ctx, http.MethodGet, "/v1/relay/stats", nil, &st)
	return st, err
}

// RelayPeers calls GET /v1/relay/peers: the peers the relay service served
// on mailbox streams lately (relay.RecentPeers), for its operator.
func (c *Client) RelayPeers(ctx context.Context) (relay.RecentPeers, error) {
	var p relay.RecentPeers
	err := c.do(ctx, http.MethodGet, "/v1/relay/peers", nil, &p)
	return p, err
}
