package badgerstore

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealpost/sealpost/store"
)

func vlogBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	ms, _ := filepath.Glob(filepath.Join(dir, dataDirName, "*.vlog"))
	for _, m := range ms {
		if fi, err := os.Stat(m); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestValueLogGC writes values over several small value-log files,
// deletes them, and checks that GC (triggered by the deletions) rewrites
// files and that what was kept survives.
func TestValueLogGC(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a few MiB")
	}
	dir := t.TempDir()
	opts := Options{GCInterval: -1, GCAfterDeletes: 1000, MemTableSize: 1 << 20, vlogFileSize: 1 << 20}
	s, err := Create(context.Background(), dir, ModeUnencrypted, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body := make([]byte, 2048)
	id := func(i int) [16]byte {
		var x [16]byte
		binary.BigEndian.PutUint64(x[:], uint64(i))
		return x
	}
	const n = 4000
	for i := 0; i < n; i += 200 {
		err := s.Update(context.Background(), func(tx *store.Tx) error {
			for j := i; j < i+200; j++ {
				m := store.Message{ID: id(j), Peer: [32]byte{1}, State: store.MessageReceived, Body: body}
				if err := tx.Messages().Put(&m); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	before := vlogBytes(t, dir)
	// Delete all but every tenth message; the deletions kick the GC.
	for i := 0; i < n; i += 500 {
		err := s.Update(context.Background(), func(tx *store.Tx) error {
			for j := i; j < i+500; j++ {
				if j%10 != 0 {
					if err := tx.Messages().Delete(id(j)); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; s.b.gcRuns.Load() == 0; i++ {
		if i > 2000 {
			t.Fatal("deletions did not start a GC")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Small writes fill memtables; their flushes trigger compactions, which
	// drop the deleted versions and record the garbage per value-log file.
	// GC needs that record to pick files.
	// Compactions run in the background and their timing varies with the
	// machine's load, so keep writing (bounded in count and time) until GC
	// has had something to rewrite.
	rewritten := 0
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < 3000 && time.Now().Before(deadline) && vlogBytes(t, dir) >= before/2; i++ {
		err := s.Update(context.Background(), func(tx *store.Tx) error {
			for j := 0; j < 500; j++ {
				if err := tx.Seen().Add(seenHash(i*1000+j), t0); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		k, err := s.RunGC()
		if err != nil {
			t.Fatal(err)
		}
		rewritten += k
	}
	after := vlogBytes(t, dir)
	t.Logf("value log %d -> %d bytes, %d files rewritten", before, after, rewritten)
	if after >= before/2 {
		t.Errorf("value log %d bytes after deleting 90%% and GC, was %d", after, before)
	}
	err = s.View(context.Background(), func(tx *store.Tx) error {
		ms, err := tx.Messages().List([32]byte{1}, 0, 0)
		if err != nil {
			return err
		}
		if len(ms) != n/10 {
			t.Errorf("%d messages left, want %d", len(ms), n/10)
		}
		for _, m := range ms {
			if len(m.Body) != len(body) {
				t.Errorf("message body %d bytes after GC", len(m.Body))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestGCTimer(t *testing.T) {
	s, err := Create(context.Background(), t.TempDir(), ModeUnencrypted, Options{GCInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; s.b.gcRuns.Load() < 3; i++ {
		if i > 2000 {
			t.Fatal("the GC timer did not fire")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
