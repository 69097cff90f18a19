package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Attachments: the relay's blob references with their counts, and the
// personal node's file records with their indexes.

func blobRef(hash, readCap, mailbox byte, size uint64) store.RelayBlobRef {
	return store.RelayBlobRef{Hash: id32(hash), ReadCapHash: id32(readCap), WriteCapHash: id32(readCap + 100),
		Mailbox: id32(mailbox), Size: size, StoredUntil: T0.Add(time.Hour), CreatedAt: T0}
}

func refKey(r store.RelayBlobRef) store.BlobRefKey {
	return store.BlobRefKey{Hash: r.Hash, ReadCapHash: r.ReadCapHash}
}

func checkBlobTotals(t *testing.T, st store.Store, want store.RelayBlobTotals, usage map[byte]store.BlobUsage) {
	t.Helper()
	view(t, st, func(tx *store.Tx) error {
		got, err := tx.RelayBlobs().Totals()
		if err != nil {
			return err
		}
		if got != want {
			t.Errorf("blob totals: got %+v, want %+v", got, want)
		}
		for mb, w := range usage {
			u, err := tx.RelayBlobs().Usage(id32(mb))
			if err != nil {
				return err
			}
			if u != w {
				t.Errorf("usage of mailbox %d: got %+v, want %+v", mb, u, w)
			}
		}
		return nil
	})
}

func testRelayBlobs(t *testing.T, st store.Store) {
	ctx := context.Background()
	a1 := blobRef(1, 10, 1, 1000) // blob 1 for mailbox 1
	a2 := blobRef(1, 11, 2, 1000) // the same blob for mailbox 2: stored once
	a2.Readers = 3
	b1 := blobRef(2, 12, 1, 500)
	b1.StoredUntil = T0.Add(time.Minute)
	var stored []bool
	check := func(c *store.BlobCharge) error {
		stored = append(stored, c.Stored)
		return nil
	}
	update(t, st, func(tx *store.Tx) error {
		for _, r := range []store.RelayBlobRef{a1, a2, b1} {
			if _, err := tx.RelayBlobs().AddBlobRef(r, check); err != nil {
				return err
			}
		}
		return nil
	})
	equal(t, "stored before each reference", stored, []bool{false, true, false})
	view(t, st, func(tx *store.Tx) error {
		all, err := tx.RelayBlobs().Mailboxes(protocol.MailboxID{}, 0)
		equal(t, "Mailboxes", all, []protocol.MailboxID{id32(1), id32(2)})
		next, err2 := tx.RelayBlobs().Mailboxes(id32(1), 1)
		equal(t, "Mailboxes after the first", next, []protocol.MailboxID{id32(2)})
		return errors.Join(err, err2)
	})
	checkBlobTotals(t, st, store.RelayBlobTotals{Blobs: 2, Bytes: 1500, Refs: 3},
		map[byte]store.BlobUsage{1: {Count: 2, Bytes: 1500}, 2: {Count: 1, Bytes: 1000}, 3: {}})

	// The same reference again is ErrExists and returns the stored one; a
	// size that differs from the stored blob's is ErrInvalid; a check that
	// refuses writes nothing.
	err := st.Update(ctx, func(tx *store.Tx) error {
		again := a1
		again.WriteCapHash = id32(99)
		got, err := tx.RelayBlobs().AddBlobRef(again, nil)
		if err == nil || got.WriteCapHash != a1.WriteCapHash {
			t.Errorf("AddBlobRef twice returned %+v", got)
		}
		return err
	})
	if !errors.Is(err, store.ErrExists) {
		t.Errorf("reference twice: got %v, want ErrExists", err)
	}
	err = st.Update(ctx, func(tx *store.Tx) error {
		_, err := tx.RelayBlobs().AddBlobRef(blobRef(1, 13, 3, 999), nil)
		return err
	})
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("reference with another size: got %v, want ErrInvalid", err)
	}
	quota := errors.New("quota")
	err = st.Update(ctx, func(tx *store.Tx) error {
		_, err := tx.RelayBlobs().AddBlobRef(blobRef(3, 14, 3, 10), func(*store.BlobCharge) error { return quota })
		return err
	})
	if !errors.Is(err, quota) {
		t.Errorf("refused by check: got %v", err)
	}
	err = st.Update(ctx, func(tx *store.Tx) error {
		_, err := tx.RelayBlobs().AddBlobRef(store.RelayBlobRef{Hash: id32(5), ReadCapHash: id32(5)}, nil)
		return err
	})
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("reference without size or mailbox: got %v, want ErrInvalid", err)
	}
	checkBlobTotals(t, st, store.RelayBlobTotals{Blobs: 2, Bytes: 1500, Refs: 3}, nil)

	view(t, st, func(tx *store.Tx) error {
		got, err := tx.RelayBlobs().Ref(refKey(a2))
		if err != nil {
			return err
		}
		equal(t, "Ref", got, a2)
		b, err := tx.RelayBlobs().Blob(id32(1))
		if err != nil {
			return err
		}
		equal(t, "Blob", b, store.RelayBlob{Hash: id32(1), Size: 1000, Refs: 2, StoredAt: T0})
		if ok, err := tx.RelayBlobs().HasBlob(id32(3)); ok || err != nil {
			t.Errorf("HasBlob of a refused blob: %v, %v", ok, err)
		}
		if _, err := tx.RelayBlobs().Ref(store.BlobRefKey{Hash: id32(1), ReadCapHash: id32(12)}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Ref under another blob's read capability: got %v, want ErrNotFound", err)
		}
		exp, err := tx.RelayBlobs().ExpiredRefs(T0.Add(time.Minute), 0)
		if err != nil {
			return err
		}
		equal(t, "ExpiredRefs", exp, []store.BlobRefKey{refKey(b1)})
		refs, err := tx.RelayBlobs().MailboxRefs(id32(1), 0)
		if err != nil {
			return err
		}
		equal(t, "MailboxRefs", len(refs), 2)
		refs, err = tx.RelayBlobs().MailboxRefs(id32(1), 1)
		equal(t, "MailboxRefs with a limit", len(refs), 1)
		return err
	})

	// Readers count down; the last acknowledgement removes the reference,
	// and the blob stays while another reference holds it.
	for i, want := range []struct{ removed, last bool }{{false, false}, {false, false}, {true, false}} {
		update(t, st, func(tx *store.Tx) error {
			removed, last, err := tx.RelayBlobs().AckBlobRef(refKey(a2))
			if removed != want.removed || last != want.last {
				t.Errorf("ack %d: removed %v last %v, want %+v", i, removed, last, want)
			}
			return err
		})
	}
	checkBlobTotals(t, st, store.RelayBlobTotals{Blobs: 2, Bytes: 1500, Refs: 2},
		map[byte]store.BlobUsage{1: {Count: 2, Bytes: 1500}, 2: {}})
	err = st.Update(ctx, func(tx *store.Tx) error {
		_, _, err := tx.RelayBlobs().AckBlobRef(refKey(a2))
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ack of a removed reference: got %v, want ErrNotFound", err)
	}
	// The last reference of blob 1 goes: the blob goes with it.
	update(t, st, func(tx *store.Tx) error {
		last, err := tx.RelayBlobs().RemoveBlobRef(refKey(a1))
		if !last {
			t.Error("removing the last reference did not report it")
		}
		return err
	})
	update(t, st, func(tx *store.Tx) error {
		last, err := tx.RelayBlobs().RemoveBlobRef(refKey(b1))
		if !last {
			t.Error("removing the last reference of blob 2 did not report it")
		}
		return err
	})
	checkBlobTotals(t, st, store.RelayBlobTotals{}, map[byte]store.BlobUsage{1: {}, 2: {}})
	view(t, st, func(tx *store.Tx) error {
		if ok, err := tx.RelayBlobs().HasBlob(id32(1)); ok || err != nil {
			t.Errorf("HasBlob after its last reference: %v, %v", ok, err)
		}
		exp, err := tx.RelayBlobs().ExpiredRefs(T0.Add(24*time.Hour), 0)
		equal(t, "ExpiredRefs when empty", len(exp), 0)
		return err
	})
}

// testRelayBlobLogs: references charged to group logs count against the
// log's usage, not a mailbox's, share blobs with mailbox references, and
// are listed by log.
func testRelayBlobLogs(t *testing.T, st store.Store) {
	ctx := context.Background()
	m := blobRef(1, 10, 1, 1000) // blob 1 for mailbox 1
	g := blobRef(1, 11, 0, 1000) // the same blob for log 7
	g.Log = id32(7)
	g.Readers = 1
	h := blobRef(2, 12, 0, 300) // blob 2 for log 8
	h.Log = id32(8)
	var usages []store.BlobUsage
	check := func(c *store.BlobCharge) error {
		usages = append(usages, c.Usage)
		return nil
	}
	update(t, st, func(tx *store.Tx) error {
		for _, r := range []store.RelayBlobRef{m, g, h} {
			if _, err := tx.RelayBlobs().AddBlobRef(r, check); err != nil {
				return err
			}
		}
		return nil
	})
	equal(t, "usage each check saw", usages, []store.BlobUsage{{}, {}, {}})
	both := m
	both.ReadCapHash, both.Log = id32(13), id32(7)
	err := st.Update(ctx, func(tx *store.Tx) error {
		_, err := tx.RelayBlobs().AddBlobRef(both, nil)
		return err
	})
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("reference for a mailbox and a log: got %v, want ErrInvalid", err)
	}
	checkBlobTotals(t, st, store.RelayBlobTotals{Blobs: 2, Bytes: 1300, Refs: 3},
		map[byte]store.BlobUsage{1: {Count: 1, Bytes: 1000}, 7: {}, 8: {}})
	view(t, st, func(tx *store.Tx) error {
		u7, err := tx.RelayBlobs().LogUsage(id32(7))
		equal(t, "LogUsage 7", u7, store.BlobUsage{Count: 1, Bytes: 1000})
		u1, err2 := tx.RelayBlobs().LogUsage(id32(1))
		equal(t, "LogUsage of a mailbox's ID", u1, store.BlobUsage{})
		got, err3 := tx.RelayBlobs().Ref(refKey(g))
		equal(t, "Ref of a log's reference", got, g)
		logs, err4 := tx.RelayBlobs().Logs(protocol.GroupLogID{}, 0)
		equal(t, "Logs", logs, []protocol.GroupLogID{id32(7), id32(8)})
		next, err5 := tx.RelayBlobs().Logs(id32(7), 0)
		equal(t, "Logs after the first", next, []protocol.GroupLogID{id32(8)})
		boxes, err6 := tx.RelayBlobs().Mailboxes(protocol.MailboxID{}, 0)
		equal(t, "Mailboxes", boxes, []protocol.MailboxID{id32(1)})
		refs, err7 := tx.RelayBlobs().LogRefs(id32(7), 0)
		equal(t, "LogRefs", refs, []store.BlobRefKey{refKey(g)})
		return errors.Join(err, err2, err3, err4, err5, err6, err7)
	})
	update(t, st, func(tx *store.Tx) error {
		last, err := tx.RelayBlobs().RemoveBlobRef(refKey(g))
		equal(t, "last after the log's reference of a shared blob", last, false)
		return err
	})
	view(t, st, func(tx *store.Tx) error {
		u7, err := tx.RelayBlobs().LogUsage(id32(7))
		equal(t, "LogUsage 7 after removal", u7, store.BlobUsage{})
		logs, err2 := tx.RelayBlobs().Logs(protocol.GroupLogID{}, 0)
		equal(t, "Logs after removal", logs, []protocol.GroupLogID{id32(8)})
		return errors.Join(err, err2)
	})
	checkBlobTotals(t, st, store.RelayBlobTotals{Blobs: 2, Bytes: 1300, Refs: 2},
		map[byte]store.BlobUsage{1: {Count: 1, Bytes: 1000}})
}

func testFiles(t *testing.T, st store.Store) {
	out := store.File{ID: id16(1), Peer: id32(2), Outgoing: true, Pointer: []byte("pointer"), Name: "a.jpg",
		MIME: "image/jpeg", Size: 600000, Hashes: [][32]byte{id32(10), id32(11), id32(12)}, State: store.FileQueued,
		Secret: id32(3), Relays: []store.FileRelay{{Relay: []byte("relay"), Mailbox: id32(4)}},
		Pending: true, CreatedAt: T0, UpdatedAt: T0}
	in := store.File{ID: id16(5), Peer: id32(6), Pointer: []byte("other"), Size: 10, State: store.FileQueued,
		CreatedAt: T0.Add(time.Second), UpdatedAt: T0}
	update(t, st, func(tx *store.Tx) error {
		if err := tx.Files().Put(&out); err != nil {
			return err
		}
		return tx.Files().Put(&in)
	})
	view(t, st, func(tx *store.Tx) error {
		got, err := tx.Files().Get(out.ID)
		if err != nil {
			return err
		}
		equal(t, "Get", got, out)
		pending, err := tx.Files().Pending()
		equal(t, "Pending", pending, []protocol.MessageID{out.ID})
		if err != nil {
			return err
		}
		var order []protocol.MessageID
		if err := tx.Files().List(0, func(f store.File) error { order = append(order, f.ID); return nil }); err != nil {
			return err
		}
		equal(t, "List, newest first", order, []protocol.MessageID{in.ID, out.ID})
		order = nil
		if err := tx.Files().List(1, func(f store.File) error { order = append(order, f.ID); return nil }); err != nil {
			return err
		}
		equal(t, "List with a limit", order, []protocol.MessageID{in.ID})
		ids, err := tx.Files().ByBlob(id32(11))
		equal(t, "ByBlob", ids, []protocol.MessageID{out.ID})
		if _, err := tx.Files().Get(id16(9)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown file: got %v, want ErrNotFound", err)
		}
		return err
	})

	// Progress is written back; the pending index follows the record.
	out.Have = store.SetBit(nil, 2)
	out.Pending = false
	out.State = store.FileSent
	in.Pending, in.Wanted, in.State = true, true, store.FileDownloading
	update(t, st, func(tx *store.Tx) error {
		if err := tx.Files().Put(&out); err != nil {
			return err
		}
		return tx.Files().Put(&in)
	})
	view(t, st, func(tx *store.Tx) error {
		pending, err := tx.Files().Pending()
		equal(t, "Pending after progress", pending, []protocol.MessageID{in.ID})
		got, _ := tx.Files().Get(out.ID)
		if !store.HasBit(got.Have, 2) || store.HasBit(got.Have, 1) || store.CountBits(got.Have, 3) != 1 {
			t.Errorf("Have bitmap: %x", got.Have)
		}
		return err
	})

	err := st.Update(context.Background(), func(tx *store.Tx) error { return tx.Files().Put(&store.File{ID: id16(7)}) })
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("file without state: got %v, want ErrInvalid", err)
	}
	err = st.Update(context.Background(), func(tx *store.Tx) error {
		return tx.Files().Put(&store.File{ID: id16(7), State: store.FileQueued, Pointer: make([]byte, store.MaxFilePointer+1)})
	})
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("pointer over the limit: got %v, want ErrInvalid", err)
	}

	update(t, st, func(tx *store.Tx) error {
		if err := tx.Files().Delete(out.ID); err != nil {
			return err
		}
		return tx.Files().Delete(id16(9)) // missing: not an error
	})
	view(t, st, func(tx *store.Tx) error {
		ids, err := tx.Files().ByBlob(id32(11))
		equal(t, "ByBlob after Delete", len(ids), 0)
		n := 0
		if err := tx.Files().List(0, func(store.File) error { n++; return nil }); err != nil {
			return err
		}
		equal(t, "List after Delete", n, 1)
		return err
	})
}
