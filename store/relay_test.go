package store

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sealpost/sealpost/protocol"
)

// relayRecord is the codec of one relay record type, for the fuzz targets.
type relayRecord interface {
	marshal() []byte
	unmarshal(b []byte) error
}

func relayRecordSeeds() map[string][]relayRecord {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 5, time.UTC)
	return map[string][]relayRecord{
		"mailbox": {
			&RelayMailbox{ID: protocol.MailboxID{1}, OwnerKey: [32]byte{2}, SealingKey: [32]byte{3}, CreatedAt: t0, SeenAt: t0.Add(time.Hour),
				LastSeq: 1 << 40, Count: 7, Bytes: 7 << 10, Tokens: 3, Prekeys: 20, PrekeySeq: 99, Deleting: true,
				KeyBytes: 40 << 10, Quotas: [2]RelayQuotaKey{{4}, {5}}},
			&RelayMailbox{},
		},
		"token": {
			&RelayToken{Hash: protocol.TokenHash{9}, MaxCount: 100, MaxBytes: 1 << 20, Count: 1, Bytes: 512, CreatedAt: t0, HasCard: true},
			&RelayToken{},
		},
		"envelope": {
			&RelayEnvelope{Token: protocol.TokenHash{4}, StoredUntil: t0, Envelope: bytes.Repeat([]byte{1}, 512)},
			&RelayEnvelope{},
		},
		"quota": {
			&RelayQuota{Mailboxes: 3, Bytes: 1 << 33, BlobBytes: 1 << 34, GroupLogs: 5, GroupBytes: 1 << 35},
			&RelayQuota{},
		},
		"totals": {
			&RelayTotals{Mailboxes: 1, Envelopes: 2, EnvelopeBytes: 3, BlobBytes: 4, Tokens: 5, Cards: 6, Prekeys: 7},
		},
		"group log": {
			&RelayGroupLog{CreatedAt: t0, IdleUntil: t0.Add(time.Hour), Epoch: 1 << 40, FirstEpoch: 2, LastSeq: 1 << 50, Count: 7, Bytes: 700 << 20,
				Deleting: true, Quotas: [2]RelayQuotaKey{{4}, {5}}},
			&RelayGroupLog{},
		},
		"group epoch": {
			&RelayGroupEpoch{TokenHash: protocol.TokenHash{7}, FirstSeq: 5, CommitSeq: 1 << 45, OpenedAt: t0},
			&RelayGroupEpoch{},
		},
		"group entry": {
			&RelayGroupEntry{Epoch: 1 << 33, Commit: true, StoredUntil: t0.Add(30 * 24 * time.Hour), Entry: bytes.Repeat([]byte{3}, 300)},
			&RelayGroupEntry{Entry: []byte{1}},
		},
		"group totals": {
			&RelayGroupTotals{Logs: 3, Entries: 1 << 40, Bytes: 1 << 50},
			&RelayGroupTotals{},
		},
	}
}

// relayRecordOlder returns records of name as older versions stored them
// (seeds for the fuzz targets besides the current encoding).
func relayRecordOlder(name string) [][]byte {
	switch name {
	case "group log":
		// Version 1: no creator quotas.
		b := relayRecordSeeds()[name][0].marshal()
		b = b[:len(b)-2*len(RelayQuotaKey{})]
		b[0] = 1
		return [][]byte{b}
	}
	return nil
}

func newRelayRecord(name string) relayRecord {
	switch name {
	case "mailbox":
		return new(RelayMailbox)
	case "token":
		return new(RelayToken)
	case "envelope":
		return new(RelayEnvelope)
	case "quota":
		return new(RelayQuota)
	case "group log":
		return new(RelayGroupLog)
	case "group epoch":
		return new(RelayGroupEpoch)
	case "group entry":
		return new(RelayGroupEntry)
	case "group totals":
		return new(RelayGroupTotals)
	}
	return new(RelayTotals)
}

func TestRelayRecordsRoundTrip(t *testing.T) {
	for name, seeds := range relayRecordSeeds() {
		for _, r := range seeds {
			got := newRelayRecord(name)
			if err := got.unmarshal(r.marshal()); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			switch name {
			case "envelope":
				// The envelope's Mailbox and Seq live in its key.
				got.(*RelayEnvelope).Mailbox, got.(*RelayEnvelope).Seq = r.(*RelayEnvelope).Mailbox, r.(*RelayEnvelope).Seq
			case "group log":
				got.(*RelayGroupLog).ID = r.(*RelayGroupLog).ID
			case "group epoch":
				got.(*RelayGroupEpoch).Epoch = r.(*RelayGroupEpoch).Epoch
			case "group entry":
				got.(*RelayGroupEntry).Log, got.(*RelayGroupEntry).Seq = r.(*RelayGroupEntry).Log, r.(*RelayGroupEntry).Seq
			}
			if !reflect.DeepEqual(got, r) {
				t.Errorf("%s: got %+v, want %+v", name, got, r)
			}
		}
	}
}

func fuzzRelayRecord(f *testing.F, name string) {
	for _, r := range relayRecordSeeds()[name] {
		f.Add(r.marshal())
	}
	for _, b := range relayRecordOlder(name) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newRelayRecord(name)
		if err := r.unmarshal(b); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		enc := r.marshal()
		r2 := newRelayRecord(name)
		if err := r2.unmarshal(enc); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !bytes.Equal(r2.marshal(), enc) {
			t.Fatal("encoding is not stable")
		}
	})
}

func FuzzDecodeRelayMailbox(f *testing.F)  { fuzzRelayRecord(f, "mailbox") }
func FuzzDecodeRelayToken(f *testing.F)    { fuzzRelayRecord(f, "token") }
func FuzzDecodeRelayEnvelope(f *testing.F) { fuzzRelayRecord(f, "envelope") }
func FuzzDecodeRelayTotals(f *testing.F)   { fuzzRelayRecord(f, "totals") }
func FuzzDecodeRelayQuota(f *testing.F)    { fuzzRelayRecord(f, "quota") }

// The group log records of a relay's store (its group log service,
// node/grouprelay, reads them back with every request).
func FuzzDecodeRelayGroupLog(f *testing.F)    { fuzzRelayRecord(f, "group log") }
func FuzzDecodeRelayGroupEpoch(f *testing.F)  { fuzzRelayRecord(f, "group epoch") }
func FuzzDecodeRelayGroupEntry(f *testing.F)  { fuzzRelayRecord(f, "group entry") }
func FuzzDecodeRelayGroupTotals(f *testing.F) { fuzzRelayRecord(f, "group totals") }

// TestRelayMailboxVersion1: a mailbox stored before quotas has none, one
// stored before KeyBytes (version 2) has none counted.
func TestRelayMailboxVersion1(t *testing.T) {
	m := RelayMailbox{ID: protocol.MailboxID{1}, OwnerKey: [32]byte{2}, Count: 3, Deleting: true, Quotas: [2]RelayQuotaKey{{4}, {5}}}
	b := m.marshal()
	b = b[:len(b)-1] // KeyBytes 0
	b[0] = 2
	var got RelayMailbox
	if err := got.unmarshal(b); err != nil || !reflect.DeepEqual(got, m) {
		t.Errorf("version 2: %+v, %v", got, err)
	}
	b = b[:len(b)-2*len(RelayQuotaKey{})]
	b[0] = 1
	m.Quotas = [2]RelayQuotaKey{}
	got = RelayMailbox{}
	if err := got.unmarshal(b); err != nil || !reflect.DeepEqual(got, m) {
		t.Errorf("version 1: %+v, %v", got, err)
	}
}

// TestRelayQuotaVersion1: a quota stored before blob bytes were counted
// has none.
func TestRelayQuotaVersion1(t *testing.T) {
	b := []byte{1, 3, 0x80, 0x40}
	var got RelayQuota
	if err := got.unmarshal(b); err != nil || got != (RelayQuota{Mailboxes: 3, Bytes: 1 << 13}) {
		t.Errorf("version 1: %+v, %v", got, err)
	}
}

// TestRelayQuotaVersion2: a quota stored before group logs were counted
// has none.
func TestRelayQuotaVersion2(t *testing.T) {
	q := RelayQuota{Mailboxes: 3, Bytes: 1 << 13, BlobBytes: 5}
	b := q.marshal()
	b = b[:len(b)-2]
	b[0] = 2
	var got RelayQuota
	if err := got.unmarshal(b); err != nil || got != q {
		t.Errorf("version 2: %+v, %v", got, err)
	}
}

// TestRelayGroupLogVersion1: a group log record keeps its creator quotas;
// one stored before them (version 1) counts in none.
func TestRelayGroupLogVersion1(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	l := RelayGroupLog{CreatedAt: t0, IdleUntil: t0.Add(time.Hour), Epoch: 4, FirstEpoch: 2, LastSeq: 9, Count: 7, Bytes: 700, Deleting: true,
		Quotas: [2]RelayQuotaKey{{4}, {5}}}
	b := l.marshal()
	var got RelayGroupLog
	if err := got.unmarshal(b); err != nil || !reflect.DeepEqual(got, l) {
		t.Errorf("version 2: %+v, %v", got, err)
	}
	b = b[:len(b)-2*len(RelayQuotaKey{})]
	b[0] = 1
	l.Quotas = [2]RelayQuotaKey{}
	got = RelayGroupLog{}
	if err := got.unmarshal(b); err != nil || !reflect.DeepEqual(got, l) {
		t.Errorf("version 1: %+v, %v", got, err)
	}
	if err := got.unmarshal(append(b, 0)); err == nil {
		t.Error("version 1 with a trailing byte decoded")
	}
}

// TestBlobUsageVersion1: the blob bytes of a mailbox stored before they
// were charged to its creator quotas are charged with its next reference,
// all of them, so that removing any reference later takes off what was
// charged.
func TestBlobUsageVersion1(t *testing.T) {
	ctx := context.Background()
	st := NewMemory()
	defer st.Close()
	peer, subnet := RelayQuotaKey{1}, RelayQuotaKey{2}
	m := RelayMailbox{ID: protocol.MailboxID{7}, Quotas: [2]RelayQuotaKey{peer, subnet}}
	old := RelayBlobRef{Hash: [32]byte{1}, ReadCapHash: [32]byte{2}, Mailbox: m.ID, Size: 700, StoredUntil: time.UnixMilli(1)}
	err := st.Update(ctx, func(tx *Tx) error {
		if err := tx.Relay().CreateMailbox(m); err != nil {
			return err
		}
		if _, err := tx.RelayBlobs().AddBlobRef(old, nil); err != nil {
			return err
		}
		// As an older program left them: a version 1 usage record, no
		// blob bytes in the quotas.
		if err := tx.set(relayBlobUsageKey(m.ID), []byte{1, 1, 0xbc, 0x05}); err != nil {
			return err
		}
		for _, k := range m.Quotas {
			if err := tx.Relay().putQuota(k, RelayQuota{Mailboxes: 1}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	quotas := func() (q [2]RelayQuota) {
		t.Helper()
		err := st.View(ctx, func(tx *Tx) error {
			for i, k := range m.Quotas {
				var err error
				if q[i], err = tx.Relay().Quota(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	var seen BlobCharge
	err = st.Update(ctx, func(tx *Tx) error {
		_, err := tx.RelayBlobs().AddBlobRef(RelayBlobRef{Hash: [32]byte{3}, ReadCapHash: [32]byte{4}, Mailbox: m.ID, Size: 300, StoredUntil: time.UnixMilli(1)},
			func(c *BlobCharge) error { seen = *c; return nil })
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := (RelayQuota{Mailboxes: 1, BlobBytes: 700}); seen.Creator != [2]RelayQuota{want, want} || seen.Usage.Quotas != m.Quotas {
		t.Errorf("the check saw %+v", seen)
	}
	if want := (RelayQuota{Mailboxes: 1, BlobBytes: 1000}); quotas() != [2]RelayQuota{want, want} {
		t.Errorf("after the next reference: %+v", quotas())
	}
	err = st.Update(ctx, func(tx *Tx) error {
		_, err := tx.RelayBlobs().RemoveBlobRef(BlobRefKey{old.Hash, old.ReadCapHash})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := (RelayQuota{Mailboxes: 1, BlobBytes: 300}); quotas() != [2]RelayQuota{want, want} {
		t.Errorf("after the older reference went: %+v", quotas())
	}
}
