package relay_test

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
)

// Each limit of Resources reached by a real client: the clear answer (a
// code, or a reset stream), and the relay serving another client all the
// while.

// served checks that another client, on its own connection, still creates
// a mailbox and deposits into it.
func served(t *testing.T, r *trelay) {
	t.Helper()
	c := r.dial(t)
	m := c.create()
	tok := c.token(m, 0, 0)
	env := envelope(m.id, 512, 1)
	c.checkReceipt(c.deposit(m.id, tok, env), m.id, env)
}

// isReset reports whether err ends a stream the relay reset (as opposed
// to one it closed, or the test's own deadline).
func isReset(err error) bool {
	return err != nil && errors.Is(err, network.ErrReset) && !errors.Is(err, os.ErrDeadlineExceeded)
}

// TestMaxTokens: a mailbox holds at most MaxTokens deposit tokens; a token
// registered again is no new one, and a revoked one makes room.
func TestMaxTokens(t *testing.T) {
	res := testResources()
	res.MaxTokens = 3
	r := newRelay(t, res)
	c := r.dial(t)
	m := c.create()
	var toks [][]byte
	for range 3 {
		toks = append(toks, c.token(m, 0, 0))
	}
	register := func(tok []byte) protocol.Code {
		t.Helper()
		return c.call(&protocol.RelayRequest{Op: protocol.RelayRegisterToken, Mailbox: m.id, TokenHash: protocol.HashToken(tok)}, m.key).Code
	}
	if code := register([]byte("a fourth token, sixteen bytes")); code != protocol.CodeMailboxQuota {
		t.Errorf("fourth token: %s", code)
	}
	if code := register(toks[1]); code != protocol.CodeOK {
		t.Errorf("a registered token again: %s", code)
	}
	if resp := c.call(&protocol.RelayRequest{Op: protocol.RelayRevokeToken, Mailbox: m.id, TokenHash: protocol.HashToken(toks[0])}, m.key); resp.Code != protocol.CodeOK {
		t.Fatalf("revoke: %s", resp.Code)
	}
	if code := register([]byte("a fourth token, sixteen bytes")); code != protocol.CodeOK {
		t.Errorf("after a revocation: %s", code)
	}
	if got := r.srv.Stats().Rejections["mailbox_quota"]; got != 1 {
		t.Errorf("%d mailbox_quota rejections counted, want 1", got)
	}
	// The tokens left work, and another mailbox has its own limit.
	env := envelope(m.id, 512, 1)
	c.checkReceipt(c.deposit(m.id, toks[2], env), m.id, env)
	served(t, r)
}

// TestMaxPrekeys: a mailbox holds at most MaxPrekeys one-time prekey
// blobs; a batch that would pass it is refused whole, and a prekey taken
// makes room.
func TestMaxPrekeys(t *testing.T) {
	res := testResources()
	res.MaxPrekeys = 5
	r := newRelay(t, res)
	c := r.dial(t)
	m := c.create()
	put := func(n int) *protocol.RelayResponse {
		t.Helper()
		blobs := make([][]byte, n)
		for i := range blobs {
			blobs[i] = []byte{byte(i), 1, 2, 3}
		}
		return c.call(&protocol.RelayRequest{Op: protocol.RelayPutPrekeys, Mailbox: m.id, Blobs: blobs, ExpiresAt: r.clock.Now().Add(time.Hour).UnixMilli()}, m.key)
	}
	if resp := put(3); resp.Code != protocol.CodeOK || resp.Prekeys != 3 {
		t.Fatalf("three prekeys: %s, %d held", resp.Code, resp.Prekeys)
	}
	if resp := put(3); resp.Code != protocol.CodeMailboxQuota {
		t.Errorf("three more: %s", resp.Code)
	}
	if got := r.srv.Stats().Prekeys; got != 3 {
		t.Errorf("%d prekeys stored after the refused batch, want 3", got)
	}
	if resp := put(2); resp.Code != protocol.CodeOK || resp.Prekeys != 5 {
		t.Fatalf("two more: %s, %d held", resp.Code, resp.Prekeys)
	}
	if resp := put(1); resp.Code != protocol.CodeMailboxQuota {
		t.Errorf("a sixth: %s", resp.Code)
	}
	tok := c.token(m, 0, 0)
	if resp := c.call(&protocol.RelayRequest{Op: protocol.RelayTakePrekey, Mailbox: m.id, Token: tok}, nil); resp.Code != protocol.CodeOK {
		t.Fatalf("take: %s", resp.Code)
	}
	if resp := put(1); resp.Code != protocol.CodeOK {
		t.Errorf("after a take: %s", resp.Code)
	}
	served(t, r)
}

// TestMailboxMaxBytes: a mailbox holds at most MailboxMaxBytes of
// envelopes whatever its tokens allow; an acknowledgement makes room.
func TestMailboxMaxBytes(t *testing.T) {
	res := testResources()
	res.MaxEnvelope = 2048
	res.MailboxMaxBytes = 8192
	r := newRelay(t, res)
	owner := r.dial(t)
	m := owner.create()
	a, b := owner.token(m, 0, 0), owner.token(m, 0, 0)
	s := r.dial(t)
	for i := range 4 {
		tok := a
		if i%2 == 1 {
			tok = b
		}
		env := envelope(m.id, 2048, i)
		s.checkReceipt(s.deposit(m.id, tok, env), m.id, env)
	}
	for _, tok := range [][]byte{a, b} {
		if resp := s.deposit(m.id, tok, envelope(m.id, 512, 9)); resp.Code != protocol.CodeMailboxQuota {
			t.Errorf("over the mailbox's bytes: %s", resp.Code)
		}
	}
	if st := r.srv.Stats(); st.Envelopes != 4 || st.EnvelopeBytes != 8192 {
		t.Errorf("stored %d envelopes, %d bytes; want 4, 8192", st.Envelopes, st.EnvelopeBytes)
	}
	if resp := owner.call(&protocol.RelayRequest{Op: protocol.RelayAck, Mailbox: m.id, Seqs: []uint64{2}}, m.key); resp.Code != protocol.CodeOK || resp.Bytes != 6144 {
		t.Fatalf("ack: %s, %d bytes left", resp.Code, resp.Bytes)
	}
	env := envelope(m.id, 2048, 10)
	s.checkReceipt(s.deposit(m.id, a, env), m.id, env)
	served(t, r)
}

// TestStreamIdle: a stream without a subscription that sends nothing, or
// stops in the middle of a frame, is reset after StreamIdle; a subscribed
// stream stays however quiet it is.
func TestStreamIdle(t *testing.T) {
	res := testResources()
	res.StreamIdle = 300 * time.Millisecond
	r := newRelay(t, res)
	sub := r.dial(t)
	m := sub.create()
	if resp := sub.wait(sub.send(signed(sub, &protocol.RelayRequest{Op: protocol.RelaySubscribe, Mailbox: m.id}, m))); resp.Code != protocol.CodeOK {
		t.Fatalf("subscribe: %s", resp.Code)
	}

	silent := r.dial(t)
	frames, err := readUntilReset(silent)
	if len(frames) != 0 || !isReset(err) {
		t.Errorf("silent stream: %d frames, %v; want a reset", len(frames), err)
	}
	// Half a frame: a length that announces 200 bytes, then 10 of them.
	stalled := r.dial(t)
	if _, err := stalled.str.Write(append([]byte{200, 1}, make([]byte, 10)...)); err != nil {
		t.Fatal(err)
	}
	frames, err = readUntilReset(stalled)
	if len(frames) != 0 || !isReset(err) {
		t.Errorf("stalled stream: %d frames, %v; want a reset", len(frames), err)
	}
	nodetest.WaitFor(t, 10*time.Second, "the idle streams let go", func() bool { return r.srv.Stats().Streams == 1 })

	// The subscription, quiet for longer than StreamIdle, still gets a
	// deposit pushed.
	time.Sleep(3 * res.StreamIdle)
	d := r.dial(t)
	tok := sub.token(m, 0, 0)
	env := envelope(m.id, 512, 1)
	d.checkReceipt(d.deposit(m.id, tok, env), m.id, env)
	if push := sub.read(); push.Op != protocol.RelayPush || push.Seq != 1 {
		t.Fatalf("push to the quiet subscription: %+v", push)
	}
}

// TestWriteTimeout: a client that asks for much and does not read is
// reset when a write to it waits longer than WriteTimeout, and the relay
// lets go of its stream; others are served meanwhile.
func TestWriteTimeout(t *testing.T) {
	res := testResources()
	res.WriteTimeout = time.Second
	r := newRelay(t, res)
	owner := r.dial(t)
	m := owner.create()
	tok := owner.token(m, 0, 0)
	// 2 MiB, far more than a stream's flow-control window (256 KiB).
	const n = 32
	for i := range n {
		if resp := owner.deposit(m.id, tok, envelope(m.id, 64<<10, i)); resp.Code != protocol.CodeOK {
			t.Fatalf("deposit %d: %s", i, resp.Code)
		}
	}
	slow := r.dial(t)
	slow.send(signed(slow, &protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.id}, m))
	served(t, r)
	// The relay gives up the stream of the reader that does not read.
	nodetest.WaitFor(t, 20*time.Second, "the slow reader's stream reset", func() bool { return r.srv.Stats().Streams == 2 })
	frames, err := readUntilReset(slow)
	if !isReset(err) {
		t.Errorf("slow reader: %v, want a reset", err)
	}
	if len(frames) >= n {
		t.Errorf("slow reader got %d pushes of %d: nothing was held back", len(frames), n)
	}
	served(t, r)
	// The owner, reading, fetches everything.
	resp := owner.call(&protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.id, Limit: n}, m.key)
	if resp.Code != protocol.CodeOK || len(owner.pushed) != n {
		t.Errorf("owner fetch: %s, %d pushed", resp.Code, len(owner.pushed))
	}
}

// TestMaxStreams: past MaxStreams open relay streams, a new one is reset
// at once, whoever opens it; when one ends, a new one opens.
func TestMaxStreams(t *testing.T) {
	res := testResources()
	res.MaxStreams = 3
	r := newRelay(t, res)
	a, b := r.dial(t), r.dial(t)
	m := a.create()
	tok := a.token(m, 0, 0)
	a.open() // a's second stream: three in all
	if hello, err := openRaw(b); err == nil {
		t.Fatalf("a fourth stream got %+v", hello)
	}
	if got := r.srv.Stats().Rejections["too_many_streams"]; got != 1 {
		t.Errorf("%d too_many_streams rejections counted, want 1", got)
	}
	// The open streams are served.
	env := envelope(m.id, 512, 1)
	b.checkReceipt(b.deposit(m.id, tok, env), m.id, env)
	a.str.Close()
	nodetest.WaitFor(t, 10*time.Second, "a stream let go", func() bool { return r.srv.Stats().Streams == 2 })
	if _, err := openRaw(b); err != nil {
		t.Fatalf("after a stream ended: %v", err)
	}
}

// TestMaxStreamsPerPeer: a peer past MaxStreamsPerPeer open streams has a
// new one reset at once; its open streams and other peers are served.
func TestMaxStreamsPerPeer(t *testing.T) {
	res := testResources()
	res.MaxStreamsPerPeer = 2
	r := newRelay(t, res)
	c := r.dial(t)
	m := c.create()
	tok := c.token(m, 0, 0)
	first := c.str
	c.open()
	if hello, err := openRaw(c); err == nil {
		t.Fatalf("a third stream of one peer got %+v", hello)
	}
	if got := r.srv.Stats().Rejections["too_many_streams"]; got != 1 {
		t.Errorf("%d too_many_streams rejections counted, want 1", got)
	}
	env := envelope(m.id, 512, 1)
	c.checkReceipt(c.deposit(m.id, tok, env), m.id, env)
	served(t, r) // its stream stays open
	first.Close()
	nodetest.WaitFor(t, 10*time.Second, "the first stream let go", func() bool { return r.srv.Stats().Streams == 2 })
	if _, err := openRaw(c); err != nil {
		t.Fatalf("after a stream ended: %v", err)
	}
}

// TestMaxPending: a client that writes deposits and does not read its
// answers is held back: the relay stops reading its stream once
// MaxPending answers wait, so the client's writes stop too (flow control)
// long before all of them are in; when it reads, every deposit it wrote
// is answered, in order. Others are served while it is held.
func TestMaxPending(t *testing.T) {
	res := testResources()
	res.MaxPending = 4
	res.DepositRate, res.DepositBurst = 1e6, 1e6
	res.MailboxMaxCount, res.TokenMaxCount = 1e6, 1e6
	res.MailboxMaxBytes, res.TokenMaxBytes = 1<<40, 1<<40
	r := newRelay(t, res)
	owner := r.dial(t)
	m := owner.create()
	tok := owner.token(m, 0, 0)
	c := r.dial(t)
	// Up to 10,000 deposits of 512 bytes: their answers (about 100 bytes
	// each) fill the client's stream window (256 KiB) after about 2,500,
	// the relay's queue 4 later, and the relay's receive window about 500
	// later (3,419 written here).
	const n = 10000
	written := 0
	for i := range n {
		c.str.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := protocol.WriteFrame(c.str, &protocol.RelayRequest{ID: uint64(i + 1), Op: protocol.RelayDeposit, Mailbox: m.id, Token: tok, Envelope: envelope(m.id, 512, i)}); err != nil {
			if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
				t.Fatalf("write %d: %v", i, err)
			}
			break
		}
		written++
	}
	if written == n {
		t.Fatalf("all %d deposits written without reading an answer", n)
	}
	t.Logf("%d deposits written before the relay stopped reading", written)
	served(t, r)
	// Reading lets everything through; a frame cut by the deadline is
	// not one to answer, so the stream may be reset after the last
	// complete one.
	c.str.SetDeadline(time.Now().Add(30 * time.Second))
	for i := range written {
		resp, err := c.tryRead()
		if err != nil {
			t.Fatalf("answer %d of %d: %v", i+1, written, err)
		}
		if resp.ID != uint64(i+1) || resp.Code != protocol.CodeOK {
			t.Fatalf("answer %d: %d %s", i+1, resp.ID, resp.Code)
		}
	}
	if got := r.srv.Stats().Envelopes; got < uint64(written) {
		t.Errorf("%d envelopes stored, %d answered ok", got, written)
	}
}
