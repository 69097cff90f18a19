package blobrelay_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/node/blobrelay"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store/badgerstore"
)

// TestMeasureHeldBlobs fills a relay with SEALPOST_MEASURE_BYTES (default
// 10 GiB) of blobs of a small file's size (262,208 bytes: the most
// references for those bytes), uploaded over real blob streams by
// SEALPOST_MEASURE_STREAMS clients (default 4) into one mailbox, then
// restarts the blob service on that store and reports the process's
// RssAnon once it has been idle for 30 s: what a relay costs in memory
// while it holds those blobs. The uploading clients run in the same
// process, so the figures during the upload are an upper bound. Only with
// SEALPOST_MEASURE=1 (it writes the bytes to a temporary directory, or to
// SEALPOST_MEASURE_DIR); it asserts nothing about the figures:
//
//	SEALPOST_MEASURE=1 go test ./node/blobrelay -run TestMeasureHeldBlobs -v -timeout 60m
func TestMeasureHeldBlobs(t *testing.T) {
	if os.Getenv("SEALPOST_MEASURE") != "1" {
		t.Skip("a measurement: set SEALPOST_MEASURE=1")
	}
	total := int64(10 << 30)
	if v, err := strconv.ParseInt(os.Getenv("SEALPOST_MEASURE_BYTES"), 10, 64); err == nil && v > 0 {
		total = v
	}
	streams := 4
	if v, err := strconv.Atoi(os.Getenv("SEALPOST_MEASURE_STREAMS")); err == nil && v > 0 {
		streams = v
	}
	dir := os.Getenv("SEALPOST_MEASURE_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	const size = attachment.MinBlobSegments * attachment.SealedSegmentSize
	n := int(total / size)

	res := blobrelay.DefaultResources()
	res.MailboxMaxBytes, res.MailboxMaxCount = uint64(total)*2, uint64(n)*2
	res.PeerMaxBytes, res.SubnetMaxBytes, res.StoreMaxBytes = uint64(total)*2, uint64(total)*2, uint64(total)*2
	r := newRelayIn(t, res, dir, badgerstore.Options{})
	t.Logf("empty relay: RssAnon %d KiB", nodetest.RssAnonKB())

	var next, done atomic.Int64
	var peak atomic.Int64
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if v := int64(nodetest.RssAnonKB()); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := uploadBlobs(r, n, size, &next, &done); err != nil {
				errs <- err
			}
		}()
	}
	progress := time.NewTicker(10 * time.Second)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
wait:
	for {
		select {
		case <-finished:
			break wait
		case <-progress.C:
			d := done.Load()
			t.Logf("%d/%d blobs (%.1f GiB) in %s, RssAnon %d KiB", d, n, float64(d*size)/(1<<30), time.Since(start).Round(time.Second), nodetest.RssAnonKB())
		}
	}
	progress.Stop()
	close(stop)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("uploaded %d blobs, %.2f GiB in %s (%.1f MiB/s); RssAnon peak during the upload %d KiB (relay and clients)",
		n, float64(int64(n)*size)/(1<<30), took.Round(time.Second), float64(int64(n)*size)/(1<<20)/took.Seconds(), peak.Load())

	r.stop()
	runtime.GC()
	r.start()
	tot := r.totals()
	time.Sleep(30 * time.Second)
	t.Logf("restarted relay holding %d blobs, %d references, %.2f GiB, idle 30 s: RssAnon %d KiB", tot.Blobs, tot.Refs, float64(tot.Bytes)/(1<<30), nodetest.RssAnonKB())
}

// uploadBlobs puts blobs numbered from next (until n) into r's mailbox
// over one blob stream of a client of its own, each of size bytes with its
// number in its first bytes, so each is a blob of its own.
func uploadBlobs(r *relay, n int, size int64, next, done *atomic.Int64) error {
	h, err := libp2p.New(libp2p.NoListenAddrs, libp2p.DisableRelay())
	if err != nil {
		return err
	}
	defer h.Close()
	ctx := context.Background()
	if err := h.Connect(ctx, peer.AddrInfo{ID: r.h.ID(), Addrs: r.h.Addrs()}); err != nil {
		return err
	}
	str, err := h.NewStream(ctx, r.h.ID(), libp2pproto.ID(protocol.BlobProtocol))
	if err != nil {
		return err
	}
	defer str.Close()
	fr := protocol.NewFrameReader(str, protocol.MaxBlobFrame)
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i)
	}
	for id := uint64(1); ; id++ {
		k := next.Add(1) - 1
		if k >= int64(n) {
			return nil
		}
		binary.BigEndian.PutUint64(data, uint64(k))
		var read, write attachment.Cap
		binary.BigEndian.PutUint64(read[:], uint64(k))
		binary.BigEndian.PutUint64(write[:], uint64(k)|1<<63)
		req := &protocol.BlobRequest{ID: id, Op: protocol.BlobPut, Hash: attachment.HashBlob(data), Cap: write,
			ReadCapHash: read.Hash(), Mailbox: r.mb, Token: r.token, Size: size}
		str.SetDeadline(time.Now().Add(2 * time.Minute))
		if err := protocol.WriteFrame(str, req); err != nil {
			return err
		}
		if _, err := str.Write(data); err != nil {
			return err
		}
		var resp protocol.BlobResponse
		if err := fr.Read(&resp); err != nil {
			return err
		}
		if resp.Code != protocol.CodeOK {
			return fmt.Errorf("blob %d: %s", k, resp.Code)
		}
		done.Add(1)
	}
}
