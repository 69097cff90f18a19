package relaybench

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench"
	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
)

// TargetP99 is the target of relay_e2e_p99: the figure's limit.
const TargetP99 = 5 * time.Millisecond

// maxSamples bounds the deposits one run measures.
const maxSamples = 20000

// E2E measures relay_e2e: the time from a sender's deposit (sealing the
// payload included) to a subscribed recipient holding the envelope, through a real relay (node/relay on a
// badger store, durable before its custody receipt) over loopback TCP, with
// the node/mailbox client on both ends. It runs for about d (at least 200
// deposits) with a relay whose store lives in a temporary directory under
// dir, and returns relay_e2e_p50 and relay_e2e_p99 in milliseconds; the p99
// comes with its limit, TargetP99.
func E2E(ctx context.Context, dir string, d time.Duration) ([]bench.Figure, error) {
	tmp, err := os.MkdirTemp(dir, "sealpost-relay-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	// The relay: its own host on loopback, a badger store without
	// encryption (relays hold sealed envelopes only).
	rkey, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	rh, err := libp2p.New(libp2p.Identity(rkey), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		return nil, err
	}
	defer rh.Close()
	rst, err := badgerstore.Create(ctx, tmp, badgerstore.ModeUnencrypted, badgerstore.Options{})
	if err != nil {
		return nil, err
	}
	defer rst.Close()
	// The relay's defaults but for the per-connection deposit rate: one
	// sender deposits back to back here, which is what the rate limits.
	res := relay.DefaultResources()
	res.DepositRate, res.DepositBurst = 1e6, 1e6
	srv, err := relay.New(relay.Config{Host: rh, Store: rst, Resources: res})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	addr := fmt.Sprintf("%s/p2p/%s", rh.Addrs()[0], rh.ID())

	// The recipient: a mailbox on the relay, subscribed.
	ownStore := store.NewMemory()
	defer ownStore.Close()
	recv, err := mailbox.New(ctx, mailbox.Config{Store: ownStore})
	if err != nil {
		return nil, err
	}
	defer recv.Close()
	m, err := recv.Create(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("create mailbox: %w", err)
	}
	if err := ownStore.Update(ctx, func(tx *store.Tx) error { return tx.Mailboxes().Put(m) }); err != nil {
		return nil, err
	}
	token := make([]byte, 16)
	rand.Read(token)
	if err := recv.Register(ctx, &m, mailbox.Quota{}, token); err != nil {
		return nil, fmt.Errorf("register token: %w", err)
	}
	var (
		mu      sync.Mutex
		arrived = map[uint64]time.Time{}
		signal  = make(chan struct{}, 1)
	)
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		recv.Run(rctx, func(_ context.Context, ds []mailbox.Delivery) ([]bool, error) {
			now := time.Now()
			ok := make([]bool, len(ds))
			mu.Lock()
			for i, d := range ds {
				if len(d.Payload) >= 8 {
					arrived[binary.BigEndian.Uint64(d.Payload)] = now
				}
				ok[i] = true
			}
			mu.Unlock()
			select {
			case signal <- struct{}{}:
			default:
			}
			return ok, nil
		})
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !subscribed(recv) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("relay_e2e: the recipient did not subscribe")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// The sender: another client, with the mailbox as a card lists it.
	sendStore := store.NewMemory()
	defer sendStore.Close()
	send, err := mailbox.New(ctx, mailbox.Config{Store: sendStore})
	if err != nil {
		return nil, err
	}
	defer send.Close()
	rid, raddr, _ := mailbox.ParseAddr(addr)
	sealing, err := ecdh.X25519().NewPrivateKey(m.SealingKey)
	if err != nil {
		return nil, err
	}
	box := &protocol.Mailbox{Relay: []byte(rid), RelayAddrs: [][]byte{raddr.Bytes()}, ID: m.ID, Token: token}
	copy(box.SealingKey[:], sealing.PublicKey().Bytes())
	sender, err := identity.Generate(rand.Reader)
	if err != nil {
		return nil, err
	}
	payload := make([]byte, 1024-300) // a 1 KiB envelope
	var lat []time.Duration
	start := time.Now()
	for i := uint64(1); i <= maxSamples && (time.Since(start) < d || i <= 200); i++ {
		binary.BigEndian.PutUint64(payload, i)
		t0 := time.Now()
		res, err := send.Deposit(ctx, box, sender.Public(), []byte(peer.ID("bench")), [][]byte{payload})
		if err != nil || res[0].Err != nil {
			return nil, fmt.Errorf("relay_e2e: deposit %d: %v %v", i, err, res[0].Err)
		}
		for {
			mu.Lock()
			t1, ok := arrived[i]
			mu.Unlock()
			if ok {
				lat = append(lat, t1.Sub(t0))
				break
			}
			select {
			case <-signal:
			case <-time.After(10 * time.Second):
				return nil, fmt.Errorf("relay_e2e: envelope %d never arrived", i)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	slices.Sort(lat)
	ms := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / float64(time.Millisecond)
	}
	p50, p99 := ms(0.50), ms(0.99)
	limit := float64(TargetP99) / float64(time.Millisecond)
	return []bench.Figure{
		{Name: "relay_e2e_p50", Unit: "ms", Value: p50},
		{Name: "relay_e2e_p99", Unit: "ms", Value: p99, Limit: limit, Ratio: limit / p99},
	}, nil
}

func subscribed(c *mailbox.Client) bool {
	for _, s := range c.Statuses() {
		if s.State == mailbox.StateSubscribed {
			return true
		}
	}
	return false
}
