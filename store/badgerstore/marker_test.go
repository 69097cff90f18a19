package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sealpost/sealpost/store"
)

// markerOptions are the test options with a marker directory.
func markerOptions(t *testing.T) Options {
	o := smallOptions()
	o.MarkerDir = filepath.Join(t.TempDir(), "state")
	return o
}

// rollbackOf returns the store's rollback notice, or nil.
func rollbackOf(t *testing.T, s *Store) *store.Rollback {
	t.Helper()
	var r *store.Rollback
	err := s.View(context.Background(), func(tx *store.Tx) error {
		got, err := tx.Rollback()
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		r = &got
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// copyStore copies the closed store in from to to (which must not exist).
func copyStore(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

// createClosed creates a store with a key file in a new directory, closes
// it, and returns the directory.
func createClosed(t *testing.T, o Options) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	s, err := Create(context.Background(), dir, ModeKeyFile, o)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	return dir
}

func openT(t *testing.T, dir string, o Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRollbackDetected copies a closed store, writes more, closes it,
// puts the copy back and opens it: the store records a Rollback, once,
// and raises its generation past the marker, so that reopening reports
// nothing new. A copy opened without its marker (another machine) is not
// told apart. Without a rollback nothing is reported.
func TestRollbackDetected(t *testing.T) {
	for _, mode := range []Mode{ModePassphrase, ModeUnencrypted} {
		t.Run(mode.String(), func(t *testing.T) {
			o := markerOptions(t)
			dir := filepath.Join(t.TempDir(), "store")
			s, err := Create(context.Background(), dir, mode, o)
			if err != nil {
				t.Fatal(err)
			}
			putValue(s, "k00000", 100)
			s.Close()
			s = openT(t, dir, o)
			if r := rollbackOf(t, s); r != nil {
				t.Fatalf("a rollback after a plain reopen: %+v", r)
			}
			s.Close()

			old := filepath.Join(t.TempDir(), "copy")
			copyStore(t, dir, old)
			s = openT(t, dir, o)
			for i := range 5 {
				putValue(s, "later"+string(rune('a'+i)), 100)
			}
			s.Close()
			os.RemoveAll(dir)
			copyStore(t, old, dir)

			s = openT(t, dir, o)
			r := rollbackOf(t, s)
			if r == nil || r.Found >= r.Expected || r.DetectedAt.IsZero() {
				t.Fatalf("restored copy: rollback %+v, want one with Found < Expected", r)
			}
			if _, err := getValue(s, "latera"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("the restored copy holds a later write: %v", err)
			}
			s.Close()
			// Not acted on: still there, and not detected again.
			s = openT(t, dir, o)
			if again := rollbackOf(t, s); again == nil || *again != *r {
				t.Fatalf("reopened: rollback %+v, want the same %+v", again, r)
			}
			s.Update(context.Background(), func(tx *store.Tx) error { return tx.DeleteRollback() })
			s.Close()
			s = openT(t, dir, o)
			if again := rollbackOf(t, s); again != nil {
				t.Fatalf("after it was acted on: rollback %+v", again)
			}
			s.Close()

			// The copy elsewhere, without the marker: not detected.
			other := o
			other.MarkerDir = filepath.Join(t.TempDir(), "elsewhere")
			os.RemoveAll(dir)
			copyStore(t, old, dir)
			s = openT(t, dir, other)
			if r := rollbackOf(t, s); r != nil {
				t.Fatalf("a copy without its marker: rollback %+v", r)
			}
			s.Close()
		})
	}
}

// TestMarkerAcrossPassphraseChange: the marker's name comes from the data
// key, which a passphrase change keeps, so the store keeps its marker.
func TestMarkerAcrossPassphraseChange(t *testing.T) {
	o := markerOptions(t)
	dir := filepath.Join(t.TempDir(), "store")
	s, err := Create(context.Background(), dir, ModePassphrase, o)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	names := func() []string {
		es, _ := os.ReadDir(o.MarkerDir)
		var n []string
		for _, e := range es {
			n = append(n, e.Name())
		}
		return n
	}
	before := names()
	if len(before) != 1 || len(before[0]) != 32 {
		t.Fatalf("markers %v, want one named by a 16-byte ID in hex", before)
	}
	if err := ChangePassphrase(dir, o.Passphrase, []byte("another"), fastKDF); err != nil {
		t.Fatal(err)
	}
	o.Passphrase = []byte("another")
	openT(t, dir, o).Close()
	if after := names(); !slices.Equal(after, before) {
		t.Fatalf("markers %v after a passphrase change, want %v", after, before)
	}
}

// TestNoRollbackAfterCrash kills a process in the middle of writes: the
// marker never gets ahead of what the store holds durably, so reopening
// reports no rollback.
func TestNoRollbackAfterCrash(t *testing.T) {
	if runWriter() {
		return
	}
	o := markerOptions(t)
	dir := createClosed(t, o)
	for range 3 {
		w := startWriter(t, "TestNoRollbackAfterCrash", dir, o.MarkerDir)
		time.Sleep(2*markEvery + 200*time.Millisecond)
		w.kill(t)
		s := openT(t, dir, o)
		if r := rollbackOf(t, s); r != nil {
			t.Fatalf("a rollback after a crash: %+v", r)
		}
		s.Close()
	}
}

// TestDamagedLogReported damages the write-ahead log (the memtable log) of
// a store killed while writing, whose marker records later writes: badger
// cuts the log short at the damage and opens the older state, which the
// store reports as a rollback instead of carrying on silently.
func TestDamagedLogReported(t *testing.T) {
	if runWriter() {
		return
	}
	o := markerOptions(t)
	dir := createClosed(t, o)
	w := startWriter(t, "TestDamagedLogReported", dir, o.MarkerDir)
	time.Sleep(3*markEvery + 200*time.Millisecond)
	w.kill(t)

	// The newest memtable log holds the last seconds of writes: damage it
	// a third of the way into them.
	data := filepath.Join(dir, dataDirName)
	names, err := listDir(data)
	if err != nil {
		t.Fatal(err)
	}
	var logs []string
	for _, n := range names {
		if filepath.Ext(n) == ".mem" {
			logs = append(logs, n)
		}
	}
	if len(logs) == 0 {
		t.Fatal("no memtable log after a kill")
	}
	path := filepath.Join(data, slices.MaxFunc(logs, compareFileNames))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := len(bytes.TrimRight(b, "\x00"))
	if end < 4096 {
		t.Fatalf("the memtable log holds %d bytes", end)
	}
	for i := end / 3; i < end/3+64; i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	s := openT(t, dir, o)
	defer s.Close()
	r := rollbackOf(t, s)
	if r == nil || r.Found >= r.Expected {
		t.Fatalf("a log cut short at damage: rollback %+v, want one", r)
	}
	t.Logf("the damaged log cost generations %d to %d", r.Found+1, r.Expected)
}

// FuzzParseMarker: any bytes parse to a generation or an error, never a
// panic; what parses encodes to the same bytes; and a single changed byte
// of a marker never parses.
func FuzzParseMarker(f *testing.F) {
	f.Add(encodeMarker(0))
	f.Add(encodeMarker(1<<64 - 1))
	f.Add(encodeMarker(42)[:markerSize-1])
	f.Add([]byte(markerMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := parseMarker(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeMarker(g), b) {
			t.Fatalf("marker of generation %d does not encode to its bytes", g)
		}
		for i := range b {
			c := bytes.Clone(b)
			c[i] ^= 0x01
			if _, err := parseMarker(c); err == nil {
				t.Fatalf("byte %d changed: the marker still parses", i)
			}
		}
	})
}
