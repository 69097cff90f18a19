package relay_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/crypto/seal"
	"github.com/sealpost/sealpost/node/internal/clock/clocktest"
	"github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store/badgerstore"
)

// newFakeClock returns a relay.Clock that moves only when told.
func newFakeClock() *clocktest.Fake {
	return clocktest.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}

// trelay is a relay under test: a libp2p host on 127.0.0.1, a badger
// store in a temporary directory (unencrypted, as relays run) and a fake
// clock.
type trelay struct {
	t     testing.TB
	h     host.Host
	st    *badgerstore.Store
	dir   string
	srv   *relay.Server
	clock *clocktest.Fake
	res   relay.Resources
	reg   *prometheus.Registry
}

func testResources() relay.Resources {
	res := relay.DefaultResources()
	res.TokenBurst = 1000
	res.TokenRate = 1000
	res.MailboxesPerConn = 100
	return res
}

func newRelay(t testing.TB, res relay.Resources) *trelay {
	t.Helper()
	return newRelayAt(t, res, filepath.Join(t.TempDir(), "store"), badgerstore.Options{GCInterval: -1})
}

// newRelayAt is newRelay with its store in dir, opened with opts.
func newRelayAt(t testing.TB, res relay.Resources, dir string, opts badgerstore.Options) *trelay {
	t.Helper()
	r := &trelay{t: t, dir: dir, clock: newFakeClock(), res: res}
	st, err := badgerstore.Create(context.Background(), r.dir, badgerstore.ModeUnencrypted, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.st = st
	r.h, err = libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(r.close)
	return r
}

func (r *trelay) start() {
	r.t.Helper()
	r.reg = prometheus.NewRegistry()
	srv, err := relay.New(relay.Config{Host: r.h, Store: r.st, Resources: r.res, Clock: r.clock, Registerer: r.reg})
	if err != nil {
		r.t.Fatal(err)
	}
	r.srv = srv
}

func (r *trelay) close() {
	if r.srv != nil {
		if err := r.srv.Close(); err != nil {
			r.t.Errorf("relay Close: %v", err)
		}
		r.srv = nil
	}
	if r.h != nil {
		r.h.Close()
		r.h = nil
	}
	if r.st != nil {
		r.st.Close()
		r.st = nil
	}
}

func (r *trelay) info() peer.AddrInfo { return peer.AddrInfo{ID: r.h.ID(), Addrs: r.h.Addrs()} }

// client is one client host with one relay stream.
type client struct {
	t     testing.TB
	h     host.Host
	relay []byte
	str   network.Stream
	fr    *protocol.FrameReader
	ch    protocol.Challenge
	next  uint64
	// pushed collects the pushes read while waiting for a response.
	pushed []*protocol.RelayResponse
}

// dial makes a new client host (a new key each time) and opens a stream.
func (r *trelay) dial(t testing.TB) *client {
	t.Helper()
	return dialAddr(t, r.info())
}

// dialAddr connects a new client host, made with opts besides the
// defaults, to the relay at info.
func dialAddr(t testing.TB, info peer.AddrInfo, opts ...libp2p.Option) *client {
	t.Helper()
	h, err := libp2p.New(append([]libp2p.Option{libp2p.NoListenAddrs, libp2p.DisableRelay()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	c := &client{t: t, h: h, relay: []byte(info.ID)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	c.open()
	return c
}

// open opens a new stream on the client's connection and reads the hello.
func (c *client) open() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	str, err := c.h.NewStream(ctx, peer.ID(c.relay), libp2pproto.ID(protocol.RelayProtocol))
	if err != nil {
		c.t.Fatal(err)
	}
	str.SetDeadline(time.Now().Add(30 * time.Second))
	c.str, c.fr = str, protocol.NewFrameReader(str, protocol.MaxRelayFrame)
	hello := c.read()
	if hello.Op != protocol.RelayHello || hello.Challenge.IsZero() {
		c.t.Fatalf("first frame: %+v", hello)
	}
	c.ch = hello.Challenge
}

// read reads one frame.
func (c *client) read() *protocol.RelayResponse {
	c.t.Helper()
	r, err := c.tryRead()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return r
}

func (c *client) tryRead() (*protocol.RelayResponse, error) {
	r := new(protocol.RelayResponse)
	if err := c.fr.Read(r); err != nil {
		return nil, err
	}
	return r, nil
}

// send writes req with the next ID and returns the ID.
func (c *client) send(req *protocol.RelayRequest) uint64 {
	c.t.Helper()
	c.next++
	req.ID = c.next
	if err := protocol.WriteFrame(c.str, req); err != nil {
		c.t.Fatalf("write %s: %v", req.Op, err)
	}
	return req.ID
}

// wait reads until the response to id, keeping pushes.
func (c *client) wait(id uint64) *protocol.RelayResponse {
	c.t.Helper()
	for {
		r := c.read()
		if r.Op == protocol.RelayPush {
			c.pushed = append(c.pushed, r)
			continue
		}
		if r.ID == id {
			if !r.Challenge.IsZero() {
				c.ch = r.Challenge
			}
			return r
		}
		c.t.Fatalf("waiting for %d, got %+v", id, r)
	}
}

// call sends req (signed with key for an owner op) and waits for its
// response.
func (c *client) call(req *protocol.RelayRequest, key ed25519.PrivateKey) *protocol.RelayResponse {
	c.t.Helper()
	if req.Op.Owner() {
		req.Challenge = c.ch
		if err := req.SignOwner(c.relay, key); err != nil {
			c.t.Fatal(err)
		}
	}
	return c.wait(c.send(req))
}

// refresh asks for a fresh challenge (the current one is too old).
func (c *client) refresh() {
	c.t.Helper()
	if resp := c.call(&protocol.RelayRequest{Op: protocol.RelayChallenge}, nil); resp.Code != protocol.CodeOK || resp.Challenge.IsZero() {
		c.t.Fatalf("challenge: %+v", resp)
	}
}

// mailbox is a mailbox made by a client: its owner key and ID.
type mailbox struct {
	id  protocol.MailboxID
	key ed25519.PrivateKey
}

func newOwnerKey(t testing.TB) (ed25519.PrivateKey, protocol.OwnerKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv, protocol.OwnerKey(pub)
}

// create makes a mailbox.
func (c *client) create() mailbox {
	c.t.Helper()
	priv, pub := newOwnerKey(c.t)
	resp := c.call(&protocol.RelayRequest{Op: protocol.RelayCreate, OwnerKey: pub, SealingKey: protocol.SealingKey{1}}, priv)
	if resp.Code != protocol.CodeOK {
		c.t.Fatalf("create: %s", resp.Code)
	}
	return mailbox{id: resp.Mailbox, key: priv}
}

// token registers a new random token for m with a quota (0: the relay's).
func (c *client) token(m mailbox, count, bytes uint64) []byte {
	c.t.Helper()
	tok := make([]byte, 16)
	rand.Read(tok)
	resp := c.call(&protocol.RelayRequest{Op: protocol.RelayRegisterToken, Mailbox: m.id, TokenHash: protocol.HashToken(tok), Count: count, Bytes: bytes}, m.key)
	if resp.Code != protocol.CodeOK {
		c.t.Fatalf("register token: %s", resp.Code)
	}
	return tok
}

// envelope is a well-formed envelope header for mb in n bytes (a bucket),
// marked with i.
func envelope(mb protocol.MailboxID, n int, i int) []byte {
	env := make([]byte, n)
	rand.Read(env)
	env[0] = seal.Version
	copy(env[1:], mb[:])
	env[40], env[41], env[42] = byte(i>>16), byte(i>>8), byte(i)
	return env
}

// deposit deposits one envelope and returns the response.
func (c *client) deposit(mb protocol.MailboxID, tok, env []byte) *protocol.RelayResponse {
	c.t.Helper()
	return c.call(&protocol.RelayRequest{Op: protocol.RelayDeposit, Mailbox: mb, Token: tok, Envelope: env}, nil)
}

// checkReceipt verifies a deposit's custody receipt.
func (c *client) checkReceipt(resp *protocol.RelayResponse, mb protocol.MailboxID, env []byte) {
	c.t.Helper()
	if resp.Code != protocol.CodeOK {
		c.t.Fatalf("deposit: %s", resp.Code)
	}
	r := protocol.Receipt{Relay: c.relay, Mailbox: mb, Envelope: protocol.EnvelopeHash(env), StoredUntil: resp.StoredUntil, Signature: resp.Signature}
	if err := r.Verify(); err != nil {
		c.t.Fatalf("receipt: %v", err)
	}
}

// readUntilReset reads frames until the stream ends and returns them and
// the final error.
func readUntilReset(c *client) ([]*protocol.RelayResponse, error) {
	var out []*protocol.RelayResponse
	for {
		r, err := c.tryRead()
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
}
