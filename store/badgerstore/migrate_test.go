package badgerstore

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/storetest"
)

var writeFixture = flag.Bool("write-fixture", false, "rewrite ../testdata/schema1-badger from ../testdata/schema1.kv")

const (
	fixtureDump = "../testdata/schema1.kv"
	fixtureDir  = "../testdata/schema1-badger"
)

// TestWriteFixture turns the schema-1 dump (written by store's
// TestWriteFixture with the schema-1 code path) into a badger store
// protected by storetest.FixturePassphrase. Only with -write-fixture.
func TestWriteFixture(t *testing.T) {
	if !*writeFixture {
		t.Skip("run with -write-fixture to rewrite " + fixtureDir)
	}
	if err := os.RemoveAll(fixtureDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(fixtureDir, 0o700); err != nil {
		t.Fatal(err)
	}
	dk := make([]byte, dataKeySize)
	for i := range dk {
		dk[i] = byte(i)
	}
	k, err := wrap(dk, []byte(storetest.FixturePassphrase), fastKDF, zeroReader{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := openBackend(filepath.Join(fixtureDir, dataDirName), dk, Options{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	fx, err := os.Open(fixtureDump)
	if err != nil {
		t.Fatal(err)
	}
	defer fx.Close()
	if err := storetest.Load(context.Background(), b, fx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := writeKeyFile(fixtureDir, k, nil); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(fixtureDir, "lock"))
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestMigrateFixture opens a copy of a store written by the schema-1 code
// and checks that it was migrated with nothing lost.
func TestMigrateFixture(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, fixtureDir, dir)
	s, err := Open(context.Background(), dir, Options{Passphrase: []byte(storetest.FixturePassphrase)})
	if err != nil {
		t.Fatalf("Open schema-1 fixture: %v", err)
	}
	// Its values, written before sealing, are sealed by the first rotation
	// (the one at Open, which this call waits for).
	if err := s.b.rotate(); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if s.b.ring.legacy {
		t.Error("unsealed values remain after the first rotation")
	}
	storetest.CheckFixture(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening finds the current schema and migrates nothing.
	s, err = Open(context.Background(), dir, Options{Passphrase: []byte(storetest.FixturePassphrase)})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	err = s.View(context.Background(), func(tx *store.Tx) error {
		_, err := tx.Outbox().Get([16]byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2})
		if err == nil {
			t.Error("the write made after the migration was lost")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if fi.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, src); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatalf("copy fixture: %v", err)
	}
}
