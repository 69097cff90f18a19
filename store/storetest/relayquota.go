package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// testRelayQuotas: the shared quotas of a creator's mailboxes count the
// mailboxes while they exist, their envelopes' bytes and their blob
// references' bytes, in the same transactions as the data; a mailbox's
// blob references are taken off its quotas after the mailbox is gone.
func testRelayQuotas(t *testing.T, st store.Store) {
	peer, subnet := store.RelayQuotaKey{1}, store.RelayQuotaKey{2}
	check := func(k store.RelayQuotaKey, want store.RelayQuota) {
		t.Helper()
		checkQuota(t, st, k, want)
	}
	a, b, c := relayMailbox(1), relayMailbox(2), relayMailbox(3)
	a.Quotas = [2]store.RelayQuotaKey{peer, subnet}
	b.Quotas = [2]store.RelayQuotaKey{{}, subnet}
	update(t, st, func(tx *store.Tx) error {
		for _, m := range []store.RelayMailbox{a, b, c} {
			if err := tx.Relay().CreateMailbox(m); err != nil {
				return err
			}
			if _, _, err := tx.Relay().PutToken(m.ID, store.RelayToken{Hash: id32(50), MaxCount: 100, MaxBytes: 1 << 20}); err != nil {
				return err
			}
		}
		for i, m := range []store.RelayMailbox{a, a, b, c} {
			if _, err := tx.Relay().AddEnvelope(store.RelayEnvelope{Mailbox: m.ID, Token: id32(50), StoredUntil: T0, Envelope: envelope(512<<i, 1)}, nil); err != nil {
				return err
			}
		}
		return nil
	})
	check(peer, store.RelayQuota{Mailboxes: 1, Bytes: 512 + 1024})
	check(subnet, store.RelayQuota{Mailboxes: 2, Bytes: 512 + 1024 + 2048})
	view(t, st, func(tx *store.Tx) error {
		m, err := tx.Relay().Mailbox(a.ID)
		if err == nil && m.Quotas != a.Quotas {
			t.Errorf("stored quotas %x, want %x", m.Quotas, a.Quotas)
		}
		return err
	})
	update(t, st, func(tx *store.Tx) error {
		_, err := tx.Relay().DeleteEnvelope(a.ID, 2)
		return err
	})
	check(peer, store.RelayQuota{Mailboxes: 1, Bytes: 512})
	check(subnet, store.RelayQuota{Mailboxes: 2, Bytes: 512 + 2048})

	// Card and prekey blobs count in the bytes, as envelopes do, until
	// they are replaced, taken or expire.
	keyBytes := func(m store.RelayMailbox, want uint64) {
		t.Helper()
		view(t, st, func(tx *store.Tx) error {
			got, err := tx.Relay().Mailbox(m.ID)
			if err == nil && got.KeyBytes != want {
				t.Errorf("mailbox %x: KeyBytes %d, want %d", m.ID[:1], got.KeyBytes, want)
			}
			return err
		})
	}
	update(t, st, func(tx *store.Tx) error {
		for _, err := range []error{
			tx.Relay().PutCard(a.ID, id32(50), envelope(300, 1)),
			tx.Relay().PutCard(a.ID, id32(50), envelope(100, 2)),
			tx.Relay().AddPrekeys(a.ID, [][]byte{envelope(40, 3), envelope(60, 4)}, T0.Add(time.Hour)),
			tx.Relay().AddPrekeys(b.ID, [][]byte{envelope(70, 5)}, T0.Add(time.Minute)),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	check(peer, store.RelayQuota{Mailboxes: 1, Bytes: 512 + 200})
	check(subnet, store.RelayQuota{Mailboxes: 2, Bytes: 512 + 2048 + 270})
	keyBytes(a, 200)
	keyBytes(b, 70)
	update(t, st, func(tx *store.Tx) error {
		if _, ok, err := tx.Relay().TakePrekey(a.ID, T0); !ok || err != nil {
			return fmt.Errorf("take: %v, %v", ok, err)
		}
		_, err := tx.Relay().ExpirePrekeys(T0.Add(2*time.Minute), 0)
		return err
	})
	check(peer, store.RelayQuota{Mailboxes: 1, Bytes: 512 + 160})
	check(subnet, store.RelayQuota{Mailboxes: 2, Bytes: 512 + 2048 + 160})
	keyBytes(a, 160)
	keyBytes(b, 0)

	// Blob references: a's and b's in their quotas, c's in none.
	refs := []store.RelayBlobRef{blobRef(1, 10, 1, 1000), blobRef(2, 11, 1, 500), blobRef(1, 12, 2, 1000), blobRef(3, 13, 3, 300)}
	var charges []store.BlobCharge
	update(t, st, func(tx *store.Tx) error {
		for _, r := range refs {
			_, err := tx.RelayBlobs().AddBlobRef(r, func(c *store.BlobCharge) error {
				charges = append(charges, *c)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	equal(t, "the charges seen by the checks", charges, []store.BlobCharge{
		{Usage: store.BlobUsage{Quotas: a.Quotas}, Creator: [2]store.RelayQuota{{Mailboxes: 1, Bytes: 512 + 160}, {Mailboxes: 2, Bytes: 512 + 2048 + 160}}},
		{Usage: store.BlobUsage{Count: 1, Bytes: 1000, Quotas: a.Quotas}, Creator: [2]store.RelayQuota{{Mailboxes: 1, Bytes: 512 + 160, BlobBytes: 1000}, {Mailboxes: 2, Bytes: 512 + 2048 + 160, BlobBytes: 1000}},
			Totals: store.RelayBlobTotals{Blobs: 1, Bytes: 1000, Refs: 1}},
		{Usage: store.BlobUsage{Quotas: b.Quotas}, Creator: [2]store.RelayQuota{{}, {Mailboxes: 2, Bytes: 512 + 2048 + 160, BlobBytes: 1500}},
			Totals: store.RelayBlobTotals{Blobs: 2, Bytes: 1500, Refs: 2}, Stored: true},
		{Totals: store.RelayBlobTotals{Blobs: 2, Bytes: 1500, Refs: 3}},
	})
	check(peer, store.RelayQuota{Mailboxes: 1, Bytes: 512 + 160, BlobBytes: 1500})
	check(subnet, store.RelayQuota{Mailboxes: 2, Bytes: 512 + 2048 + 160, BlobBytes: 2500})
	update(t, st, func(tx *store.Tx) error {
		_, err := tx.RelayBlobs().RemoveBlobRef(refKey(refs[1]))
		return err
	})
	check(peer, store.RelayQuota{Mailboxes: 1, Bytes: 512 + 160, BlobBytes: 1000})
	check(subnet, store.RelayQuota{Mailboxes: 2, Bytes: 512 + 2048 + 160, BlobBytes: 2000})

	for _, m := range []store.RelayMailbox{a, b} {
		update(t, st, func(tx *store.Tx) error {
			for {
				done, err := tx.Relay().DeleteMailbox(m.ID, 16)
				if done || err != nil {
					return err
				}
			}
		})
	}
	// The mailboxes are gone; their blob references stay charged until
	// they are removed (the relay's sweep).
	check(peer, store.RelayQuota{BlobBytes: 1000})
	check(subnet, store.RelayQuota{BlobBytes: 2000})
	update(t, st, func(tx *store.Tx) error {
		for _, r := range refs[2:] {
			if _, err := tx.RelayBlobs().RemoveBlobRef(refKey(r)); err != nil {
				return err
			}
		}
		return nil
	})
	check(peer, store.RelayQuota{BlobBytes: 1000})
	check(subnet, store.RelayQuota{BlobBytes: 1000})
	update(t, st, func(tx *store.Tx) error {
		_, err := tx.RelayBlobs().RemoveBlobRef(refKey(refs[0]))
		return err
	})
	check(peer, store.RelayQuota{})
	check(subnet, store.RelayQuota{})
	view(t, st, func(tx *store.Tx) error {
		boxes, err := tx.RelayBlobs().Mailboxes(protocol.MailboxID{}, 0)
		equal(t, "mailboxes with blob references", len(boxes), 0)
		return err
	})
}

// testRelayGroupQuotas: a group log counts in its creator quotas while it
// exists, its entries' bytes while they are stored, in the same
// transactions; one that names no quota counts in none.
func testRelayGroupQuotas(t *testing.T, st store.Store) {
	peer, subnet := store.RelayQuotaKey{7}, store.RelayQuotaKey{8}
	check := func(k store.RelayQuotaKey, want store.RelayQuota) {
		t.Helper()
		checkQuota(t, st, k, want)
	}
	tok := protocol.TokenHash{1}
	logs := []store.RelayGroupLog{
		{ID: protocol.GroupLogID{1}, CreatedAt: T0, IdleUntil: T0.Add(time.Hour), Quotas: [2]store.RelayQuotaKey{peer, subnet}},
		{ID: protocol.GroupLogID{2}, CreatedAt: T0, IdleUntil: T0.Add(time.Hour), Quotas: [2]store.RelayQuotaKey{{}, subnet}},
		{ID: protocol.GroupLogID{3}, CreatedAt: T0, IdleUntil: T0.Add(time.Hour)},
	}
	update(t, st, func(tx *store.Tx) error {
		for i, l := range logs {
			if err := tx.RelayGroups().CreateLog(l, tok); err != nil {
				return err
			}
			for j := range 2 {
				a := store.GroupAppend{Log: l.ID, Token: tok, Entry: envelope(100<<(i+j), byte(j)), StoredUntil: T0.Add(time.Minute), Now: T0}
				if _, _, err := tx.RelayGroups().Append(a, nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
	check(peer, store.RelayQuota{GroupLogs: 1, GroupBytes: 100 + 200})
	check(subnet, store.RelayQuota{GroupLogs: 2, GroupBytes: 100 + 200 + 200 + 400})
	view(t, st, func(tx *store.Tx) error {
		l, err := tx.RelayGroups().Log(logs[0].ID)
		if err == nil && l.Quotas != logs[0].Quotas {
			t.Errorf("stored quotas %x, want %x", l.Quotas, logs[0].Quotas)
		}
		return err
	})
	// An entry that expires gives its bytes back; a log deleted, its place.
	update(t, st, func(tx *store.Tx) error {
		_, err := tx.RelayGroups().DeleteEntry(logs[0].ID, 1)
		return err
	})
	check(peer, store.RelayQuota{GroupLogs: 1, GroupBytes: 200})
	check(subnet, store.RelayQuota{GroupLogs: 2, GroupBytes: 200 + 200 + 400})
	update(t, st, func(tx *store.Tx) error {
		for done := false; !done; {
			var err error
			if done, err = tx.RelayGroups().DeleteLog(logs[1].ID, 0); err != nil {
				return err
			}
		}
		return nil
	})
	check(subnet, store.RelayQuota{GroupLogs: 1, GroupBytes: 200})
	update(t, st, func(tx *store.Tx) error {
		for done := false; !done; {
			var err error
			if done, err = tx.RelayGroups().DeleteLog(logs[0].ID, 0); err != nil {
				return err
			}
		}
		return nil
	})
	check(peer, store.RelayQuota{})
	check(subnet, store.RelayQuota{})
}

// checkQuota checks what counts against quota k.
func checkQuota(t *testing.T, st store.Store, k store.RelayQuotaKey, want store.RelayQuota) {
	t.Helper()
	view(t, st, func(tx *store.Tx) error {
		got, err := tx.Relay().Quota(k)
		if err != nil {
			return err
		}
		if got != want {
			t.Errorf("quota %x: got %+v, want %+v", k[:1], got, want)
		}
		return nil
	})
}
