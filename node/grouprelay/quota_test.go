package grouprelay_test

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/node/grouplog"
	mailrelay "github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/protocol"
)

// dialFrom opens a client Conn from a new host whose connection comes from
// the loopback address src (any 127.0.0.0/8 address is the machine's
// own), so that the clients of a test come from distinct address ranges.
func (r *relay) dialFrom(src string) *grouplog.Conn {
	local := &net.TCPAddr{IP: net.ParseIP(src)}
	return r.dial(libp2p.Transport(tcp.NewTCPTransport, tcp.WithDialerForAddr(
		func(ma.Multiaddr) (tcp.ContextDialer, error) { return &net.Dialer{LocalAddr: local}, nil })))
}

// TestCreatorQuotas: one client with many peer IDs from one address range
// creates group logs and appends to them until its creator quotas refuse
// it (too_many_logs, quota_exceeded), across new connections and a
// restart of the relay, while a client from another range still creates
// a log and appends to it: the relay's logs and bytes, which the
// attacker would otherwise fill (store_full for every group), stay
// within reach of the others.
func TestCreatorQuotas(t *testing.T) {
	const size = 1000 // an entry's body; the entry is a few bytes more
	res := testResources()
	res.MaxEntry = 1024
	res.PeerMaxLogs, res.SubnetMaxLogs = 2, 3
	res.PeerMaxBytes, res.SubnetMaxBytes = 3*1024, 5*1024
	res.MaxLogs, res.StoreMaxBytes = 5, 8*1024
	mres := mailrelay.DefaultResources()
	mres.SubnetLoopback = true
	r := newRelayQuotas(t, res, &mres)
	body := func(i int) string { return fmt.Sprintf("%0*d", size, i) }

	// The attacker: four peers from 127.0.1.1, each creating logs until
	// refused, then appending to each of its logs until refused.
	type owned struct {
		c   *grouplog.Conn
		log protocol.GroupLogID
	}
	var logs []owned
	for i := range 4 {
		c := r.dialFrom("127.0.1.1")
		for j := range 3 {
			log, err := create(c, 0, tok(0))
			switch {
			case err == nil:
				logs = append(logs, owned{c, log})
			case errors.Is(err, protocol.ErrTooManyLogs):
			default:
				t.Fatalf("peer %d, log %d: %v", i, j, err)
			}
		}
	}
	if len(logs) != 3 {
		t.Fatalf("the attacker made %d logs, want 3 (its range's)", len(logs))
	}
	stored := 0
	for round := range 4 {
		for i, l := range logs {
			_, err := l.c.Append(ctx, l.log, 0, tok(0), entry(t, 0, protocol.GroupApplication, body(10*round+i)), false, protocol.TokenHash{})
			switch {
			case err == nil:
				stored++
			case errors.Is(err, protocol.ErrQuotaExceeded):
			default:
				t.Fatalf("append %d to log %d: %v", round, i, err)
			}
		}
	}
	if stored != 5 {
		t.Errorf("the attacker stored %d entries, want 5 (its range's bytes)", stored)
	}
	st := r.mbox.Stats()
	for _, q := range []string{"group_peer_logs", "group_subnet_logs", "group_peer_bytes", "group_subnet_bytes"} {
		if st.QuotaRefusals[q] == 0 {
			t.Errorf("no refusal counted for %s: %v", q, st.QuotaRefusals)
		}
	}

	// Another range creates a log and appends.
	other := r.dialFrom("127.0.2.1")
	log, err := create(other, 0, tok(0))
	if err != nil {
		t.Fatalf("another range's log: %v", err)
	}
	mustAppend(t, other, log, 0, body(100))

	// The quotas are in the store: a restarted relay still refuses the
	// attacker, and still serves the other range.
	r.stop()
	r.start()
	if _, err := create(r.dialFrom("127.0.1.2"), 0, tok(0)); !errors.Is(err, protocol.ErrTooManyLogs) {
		t.Errorf("a new peer of the full range after a restart: %v", err)
	}
	again := r.dialFrom("127.0.1.1")
	if _, err := again.Append(ctx, logs[0].log, 0, tok(0), entry(t, 0, protocol.GroupApplication, body(200)), false, protocol.TokenHash{}); !errors.Is(err, protocol.ErrQuotaExceeded) {
		t.Errorf("an append to the attacker's log after a restart: %v", err)
	}
	other = r.dialFrom("127.0.2.1")
	mustAppend(t, other, log, 0, body(101))
	if _, err := create(r.dialFrom("127.0.3.1"), 0, tok(0)); err != nil {
		t.Errorf("a third range's log after a restart: %v", err)
	}
	// A log that is created again (a retry) is no new log.
	if err := again.Create(ctx, logs[0].log, 0, tok(0)); err != nil {
		t.Errorf("the attacker's log created again: %v", err)
	}
}
