package mailbox_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/seal"
	"github.com/sealpost/sealpost/node/internal/clock/clocktest"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

func TestMain(m *testing.M) { nodetest.VerifyTestMain(m) }

func newClient(t testing.TB) (*mailbox.Client, store.Store) {
	t.Helper()
	st := store.NewMemory()
	c, err := mailbox.New(context.Background(), mailbox.Config{Store: st, Options: mailbox.Options{RetryMin: 50 * time.Millisecond, RetryMax: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		st.Close()
	})
	return c, st
}

// own makes a mailbox on r and commits it to st.
func own(t testing.TB, c *mailbox.Client, st store.Store, r *nodetest.Relay) store.Mailbox {
	t.Helper()
	ctx := context.Background()
	m, err := c.Create(ctx, r.Addr)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := st.Update(ctx, func(tx *store.Tx) error { return tx.Mailboxes().Put(m) }); err != nil {
		t.Fatal(err)
	}
	return m
}

// registered makes a relay, an owner client with a mailbox on it, and a
// token registered there.
func registered(t *testing.T) (*nodetest.Relay, *mailbox.Client, store.Mailbox, []byte) {
	t.Helper()
	r := nodetest.StartRelay(t, nodetest.RelayOptions{})
	owner, ost := newClient(t)
	m := own(t, owner, ost, r)
	tok := token()
	if err := owner.Register(context.Background(), &m, mailbox.Quota{}, tok); err != nil {
		t.Fatalf("Register: %v", err)
	}
	return r, owner, m, tok
}

func token() []byte {
	t := make([]byte, 16)
	rand.Read(t)
	return t
}

// claimed is the identity deposits claim to come from, and claimedDevice
// its device.
var (
	claimed       = func() *identity.Private { id, _ := identity.Generate(rand.Reader); return id }()
	claimedDevice = []byte("device")
)

// boxOf is own mailbox m as a card lists it, with token tok.
func boxOf(t testing.TB, r *nodetest.Relay, m *store.Mailbox, tok []byte) *protocol.Mailbox {
	t.Helper()
	id, a, err := mailbox.ParseAddr(r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ecdh.X25519().NewPrivateKey(m.SealingKey)
	if err != nil {
		t.Fatal(err)
	}
	b := &protocol.Mailbox{Relay: []byte(id), RelayAddrs: [][]byte{a.Bytes()}, ID: m.ID, Token: tok}
	copy(b.SealingKey[:], priv.PublicKey().Bytes())
	return b
}

// payloads returns ps as byte slices.
func payloads(ps ...string) [][]byte {
	out := make([][]byte, len(ps))
	for i, p := range ps {
		out[i] = []byte(p)
	}
	return out
}

func TestDepositFetchSubscribe(t *testing.T) {
	ctx := context.Background()
	r, owner, m, tok := registered(t)
	sender, _ := newClient(t)
	box := boxOf(t, r, &m, tok)
	// A backlog before the owner listens.
	var envs [][]byte
	for i := range 5 {
		envs = append(envs, []byte(fmt.Sprintf("backlog %d", i)))
	}
	res, err := sender.Deposit(ctx, box, claimed.Public(), claimedDevice, envs)
	if err != nil {
		t.Fatalf("Deposit: %v", err)
	}
	for i, x := range res {
		if x.Err != nil || x.Receipt.Relay != r.Host.ID() || !x.Receipt.StoredUntil.After(time.Now()) {
			t.Fatalf("deposit %d: %+v", i, x)
		}
	}
	var (
		mu  sync.Mutex
		got []string
	)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		owner.Run(rctx, func(_ context.Context, ds []mailbox.Delivery) ([]bool, error) {
			mu.Lock()
			defer mu.Unlock()
			ok := make([]bool, len(ds))
			for i, d := range ds {
				got = append(got, string(d.Payload))
				ok[i] = true
				if pub, _ := claimed.Public().MarshalBinary(); !bytes.Equal(d.Sender, pub) || !bytes.Equal(d.Device, claimedDevice) {
					t.Errorf("delivery %d claims sender %x, device %q; want the depositor's", i, d.Sender, d.Device)
				}
			}
			return ok, nil
		})
	}()
	defer func() {
		cancel()
		<-done
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	nodetest.WaitFor(t, 10*time.Second, "the backlog", func() bool { return count() == 5 })
	nodetest.WaitFor(t, 10*time.Second, "the subscription", func() bool { return state(owner) == "subscribed" })
	// Pushed while subscribed.
	if res, err := sender.Deposit(ctx, box, claimed.Public(), claimedDevice, payloads("pushed")); err != nil || res[0].Err != nil {
		t.Fatalf("Deposit: %v %v", err, res[0].Err)
	}
	nodetest.WaitFor(t, 10*time.Second, "the pushed envelope", func() bool { return count() == 6 })
	mu.Lock()
	want := []string{"backlog 0", "backlog 1", "backlog 2", "backlog 3", "backlog 4", "pushed"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	mu.Unlock()
	// Acknowledged: the relay holds nothing any more.
	nodetest.WaitFor(t, 10*time.Second, "the acknowledgements", func() bool {
		s := owner.Statuses()
		return len(s) == 1 && s[0].Stored == 0
	})
}

func TestRefusals(t *testing.T) {
	ctx := context.Background()
	res := relay.DefaultResources()
	r := nodetest.StartRelay(t, nodetest.RelayOptions{Resources: res})
	owner, ost := newClient(t)
	m := own(t, owner, ost, r)
	sender, _ := newClient(t)

	// No token registered.
	out, err := sender.Deposit(ctx, boxOf(t, r, &m, token()), claimed.Public(), claimedDevice, payloads("x"))
	if err != nil || !errors.Is(out[0].Err, protocol.ErrTokenRefused) {
		t.Errorf("deposit with an unknown token: %v, %v; want token_refused", err, out[0].Err)
	}
	// A revoked token.
	tok := token()
	if err := owner.Register(ctx, &m, mailbox.Quota{}, tok); err != nil {
		t.Fatal(err)
	}
	if err := owner.Revoke(ctx, &m, tok); err != nil {
		t.Fatal(err)
	}
	out, _ = sender.Deposit(ctx, boxOf(t, r, &m, tok), claimed.Public(), claimedDevice, payloads("x"))
	if !errors.Is(out[0].Err, protocol.ErrTokenRefused) {
		t.Errorf("deposit with a revoked token: %v, want token_refused", out[0].Err)
	}
	// A token's quota: a flood on one token stops at it, another token
	// still gets through.
	flood, other := token(), token()
	if err := owner.Register(ctx, &m, mailbox.Quota{Count: 3}, flood); err != nil {
		t.Fatal(err)
	}
	if err := owner.Register(ctx, &m, mailbox.Quota{}, other); err != nil {
		t.Fatal(err)
	}
	var envs [][]byte
	for range 6 {
		envs = append(envs, []byte("flood"))
	}
	out, err = sender.Deposit(ctx, boxOf(t, r, &m, flood), claimed.Public(), claimedDevice, envs)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range out {
		if i < 3 && x.Err != nil {
			t.Errorf("flood deposit %d within the quota: %v", i, x.Err)
		}
		if i >= 3 && !errors.Is(x.Err, protocol.ErrTokenQuota) {
			t.Errorf("flood deposit %d over the quota: %v, want token_quota", i, x.Err)
		}
	}
	out, _ = sender.Deposit(ctx, boxOf(t, r, &m, other), claimed.Public(), claimedDevice, payloads("other"))
	if out[0].Err != nil {
		t.Errorf("another contact's deposit during the flood: %v", out[0].Err)
	}
	// A card blob: only its token reads it.
	blob := []byte("a sealed card blob")
	if err := owner.PutCard(ctx, &m, other, blob); err != nil {
		t.Fatalf("PutCard: %v", err)
	}
	if got, err := sender.GetCard(ctx, boxOf(t, r, &m, other)); err != nil || string(got) != string(blob) {
		t.Errorf("GetCard: %q, %v", got, err)
	}
	if _, err := sender.GetCard(ctx, boxOf(t, r, &m, token())); err == nil {
		t.Error("GetCard with an unknown token succeeded")
	}
	// Deleted: deposits find no mailbox.
	if err := owner.Delete(ctx, &m); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	out, _ = sender.Deposit(ctx, boxOf(t, r, &m, other), claimed.Public(), claimedDevice, payloads("late"))
	if out[0].Err == nil {
		t.Error("deposit into a deleted mailbox succeeded")
	}
}

// TestClientKeys: the relay sees the client key of the mailbox (one per
// relay), never another; two relays see two keys.
func TestClientKeys(t *testing.T) {
	r1, r2 := nodetest.StartRelay(t, nodetest.RelayOptions{}), nodetest.StartRelay(t, nodetest.RelayOptions{})
	c, st := newClient(t)
	m1, m2 := own(t, c, st, r1), own(t, c, st, r2)
	p1, p2 := r1.Host.Network().Peers(), r2.Host.Network().Peers()
	if len(p1) != 1 || len(p2) != 1 || p1[0] == p2[0] {
		t.Fatalf("relays see peers %v and %v: want one each, not the same", p1, p2)
	}
	for _, x := range []struct {
		m store.Mailbox
		p peer.ID
	}{{m1, p1[0]}, {m2, p2[0]}} {
		if id := clientPeer(t, &x.m); id != x.p {
			t.Errorf("relay sees %s, the mailbox's client key is %s", x.p, id)
		}
	}
	// Deposits go through another key than the own mailbox's on the same
	// relay, so the relay cannot tell that the owner of m1 writes to the
	// mailbox deposited into.
	ctx := context.Background()
	tok := token()
	if err := c.Register(ctx, &m1, mailbox.Quota{}, tok); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Deposit(ctx, boxOf(t, r1, &m1, tok), claimed.Public(), claimedDevice, payloads("x")); err != nil || out[0].Err != nil {
		t.Fatalf("Deposit: %v %v", err, out[0].Err)
	}
	p1 = r1.Host.Network().Peers()
	if len(p1) != 2 || !slices.Contains(p1, clientPeer(t, &m1)) {
		t.Fatalf("relay 1 sees %v: want the owner's key and another", p1)
	}
}

func state(c *mailbox.Client) string {
	s := c.Statuses()
	if len(s) == 0 {
		return ""
	}
	return s[0].State
}

// clientPeer is the peer ID of a mailbox's client key.
func clientPeer(t *testing.T, m *store.Mailbox) peer.ID {
	t.Helper()
	k, err := crypto.UnmarshalPrivateKey(m.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestPrekeys(t *testing.T) {
	ctx := context.Background()
	r, owner, m, tok := registered(t)
	key := mailbox.PrekeyKey(m.SealingKey, m.ID)
	var blobs [][]byte
	for i := range 3 {
		b, err := mailbox.SealPrekey(key, m.ID, []byte(fmt.Sprintf("prekey %d", i)), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, b)
	}
	left, err := owner.PutPrekeys(ctx, &m, blobs, time.Now().Add(24*time.Hour))
	if err != nil || left != 3 {
		t.Fatalf("PutPrekeys: %d left, %v", left, err)
	}
	taker, _ := newClient(t)
	got := map[string]bool{}
	for range 3 {
		b, err := taker.TakePrekey(ctx, boxOf(t, r, &m, tok))
		if err != nil {
			t.Fatalf("TakePrekey: %v", err)
		}
		rec, err := mailbox.OpenPrekey(key, m.ID, b)
		if err != nil {
			t.Fatal(err)
		}
		if got[string(rec)] {
			t.Fatalf("%q handed out twice", rec)
		}
		got[string(rec)] = true
	}
	if _, err := taker.TakePrekey(ctx, boxOf(t, r, &m, tok)); err == nil {
		t.Error("a fourth prekey was handed out of three")
	}
	if _, err := taker.TakePrekey(ctx, boxOf(t, r, &m, token())); err == nil {
		t.Error("a prekey was handed out for an unknown token")
	}
}

// TestDepositKeyRotates: deposits go under a key made in memory, never the
// owner's client key, and a new one after IdleTimeout without use; the
// relay's list of depositors shows both keys and no other.
func TestDepositKeyRotates(t *testing.T) {
	ctx := context.Background()
	r, _, m, tok := registered(t)
	fake := clocktest.New(time.Now())
	st := store.NewMemory()
	defer st.Close()
	dep, err := mailbox.New(ctx, mailbox.Config{Store: st, Clock: fake, Options: mailbox.Options{IdleTimeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer dep.Close()
	deposit := func() {
		t.Helper()
		out, err := dep.Deposit(ctx, boxOf(t, r, &m, tok), claimed.Public(), claimedDevice, payloads("x"))
		if err != nil || out[0].Err != nil {
			t.Fatalf("Deposit: %v %v", err, out)
		}
	}
	depositors := func() []string {
		var ids []string
		for _, p := range r.Server.RecentPeers().Depositors {
			ids = append(ids, p.PeerID)
		}
		return ids
	}
	deposit()
	deposit()
	first := depositors()
	if len(first) != 1 {
		t.Fatalf("depositors %v after two deposits in a row: want one key", first)
	}
	// Idle for longer than IdleTimeout: at its next tick the janitor
	// closes the host (nothing deposits in between), the relay sees the
	// key's connection go, and the next deposit comes under a new key.
	firstKey, err := peer.Decode(first[0])
	if err != nil {
		t.Fatal(err)
	}
	fake.Advance(2 * time.Second)
	nodetest.WaitFor(t, 10*time.Second, "the idle depositor host closed", func() bool {
		return r.Host.Network().Connectedness(firstKey) != network.Connected
	})
	deposit()
	if got := depositors(); len(got) != 2 {
		t.Fatalf("depositors %v after the idle host closed: want two keys", got)
	}
	ids := depositors()
	if ids[1] != first[0] {
		t.Errorf("depositors %v: want the new key first, then %s", ids, first[0])
	}
	for _, id := range ids {
		if id == clientPeer(t, &m).String() {
			t.Errorf("a deposit came under the owner's client key %s", id)
		}
	}
	owners := r.Server.RecentPeers().Owners
	if len(owners) != 1 || owners[0].PeerID != clientPeer(t, &m).String() {
		t.Errorf("owners %v: want only the mailbox's client key", owners)
	}
}

// TestDepositUnsealable: a payload that cannot be sealed to the mailbox
// (a sealing key of low order, a payload over the largest envelope) fails
// every result of the call and deposits nothing.
func TestDepositUnsealable(t *testing.T) {
	ctx := context.Background()
	r, _, m, tok := registered(t)
	sender, _ := newClient(t)
	zeroKey := boxOf(t, r, &m, tok)
	zeroKey.SealingKey = protocol.SealingKey{}
	tooLarge := payloads("x", string(make([]byte, seal.MaxEnvelopeSize)))
	for _, c := range []struct {
		name string
		box  *protocol.Mailbox
		ps   [][]byte
	}{{"low-order key", zeroKey, payloads("x", "y")}, {"too large", boxOf(t, r, &m, tok), tooLarge}} {
		out, err := sender.Deposit(ctx, c.box, claimed.Public(), claimedDevice, c.ps)
		if err == nil || len(out) != len(c.ps) {
			t.Fatalf("%s: Deposit: %d results, %v; want an error for each", c.name, len(out), err)
		}
		for i, o := range out {
			if o.Err == nil || o.Receipt.Signature != nil {
				t.Errorf("%s: result %d: %+v, want an error and no receipt", c.name, i, o)
			}
		}
	}
	if s := r.Server.Stats(); s.Deposits != 0 || s.Envelopes != 0 {
		t.Errorf("the relay took %d deposits and holds %d envelopes, want none", s.Deposits, s.Envelopes)
	}
}
