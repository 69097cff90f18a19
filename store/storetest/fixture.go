package storetest

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sealpost/sealpost/store"
)

// Fixture is the content of the schema-1 migration fixture
// (store/testdata/schema1.kv and schema1-badger/): what the schema-1 code
// path wrote, and what CheckFixture expects to find after the migration.
type Fixture struct {
	Self     store.Self
	Contacts []store.Contact
	Messages []store.Message
	Outbox   []store.OutboxEntry
	// Seen maps hashes to their time, in seconds after Self.CreatedAt.
	Seen map[[32]byte]int64
}

// FixturePassphrase protects the badger fixture.
const FixturePassphrase = "fixture"

// SchemaFixture returns the fixture's records.
func SchemaFixture() Fixture {
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := Fixture{
		Self: store.Self{Name: "fixture", Identity: []byte("identity"), DeviceKey: []byte("device key"),
			DeviceRecord: []byte("device record"), CreatedAt: t},
		Seen: map[[32]byte]int64{id32(1): 3600, id32(2): 7200},
	}
	for i := byte(1); i <= 3; i++ {
		f.Contacts = append(f.Contacts, store.Contact{UserID: id32(i), Name: fmt.Sprintf("contact-%d", i),
			Identity: []byte{i}, State: store.ContactAccepted, SendSeq: uint64(i), CreatedAt: t, UpdatedAt: t})
	}
	for i := byte(1); i <= 6; i++ {
		f.Messages = append(f.Messages, store.Message{ID: id16(i), Peer: id32(1 + i%3), Outgoing: i%2 == 0,
			Seq: uint64(i), Kind: 1, Body: []byte(fmt.Sprintf("message %d", i)), SentAt: t, ReceivedAt: t,
			State: store.MessageSent})
	}
	// Outbox entries whose NextAttempt order differs from their ID order.
	for i, d := range []time.Duration{3 * time.Minute, time.Minute, 2 * time.Minute, time.Hour} {
		f.Outbox = append(f.Outbox, store.OutboxEntry{ID: id16(byte(i + 1)), Peer: id32(1), Device: []byte("device"),
			Payload: []byte(fmt.Sprintf("payload %d", i+1)), CreatedAt: t, Attempts: uint32(i), NextAttempt: t.Add(d)})
	}
	return f
}

// CheckFixture checks, through the typed tables, that st holds the
// fixture migrated to the current schema: every record, and the outbox
// index that schema 2 added (Due returns entries by NextAttempt).
func CheckFixture(t *testing.T, st store.Store) {
	t.Helper()
	f := SchemaFixture()
	err := st.View(context.Background(), func(tx *store.Tx) error {
		self, err := tx.Self()
		if err != nil {
			return err
		}
		equal(t, "Self", self, f.Self)
		for _, c := range f.Contacts {
			got, err := tx.Contacts().ByName(c.Name)
			if err != nil {
				return err
			}
			equal(t, "contact", got, c)
		}
		all, err := tx.Messages().Since(0, 0)
		if err != nil {
			return err
		}
		if len(all) != len(f.Messages) {
			t.Errorf("got %d messages, want %d", len(all), len(f.Messages))
		}
		for i, m := range all {
			want := f.Messages[i]
			want.Order = uint64(i + 1)
			equal(t, "message", m, want)
		}
		conv, err := tx.Messages().List(id32(2), 0, 0)
		if err != nil {
			return err
		}
		if ids := msgIDs(conv); ids != "[1 4]" {
			t.Errorf("List(contact 2): got %s, want [1 4]", ids)
		}
		due, err := tx.Outbox().Due(f.Self.CreatedAt.Add(2*time.Minute), 0)
		if err != nil {
			return err
		}
		if ids := outIDs(due); ids != "[2 3]" {
			t.Errorf("Due after migration: got %s, want [2 3]", ids)
		}
		for _, o := range f.Outbox {
			got, err := tx.Outbox().Get(o.ID)
			if err != nil {
				return err
			}
			equal(t, "outbox entry", got, o)
		}
		for h := range f.Seen {
			if ok, err := tx.Seen().Has(h); err != nil || !ok {
				t.Errorf("seen %x: %v %v", h[:1], ok, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("check fixture: %v", err)
	}
	// The store keeps working: a new message continues the Order.
	err = st.Update(context.Background(), func(tx *store.Tx) error {
		m := store.Message{ID: id16(100), Peer: id32(1), State: store.MessageQueued}
		if err := tx.Messages().Put(&m); err != nil {
			return err
		}
		if m.Order != uint64(len(f.Messages)+1) {
			t.Errorf("new message Order %d, want %d", m.Order, len(f.Messages)+1)
		}
		return tx.Outbox().Delete(id16(2))
	})
	if err != nil {
		t.Fatalf("write after migration: %v", err)
	}
}

// Dump writes every key and value of b to w: per pair a uvarint key
// length, the key, a uvarint value length and the value.
func Dump(ctx context.Context, b store.Backend, w io.Writer) error {
	bw := bufio.NewWriter(w)
	err := b.View(ctx, func(kv store.KV) error {
		return kv.Scan(nil, nil, false, func(k, v []byte) error {
			bw.Write(binary.AppendUvarint(nil, uint64(len(k))))
			bw.Write(k)
			bw.Write(binary.AppendUvarint(nil, uint64(len(v))))
			_, err := bw.Write(v)
			return err
		})
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// Load writes the pairs of a Dump into b in one Update.
func Load(ctx context.Context, b store.Backend, r io.Reader) error {
	br := bufio.NewReader(r)
	read := func() ([]byte, error) {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, err
		}
		if n > store.MaxValueSize {
			return nil, fmt.Errorf("dump: length %d: %w", n, store.ErrCorrupt)
		}
		p := make([]byte, n)
		_, err = io.ReadFull(br, p)
		return p, err
	}
	return b.Update(ctx, func(kv store.KV) error {
		for {
			k, err := read()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			v, err := read()
			if err != nil {
				return fmt.Errorf("dump: %w", err)
			}
			if err := kv.Set(k, v); err != nil {
				return err
			}
		}
	})
}
