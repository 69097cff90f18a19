package blobrelay_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	"go.uber.org/goleak"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/node/blobrelay"
	"github.com/sealpost/sealpost/node/internal/clock/clocktest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
	"github.com/sealpost/sealpost/store/blobfs"
	"github.com/sealpost/sealpost/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/badger/v4.(*DB).monitorCache"),
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// relay is the service under test with a mailbox and a token of it.
type relay struct {
	t     *testing.T
	h     host.Host
	dir   string
	st    *badgerstore.Store
	srv   *blobrelay.Server
	clock *clocktest.Fake
	res   blobrelay.Resources
	mb    protocol.MailboxID
	token []byte
}

func newRelay(t *testing.T, res blobrelay.Resources) *relay {
	t.Helper()
	return newRelayIn(t, res, t.TempDir(), badgerstore.Options{GCInterval: -1})
}

// newRelayIn is newRelay with its store and blobs in dir, the store opened
// with opts.
func newRelayIn(t *testing.T, res blobrelay.Resources, dir string, opts badgerstore.Options) *relay {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, h: h, dir: dir, clock: clocktest.New(t0), res: res, token: bytes.Repeat([]byte{9}, 16)}
	r.mb[0] = 5
	r.st, err = badgerstore.Create(context.Background(), filepath.Join(r.dir, "store"), badgerstore.ModeUnencrypted, opts)
	if err != nil {
		t.Fatal(err)
	}
	err = r.st.Update(context.Background(), func(tx *store.Tx) error {
		if err := tx.Relay().CreateMailbox(store.RelayMailbox{ID: r.mb, CreatedAt: t0}); err != nil {
			return err
		}
		_, _, err := tx.Relay().PutToken(r.mb, store.RelayToken{Hash: protocol.HashToken(r.token), CreatedAt: t0})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(func() {
		r.stop()
		r.st.Close()
		h.Close()
	})
	return r
}

func (r *relay) start() {
	r.t.Helper()
	blobs, err := blobfs.Open(filepath.Join(r.dir, "blobs"))
	if err != nil {
		r.t.Fatal(err)
	}
	r.srv, err = blobrelay.New(blobrelay.Config{Host: r.h, Store: r.st, Blobs: blobs, Resources: r.res, Clock: r.clock})
	if err != nil {
		r.t.Fatal(err)
	}
}

func (r *relay) stop() {
	if r.srv != nil {
		if err := r.srv.Close(); err != nil {
			r.t.Error(err)
		}
		if err := r.srv.Close(); err != nil {
			r.t.Error("second Close:", err)
		}
		r.srv = nil
	}
}

func (r *relay) totals() store.RelayBlobTotals {
	r.t.Helper()
	t, err := r.srv.Totals(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return t
}

// blobFiles counts the files in the blob directory (temporary ones too).
func (r *relay) blobFiles() int {
	n := 0
	filepath.Walk(filepath.Join(r.dir, "blobs"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// client is a raw blob stream to the relay from a host of its own.
type client struct {
	t    *testing.T
	h    host.Host
	str  network.Stream
	fr   *protocol.FrameReader
	next uint64
}

func (r *relay) dial(t *testing.T) *client {
	t.Helper()
	h, err := libp2p.New(libp2p.NoListenAddrs, libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: r.h.ID(), Addrs: r.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	str, err := h.NewStream(ctx, r.h.ID(), libp2pproto.ID(protocol.BlobProtocol))
	if err != nil {
		t.Fatal(err)
	}
	str.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, h: h, str: str, fr: protocol.NewFrameReader(str, protocol.MaxBlobFrame)}
}

// call sends req (and body after a PUT) and reads the response (and the
// body of a GET).
func (c *client) call(req *protocol.BlobRequest, body []byte) (*protocol.BlobResponse, []byte) {
	c.t.Helper()
	c.next++
	req.ID = c.next
	if err := protocol.WriteFrame(c.str, req); err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		if _, err := c.str.Write(body); err != nil {
			c.t.Fatal(err)
		}
	}
	var resp protocol.BlobResponse
	if err := c.fr.Read(&resp); err != nil {
		c.t.Fatalf("%s: %v", req.Op, err)
	}
	if resp.ID != req.ID || resp.Op != req.Op {
		c.t.Fatalf("answer %s %d to %s %d", resp.Op, resp.ID, req.Op, req.ID)
	}
	var got []byte
	if resp.Code == protocol.CodeOK && req.Op == protocol.BlobGet {
		var err error
		if got, err = io.ReadAll(c.fr.Body(resp.Size)); err != nil {
			c.t.Fatal(err)
		}
	}
	return &resp, got
}

// blob is one blob and the capabilities of one reference to it.
type blob struct {
	data          []byte
	hash          attachment.Hash
	read, write   attachment.Cap
	readCapHash   attachment.Hash
	writeCapOther attachment.Cap
}

func newBlob(n int, seed byte) blob {
	b := blob{data: bytes.Repeat([]byte{seed}, n)}
	b.data[0] = seed + 1
	b.hash = attachment.HashBlob(b.data)
	b.read[0], b.write[0], b.writeCapOther[0] = seed, seed+1, seed+2
	b.readCapHash = b.read.Hash()
	return b
}

func (r *relay) put(b blob) *protocol.BlobRequest {
	return &protocol.BlobRequest{Op: protocol.BlobPut, Hash: b.hash, Cap: b.write, ReadCapHash: b.readCapHash,
		Mailbox: r.mb, Token: r.token, Size: int64(len(b.data))}
}

func TestLifecycle(t *testing.T) {
	r := newRelay(t, blobrelay.DefaultResources())
	c := r.dial(t)
	b := newBlob(300_000, 1)
	resp, _ := c.call(r.put(b), b.data)
	if resp.Code != protocol.CodeOK || time.UnixMilli(resp.StoredUntil).Sub(t0) != r.res.TTL {
		t.Fatalf("put: %+v", resp)
	}
	// The same upload again (its answer lost) is ok, the bytes stored once.
	resp, _ = c.call(r.put(b), b.data)
	if resp.Code != protocol.CodeOK {
		t.Fatalf("put again: %+v", resp)
	}
	// Another reference (another reader) links to the stored bytes.
	b2 := b
	b2.read[1], b2.write[1] = 1, 1
	b2.readCapHash = b2.read.Hash()
	link := r.put(b2)
	link.Op = protocol.BlobLink
	if resp, _ := c.call(link, nil); resp.Code != protocol.CodeOK {
		t.Fatalf("link: %+v", resp)
	}
	if tot := r.totals(); tot != (store.RelayBlobTotals{Blobs: 1, Bytes: 300_000, Refs: 2}) {
		t.Fatalf("totals %+v", tot)
	}
	// GET with either reference's read capability; not with another.
	for _, cap := range []attachment.Cap{b.read, b2.read} {
		resp, got := c.call(&protocol.BlobRequest{Op: protocol.BlobGet, Hash: b.hash, Cap: cap}, nil)
		if resp.Code != protocol.CodeOK || !bytes.Equal(got, b.data) {
			t.Fatalf("get: %+v, %d bytes", resp, len(got))
		}
	}
	var wrong attachment.Cap
	wrong[0] = 99
	if resp, _ := c.call(&protocol.BlobRequest{Op: protocol.BlobGet, Hash: b.hash, Cap: wrong}, nil); resp.Code != protocol.CodeNotFound {
		t.Fatalf("get with a wrong capability: %+v", resp)
	}
	// ACK deletes the first reference; the blob stays for the second.
	if resp, _ := c.call(&protocol.BlobRequest{Op: protocol.BlobAck, Hash: b.hash, Cap: b.read}, nil); resp.Code != protocol.CodeOK {
		t.Fatalf("ack: %+v", resp)
	}
	if resp, _ := c.call(&protocol.BlobRequest{Op: protocol.BlobGet, Hash: b.hash, Cap: b.read}, nil); resp.Code != protocol.CodeNotFound {
		t.Fatalf("get after its ack: %+v", resp)
	}
	// DELETE needs the write capability.
	del := &protocol.BlobRequest{Op: protocol.BlobDelete, Hash: b.hash, Cap: b2.writeCapOther, ReadCapHash: b2.readCapHash}
	if resp, _ := c.call(del, nil); resp.Code != protocol.CodeNotFound {
		t.Fatalf("delete with a wrong write capability: %+v", resp)
	}
	del.Cap = b2.write
	if resp, _ := c.call(del, nil); resp.Code != protocol.CodeOK {
		t.Fatalf("delete: %+v", resp)
	}
	if tot := r.totals(); tot != (store.RelayBlobTotals{}) || r.blobFiles() != 0 {
		t.Fatalf("after the last reference: totals %+v, %d files", tot, r.blobFiles())
	}
	// A LINK of a blob the relay does not hold.
	if resp, _ := c.call(link, nil); resp.Code != protocol.CodeNotFound {
		t.Fatalf("link of a deleted blob: %+v", resp)
	}
}

// TestRefusals: each refused upload gets its code, its bytes are dropped,
// and the stream goes on.
func TestRefusals(t *testing.T) {
	res := blobrelay.DefaultResources()
	res.MaxBlob = 200_000
	res.MailboxMaxBytes = 250_000
	res.StoreMaxBytes = 280_000
	r := newRelay(t, res)
	c := r.dial(t)
	big := newBlob(200_001, 2)
	if resp, _ := c.call(r.put(big), big.data); resp.Code != protocol.CodeTooLarge {
		t.Fatalf("over the largest blob: %+v", resp)
	}
	b := newBlob(150_000, 3)
	req := r.put(b)
	req.Mailbox[0] ^= 1
	if resp, _ := c.call(req, b.data); resp.Code != protocol.CodeUnknownMailbox {
		t.Fatalf("unknown mailbox: %+v", resp)
	}
	req = r.put(b)
	req.Token = bytes.Repeat([]byte{1}, 16)
	if resp, _ := c.call(req, b.data); resp.Code != protocol.CodeTokenRefused {
		t.Fatalf("wrong token: %+v", resp)
	}
	req = r.put(b)
	bad := bytes.Clone(b.data)
	bad[5] ^= 1
	if resp, _ := c.call(req, bad); resp.Code != protocol.CodeMalformed {
		t.Fatalf("bytes that do not match the hash: %+v", resp)
	}
	if resp, _ := c.call(r.put(b), b.data); resp.Code != protocol.CodeOK {
		t.Fatalf("put: %+v", resp)
	}
	other := r.put(b)
	other.Cap[5] ^= 1
	if resp, _ := c.call(other, b.data); resp.Code != protocol.CodeMalformed {
		t.Fatalf("a reference under another write capability: %+v", resp)
	}
	b2 := newBlob(150_000, 4)
	if resp, _ := c.call(r.put(b2), b2.data); resp.Code != protocol.CodeMailboxQuota {
		t.Fatalf("over the mailbox's quota: %+v", resp)
	}
	// Another mailbox: the relay's total is what stops it.
	mb2 := r.mb
	mb2[1] = 1
	r.st.Update(context.Background(), func(tx *store.Tx) error {
		tx.Relay().CreateMailbox(store.RelayMailbox{ID: mb2, CreatedAt: t0})
		_, _, err := tx.Relay().PutToken(mb2, store.RelayToken{Hash: protocol.HashToken(r.token)})
		return err
	})
	req = r.put(b2)
	req.Mailbox = mb2
	if resp, _ := c.call(req, b2.data); resp.Code != protocol.CodeStoreFull {
		t.Fatalf("over the relay's total: %+v", resp)
	}
	// The same blob again for the other mailbox is stored once: the total
	// does not grow.
	req = r.put(b)
	req.Mailbox, req.ReadCapHash = mb2, attachment.HashBlob([]byte("another reader"))
	if resp, _ := c.call(req, b.data); resp.Code != protocol.CodeOK {
		t.Fatalf("the stored blob for another mailbox: %+v", resp)
	}
	if tot := r.totals(); tot != (store.RelayBlobTotals{Blobs: 1, Bytes: 150_000, Refs: 2}) || r.blobFiles() != 1 {
		t.Fatalf("totals %+v, %d files", tot, r.blobFiles())
	}
}

// TestBadStreams: a frame that does not decode is answered and the stream
// reset; an upload that stops in the middle is cut off at the deadline and
// leaves nothing.
func TestBadStreams(t *testing.T) {
	res := blobrelay.DefaultResources()
	res.WriteTimeout = 500 * time.Millisecond
	r := newRelay(t, res)
	c := r.dial(t)
	c.str.Write([]byte{5, 1, 2, 3, 4, 5})
	var resp protocol.BlobResponse
	if err := c.fr.Read(&resp); err != nil || resp.Code != protocol.CodeMalformed || resp.ID != 0 {
		t.Fatalf("answer to garbage: %+v, %v", resp, err)
	}
	if _, err := c.fr.Next(); err == nil {
		t.Fatal("the stream went on after garbage")
	}

	c = r.dial(t)
	b := newBlob(500_000, 5)
	req := r.put(b)
	req.ID = 1
	if err := protocol.WriteFrame(c.str, req); err != nil {
		t.Fatal(err)
	}
	c.str.Write(b.data[:100_000])
	start := time.Now()
	if b, err := c.fr.Next(); err == nil {
		var resp protocol.BlobResponse
		resp.Unmarshal(b)
		t.Fatalf("a stalled upload was answered: %+v", resp)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("a stalled upload was cut off after %v", d)
	}
	time.Sleep(100 * time.Millisecond)
	if tot := r.totals(); tot.Refs != 0 {
		t.Fatalf("a cut-off upload was stored: %+v", tot)
	}
	if n := r.blobFiles(); n != 0 {
		t.Fatalf("%d files left by a cut-off upload", n)
	}
}

// TestSweep: references expire with the TTL, and go with their mailbox.
func TestSweep(t *testing.T) {
	r := newRelay(t, blobrelay.DefaultResources())
	c := r.dial(t)
	b1, b2 := newBlob(1000, 6), newBlob(2000, 7)
	for _, b := range []blob{b1, b2} {
		if resp, _ := c.call(r.put(b), b.data); resp.Code != protocol.CodeOK {
			t.Fatal(resp.Code)
		}
	}
	r.clock.Advance(r.res.TTL / 2)
	b3 := newBlob(3000, 8)
	c.call(r.put(b3), b3.data)
	r.clock.Advance(r.res.TTL/2 + time.Second)
	// Expired but not swept yet: not served.
	if resp, _ := c.call(&protocol.BlobRequest{Op: protocol.BlobGet, Hash: b1.hash, Cap: b1.read}, nil); resp.Code != protocol.CodeNotFound {
		t.Fatalf("get of an expired blob: %+v", resp)
	}
	if err := r.srv.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tot := r.totals(); tot != (store.RelayBlobTotals{Blobs: 1, Bytes: 3000, Refs: 1}) || r.blobFiles() != 1 {
		t.Fatalf("after the sweep: %+v, %d files", tot, r.blobFiles())
	}
	err := r.st.Update(context.Background(), func(tx *store.Tx) error {
		_, err := tx.Relay().DeleteMailbox(r.mb, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tot := r.totals(); tot != (store.RelayBlobTotals{}) || r.blobFiles() != 0 {
		t.Fatalf("after the mailbox's deletion: %+v, %d files", tot, r.blobFiles())
	}
}

// TestRestart: stored blobs survive a restart; a file without a reference
// (a crash between writing it and committing) is removed.
func TestRestart(t *testing.T) {
	r := newRelay(t, blobrelay.DefaultResources())
	c := r.dial(t)
	b := newBlob(10_000, 9)
	c.call(r.put(b), b.data)
	r.stop()
	dir, err := blobfs.Open(filepath.Join(r.dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	w, _ := dir.Create()
	w.Write([]byte("orphan"))
	if err := w.Commit(attachment.HashBlob([]byte("orphan"))); err != nil {
		t.Fatal(err)
	}
	r.start()
	if n := r.blobFiles(); n != 1 {
		t.Fatalf("%d blob files after the restart, want 1", n)
	}
	c = r.dial(t)
	if resp, got := c.call(&protocol.BlobRequest{Op: protocol.BlobGet, Hash: b.hash, Cap: b.read}, nil); resp.Code != protocol.CodeOK || !bytes.Equal(got, b.data) {
		t.Fatalf("get after the restart: %+v", resp)
	}
}

// TestDiskFull fills the disk under a relay's blobs and store: an upload
// is answered disk_full (its bytes found no room; store_full is the
// relay's quota), stored blobs are still served, and once room returns
// uploads are taken again.
func TestDiskFull(t *testing.T) {
	fs := storetest.Tmpfs(t, 160<<20)
	res := blobrelay.DefaultResources()
	res.MinFreeDisk = 0 // the write itself finds the disk full
	r := newRelayIn(t, res, fs, badgerstore.Options{GCInterval: -1, MemTableSize: 1 << 20})
	c := r.dial(t)
	b := newBlob(300_000, 1)
	if resp, _ := c.call(r.put(b), b.data); resp.Code != protocol.CodeOK {
		t.Fatalf("put: %+v", resp)
	}
	filler := filepath.Join(fs, "filler")
	storetest.FillDisk(t, filler)
	b2 := newBlob(300_000, 7)
	if resp, _ := c.call(r.put(b2), b2.data); resp.Code != protocol.CodeDiskFull {
		t.Fatalf("put on a full disk: %+v, want disk_full", resp)
	}
	if resp, got := c.call(&protocol.BlobRequest{Op: protocol.BlobGet, Hash: b.hash, Cap: b.read}, nil); resp.Code != protocol.CodeOK || !bytes.Equal(got, b.data) {
		t.Fatalf("get on a full disk: %+v, %d bytes", resp, len(got))
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, _ := c.call(r.put(b2), b2.data)
		if resp.Code == protocol.CodeOK {
			break
		}
		if resp.Code != protocol.CodeDiskFull || time.Now().After(deadline) {
			t.Fatalf("put after room returned: %+v", resp)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if tot := r.totals(); tot.Blobs != 2 || r.blobFiles() != 2 {
		t.Fatalf("totals %+v, %d files, want 2 blobs", tot, r.blobFiles())
	}
}
