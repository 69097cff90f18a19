// Package relaybench measures the relay figures of `sealpost bench`:
// relay_ingest, a relay's deposit path in this process next to its store
// alone, and relay_e2e, the time from a deposit to a subscribed recipient
// holding the envelope through a relay on loopback.
package relaybench

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench"
	"github.com/sealpost/sealpost/crypto/seal"
	"github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
)

// EnvelopeSize is the size of the envelopes relay_ingest deposits: the
// record size of the storage figures.
const EnvelopeSize = 1024

// Depositors is the number of deposits relay_ingest keeps outstanding:
// many streams with pipelined deposits.
const Depositors = 1024

// mailboxes is how many mailboxes relay_ingest spreads deposits over.
const mailboxes = 64

// Ingest measures relay_ingest in a fresh relay store (unencrypted, as
// relays run it) created under dir and removed afterwards, in about d:
//
//   - relay_ingest (deposits/s): Depositors deposits outstanding at all
//     times, each of a 1 KiB envelope into one of 64 mailboxes with a
//     registered token, through the relay's deposit path
//     (relay.Server.Deposit): the checks of mailbox, token and quotas, the
//     writer's group commit (one store transaction and one fsync for every
//     deposit waiting), and a custody receipt signed per envelope. Counted
//     when the receipt is signed, which happens only once the deposit is
//     durable. No network: the stream's framing and libp2p are not
//     measured (relay_e2e is).
//     Limit: the rate of the store alone committing the same batches — B
//     envelopes (AddEnvelope) per transaction, one transaction after the
//     other, no checks and no signatures — where B is the mean batch size
//     the relay reached, in the same run on the same store.
//   - relay_ingest_batch (deposits/commit): that B, no limit. The commits
//     are counted by the relay's sealpost_relay_commit_batch histogram.
func Ingest(ctx context.Context, dir string, d time.Duration) ([]bench.Figure, error) {
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
	res := relay.DefaultResources()
	res.MailboxMaxCount, res.MailboxMaxBytes = 1<<40, 1<<50
	res.TokenMaxCount, res.TokenMaxBytes = 1<<40, 1<<50
	res.StoreMaxBytes = 1 << 50
	res.PeerMaxBytes, res.SubnetMaxBytes = 1<<50, 1<<50
	reg := prometheus.NewRegistry()
	s, err := relay.New(relay.Config{Host: h, Store: st, Resources: res, Registerer: reg})
	if err != nil {
		return nil, err
	}
	defer s.Close()

	token := make([]byte, 16)
	rand.Read(token)
	th := protocol.HashToken(token)
	var boxes []protocol.MailboxID
	// Each mailbox counts against the quotas of its creator, as a
	// mailbox made on a stream does: its own peer's, and one address
	// range's shared by all.
	var subnet store.RelayQuotaKey
	rand.Read(subnet[:])
	err = st.Update(ctx, func(tx *store.Tx) error {
		boxes = boxes[:0]
		for range mailboxes {
			var id protocol.MailboxID
			rand.Read(id[:])
			var peer store.RelayQuotaKey
			rand.Read(peer[:])
			m := store.RelayMailbox{ID: id, OwnerKey: [32]byte{1}, CreatedAt: time.Now(), Quotas: [2]store.RelayQuotaKey{peer, subnet}}
			if err := tx.Relay().CreateMailbox(m); err != nil {
				return err
			}
			if _, _, err := tx.Relay().PutToken(id, store.RelayToken{Hash: th, MaxCount: 1 << 40, MaxBytes: 1 << 50}); err != nil {
				return err
			}
			boxes = append(boxes, id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	envelope := func(mb protocol.MailboxID) []byte {
		env := make([]byte, EnvelopeSize)
		rand.Read(env)
		env[0] = seal.Version
		copy(env[1:], mb[:])
		return env
	}

	// relay_ingest.
	d /= 2
	commits0, err := commits(reg)
	if err != nil {
		return nil, err
	}
	mine := make([][]byte, Depositors) // each depositor's envelope
	for w := range mine {
		mine[w] = envelope(boxes[w%len(boxes)])
	}
	rate, n, err := bench.Parallel(ctx, Depositors, d, func(w int) error {
		resp, err := s.Deposit(ctx, boxes[w%len(boxes)], token, mine[w])
		if err == nil && resp.Code != protocol.CodeOK {
			err = fmt.Errorf("relay bench: deposit refused: %s", resp.Code)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	commits1, err := commits(reg)
	if err != nil {
		return nil, err
	}
	perCommit := float64(n) / float64(max(1, commits1-commits0))

	// The limit: the store alone, committing batches of the same size.
	b := max(1, int(perCommit+0.5))
	envs := make([][]byte, b)
	for i := range envs {
		envs[i] = envelope(boxes[i%len(boxes)])
	}
	stored := 0
	start := time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		err := st.Update(ctx, func(tx *store.Tx) error {
			until := time.Now().Add(res.TTL)
			for i, env := range envs {
				if _, err := tx.Relay().AddEnvelope(store.RelayEnvelope{Mailbox: boxes[i%len(boxes)], Token: th, StoredUntil: until, Envelope: env}, nil); err != nil {
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
		bench.Rate("relay_ingest", "deposits/s", rate, limit),
		{Name: "relay_ingest_batch", Unit: "deposits/commit", Value: perCommit},
	}, nil
}

// commits returns the store transactions the relay registered with reg has
// committed: the sample count of its sealpost_relay_commit_batch histogram.
func commits(reg prometheus.Gatherer) (uint64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() == "sealpost_relay_commit_batch" && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount(), nil
		}
	}
	return 0, fmt.Errorf("relay bench: the relay registered no sealpost_relay_commit_batch histogram")
}
