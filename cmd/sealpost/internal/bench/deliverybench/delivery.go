// Package deliverybench measures direct delivery between two nodes in one
// process, on loopback, with their stores in badger on disk (fsync on):
// the figures of `sealpost bench` for messaging.
//
//   - direct_delivery (msgs/s): Senders goroutines send text messages from
//     one node to the other for about Duration; a message counts when the
//     sender has it acknowledged, that is encrypted and committed by the
//     sender, carried on the one stream to the peer, decrypted and
//     committed by the receiver, acknowledged and the acknowledgement
//     committed by the sender. Both nodes batch: the receiver commits the
//     frames already buffered in one transaction, and each node's writer
//     commits the sends, receipts and acknowledgements waiting at that
//     moment together.
//   - direct_delivery_unbatched (msgs/s): the same with batching off
//     (Options.MaxBatch = 1): one transaction, and so one fsync, per
//     message, acknowledgement and receipt on each side. Its limit is the
//     store's durable write rate measured in the same run divided by
//     three: the sender's writer commits each message, its
//     acknowledgement and its delivery receipt, one fsync each, one after
//     the other.
//   - store_durable_write and store_batch_write (ops/s): the storage
//     figures of storebench.Run, measured in the same run on the
//     same disk, for comparison.
//   - delivery_latency_p50 and delivery_latency_p99 (ms): one message at a
//     time, from Send until the sender has committed the receiver's
//     delivery receipt (state delivered).
package deliverybench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench"
	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench/storebench"
	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
)

// Options tune Run. Zero values take the defaults named.
type Options struct {
	// Dir is where the stores are made (and removed). Default: the
	// system's temporary directory.
	Dir string
	// Duration is the measuring time of each throughput figure. Default
	// 3 s.
	Duration time.Duration
	// Senders is the number of concurrent senders. Default 64.
	Senders int
	// Samples is the number of messages the latency figures time. Default
	// 200.
	Samples int
	// Text is the size of each message's text in bytes. Default 100.
	Text int
}

func (o Options) withDefaults() Options {
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	if o.Duration <= 0 {
		o.Duration = 3 * time.Second
	}
	if o.Senders <= 0 {
		o.Senders = 64
	}
	if o.Samples <= 0 {
		o.Samples = 200
	}
	if o.Text <= 0 {
		o.Text = 100
	}
	return o
}

// Run measures the figures. It takes about four times Duration, plus the
// latency samples.
func Run(ctx context.Context, o Options) ([]bench.Figure, error) {
	o = o.withDefaults()
	work, err := os.MkdirTemp(o.Dir, "sealpost-delivery-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	batched, err := throughput(ctx, filepath.Join(work, "batched"), o, messaging.Options{})
	if err != nil {
		return nil, fmt.Errorf("direct_delivery: %w", err)
	}
	unbatched, err := throughput(ctx, filepath.Join(work, "unbatched"), o, messaging.Options{MaxBatch: 1})
	if err != nil {
		return nil, fmt.Errorf("direct_delivery_unbatched: %w", err)
	}
	p50, p99, err := latency(ctx, filepath.Join(work, "latency"), o)
	if err != nil {
		return nil, fmt.Errorf("delivery_latency: %w", err)
	}
	storeFigs, err := storebench.Run(ctx, work, o.Duration/2)
	if err != nil {
		return nil, fmt.Errorf("store figures: %w", err)
	}
	var durable float64
	figs := []bench.Figure{{Name: "direct_delivery", Unit: "msgs/s", Value: batched}}
	for _, f := range storeFigs {
		switch f.Name {
		case "store_durable_write":
			durable = f.Value
			figs = append(figs, f)
		case "store_batch_write":
			figs = append(figs, f)
		}
	}
	figs = slices.Insert(figs, 1, bench.Rate("direct_delivery_unbatched", "msgs/s", unbatched, durable/3))
	figs = append(figs,
		bench.Figure{Name: "delivery_latency_p50", Unit: "ms", Value: ms(p50)},
		bench.Figure{Name: "delivery_latency_p99", Unit: "ms", Value: ms(p99)},
	)
	return figs, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Pair is two befriended nodes with badger stores on disk: A ("alice")
// has B as the contact "bob", with a confirmed session.
type Pair struct {
	A, B   *node.Node
	sa, sb store.Store
}

func newPair(ctx context.Context, dir string, opts messaging.Options) (*Pair, error) {
	return NewPair(ctx, dir, func(c *node.Config) { c.Messaging = opts })
}

// NewPair starts a Pair with its stores under dir, each node's
// configuration (node.Test defaults, loopback) changed by tune, if not
// nil. Close it.
func NewPair(ctx context.Context, dir string, tune func(*node.Config)) (*Pair, error) {
	p := &Pair{}
	var err error
	if p.A, p.sa, err = StartNode(ctx, filepath.Join(dir, "a"), "alice", tune); err != nil {
		return nil, err
	}
	if p.B, p.sb, err = StartNode(ctx, filepath.Join(dir, "b"), "bob", tune); err != nil {
		p.Close()
		return nil, err
	}
	inv, err := p.B.Messaging().Invite(ctx)
	if err != nil {
		p.Close()
		return nil, err
	}
	if _, err := p.A.Messaging().AddContact(ctx, inv.Link, "bob"); err != nil {
		p.Close()
		return nil, err
	}
	// One round trip confirms the session, so the measured messages carry
	// no PQXDH initial message.
	r, err := p.A.Messaging().Send(ctx, "bob", "hello")
	if err != nil {
		p.Close()
		return nil, err
	}
	id, _ := messaging.ParseMessageID(r.ID)
	if _, err := p.A.Messaging().WaitState(ctx, id, messaging.StateDelivered); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// StartNode provisions a node called name with its store in dir (badger,
// a key file) and starts it: node.Test defaults on loopback TCP, changed
// by tune if not nil. Close the node, then the store.
func StartNode(ctx context.Context, dir, name string, tune func(*node.Config)) (*node.Node, store.Store, error) {
	st, err := badgerstore.Create(ctx, dir, badgerstore.ModeKeyFile, badgerstore.Options{GCInterval: -1})
	if err != nil {
		return nil, nil, err
	}
	if err := node.Provision(ctx, st, name, nil); err != nil {
		st.Close()
		return nil, nil, err
	}
	return runNode(ctx, st, tune)
}

// RestartNode starts the node StartNode made in dir again, on another
// port.
func RestartNode(ctx context.Context, dir string, tune func(*node.Config)) (*node.Node, store.Store, error) {
	st, err := badgerstore.Open(ctx, dir, badgerstore.Options{GCInterval: -1})
	if err != nil {
		return nil, nil, err
	}
	return runNode(ctx, st, tune)
}

func runNode(ctx context.Context, st store.Store, tune func(*node.Config)) (*node.Node, store.Store, error) {
	cfg, err := node.Defaults(node.Test)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	cfg.Store = st
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	if tune != nil {
		tune(&cfg)
	}
	n, err := node.New(ctx, cfg)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return n, st, nil
}

// Close stops both nodes and closes their stores; again, it does nothing.
func (p *Pair) Close() {
	if p.A != nil {
		p.A.Close()
		p.sa.Close()
		p.A = nil
	}
	if p.B != nil {
		p.B.Close()
		p.sb.Close()
		p.B = nil
	}
}

// throughput sends from a to b with o.Senders senders for o.Duration and
// returns the acknowledged messages per second.
func throughput(ctx context.Context, dir string, o Options, opts messaging.Options) (float64, error) {
	p, err := newPair(ctx, dir, opts)
	if err != nil {
		return 0, err
	}
	defer p.Close()
	m := p.A.Messaging()
	text := fmt.Sprintf("%0*d", o.Text, 0)
	var (
		mu       sync.Mutex
		ids      []protocol.MessageID
		firstErr error
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(o.Duration)
	for range o.Senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() && time.Now().Before(deadline) {
				r, err := m.Send(ctx, "bob", text)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					stop.Store(true)
					return
				}
				id, _ := messaging.ParseMessageID(r.ID)
				ids = append(ids, id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	for _, id := range ids {
		if _, err := m.WaitState(ctx, id, messaging.StateSent); err != nil {
			return 0, err
		}
	}
	return float64(len(ids)) / time.Since(start).Seconds(), nil
}

// latency times o.Samples messages, one at a time, from Send to delivered.
func latency(ctx context.Context, dir string, o Options) (p50, p99 time.Duration, err error) {
	p, err := newPair(ctx, dir, messaging.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer p.Close()
	m := p.A.Messaging()
	text := fmt.Sprintf("%0*d", o.Text, 0)
	ds := make([]time.Duration, 0, o.Samples)
	for range o.Samples {
		start := time.Now()
		r, err := m.Send(ctx, "bob", text)
		if err != nil {
			return 0, 0, err
		}
		id, _ := messaging.ParseMessageID(r.ID)
		if _, err := m.WaitState(ctx, id, messaging.StateDelivered); err != nil {
			return 0, 0, err
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[len(ds)/2], ds[min(len(ds)-1, len(ds)*99/100)], nil
}
