package api

import (
	"context"
	"net/http"

	"github.com/sealpost/sealpost/node/relay"
)

// RelayService is what GET /v1/relay/stats serves: the community relay
// service this node runs (node.Node.Relay). *relay.Server implements it.
type RelayService interface {
	Stats() relay.Stats
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
