package relay

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/sealpost/sealpost/crypto/bench"
	"github.com/sealpost/sealpost/crypto/seal"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
)

// BenchEnvelopeSize is the size of the envelopes relay_ingest deposits: the
// record size of the storage figures.
const BenchEnvelopeSize = 1024

// BenchDepositors is the number of deposits relay_ingest keeps
// outstanding: many streams with pipelined deposits.
const BenchDepositors = 1024

// benchMailboxes is how many mailboxes relay_ingest spreads deposits over.
const benchMailboxes = 64

// Bench measures relay_ingest in a fresh relay store (unencrypted, as
// relays run it) created under dir and removed afterwards, in about d:
//
//   - relay_ingest (deposits/s): BenchDepositors deposits outstanding at
//     all times, each of a 1 KiB envelope into one of 64 mailboxes with a
//     registered token, through the relay's deposit path: the checks of
//     mailbox, token and quotas, the writer's group commit (one store
//     transaction and one fsync for every deposit waiting), and a custody
//     receipt signed per envelope. Counted when the receipt is signed,
//     which happens only once the deposit is durable. No network: the
//     stream's framing and libp2p are not measured (relay_e2e is).
//     Limit: the rate of the store alone committing the same batches — B
//     envelopes (AddEnvelope) per transaction, one transaction after the
//     other, no checks and no signatures — where B is the mean batch size
//     the relay reached, in the same run on the same store.
//   - relay_ingest_batch (deposits/commit): that B, no limit.
func Bench(ctx context.Context, dir string, d time.Duration) ([]bench.Figure, error) {
	work, err := os.MkdirTemp(dir, "sealpost-relay-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	st, err := badgerstore.Create(ctx, filepath.Join(work, "store"), badgerstore.ModeUnencrypted, badgerstore.Options{GCInterval: -1})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	h, err := libp2p.New(libp2p.NoListenAddrs, libp2p.DisableRelay())
	if err != nil {
		return nil, err
	}
	defer h.Close()
	res := DefaultResources()
	res.MailboxMaxCount, res.MailboxMaxBytes = 1<<40, 1<<50
	res.TokenMaxCount, res.TokenMaxBytes = 1<<40, 1<<50
	res.StoreMaxBytes = 1 << 50
	s, err := New(h, st, res, Options{})
	if err != nil {
		return nil, err
	}
	defer s.Close()

	token := make([]byte, 16)
	rand.Read(token)
	th := protocol.HashToken(token)
	var boxes []protocol.MailboxID
	err = st.Update(ctx, func(tx *store.Tx) error {
		boxes = boxes[:0]
		for range benchMailboxes {
			var id store.MailboxID
			rand.Read(id[:])
			if err := tx.Relay().CreateMailbox(store.RelayMailbox{ID: id, OwnerKey: [32]byte{1}, CreatedAt: time.Now()}); err != nil {
				return err
			}
			if _, _, err := tx.Relay().PutToken(id, store.RelayToken{Hash: th, MaxCount: 1 << 40, MaxBytes: 1 << 50}); err != nil {
				return err
			}
			boxes = append(boxes, protocol.MailboxID(id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	envelope := func(mb protocol.MailboxID) []byte {
		env := make([]byte, BenchEnvelopeSize)
		rand.Read(env)
		env[0] = seal.Version
		copy(env[1:], mb[:])
		return env
	}

	// relay_ingest.
	d /= 2
	commits0 := s.commits.Load()
	var n atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := range BenchDepositors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mb := boxes[w%len(boxes)]
			env := envelope(mb)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				dep := &deposit{id: 1, mailbox: mb, envelope: env, token: th}
				s.prepareDeposit(dep)
				if err := s.submit(ctx, &dep.job); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				resp := s.finishDeposit(dep)
				if resp.Code != protocol.CodeOK {
					once.Do(func() { firstErr = fmt.Errorf("relay bench: deposit refused: %s", resp.Code) })
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rate := float64(n.Load()) / elapsed.Seconds()
	perCommit := float64(n.Load()) / float64(max(1, s.commits.Load()-commits0))

	// The limit: the store alone, committing batches of the same size.
	b := max(1, int(perCommit+0.5))
	envs := make([][]byte, b)
	for i := range envs {
		envs[i] = envelope(boxes[i%len(boxes)])
	}
	stored := 0
	start = time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		err := st.Update(ctx, func(tx *store.Tx) error {
			until := time.Now().Add(res.TTL)
			for i, env := range envs {
				if _, err := tx.Relay().AddEnvelope(store.RelayEnvelope{Mailbox: store.MailboxID(boxes[i%len(boxes)]), Token: th, StoredUntil: until, Envelope: env}, nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		stored += b
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit := float64(stored) / time.Since(start).Seconds()
	return []bench.Figure{
		{Name: "relay_ingest", Unit: "deposits/s", Value: rate, Limit: limit, Ratio: rate / limit},
		{Name: "relay_ingest_batch", Unit: "deposits/commit", Value: perCommit},
	}, nil
}
