package relay_test

import (
	"crypto/rand"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/protocol"
)

// dialFrom connects a new client host to the relay from the loopback
// address src (any 127.0.0.0/8 address is the machine's own), so that
// clients of one test come from distinct address ranges.
func (r *trelay) dialFrom(t testing.TB, src string) *client {
	t.Helper()
	local := &net.TCPAddr{IP: net.ParseIP(src)}
	return dialAddr(t, r.info(), libp2p.Transport(tcp.NewTCPTransport, tcp.WithDialerForAddr(
		func(ma.Multiaddr) (tcp.ContextDialer, error) { return &net.Dialer{LocalAddr: local}, nil })))
}

// tryCreate asks for a mailbox and returns the answer's code.
func (c *client) tryCreate() (mailbox, protocol.Code) {
	c.t.Helper()
	priv, pub := newOwnerKey(c.t)
	resp := c.call(&protocol.RelayRequest{Op: protocol.RelayCreate, OwnerKey: pub, SealingKey: protocol.SealingKey{1}}, priv)
	return mailbox{id: resp.Mailbox, key: priv}, resp.Code
}

// TestCreatorQuotas: one client with many peer IDs from one address
// range fills its quotas — mailboxes per peer and per range, bytes per
// peer and per range — and is refused clearly, across reconnections and a
// restart of the relay, while a client from another range still creates
// a mailbox and deposits: the store never reaches store_full for it.
func TestCreatorQuotas(t *testing.T) {
	const env = 2048
	res := testResources()
	res.MaxEnvelope = env
	res.PeerMaxMailboxes, res.PeerMaxBytes = 2, 3*env
	res.SubnetMaxMailboxes, res.SubnetMaxBytes = 6, 8*env
	res.StoreMaxBytes = 12 * env
	res.SubnetLoopback = true
	r := newRelay(t, res)

	// The attacker: peers from 127.0.1.1, each making mailboxes until
	// refused.
	type owned struct {
		c   *client
		m   mailbox
		tok []byte
	}
	var boxes []owned
	for i := range 4 {
		c := r.dialFrom(t, "127.0.1.1")
		for j := range 3 {
			m, code := c.tryCreate()
			switch {
			case code == protocol.CodeOK && i < 3 && j < 2:
				boxes = append(boxes, owned{c, m, c.token(m, 0, 0)})
			case code == protocol.CodeTooManyMailboxes && (i == 3 || j == 2):
			default:
				t.Fatalf("peer %d, mailbox %d: %s", i, j, code)
			}
		}
	}
	// The same peer on a new connection: still its quota.
	again := dialAddr(t, r.info(), libp2p.Identity(boxes[0].c.h.Peerstore().PrivKey(boxes[0].c.h.ID())),
		libp2p.Transport(tcp.NewTCPTransport))
	if _, code := again.tryCreate(); code != protocol.CodeTooManyMailboxes {
		t.Errorf("the first peer again on a new connection: %s", code)
	}
	// Deposits into the attacker's mailboxes stop at the bytes of its
	// peers (3 envelopes for the two mailboxes of each) and of its range
	// (8 in all).
	ok := 0
	for round := range 3 {
		for i, b := range boxes {
			resp := b.c.deposit(b.m.id, b.tok, envelope(b.m.id, env, 10*round+i))
			switch resp.Code {
			case protocol.CodeOK:
				ok++
			case protocol.CodeMailboxQuota:
			default:
				t.Fatalf("deposit %d into mailbox %d: %s", round, i, resp.Code)
			}
		}
	}
	if ok != 8 {
		t.Errorf("%d envelopes stored for the attacker, want 8 (its range's bytes)", ok)
	}
	st := r.srv.Stats()
	for _, q := range []string{"peer_mailboxes", "subnet_mailboxes", "peer_bytes", "subnet_bytes"} {
		if st.QuotaRefusals[q] == 0 {
			t.Errorf("no refusal counted for %s: %v", q, st.QuotaRefusals)
		}
	}

	// The quotas are in the store: a restarted relay still refuses.
	r.srv.Close()
	r.start()
	c := r.dialFrom(t, "127.0.1.2")
	if _, code := c.tryCreate(); code != protocol.CodeTooManyMailboxes {
		t.Errorf("a new peer of the full range after a restart: %s", code)
	}

	// Another range is served: a mailbox, and deposits into it.
	other := r.dialFrom(t, "127.0.2.1")
	m := other.create()
	tok := other.token(m, 0, 0)
	for i := range 3 {
		e := envelope(m.id, env, 100+i)
		other.checkReceipt(other.deposit(m.id, tok, e), m.id, e)
	}

	// A mailbox deleted gives its bytes and its place back.
	b := boxes[0]
	b.c.open() // the restart reset its stream
	if resp := b.c.call(&protocol.RelayRequest{Op: protocol.RelayDeleteMailbox, Mailbox: b.m.id}, b.m.key); resp.Code != protocol.CodeOK {
		t.Fatalf("delete: %s", resp.Code)
	}
	if _, code := c.tryCreate(); code != protocol.CodeOK {
		t.Errorf("after a deletion: %s", code)
	}
}

// TestCreatorCardQuotas: the card and prekey blobs a client's mailboxes
// hold count in its creator quotas' bytes, as their envelopes do: one
// client from one address range that registers tokens and stores cards
// in its mailboxes until refused stops at its peers' and its range's
// bytes (mailbox_quota), never at store_full for a client from another
// range; a revoked token's card gives its bytes back.
func TestCreatorCardQuotas(t *testing.T) {
	const card = 16 << 10
	res := testResources()
	res.MaxEnvelope = 2048
	res.PeerMaxMailboxes, res.PeerMaxBytes = 2, 3*card
	res.SubnetMaxMailboxes, res.SubnetMaxBytes = 6, 8*card
	res.StoreMaxBytes = 12 * card
	res.SubnetLoopback = true
	r := newRelay(t, res)

	type owned struct {
		c    *client
		m    mailbox
		toks [][]byte
	}
	var boxes []*owned
	for range 3 {
		c := r.dialFrom(t, "127.0.1.1")
		for range 2 {
			boxes = append(boxes, &owned{c: c, m: c.create()})
		}
	}
	putCard := func(b *owned) protocol.Code {
		tok := b.c.token(b.m, 0, 0)
		blob := make([]byte, card)
		rand.Read(blob)
		resp := b.c.call(&protocol.RelayRequest{Op: protocol.RelayPutCard, Mailbox: b.m.id, TokenHash: protocol.HashToken(tok), Blob: blob}, b.m.key)
		if resp.Code == protocol.CodeOK {
			b.toks = append(b.toks, tok)
		}
		return resp.Code
	}
	// Cards into each mailbox in turn: 3 per peer, 8 for the range,
	// though the store (12) would take more.
	codes := map[protocol.Code]int{}
	for range 3 {
		for _, b := range boxes {
			codes[putCard(b)]++
		}
	}
	if codes[protocol.CodeOK] != 8 || codes[protocol.CodeMailboxQuota] != 10 {
		t.Errorf("the attacker's cards: %v, want 8 ok (its range's bytes) and 10 mailbox_quota", codes)
	}
	// Prekeys count too.
	b := boxes[5]
	prekeys := [][]byte{make([]byte, 2<<10), make([]byte, 2<<10)}
	resp := b.c.call(&protocol.RelayRequest{Op: protocol.RelayPutPrekeys, Mailbox: b.m.id, Blobs: prekeys, ExpiresAt: r.clock.Now().Add(time.Hour).UnixMilli()}, b.m.key)
	if resp.Code != protocol.CodeMailboxQuota {
		t.Errorf("prekeys into the full range: %s", resp.Code)
	}
	st := r.srv.Stats()
	for _, q := range []string{"peer_bytes", "subnet_bytes"} {
		if st.QuotaRefusals[q] == 0 {
			t.Errorf("no refusal counted for %s: %v", q, st.QuotaRefusals)
		}
	}

	// Another range stores its card and deposits.
	other := r.dialFrom(t, "127.0.2.1")
	o := &owned{c: other, m: other.create()}
	if code := putCard(o); code != protocol.CodeOK {
		t.Fatalf("the other client's card: %s", code)
	}
	e := envelope(o.m.id, 2048, 1)
	other.checkReceipt(other.deposit(o.m.id, o.toks[0], e), o.m.id, e)

	// A token revoked takes its card's bytes off: the range stores one
	// more.
	b = boxes[0]
	if resp := b.c.call(&protocol.RelayRequest{Op: protocol.RelayRevokeToken, Mailbox: b.m.id, TokenHash: protocol.HashToken(b.toks[0])}, b.m.key); resp.Code != protocol.CodeOK {
		t.Fatalf("revoke: %s", resp.Code)
	}
	if code := putCard(boxes[4]); code != protocol.CodeOK {
		t.Errorf("a card after a revocation: %s", code)
	}
}
