package relay_test

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/node/blobrelay"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store/blobfs"
)

// startBlobs starts the relay's attachment service on its host and store,
// as a node does, its creator quota refusals counted by the relay.
func (r *trelay) startBlobs(res blobrelay.Resources) *blobrelay.Server {
	r.t.Helper()
	dir, err := blobfs.Open(filepath.Join(filepath.Dir(r.dir), "blobs"))
	if err != nil {
		r.t.Fatal(err)
	}
	srv, err := blobrelay.New(blobrelay.Config{Host: r.h, Store: r.st, Blobs: dir, Resources: res, Clock: r.clock,
		QuotaRefused: r.srv.QuotaRefused})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { srv.Close() })
	return srv
}

// putBlob uploads n random bytes as a blob for mailbox mb, on a blob
// stream of its own, and returns the answer's code.
func (c *client) putBlob(mb protocol.MailboxID, tok []byte, n int) protocol.Code {
	c.t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	var read, write attachment.Cap
	rand.Read(read[:])
	rand.Read(write[:])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	str, err := c.h.NewStream(ctx, peer.ID(c.relay), libp2pproto.ID(protocol.BlobProtocol))
	if err != nil {
		c.t.Fatal(err)
	}
	defer str.Close()
	str.SetDeadline(time.Now().Add(30 * time.Second))
	req := &protocol.BlobRequest{ID: 1, Op: protocol.BlobPut, Hash: attachment.HashBlob(data), Cap: write,
		ReadCapHash: read.Hash(), Mailbox: mb, Token: tok, Size: int64(n)}
	if err := protocol.WriteFrame(str, req); err != nil {
		c.t.Fatal(err)
	}
	if _, err := str.Write(data); err != nil {
		c.t.Fatal(err)
	}
	var resp protocol.BlobResponse
	if err := protocol.NewFrameReader(str, protocol.MaxBlobFrame).Read(&resp); err != nil {
		c.t.Fatal(err)
	}
	return resp.Code
}

// TestCreatorBlobQuotas: one client with several peer IDs from one
// address range makes mailboxes and uploads attachment blobs into them
// until refused: its blobs stop at the blob bytes of each peer and of the
// range (mailbox_quota, counted by quota), across a restart, while a
// client from another range still uploads — the blob store never reaches
// store_full for it. A mailbox deleted gives its blobs' bytes back.
func TestCreatorBlobQuotas(t *testing.T) {
	const blob = 100_000
	res := testResources()
	res.PeerMaxMailboxes, res.SubnetMaxMailboxes = 2, 6
	res.SubnetLoopback = true
	r := newRelay(t, res)
	bres := blobrelay.DefaultResources()
	bres.MaxBlob = blob
	bres.MailboxMaxBytes = 4 * blob
	bres.StoreMaxBytes = 12 * blob
	bres.MinFreeDisk = 1 << 20
	bres.PeerMaxBytes, bres.SubnetMaxBytes = 3*blob, 8*blob
	blobs := r.startBlobs(bres)

	// The attacker: three peers from 127.0.1.1, two mailboxes each (all
	// its range may make), a token in each.
	type owned struct {
		c   *client
		m   mailbox
		tok []byte
	}
	var boxes []owned
	for range 3 {
		c := r.dialFrom(t, "127.0.1.1")
		for range 2 {
			m := c.create()
			boxes = append(boxes, owned{c, m, c.token(m, 0, 0)})
		}
	}
	// Blobs into each mailbox in turn until every one is refused: 3 per
	// peer, 8 for the range, though each mailbox's own quota (4) and the
	// store (12) would take more.
	codes := map[protocol.Code]int{}
	for range 5 {
		for _, b := range boxes {
			codes[b.c.putBlob(b.m.id, b.tok, blob)]++
		}
	}
	if codes[protocol.CodeOK] != 8 || codes[protocol.CodeMailboxQuota] != 22 {
		t.Errorf("the attacker's uploads: %v, want 8 ok (its range's blob bytes) and 22 mailbox_quota", codes)
	}
	st := r.srv.Stats()
	for _, q := range []string{"blob_peer_bytes", "blob_subnet_bytes"} {
		if st.QuotaRefusals[q] == 0 {
			t.Errorf("no refusal counted for %s: %v", q, st.QuotaRefusals)
		}
	}

	// Another range uploads.
	other := r.dialFrom(t, "127.0.2.1")
	m := other.create()
	tok := other.token(m, 0, 0)
	if code := other.putBlob(m.id, tok, blob); code != protocol.CodeOK {
		t.Fatalf("the other client's upload: %s", code)
	}

	// The quotas are in the store: after a restart the attacker is still
	// refused.
	blobs.Close()
	r.srv.Close()
	r.start()
	blobs = r.startBlobs(bres)
	if code := boxes[5].c.putBlob(boxes[5].m.id, boxes[5].tok, blob); code != protocol.CodeMailboxQuota {
		t.Errorf("the attacker after a restart: %s", code)
	}

	// A mailbox deleted: once its blobs are swept, their bytes count no
	// more, and the range uploads again.
	b := boxes[2]
	b.c.open() // the restart reset its stream
	if resp := b.c.call(&protocol.RelayRequest{Op: protocol.RelayDeleteMailbox, Mailbox: b.m.id}, b.m.key); resp.Code != protocol.CodeOK {
		t.Fatalf("delete: %s", resp.Code)
	}
	if err := blobs.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, b := range boxes[3:5] {
		if code := b.c.putBlob(b.m.id, b.tok, blob); code != protocol.CodeOK {
			t.Errorf("an upload after a deletion: %s", code)
		}
	}
}
