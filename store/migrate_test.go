package store_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"testing"

	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/storetest"
)

var writeFixture = flag.Bool("write-fixture", false, "rewrite testdata/schema1.kv with the schema-1 code path")

const fixturePath = "testdata/schema1.kv"

// TestWriteFixture rewrites the schema-1 fixture (only with -write-fixture;
// then also run store/badgerstore's TestWriteFixture, which converts it).
func TestWriteFixture(t *testing.T) {
	if !*writeFixture {
		t.Skip("run with -write-fixture to rewrite " + fixturePath)
	}
	ctx := context.Background()
	b := store.NewMemoryBackend()
	f := storetest.SchemaFixture()
	err := b.Update(ctx, func(kv store.KV) error {
		return store.WriteSchema1(kv, f.Self, f.Contacts, f.Messages, f.Outbox, f.Seen)
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := storetest.Dump(ctx, b, &buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fixturePath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func loadFixture(t *testing.T) store.Backend {
	t.Helper()
	fx, err := os.Open(fixturePath)
	if err != nil {
		t.Fatal(err)
	}
	defer fx.Close()
	b := store.NewMemoryBackend()
	if err := storetest.Load(context.Background(), b, fx); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMigrateFixture(t *testing.T) {
	b := loadFixture(t)
	st, err := store.Open(context.Background(), b)
	if err != nil {
		t.Fatalf("Open schema-1 store: %v", err)
	}
	defer st.Close()
	storetest.CheckFixture(t, st)
}

func TestSchemaTooNew(t *testing.T) {
	b := store.NewMemoryBackend()
	ctx := context.Background()
	st, err := store.Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	// Pretend a newer program wrote the store.
	err = b.Update(ctx, func(kv store.KV) error {
		return kv.Set([]byte("\x00schema"), []byte{store.SchemaVersion + 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Open(ctx, b); !errors.Is(err, store.ErrSchemaTooNew) {
		t.Errorf("Open of a newer schema: got %v, want ErrSchemaTooNew", err)
	}
	st.Close()
}

func TestDataWithoutSchema(t *testing.T) {
	b := store.NewMemoryBackend()
	ctx := context.Background()
	err := b.Update(ctx, func(kv store.KV) error { return kv.Set([]byte("\x05stray"), []byte("x")) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Open(ctx, b); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("Open of data without a schema version: got %v, want ErrCorrupt", err)
	}
}
