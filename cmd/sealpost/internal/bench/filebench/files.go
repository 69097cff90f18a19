// Package filebench measures attachments: encryption and checking of the
// file format, and a file sent between two nodes in this process on
// loopback, with their stores and file directories on disk — the
// attachment figures of `sealpost bench`.
//
//   - attachment_encrypt (MiB/s): crypto/attachment's Writer encrypting
//     Size bytes (padding, segment AEAD, the content's digest, the blob
//     hashes) into io.Discard. Limit: the primitives it is made of,
//     measured in the same run on 64 KiB segments: one ChaCha20-Poly1305
//     seal and two SHA-256 passes (content and ciphertext) per byte.
//   - attachment_verify (MiB/s): Reader.Verify of that ciphertext in
//     memory (every segment opened, the digest checked). Limit: one
//     ChaCha20-Poly1305 open and one SHA-256 pass per byte.
//   - libp2p_stream (MiB/s): bytes copied over one stream between two
//     libp2p hosts on loopback (default transports and security), the
//     transport's own figure.
//   - attachment_direct (MiB/s): a file of Size bytes from one node to
//     the other, online: from files.Service.Send (encrypting into the
//     sender's directory, fsync) until the recipient has fetched every
//     blob over the blob protocol, written and synced it, and checked the
//     whole file against its digest. Limit: the time of the pieces done
//     one after the other, from the figures above: encrypt, carry over a
//     stream, verify (the disk is not in the limit).
//   - attachment_heap_<N>mib (MiB): the largest growth of the process's
//     live heap over its level before the send, found by a garbage
//     collection every 50 ms while a file of N MiB goes from one node to
//     the other (a transfer apart from attachment_direct's), for Size/8
//     and Size: transfers stream through fixed buffers, so the two stay
//     about equal however large the file.
//   - attachment_relay_upload (MiB/s): a file of Size bytes to a
//     recipient that is offline, through a relay (a third node): from
//     the end of files.Service.Send (the file encrypted) until the relay
//     acknowledged every blob, each written and synced by the relay and
//     recorded by both sides. Limit: the libp2p stream's figure.
//   - attachment_relay_download (MiB/s): that file, the sender stopped
//     and the recipient started again with the pointer, from
//     files.Service.Download until every blob came from the relay,
//     checked, written and synced, and the whole file matched its digest.
//     Limit: carry over a stream, then verify.
package filebench

import (
	"context"
	"crypto/cipher"
	crand "crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench"
	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench/deliverybench"
	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/files"
)

// Options tune Run. Zero values take the defaults named.
type Options struct {
	// Dir is where the stores and file directories are made (and
	// removed). Default: the system's temporary directory.
	Dir string
	// Size is the file size of the figures, in bytes. Default 64 MiB.
	Size int64
	// Timeout bounds each transfer. Default 5 min.
	Timeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	if o.Size <= 0 {
		o.Size = 64 << 20
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	return o
}

const mib = 1 << 20

// Run measures the figures.
func Run(ctx context.Context, o Options) ([]bench.Figure, error) {
	o = o.withDefaults()
	aead, sha, open, err := primitives()
	if err != nil {
		return nil, err
	}
	enc, ct, err := encrypt(o.Size)
	if err != nil {
		return nil, fmt.Errorf("attachment_encrypt: %w", err)
	}
	verify, err := verifyRate(ct, o.Size)
	if err != nil {
		return nil, fmt.Errorf("attachment_verify: %w", err)
	}
	ct = nil
	stream, err := streamRate(ctx, o.Size)
	if err != nil {
		return nil, fmt.Errorf("libp2p_stream: %w", err)
	}
	work, err := os.MkdirTemp(o.Dir, "sealpost-file-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	n := 0
	p, err := deliverybench.NewPair(ctx, work, func(c *node.Config) {
		n++
		c.DataDir = filepath.Join(work, fmt.Sprintf("data%d", n))
		c.Files.MaxSize = o.Size
		c.Files.AutoDownload = o.Size
	})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	direct, _, err := transfer(ctx, p, o.Size, o.Timeout, false)
	if err != nil {
		return nil, fmt.Errorf("attachment_direct: %w", err)
	}
	small := max(o.Size/8, 1<<20)
	_, heapSmall, err := transfer(ctx, p, small, o.Timeout, true)
	if err != nil {
		return nil, fmt.Errorf("attachment_heap (%d bytes): %w", small, err)
	}
	_, heapLarge, err := transfer(ctx, p, o.Size, o.Timeout, true)
	if err != nil {
		return nil, fmt.Errorf("attachment_heap (%d bytes): %w", o.Size, err)
	}
	p.Close()
	up, down, err := relayRates(ctx, filepath.Join(work, "relay"), o.Size, o.Timeout)
	if err != nil {
		return nil, fmt.Errorf("attachment_relay: %w", err)
	}
	return []bench.Figure{
		bench.Rate("attachment_encrypt", "MiB/s", enc, 1/(1/aead+2/sha)),
		bench.Rate("attachment_verify", "MiB/s", verify, 1/(1/open+1/sha)),
		{Name: "libp2p_stream", Unit: "MiB/s", Value: stream},
		bench.Rate("attachment_direct", "MiB/s", direct, 1/(1/enc+1/stream+1/verify)),
		{Name: fmt.Sprintf("attachment_heap_%dmib", small/mib), Unit: "MiB", Value: heapSmall},
		{Name: fmt.Sprintf("attachment_heap_%dmib", o.Size/mib), Unit: "MiB", Value: heapLarge},
		bench.Rate("attachment_relay_upload", "MiB/s", up, stream),
		bench.Rate("attachment_relay_download", "MiB/s", down, 1/(1/stream+1/verify)),
	}, nil
}

// rate runs fn, which handles n bytes, until about 300 ms have passed
// (at least twice) and returns MiB/s.
func rate(n int64, fn func() error) (float64, error) {
	start := time.Now()
	runs := 0
	for runs < 2 || time.Since(start) < 300*time.Millisecond {
		if err := fn(); err != nil {
			return 0, err
		}
		runs++
	}
	return float64(n) * float64(runs) / mib / time.Since(start).Seconds(), nil
}

// primitives measures ChaCha20-Poly1305 seal and open and SHA-256 on
// 64 KiB segments, in MiB/s.
func primitives() (seal, sha, open float64, err error) {
	var key [chacha20poly1305.KeySize]byte
	a, err := chacha20poly1305.New(key[:])
	if err != nil {
		return 0, 0, 0, err
	}
	seg := make([]byte, attachment.SegmentSize)
	out := make([]byte, 0, attachment.SealedSegmentSize)
	nonce := make([]byte, a.NonceSize())
	const segs = 256
	if seal, err = rate(segs*attachment.SegmentSize, func() error {
		for range segs {
			a.Seal(out[:0], nonce, seg, nil)
		}
		return nil
	}); err != nil {
		return
	}
	sealed := a.Seal(nil, nonce, seg, nil)
	if open, err = rate(segs*attachment.SegmentSize, func() error { return openSegs(a, out, nonce, sealed, segs) }); err != nil {
		return
	}
	sha, err = rate(segs*attachment.SegmentSize, func() error {
		for range segs {
			sha256.Sum256(seg)
		}
		return nil
	})
	return
}

func openSegs(a cipher.AEAD, out, nonce, sealed []byte, n int) error {
	for range n {
		if _, err := a.Open(out[:0], nonce, sealed, nil); err != nil {
			return err
		}
	}
	return nil
}

// content is a reader of pseudo-random bytes (not held in memory).
func content(seed uint64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	return rand.NewChaCha8(s)
}

// encrypt measures the Writer on size bytes, and returns the last
// ciphertext for verifyRate.
func encrypt(size int64) (float64, []byte, error) {
	key, err := attachment.NewKey(crand.Reader)
	if err != nil {
		return 0, nil, err
	}
	l, err := attachment.NewLayout(size)
	if err != nil {
		return 0, nil, err
	}
	plain := make([]byte, size)
	io.ReadFull(content(1), plain)
	ct := make([]byte, 0, l.CiphertextSize())
	buf := &sliceWriter{b: ct}
	r, err := rate(size, func() error {
		buf.b = buf.b[:0]
		w, err := attachment.NewWriter(buf, key, size)
		if err != nil {
			return err
		}
		if _, err := w.Write(plain); err != nil {
			return err
		}
		return w.Close()
	})
	if err != nil {
		return 0, nil, err
	}
	return r, append(buf.b, key[:]...), nil
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// verifyRate measures Reader.Verify on ct (the ciphertext followed by its
// key) of a file of size bytes.
func verifyRate(ct []byte, size int64) (float64, error) {
	var key attachment.Key
	copy(key[:], ct[len(ct)-len(key):])
	ct = ct[:len(ct)-len(key)]
	r, err := attachment.NewReader(bytesReaderAt(ct), key, size)
	if err != nil {
		return 0, err
	}
	// The digest is the first run's; each later run checks against it.
	var digest attachment.Hash
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
		return 0, err
	}
	copy(digest[:], h.Sum(nil))
	return rate(size, func() error { return r.Verify(digest) })
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// streamRate copies size bytes over one libp2p stream between two hosts
// on loopback and returns MiB/s.
func streamRate(ctx context.Context, size int64) (float64, error) {
	const proto = "/sealpost/bench/stream/1"
	opts := []libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay()}
	a, err := libp2p.New(opts...)
	if err != nil {
		return 0, err
	}
	defer a.Close()
	b, err := libp2p.New(opts...)
	if err != nil {
		return 0, err
	}
	defer b.Close()
	got := make(chan int64, 1)
	b.SetStreamHandler(proto, func(s network.Stream) {
		n, _ := io.Copy(io.Discard, s)
		s.Write([]byte{1})
		s.Close()
		got <- n
	})
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		return 0, err
	}
	return rate(size, func() error {
		s, err := a.NewStream(ctx, b.ID(), proto)
		if err != nil {
			return err
		}
		defer s.Close()
		if _, err := io.CopyBuffer(s, io.LimitReader(content(2), size), make([]byte, 256<<10)); err != nil {
			return err
		}
		s.CloseWrite()
		var ack [1]byte
		if _, err := io.ReadFull(s, ack[:]); err != nil {
			return err
		}
		if n := <-got; n != size {
			return fmt.Errorf("the stream carried %d of %d bytes", n, size)
		}
		return nil
	})
}

// transfer sends a file of size bytes from p.A to p.B and returns MiB/s
// from the send until B has it saved, and with heap the peak growth of
// the live heap in MiB (a garbage collection every 50 ms finds it, which
// slows the transfer).
func transfer(ctx context.Context, p *deliverybench.Pair, size int64, timeout time.Duration, heap bool) (float64, float64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	runtime.GC()
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	live := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base := live()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		if !heap {
			return
		}
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.GC()
			if v := live(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	start := time.Now()
	info, err := p.A.Files().Send(ctx, files.SendRequest{
		To: "bob", Body: io.LimitReader(content(3), size), Size: size,
		Meta: files.FileMeta{Name: fmt.Sprintf("bench-%d.bin", size)},
	})
	if err == nil {
		err = waitSaved(ctx, p.B.Files(), info.ID)
	}
	el := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		return 0, 0, err
	}
	growth := float64(0)
	if pk := peak.Load(); pk > base {
		growth = float64(pk-base) / mib
	}
	return float64(size) / mib / el.Seconds(), growth, nil
}

// waitSaved polls the recipient's record of file id until it is saved.
func waitSaved(ctx context.Context, s *files.Service, id string) error {
	for {
		info, err := s.Get(ctx, id)
		switch {
		case err == nil && info.State == "saved":
			return nil
		case err == nil && info.State == "failed":
			return fmt.Errorf("the recipient's file failed: %s", info.Error)
		case err != nil && !errors.Is(err, files.ErrUnknownFile):
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the file was not saved in time: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
