package filebench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench/deliverybench"
	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/files"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/store"
)

// relayWorld is a relay, a sender (alice) and a recipient (bob) who keeps
// a mailbox on the relay, each a node in this process with its store and
// directories on disk.
type relayWorld struct {
	dir   string
	size  int64
	nodes []*node.Node
	sts   []store.Store
}

func (w *relayWorld) start(ctx context.Context, name string, restart bool, tune func(*node.Config)) (*node.Node, store.Store, error) {
	dir := filepath.Join(w.dir, name)
	cfg := func(c *node.Config) {
		c.DataDir = filepath.Join(dir, "data")
		c.Files.MaxSize = w.size
		c.Files.AutoDownload = -1 // the download is timed from Download
		if tune != nil {
			tune(c)
		}
	}
	var (
		n   *node.Node
		st  store.Store
		err error
	)
	if restart {
		n, st, err = deliverybench.RestartNode(ctx, filepath.Join(dir, "store"), cfg)
	} else {
		n, st, err = deliverybench.StartNode(ctx, filepath.Join(dir, "store"), name, cfg)
	}
	if err == nil {
		w.nodes, w.sts = append(w.nodes, n), append(w.sts, st)
	}
	return n, st, err
}

// stop closes node n and its store.
func (w *relayWorld) stop(n *node.Node) {
	for i, x := range w.nodes {
		if x == n {
			n.Close()
			w.sts[i].Close()
			w.nodes[i], w.sts[i] = nil, nil
		}
	}
}

func (w *relayWorld) close() {
	for i, n := range w.nodes {
		if n != nil {
			n.Close()
			w.sts[i].Close()
		}
	}
}

// relayRates sends a file of size bytes from alice to bob while bob is
// offline, through bob's relay, and returns the upload's and the
// download's MiB/s:
//
//   - upload: from files.Service.Send's return (the file encrypted into
//     alice's directory) until the relay acknowledged every blob (each
//     written, synced and recorded by the relay, and recorded by alice);
//   - download: with alice stopped, bob started again and holding the
//     pointer, from files.Service.Download until every blob is fetched
//     from the relay, checked, written, synced and the whole file checked
//     against its digest.
func relayRates(ctx context.Context, dir string, size int64, timeout time.Duration) (up, down float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w := &relayWorld{dir: dir, size: size}
	defer w.close()
	relay, _, err := w.start(ctx, "relay", false, func(c *node.Config) { c.RelayService = true })
	if err != nil {
		return 0, 0, err
	}
	alice, _, err := w.start(ctx, "alice", false, nil)
	if err != nil {
		return 0, 0, err
	}
	bob, bst, err := w.start(ctx, "bob", false, nil)
	if err != nil {
		return 0, 0, err
	}
	if _, err := bob.Messaging().AddRelay(ctx, relay.Info().Addrs[0]); err != nil {
		return 0, 0, fmt.Errorf("relay add: %w", err)
	}
	inv, err := bob.Messaging().Invite(ctx)
	if err != nil {
		return 0, 0, err
	}
	if _, err := alice.Messaging().AddContact(ctx, inv.Link, "bob"); err != nil {
		return 0, 0, err
	}
	// Alice has bob's card with his mailbox, and the relay has her token.
	err = poll(ctx, "alice has bob's card and the relay her token", func() (bool, error) {
		r, err := alice.Messaging().FileRecipient(ctx, "bob")
		if err != nil || len(r.Mailboxes) == 0 {
			return false, nil
		}
		registered := true
		err = bst.View(ctx, func(tx *store.Tx) error {
			toks, err := tx.DepositTokens().List()
			for _, t := range toks {
				registered = registered && (t.Registered || t.Revoked)
			}
			return err
		})
		return registered, err
	})
	if err != nil {
		return 0, 0, err
	}
	w.stop(bob)

	info, err := alice.Files().Send(ctx, files.SendRequest{
		To: "bob", Body: io.LimitReader(content(4), size), Size: size,
		Meta: files.FileMeta{Name: "bench-relay.bin"},
	})
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	err = poll(ctx, "the relay acknowledged every blob", func() (bool, error) {
		f, err := alice.Files().Get(ctx, info.ID)
		if err != nil {
			return false, err
		}
		if f.State == "failed" {
			return false, fmt.Errorf("the upload failed: %s", f.Error)
		}
		return len(f.Relays) > 0 && f.Relays[0].Done == f.Blobs, nil
	})
	if err != nil {
		return 0, 0, err
	}
	up = float64(size) / mib / time.Since(start).Seconds()
	// The pointer in bob's mailbox (the file shows its message's state),
	// then alice away: the relay is the only source.
	err = poll(ctx, "the pointer deposited", func() (bool, error) {
		f, err := alice.Files().Get(ctx, info.ID)
		return err == nil && f.State == messaging.StateSent, err
	})
	if err != nil {
		return 0, 0, err
	}
	w.stop(alice)

	bob, _, err = w.start(ctx, "bob", true, nil)
	if err != nil {
		return 0, 0, err
	}
	err = poll(ctx, "bob has the pointer", func() (bool, error) {
		_, err := bob.Files().Get(ctx, info.ID)
		if errors.Is(err, files.ErrUnknownFile) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return 0, 0, err
	}
	start = time.Now()
	if _, err := bob.Files().Download(ctx, info.ID); err != nil {
		return 0, 0, err
	}
	if err := waitSaved(ctx, bob.Files(), info.ID); err != nil {
		return 0, 0, err
	}
	down = float64(size) / mib / time.Since(start).Seconds()
	return up, down, nil
}

// poll calls done every 5 ms until it reports true or an error, or ctx
// ends.
func poll(ctx context.Context, what string, done func() (bool, error)) error {
	for {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting until %s: %w", what, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
