package relay_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/protocol"
)

func TestMain(m *testing.M) {
	if crashChild() || measureChild() {
		return
	}
	nodetest.VerifyTestMain(m)
}

// TestOperations runs every operation once, in the order a mailbox lives.
func TestOperations(t *testing.T) {
	r := newRelay(t, testResources())
	owner := r.dial(t)
	m := owner.create()
	tok := owner.token(m, 0, 0)

	// Register answers the quota granted: the relay's, or less if asked.
	resp := owner.call(&protocol.RelayRequest{Op: protocol.RelayRegisterToken, Mailbox: m.id, TokenHash: protocol.HashToken(tok), Count: 5, Bytes: 1 << 40}, m.key)
	if resp.Code != protocol.CodeOK || resp.Count != 5 || resp.Bytes != r.res.TokenMaxBytes {
		t.Fatalf("register with a quota: %+v", resp)
	}

	// A sender deposits (pipelined) and gets receipts.
	sender := r.dial(t)
	var envs [][]byte
	var ids []uint64
	for i := range 3 {
		env := envelope(m.id, 512, i)
		envs = append(envs, env)
		ids = append(ids, sender.send(&protocol.RelayRequest{Op: protocol.RelayDeposit, Mailbox: m.id, Token: tok, Envelope: env}))
	}
	for i, id := range ids {
		resp := sender.wait(id)
		sender.checkReceipt(resp, m.id, envs[i])
		want := r.clock.Now().Add(r.res.TTL).UnixMilli()
		if resp.StoredUntil != want {
			t.Errorf("stored until %d, want %d", resp.StoredUntil, want)
		}
	}

	// Fetch: the envelopes come as pushes, then the response.
	resp = owner.call(&protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.id, Limit: 2}, m.key)
	if resp.Code != protocol.CodeOK || resp.Seq != 2 || !resp.More || resp.Count != 3 || resp.Bytes != 3*512 {
		t.Fatalf("fetch: %+v", resp)
	}
	if len(owner.pushed) != 2 || owner.pushed[0].Seq != 1 || !bytes.Equal(owner.pushed[1].Envelope, envs[1]) {
		t.Fatalf("fetch pushed %d", len(owner.pushed))
	}
	owner.pushed = nil
	resp = owner.call(&protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.id, After: 2}, m.key)
	if resp.Code != protocol.CodeOK || resp.Seq != 3 || resp.More || len(owner.pushed) != 1 {
		t.Fatalf("fetch after 2: %+v, %d pushed", resp, len(owner.pushed))
	}
	owner.pushed = nil

	// Ack deletes.
	resp = owner.call(&protocol.RelayRequest{Op: protocol.RelayAck, Mailbox: m.id, Seqs: []uint64{1, 2, 99}}, m.key)
	if resp.Code != protocol.CodeOK || resp.Count != 1 || resp.Bytes != 512 {
		t.Fatalf("ack: %+v", resp)
	}

	// Cards and prekeys.
	card := bytes.Repeat([]byte{7}, 3000)
	resp = owner.call(&protocol.RelayRequest{Op: protocol.RelayPutCard, Mailbox: m.id, TokenHash: protocol.HashToken(tok), Blob: card}, m.key)
	if resp.Code != protocol.CodeOK {
		t.Fatalf("put card: %s", resp.Code)
	}
	resp = sender.call(&protocol.RelayRequest{Op: protocol.RelayGetCard, Mailbox: m.id, Token: tok}, nil)
	if resp.Code != protocol.CodeOK || !bytes.Equal(resp.Blob, card) {
		t.Fatalf("get card: %s", resp.Code)
	}
	expires := r.clock.Now().Add(time.Hour).UnixMilli()
	resp = owner.call(&protocol.RelayRequest{Op: protocol.RelayPutPrekeys, Mailbox: m.id, Blobs: [][]byte{{1}, {2}}, ExpiresAt: expires}, m.key)
	if resp.Code != protocol.CodeOK || resp.Prekeys != 2 || resp.StoredUntil != expires {
		t.Fatalf("put prekeys: %+v", resp)
	}
	resp = owner.call(&protocol.RelayRequest{Op: protocol.RelayPutPrekeys, Mailbox: m.id, Blobs: [][]byte{{3}}, ExpiresAt: r.clock.Now().Add(365 * 24 * time.Hour).UnixMilli()}, m.key)
	if resp.Code != protocol.CodeOK || resp.Prekeys != 3 || resp.StoredUntil != r.clock.Now().Add(r.res.MaxPrekeyTTL).UnixMilli() {
		t.Fatalf("put prekeys beyond the relay's TTL: %+v", resp)
	}
	resp = sender.call(&protocol.RelayRequest{Op: protocol.RelayTakePrekey, Mailbox: m.id, Token: tok}, nil)
	if resp.Code != protocol.CodeOK || !bytes.Equal(resp.Blob, []byte{1}) {
		t.Fatalf("take prekey: %+v", resp)
	}

	// Subscribe: the stored envelope, then a new one as it is deposited,
	// each with the prekey count.
	sub := r.dial(t)
	subID := sub.send(signed(sub, &protocol.RelayRequest{Op: protocol.RelaySubscribe, Mailbox: m.id}, m))
	resp = sub.read()
	if resp.ID != subID || resp.Code != protocol.CodeOK || resp.Count != 1 || resp.Prekeys != 2 {
		t.Fatalf("subscribe: %+v", resp)
	}
	sub.ch = resp.Challenge
	push := sub.read()
	if push.Op != protocol.RelayPush || push.ID != subID || push.Seq != 3 || !bytes.Equal(push.Envelope, envs[2]) || push.Prekeys != 2 {
		t.Fatalf("backlog push: %+v", push)
	}
	env := envelope(m.id, 2048, 9)
	sender.checkReceipt(sender.deposit(m.id, tok, env), m.id, env)
	push = sub.read()
	if push.Op != protocol.RelayPush || push.Seq != 4 || !bytes.Equal(push.Envelope, env) {
		t.Fatalf("live push: %+v", push)
	}

	// Revoke: the token no longer deposits, and its card is gone.
	resp = owner.call(&protocol.RelayRequest{Op: protocol.RelayRevokeToken, Mailbox: m.id, TokenHash: protocol.HashToken(tok)}, m.key)
	if resp.Code != protocol.CodeOK {
		t.Fatalf("revoke: %s", resp.Code)
	}
	if resp := sender.deposit(m.id, tok, envelope(m.id, 512, 10)); resp.Code != protocol.CodeTokenRefused {
		t.Fatalf("deposit with a revoked token: %s", resp.Code)
	}
	if resp := sender.call(&protocol.RelayRequest{Op: protocol.RelayGetCard, Mailbox: m.id, Token: tok}, nil); resp.Code != protocol.CodeTokenRefused {
		t.Fatalf("card with a revoked token: %s", resp.Code)
	}

	st := r.srv.Stats()
	if st.Mailboxes != 1 || st.Envelopes != 2 || st.EnvelopeBytes != 512+2048 || st.Tokens != 0 || st.Prekeys != 2 ||
		st.Deposits != 4 || st.DepositsPerMinute != 4 || st.Fetches != 5 || st.Rejections["token_refused"] != 2 || st.Subscriptions != 1 {
		t.Errorf("stats: %+v", st)
	}

	// Delete: everything goes, the subscription ends, deposits find no
	// mailbox.
	resp = owner.call(&protocol.RelayRequest{Op: protocol.RelayDeleteMailbox, Mailbox: m.id}, m.key)
	if resp.Code != protocol.CodeOK {
		t.Fatalf("delete: %s", resp.Code)
	}
	end := sub.read()
	if end.ID != subID || end.Op != protocol.RelaySubscribe || end.Code != protocol.CodeUnknownMailbox {
		t.Fatalf("subscription end: %+v", end)
	}
	if resp := sender.deposit(m.id, tok, envelope(m.id, 512, 11)); resp.Code != protocol.CodeUnknownMailbox {
		t.Fatalf("deposit into a deleted mailbox: %s", resp.Code)
	}
	nodetest.WaitFor(t, 10*time.Second, "empty totals", func() bool {
		s := r.srv.Stats()
		return s.Mailboxes == 0 && s.Envelopes == 0 && s.BlobBytes == 0
	})
	// The metrics have no per-mailbox label.
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "op" && l.GetName() != "reason" {
					t.Errorf("metric %s has label %s", mf.GetName(), l.GetName())
				}
			}
		}
	}
}

// signed sets req's challenge to c's current one and signs it with m's key.
func signed(c *client, req *protocol.RelayRequest, m mailbox) *protocol.RelayRequest {
	req.Challenge = c.ch
	if err := req.SignOwner(c.relay, m.key); err != nil {
		c.t.Fatal(err)
	}
	return req
}

// TestOwnerAuthentication: a wrong key, a replayed challenge, an expired
// challenge and a signature for another relay are refused; nothing is
// changed by them.
// TestDeposit: Server.Deposit stores as a deposit on a stream does, with
// the same receipt and the same refusals, and the owner fetches what it
// stored.
func TestDeposit(t *testing.T) {
	r := newRelay(t, testResources())
	owner := r.dial(t)
	m := owner.create()
	tok := owner.token(m, 0, 0)
	ctx := context.Background()

	env := envelope(m.id, 512, 1)
	resp, err := r.srv.Deposit(ctx, m.id, tok, env)
	if err != nil {
		t.Fatal(err)
	}
	owner.checkReceipt(resp, m.id, env)
	if want := r.clock.Now().Add(r.res.TTL).UnixMilli(); resp.StoredUntil != want {
		t.Errorf("stored until %d, want %d", resp.StoredUntil, want)
	}
	fetched := owner.call(&protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.id}, m.key)
	if fetched.Code != protocol.CodeOK || len(owner.pushed) != 1 || !bytes.Equal(owner.pushed[0].Envelope, env) {
		t.Fatalf("fetch: %+v, %d pushed", fetched, len(owner.pushed))
	}

	for name, c := range map[string]struct {
		mb       protocol.MailboxID
		tok, env []byte
		want     protocol.Code
	}{
		"unknown mailbox": {protocol.MailboxID{9}, tok, envelope(protocol.MailboxID{9}, 512, 2), protocol.CodeUnknownMailbox},
		"unknown token":   {m.id, []byte("not a registered token"), envelope(m.id, 512, 3), protocol.CodeTokenRefused},
		"too large":       {m.id, tok, envelope(m.id, r.res.MaxEnvelope+1, 4), protocol.CodeEnvelopeTooLarge},
	} {
		resp, err := r.srv.Deposit(ctx, c.mb, c.tok, c.env)
		if err != nil || resp.Code != c.want || resp.Signature != nil {
			t.Errorf("%s: %+v, %v; want code %s", name, resp, err, c.want)
		}
	}

	r.srv.Close()
	if _, err := r.srv.Deposit(ctx, m.id, tok, envelope(m.id, 512, 5)); !errors.Is(err, relay.ErrClosed) {
		t.Errorf("Deposit after Close: %v, want ErrClosed", err)
	}
}

func TestOwnerAuthentication(t *testing.T) {
	r := newRelay(t, testResources())
	c := r.dial(t)
	m := c.create()
	other := c.create()

	// Another mailbox's key.
	resp := c.call(&protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.id}, other.key)
	if resp.Code != protocol.CodeBadSignature {
		t.Errorf("wrong key: %s", resp.Code)
	}
	// A replayed request: the same bytes again.
	req := signed(c, &protocol.RelayRequest{Op: protocol.RelayDeleteMailbox, Mailbox: other.id}, other)
	req.ID = 100
	b, _ := req.Marshal()
	for i := range 2 {
		if _, err := c.str.Write(append(binary.AppendUvarint(nil, uint64(len(b))), b...)); err != nil {
			t.Fatal(err)
		}
		resp := c.wait(100)
		want := protocol.CodeOK
		if i == 1 {
			want = protocol.CodeExpiredChallenge
		}
		if resp.Code != want {
			t.Errorf("attempt %d of one signed request: %s, want %s", i, resp.Code, want)
		}
	}
	// The same signed request on another stream (whose challenge differs).
	c2 := r.dial(t)
	req = signed(c, &protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.id}, m)
	if resp := c2.wait(c2.send(req)); resp.Code != protocol.CodeExpiredChallenge {
		t.Errorf("challenge of another stream: %s", resp.Code)
	}
	// An expired challenge.
	r.clock.Advance(r.res.ChallengeTTL + time.Second)
	if resp := c.call(&protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.id}, m.key); resp.Code != protocol.CodeExpiredChallenge {
		t.Errorf("expired challenge: %s", resp.Code)
	}
	// Each answer carried a fresh challenge: it works now.
	if resp := c.call(&protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.id}, m.key); resp.Code != protocol.CodeOK {
		t.Errorf("fresh challenge: %s", resp.Code)
	}
	// A signature for another relay.
	req = &protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.id, Challenge: c.ch}
	if err := req.SignOwner([]byte(c2.h.ID()), m.key); err != nil {
		t.Fatal(err)
	}
	if resp := c.wait(c.send(req)); resp.Code != protocol.CodeBadSignature {
		t.Errorf("signature for another relay: %s", resp.Code)
	}
	// A create signed by a key other than the one it registers.
	_, pub := newOwnerKey(t)
	if resp := c.call(&protocol.RelayRequest{Op: protocol.RelayCreate, OwnerKey: pub, SealingKey: protocol.SealingKey{1}}, m.key); resp.Code != protocol.CodeBadSignature {
		t.Errorf("create with another key's signature: %s", resp.Code)
	}
	// Unknown mailbox.
	if resp := c.call(&protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: protocol.MailboxID{9}}, m.key); resp.Code != protocol.CodeUnknownMailbox {
		t.Errorf("unknown mailbox: %s", resp.Code)
	}
	if got := r.srv.Stats().Mailboxes; got != 1 {
		t.Errorf("%d mailboxes, want 1", got)
	}
}
