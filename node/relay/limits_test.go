package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// TestDepositRefusals: each limit answers with its own code, and a refused
// deposit stores nothing.
func TestDepositRefusals(t *testing.T) {
	res := testResources()
	res.MaxEnvelope = 8 << 10
	res.MailboxMaxCount = 6
	r := newRelay(t, res)
	owner := r.dial(t)
	m := owner.create()
	tok := owner.token(m, 0, 0)
	s := r.dial(t)

	unregistered := bytes.Repeat([]byte{1}, 16)
	if resp := s.deposit(m.id, unregistered, envelope(m.id, 512, 0)); resp.Code != protocol.CodeTokenRefused {
		t.Errorf("unregistered token: %s", resp.Code)
	}
	if resp := s.deposit(protocol.MailboxID{7}, tok, envelope(protocol.MailboxID{7}, 512, 0)); resp.Code != protocol.CodeUnknownMailbox {
		t.Errorf("unknown mailbox: %s", resp.Code)
	}
	if resp := s.deposit(m.id, tok, envelope(m.id, 32<<10, 0)); resp.Code != protocol.CodeEnvelopeTooLarge {
		t.Errorf("envelope over the relay's limit: %s", resp.Code)
	}
	// A token of another mailbox does not open this one.
	m2 := owner.create()
	tok2 := owner.token(m2, 0, 0)
	if resp := s.deposit(m.id, tok2, envelope(m.id, 512, 0)); resp.Code != protocol.CodeTokenRefused {
		t.Errorf("token of another mailbox: %s", resp.Code)
	}
	for i := range 6 {
		env := envelope(m.id, 512, i)
		s.checkReceipt(s.deposit(m.id, tok, env), m.id, env)
	}
	if resp := s.deposit(m.id, tok, envelope(m.id, 512, 6)); resp.Code != protocol.CodeMailboxQuota {
		t.Errorf("mailbox full: %s", resp.Code)
	}
	if got := r.srv.Stats().Envelopes; got != 6 {
		t.Errorf("%d envelopes stored, want 6", got)
	}
	// The owner acknowledges one: room for one more.
	if resp := owner.call(&protocol.RelayRequest{Op: protocol.RelayAck, Mailbox: m.id, Seqs: []uint64{1}}, m.key); resp.Code != protocol.CodeOK {
		t.Fatal(resp.Code)
	}
	if resp := s.deposit(m.id, tok, envelope(m.id, 512, 7)); resp.Code != protocol.CodeOK {
		t.Errorf("after an ack: %s", resp.Code)
	}
}

// TestTokenFlood: a flood on one token stops at that token's quota, from
// the first deposit past it in the stream's order (batches commit in
// order), while another token of the same mailbox still gets through.
func TestTokenFlood(t *testing.T) {
	r := newRelay(t, testResources())
	owner := r.dial(t)
	m := owner.create()
	flood := owner.token(m, 10, 0)
	friend := owner.token(m, 0, 4096)
	attacker, other := r.dial(t), r.dial(t)

	// 50 deposits pipelined on the flooding token.
	var ids []uint64
	for i := range 50 {
		ids = append(ids, attacker.send(&protocol.RelayRequest{Op: protocol.RelayDeposit, Mailbox: m.id, Token: flood, Envelope: envelope(m.id, 512, i)}))
	}
	ok, quota := 0, 0
	for i, id := range ids {
		switch code := attacker.wait(id).Code; {
		case code == protocol.CodeOK && i < 10:
			ok++
		case code == protocol.CodeTokenQuota && i >= 10:
			quota++
		default:
			t.Errorf("flood deposit %d: %s", i, code)
		}
	}
	if ok != 10 || quota != 40 {
		t.Errorf("flood: %d stored, %d refused for the token quota; want 10, 40", ok, quota)
	}
	// The friend's token has its own quota (4096 bytes: 8 envelopes).
	for i := range 8 {
		env := envelope(m.id, 512, 100+i)
		other.checkReceipt(other.deposit(m.id, friend, env), m.id, env)
	}
	if resp := other.deposit(m.id, friend, envelope(m.id, 512, 200)); resp.Code != protocol.CodeTokenQuota {
		t.Errorf("friend over its byte quota: %s", resp.Code)
	}
	if st := r.srv.Stats(); st.Envelopes != 18 || st.Rejections["token_quota"] != 41 {
		t.Errorf("stats: %+v", st)
	}
}

// TestStoreFull: the relay's total quota.
func TestStoreFull(t *testing.T) {
	res := testResources()
	res.StoreMaxBytes = 64 << 10
	r := newRelay(t, res)
	owner := r.dial(t)
	m := owner.create()
	tok := owner.token(m, 0, 0)
	for i := range 2 {
		if resp := owner.deposit(m.id, tok, envelope(m.id, 32<<10, i)); resp.Code != protocol.CodeOK {
			t.Fatalf("deposit %d: %s", i, resp.Code)
		}
	}
	if resp := owner.deposit(m.id, tok, envelope(m.id, 512, 3)); resp.Code != protocol.CodeStoreFull {
		t.Errorf("store full: %s", resp.Code)
	}
	resp := owner.call(&protocol.RelayRequest{Op: protocol.RelayPutCard, Mailbox: m.id, TokenHash: protocol.HashToken(tok), Blob: []byte{1}}, m.key)
	if resp.Code != protocol.CodeStoreFull {
		t.Errorf("card into a full store: %s", resp.Code)
	}
}

// TestConnectionLimits: the deposit rate and the mailboxes of one
// connection.
func TestConnectionLimits(t *testing.T) {
	res := testResources()
	res.DepositRate, res.DepositBurst = 0.001, 3
	res.MailboxesPerConn = 2
	r := newRelay(t, res)
	c := r.dial(t)
	m := c.create()
	c.create()
	priv, pub := newOwnerKey(t)
	if resp := c.call(&protocol.RelayRequest{Op: protocol.RelayCreate, OwnerKey: pub, SealingKey: protocol.SealingKey{1}}, priv); resp.Code != protocol.CodeTooManyMailboxes {
		t.Errorf("third mailbox: %s", resp.Code)
	}
	// Another stream on the same connection counts as the same connection.
	c.open()
	if resp := c.call(&protocol.RelayRequest{Op: protocol.RelayCreate, OwnerKey: pub, SealingKey: protocol.SealingKey{1}}, priv); resp.Code != protocol.CodeTooManyMailboxes {
		t.Errorf("third mailbox on a second stream: %s", resp.Code)
	}
	tok := c.token(m, 0, 0)
	for i := range 3 {
		if resp := c.deposit(m.id, tok, envelope(m.id, 512, i)); resp.Code != protocol.CodeOK {
			t.Fatalf("deposit %d in the burst: %s", i, resp.Code)
		}
	}
	if resp := c.deposit(m.id, tok, envelope(m.id, 512, 3)); resp.Code != protocol.CodeRateLimited {
		t.Errorf("over the rate: %s", resp.Code)
	}
	// The bucket refills on the relay's clock.
	r.clock.Advance(2000 * time.Second)
	if resp := c.deposit(m.id, tok, envelope(m.id, 512, 4)); resp.Code != protocol.CodeOK {
		t.Errorf("after the refill: %s", resp.Code)
	}
	// Another connection has its own bucket.
	d := r.dial(t)
	if resp := d.deposit(m.id, tok, envelope(m.id, 512, 5)); resp.Code != protocol.CodeOK {
		t.Errorf("another connection: %s", resp.Code)
	}
}

// TestTTL: envelopes past their TTL are not served, and the sweep (on the
// relay's clock) removes them.
func TestTTL(t *testing.T) {
	res := testResources()
	res.TTL = time.Hour
	res.SweepInterval = time.Second
	r := newRelay(t, res)
	// The sweep re-arms its timer after each run; keep the clock moving
	// (a second a poll) so that a timer armed after an Advance fires too.
	sweep := func(what string, cond func() bool) {
		t.Helper()
		nodetest.WaitFor(t, 10*time.Second, what, func() bool {
			r.clock.Advance(time.Second)
			return cond()
		})
	}
	c := r.dial(t)
	m := c.create()
	tok := c.token(m, 0, 0)
	for i := range 3 {
		c.deposit(m.id, tok, envelope(m.id, 512, i))
	}
	r.clock.Advance(30 * time.Minute)
	env := envelope(m.id, 512, 3)
	young := c.deposit(m.id, tok, env)
	if want := r.clock.Now().Add(time.Hour).UnixMilli(); young.StoredUntil != want {
		t.Errorf("stored until %d, want %d", young.StoredUntil, want)
	}
	r.clock.Advance(30 * time.Minute) // the first three expire now
	c.refresh()
	resp := c.call(&protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.id}, m.key)
	if resp.Code != protocol.CodeOK || len(c.pushed) != 1 || !bytes.Equal(c.pushed[0].Envelope, env) {
		t.Fatalf("fetch after expiry: %+v, %d pushed", resp, len(c.pushed))
	}
	c.pushed = nil
	sweep("the sweep", func() bool { return r.srv.Stats().Envelopes == 1 })
	r.clock.Advance(time.Hour)
	sweep("the second sweep", func() bool { return r.srv.Stats().Envelopes == 0 })
	c.refresh()
	// Prekey batches expire too.
	resp = c.call(&protocol.RelayRequest{Op: protocol.RelayPutPrekeys, Mailbox: m.id, Blobs: [][]byte{{1}}, ExpiresAt: r.clock.Now().Add(10 * time.Minute).UnixMilli()}, m.key)
	if resp.Code != protocol.CodeOK {
		t.Fatal(resp.Code)
	}
	r.clock.Advance(11 * time.Minute)
	sweep("prekey expiry", func() bool { return r.srv.Stats().Prekeys == 0 })
	c.refresh()
	if resp := c.call(&protocol.RelayRequest{Op: protocol.RelayTakePrekey, Mailbox: m.id, Token: tok}, nil); resp.Code != protocol.CodeNotFound {
		t.Errorf("take after expiry: %s", resp.Code)
	}
	resp = c.call(&protocol.RelayRequest{Op: protocol.RelayPutPrekeys, Mailbox: m.id, Blobs: [][]byte{{1}}, ExpiresAt: r.clock.Now().UnixMilli()}, m.key)
	if resp.Code != protocol.CodeExpired {
		t.Errorf("batch that expires at once: %s", resp.Code)
	}
	if st := r.srv.Stats(); st.Envelopes != 0 || st.EnvelopeBytes != 0 {
		t.Errorf("stats after expiry: %+v", st)
	}
}

// TestPrekeyOnce: many concurrent requesters, on many connections, fewer
// prekeys: each prekey goes to exactly one of them.
func TestPrekeyOnce(t *testing.T) {
	r := newRelay(t, testResources())
	owner := r.dial(t)
	m := owner.create()
	const prekeys, requesters = 10, 40
	var blobs [][]byte
	for i := range prekeys {
		blobs = append(blobs, []byte(fmt.Sprintf("prekey %d", i)))
	}
	resp := owner.call(&protocol.RelayRequest{Op: protocol.RelayPutPrekeys, Mailbox: m.id, Blobs: blobs, ExpiresAt: r.clock.Now().Add(time.Hour).UnixMilli()}, m.key)
	if resp.Code != protocol.CodeOK {
		t.Fatal(resp.Code)
	}
	tokens := make([][]byte, 4)
	for i := range tokens {
		tokens[i] = owner.token(m, 0, 0)
	}
	clients := make([]*client, requesters)
	for i := range clients {
		clients[i] = r.dial(t)
	}
	var mu sync.Mutex
	got := map[string]int{}
	notFound := 0
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			id := c.send(&protocol.RelayRequest{Op: protocol.RelayTakePrekey, Mailbox: m.id, Token: tokens[i%len(tokens)]})
			resp, err := c.tryRead()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("read: %v", err)
			case resp.ID != id:
				t.Errorf("response %d to %d", resp.ID, id)
			case resp.Code == protocol.CodeOK:
				got[string(resp.Blob)]++
			case resp.Code == protocol.CodeNotFound:
				notFound++
			default:
				t.Errorf("take: %s", resp.Code)
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(got) != prekeys || notFound != requesters-prekeys {
		t.Errorf("%d distinct prekeys handed out, %d requesters found none", len(got), notFound)
	}
	for b, n := range got {
		if n != 1 {
			t.Errorf("%q handed out %d times", b, n)
		}
	}
	resp = owner.call(&protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.id}, m.key)
	if resp.Prekeys != 0 {
		t.Errorf("owner sees %d prekeys left", resp.Prekeys)
	}
}

// TestTokenRate: card and prekey requests are rate-limited per token.
func TestTokenRate(t *testing.T) {
	res := testResources()
	res.TokenRate, res.TokenBurst = 0.001, 2
	r := newRelay(t, res)
	c := r.dial(t)
	m := c.create()
	tok, other := c.token(m, 0, 0), c.token(m, 0, 0)
	for i := range 2 {
		if resp := c.call(&protocol.RelayRequest{Op: protocol.RelayGetCard, Mailbox: m.id, Token: tok}, nil); resp.Code != protocol.CodeNotFound {
			t.Errorf("card request %d: %s", i, resp.Code)
		}
	}
	if resp := c.call(&protocol.RelayRequest{Op: protocol.RelayTakePrekey, Mailbox: m.id, Token: tok}, nil); resp.Code != protocol.CodeRateLimited {
		t.Errorf("third request on one token: %s", resp.Code)
	}
	if resp := c.call(&protocol.RelayRequest{Op: protocol.RelayTakePrekey, Mailbox: m.id, Token: other}, nil); resp.Code != protocol.CodeNotFound {
		t.Errorf("another token: %s", resp.Code)
	}
}

// TestSubscriptionReplaced: a newer subscription to a mailbox ends the
// older one.
func TestSubscriptionReplaced(t *testing.T) {
	r := newRelay(t, testResources())
	a := r.dial(t)
	m := a.create()
	id := a.send(signed(a, &protocol.RelayRequest{Op: protocol.RelaySubscribe, Mailbox: m.id}, m))
	if resp := a.read(); resp.ID != id || resp.Code != protocol.CodeOK {
		t.Fatalf("subscribe: %+v", resp)
	}
	b := r.dial(t)
	if resp := b.wait(b.send(signed(b, &protocol.RelayRequest{Op: protocol.RelaySubscribe, Mailbox: m.id}, m))); resp.Code != protocol.CodeOK {
		t.Fatalf("second subscribe: %s", resp.Code)
	}
	if resp := a.read(); resp.ID != id || resp.Op != protocol.RelaySubscribe || resp.Code != protocol.CodeSubscriptionEnded {
		t.Fatalf("first subscription: %+v", resp)
	}
	tok := b.token(m, 0, 0)
	env := envelope(m.id, 512, 1)
	a.deposit(m.id, tok, env)
	if push := b.read(); push.Op != protocol.RelayPush || !bytes.Equal(push.Envelope, env) {
		t.Fatalf("push to the new subscription: %+v", push)
	}
}

// TestCloseWhileBusy: Close with deposits in flight and a subscription open
// returns, ends every stream and goroutine (goleak checks the package),
// and every deposit answered ok before it is in the store.
func TestCloseWhileBusy(t *testing.T) {
	r := newRelay(t, testResources())
	owner := r.dial(t)
	m := owner.create()
	tok := owner.token(m, 0, 0)
	owner.send(signed(owner, &protocol.RelayRequest{Op: protocol.RelaySubscribe, Mailbox: m.id}, m))
	s := r.dial(t)
	done := make(chan int)
	go func() {
		ok := 0
		for {
			resp, err := s.tryRead()
			if err != nil {
				done <- ok
				return
			}
			if resp.Code == protocol.CodeOK {
				ok++
			}
		}
	}()
	for i := range 200 {
		s.send(&protocol.RelayRequest{Op: protocol.RelayDeposit, Mailbox: m.id, Token: tok, Envelope: envelope(m.id, 512, i)})
	}
	if err := r.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	acked := <-done
	var stored uint64
	r.st.View(context.Background(), func(tx *store.Tx) error {
		mb, err := tx.Relay().Mailbox(m.id)
		stored = mb.Count
		return err
	})
	if stored < uint64(acked) {
		t.Errorf("%d deposits answered ok, %d stored", acked, stored)
	}
	r.srv = nil
}

// TestSubscriberProtected: while a client's subscription runs, the
// connection manager does not trim its connection; when it ends (the
// stream closes), the protection goes.
func TestSubscriberProtected(t *testing.T) {
	r := newRelay(t, testResources())
	a := r.dial(t)
	m := a.create()
	p := a.h.ID()
	protected := func() bool { return r.h.ConnManager().IsProtected(p, "") }
	if protected() {
		t.Fatal("protected before subscribing")
	}
	if resp := a.wait(a.send(signed(a, &protocol.RelayRequest{Op: protocol.RelaySubscribe, Mailbox: m.id}, m))); resp.Code != protocol.CodeOK {
		t.Fatalf("subscribe: %s", resp.Code)
	}
	nodetest.WaitFor(t, 10*time.Second, "the subscriber protected", protected)
	a.str.Reset()
	nodetest.WaitFor(t, 10*time.Second, "the protection gone", func() bool { return !protected() })
}
