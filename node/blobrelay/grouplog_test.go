package blobrelay_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/blobrelay"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// groupLog makes a group log in r's store, open at epoch 1 for token 1,
// and returns its ID.
func (r *relay) groupLog(seed byte) protocol.GroupLogID {
	r.t.Helper()
	var id protocol.GroupLogID
	id[0] = seed
	err := r.st.Update(context.Background(), func(tx *store.Tx) error {
		return tx.RelayGroups().CreateLog(store.RelayGroupLog{ID: id, CreatedAt: t0, IdleUntil: t0.Add(time.Hour), Epoch: 1},
			groupToken(1).Hash())
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return id
}

// commitLog closes the open epoch e of log id with a commit, opening e+1
// for groupToken(e+1).
func (r *relay) commitLog(id protocol.GroupLogID, e uint64) {
	r.t.Helper()
	err := r.st.Update(context.Background(), func(tx *store.Tx) error {
		_, _, err := tx.RelayGroups().Append(store.GroupAppend{Log: id, Epoch: e, Token: groupToken(e).Hash(), Commit: true,
			Next: groupToken(e + 1).Hash(), Entry: []byte("commit"), StoredUntil: t0.Add(time.Hour),
			IdleUntil: t0.Add(time.Hour), Now: t0}, nil)
		return err
	})
	if err != nil {
		r.t.Fatal(err)
	}
}

func groupToken(e uint64) protocol.GroupToken {
	var t protocol.GroupToken
	t[0], t[1] = 0x77, byte(e)
	return t
}

func groupPut(b blob, id protocol.GroupLogID, e uint64) *protocol.BlobRequest {
	tok := groupToken(e)
	return &protocol.BlobRequest{Op: protocol.BlobPut, Hash: b.hash, Cap: b.write, ReadCapHash: b.readCapHash,
		Log: id, Epoch: e, Token: tok[:], Size: int64(len(b.data))}
}

// TestGroupLog: a group's blobs are uploaded under its log with the token
// of an epoch the log keeps, charged to the log's quota; every member
// reads them with the same read capability, so an ACK does not delete
// them; they go with the log.
func TestGroupLog(t *testing.T) {
	res := blobrelay.DefaultResources()
	res.LogMaxBytes = 250_000
	r := newRelay(t, res)
	log := r.groupLog(1)
	c := r.dial(t)
	b := newBlob(150_000, 1)
	resp, _ := c.call(groupPut(b, log, 1), b.data)
	if resp.Code != protocol.CodeOK || time.UnixMilli(resp.StoredUntil).Sub(t0) != r.res.TTL {
		t.Fatalf("put: %+v", resp)
	}
	// Every member's ACK is answered ok and the reference stays.
	for i := range 3 {
		if resp, _ := c.call(&protocol.BlobRequest{Op: protocol.BlobAck, Hash: b.hash, Cap: b.read}, nil); resp.Code != protocol.CodeOK {
			t.Fatalf("ack %d: %+v", i, resp)
		}
	}
	if resp, got := c.call(&protocol.BlobRequest{Op: protocol.BlobGet, Hash: b.hash, Cap: b.read}, nil); resp.Code != protocol.CodeOK || !bytes.Equal(got, b.data) {
		t.Fatalf("get after acks: %+v, %d bytes", resp, len(got))
	}

	b2 := newBlob(120_000, 2)
	for _, tc := range []struct {
		name string
		edit func(q *protocol.BlobRequest)
		want protocol.Code
	}{
		{"unknown log", func(q *protocol.BlobRequest) { q.Log[1] = 1 }, protocol.CodeUnknownLog},
		{"token of another epoch", func(q *protocol.BlobRequest) { tok := groupToken(2); q.Token = tok[:] }, protocol.CodeTokenRefused},
		{"epoch the log never had", func(q *protocol.BlobRequest) { q.Epoch = 5 }, protocol.CodeWrongEpoch},
		{"a mailbox's token for the log", func(q *protocol.BlobRequest) { q.Token = r.token }, protocol.CodeTokenRefused},
		{"over the log's quota", func(q *protocol.BlobRequest) {}, protocol.CodeQuotaExceeded},
	} {
		q := groupPut(b2, log, 1)
		tc.edit(q)
		if resp, _ := c.call(q, b2.data); resp.Code != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, resp.Code, tc.want)
		}
	}
	// The log's quota is its own: the mailbox takes the blob.
	if resp, _ := c.call(r.put(b2), b2.data); resp.Code != protocol.CodeOK {
		t.Fatalf("put for the mailbox: %+v", resp)
	}

	// A commit opens epoch 2: the token of epoch 1 still uploads (the log
	// keeps that epoch), and so does epoch 2's.
	r.commitLog(log, 1)
	b3, b4 := newBlob(40_000, 3), newBlob(40_000, 4)
	if resp, _ := c.call(groupPut(b3, log, 1), b3.data); resp.Code != protocol.CodeOK {
		t.Fatalf("put with a closed epoch's token: %+v", resp)
	}
	if resp, _ := c.call(groupPut(b4, log, 2), b4.data); resp.Code != protocol.CodeOK {
		t.Fatalf("put with the open epoch's token: %+v", resp)
	}
	err := r.st.View(context.Background(), func(tx *store.Tx) error {
		u, err := tx.RelayBlobs().LogUsage(log)
		if u != (store.BlobUsage{Count: 3, Bytes: 230_000}) {
			t.Errorf("log usage %+v", u)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// The log goes: its blobs go with it at the next sweep; the mailbox's
	// blob stays.
	err = r.st.Update(context.Background(), func(tx *store.Tx) error {
		_, err := tx.RelayGroups().DeleteLog(log, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tot := r.totals(); tot != (store.RelayBlobTotals{Blobs: 1, Bytes: 120_000, Refs: 1}) || r.blobFiles() != 1 {
		t.Fatalf("after the log was deleted: totals %+v, %d files", tot, r.blobFiles())
	}
	if resp, _ := c.call(&protocol.BlobRequest{Op: protocol.BlobGet, Hash: b.hash, Cap: b.read}, nil); resp.Code != protocol.CodeNotFound {
		t.Fatalf("get after the log was deleted: %+v", resp)
	}
}

// TestGroupLogExpiry: a group's blob expires with the relay's TTL, as the
// log's entries do.
func TestGroupLogExpiry(t *testing.T) {
	r := newRelay(t, blobrelay.DefaultResources())
	log := r.groupLog(2)
	c := r.dial(t)
	b := newBlob(10_000, 5)
	if resp, _ := c.call(groupPut(b, log, 1), b.data); resp.Code != protocol.CodeOK {
		t.Fatalf("put: %+v", resp)
	}
	r.clock.Advance(r.res.TTL)
	if err := r.srv.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tot := r.totals(); tot != (store.RelayBlobTotals{}) || r.blobFiles() != 0 {
		t.Fatalf("after the TTL: totals %+v, %d files", tot, r.blobFiles())
	}
}
