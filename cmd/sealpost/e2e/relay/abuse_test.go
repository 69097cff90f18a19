package relay_test

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// abuseQuota is the mailbox quota the abuse test gives its relay.
const abuseQuota = 8

// client is a mailbox client in the test process, talking to a relay
// process over loopback.
func client(t *testing.T) (*mailbox.Client, store.Store) {
	t.Helper()
	st := store.NewMemory()
	c, err := mailbox.New(context.Background(), mailbox.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		st.Close()
	})
	return c, st
}

func newToken() []byte {
	b := make([]byte, 16)
	rand.Read(b)
	return b
}

// TestAbuse drives a relay process with a small mailbox quota: deposits
// without a valid token, with a revoked one, a flood on one token beside
// another contact's deposits, a full mailbox, and a fetch whose owner
// signature is wrong.
func TestAbuse(t *testing.T) {
	r := newRelay(t, "relay")
	cfg := filepath.Join(r.home.Dir, "config.toml")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	if strings.Contains(conf, "[relay]") {
		conf = replaceKey(conf, "mailbox_max_envelopes", strconv.Itoa(abuseQuota))
	} else {
		conf += fmt.Sprintf("\n[relay]\nmailbox_max_envelopes = %d\n", abuseQuota)
	}
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	r.start("--relay-service", "--listen", "/ip4/127.0.0.1/tcp/0")
	addr := r.addr()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	owner, _ := client(t)
	m, err := owner.Create(ctx, addr)
	if err != nil {
		t.Fatalf("create a mailbox: %v", err)
	}
	rid, raddr, err := mailbox.ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	sealing, err := ecdh.X25519().NewPrivateKey(m.SealingKey)
	if err != nil {
		t.Fatal(err)
	}
	box := func(tok []byte) *protocol.Mailbox {
		b := &protocol.Mailbox{Relay: []byte(rid), RelayAddrs: [][]byte{raddr.Bytes()}, ID: m.ID, Token: tok}
		copy(b.SealingKey[:], sealing.PublicKey().Bytes())
		return b
	}
	from, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sender, _ := client(t)
	deposit := func(tok []byte, n int) []mailbox.Result {
		t.Helper()
		payloads := make([][]byte, n)
		for i := range payloads {
			payloads[i] = []byte("abuse")
		}
		res, err := sender.Deposit(ctx, box(tok), from.Public(), []byte("dev"), payloads)
		if err != nil {
			t.Fatalf("deposit: %v", err)
		}
		return res
	}

	// Without a valid token.
	if res := deposit(newToken(), 1); !errors.Is(res[0].Err, protocol.ErrTokenRefused) {
		t.Errorf("deposit with an unregistered token: %v, want token_refused", res[0].Err)
	}
	// With a revoked token.
	revoked := newToken()
	if err := owner.Register(ctx, &m, mailbox.Quota{}, revoked); err != nil {
		t.Fatal(err)
	}
	if res := deposit(revoked, 1); res[0].Err != nil {
		t.Fatalf("deposit with a registered token: %v", res[0].Err)
	}
	if err := owner.Revoke(ctx, &m, revoked); err != nil {
		t.Fatal(err)
	}
	if res := deposit(revoked, 1); !errors.Is(res[0].Err, protocol.ErrTokenRefused) {
		t.Errorf("deposit with a revoked token: %v, want token_refused", res[0].Err)
	}
	// A flood on one token stops at its quota; another contact's token
	// still gets through.
	flood, other := newToken(), newToken()
	if err := owner.Register(ctx, &m, mailbox.Quota{Count: 3}, flood); err != nil {
		t.Fatal(err)
	}
	if err := owner.Register(ctx, &m, mailbox.Quota{}, other); err != nil {
		t.Fatal(err)
	}
	for i, res := range deposit(flood, 20) {
		switch {
		case i < 3 && res.Err != nil:
			t.Errorf("flood deposit %d within the token's quota: %v", i, res.Err)
		case i >= 3 && !errors.Is(res.Err, protocol.ErrTokenQuota):
			t.Errorf("flood deposit %d: %v, want token_quota", i, res.Err)
		}
	}
	if res := deposit(other, 1); res[0].Err != nil {
		t.Errorf("another contact's deposit during the flood: %v", res[0].Err)
	}
	// The mailbox holds 1 + 3 + 1 = 5 of its 8; the next 3 fit, then the
	// mailbox is full for every token.
	for i, res := range deposit(other, 5) {
		switch {
		case i < 3 && res.Err != nil:
			t.Errorf("deposit %d within the mailbox's quota: %v", i, res.Err)
		case i >= 3 && !errors.Is(res.Err, protocol.ErrMailboxQuota):
			t.Errorf("deposit %d over the mailbox's quota: %v, want mailbox_quota", i, res.Err)
		}
	}
	// A fetch signed by another key than the owner's.
	if code := fetchWithWrongKey(t, ctx, rid, raddr, m.ID); code != protocol.CodeBadSignature {
		t.Errorf("fetch with a wrong signature: %s, want bad_signature", code)
	}
}

// replaceKey sets key = value on the line that names key.
func replaceKey(conf, key, value string) string {
	lines := strings.Split(conf, "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), key+" ") || strings.HasPrefix(strings.TrimSpace(l), key+"=") {
			lines[i] = key + " = " + value
		}
	}
	return strings.Join(lines, "\n")
}

// fetchWithWrongKey asks the relay for mailbox id's envelopes over a raw
// stream, with the stream's challenge signed by a fresh key, and returns
// the relay's code.
func fetchWithWrongKey(t *testing.T, ctx context.Context, relay peer.ID, addr ma.Multiaddr, id protocol.MailboxID) protocol.Code {
	t.Helper()
	h, err := libp2p.New(libp2p.NoListenAddrs)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.Connect(ctx, peer.AddrInfo{ID: relay, Addrs: []ma.Multiaddr{addr}}); err != nil {
		t.Fatal(err)
	}
	s, err := h.NewStream(ctx, relay, libp2pproto.ID(protocol.RelayProtocol))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	s.SetDeadline(time.Now().Add(20 * time.Second))
	fr := protocol.NewFrameReader(s, protocol.MaxRelayFrame)
	var hello protocol.RelayResponse
	if err := fr.Read(&hello); err != nil || hello.Op != protocol.RelayHello {
		t.Fatalf("hello: %v %v", hello.Op, err)
	}
	_, wrong, _ := ed25519.GenerateKey(rand.Reader)
	req := &protocol.RelayRequest{ID: 1, Op: protocol.RelayFetch, Mailbox: id, Challenge: hello.Challenge}
	if err := req.SignOwner([]byte(relay), wrong); err != nil {
		t.Fatal(err)
	}
	if err := protocol.WriteFrame(s, req); err != nil {
		t.Fatal(err)
	}
	for {
		var resp protocol.RelayResponse
		if err := fr.Read(&resp); err != nil {
			t.Fatalf("fetch answer: %v", err)
		}
		if resp.Op == protocol.RelayPush {
			t.Fatal("the relay pushed an envelope to a wrong signature")
		}
		return resp.Code
	}
}
