package groups

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/node/grouplog"
	"github.com/sealpost/sealpost/protocol"
)

// dialTimeout bounds opening a stream to a home relay.
const dialTimeout = 20 * time.Second

// relays holds one group log connection per home relay, shared by the
// groups that live there (each opened through the mailbox client's key for
// that relay, so every group of the node looks alike to it).
type relays struct {
	s  *Service
	mu sync.Mutex
	m  map[peer.ID]*relayConn
}

type relayConn struct {
	mu   sync.Mutex // one dial at a time
	conn *grouplog.Conn
}

func newRelays(s *Service) *relays { return &relays{s: s, m: map[peer.ID]*relayConn{}} }

// conn returns a live connection to home h, dialling it if needed.
func (r *relays) conn(ctx context.Context, h *protocol.GroupHome) (*grouplog.Conn, error) {
	id, err := peer.IDFromBytes(h.Relay)
	if err != nil {
		return nil, fmt.Errorf("groups: home relay: %w", err)
	}
	r.mu.Lock()
	rc := r.m[id]
	if rc == nil {
		rc = &relayConn{}
		r.m[id] = rc
	}
	r.mu.Unlock()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.conn != nil && rc.conn.Err() == nil {
		return rc.conn, nil
	}
	var addrs []ma.Multiaddr
	for _, b := range h.Addrs {
		if a, err := ma.NewMultiaddrBytes(b); err == nil {
			addrs = append(addrs, a)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	str, err := r.s.cfg.Mailbox.GroupLogStream(dctx, id, addrs)
	if err != nil {
		return nil, err
	}
	rc.conn = grouplog.NewConn(str, 0)
	return rc.conn, nil
}

// close closes every connection.
func (r *relays) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rc := range r.m {
		rc.mu.Lock()
		if rc.conn != nil {
			rc.conn.Close()
		}
		rc.mu.Unlock()
	}
}
