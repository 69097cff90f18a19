package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/sealpost/sealpost/store"
)

// bumpCounter increments counter "c" in its own Update.
func bumpCounter(s *Store) error {
	return s.Update(context.Background(), func(tx *store.Tx) error {
		_, err := tx.Counters().Next("c")
		return err
	})
}

// TestConflictRetry makes a transaction conflict a given number of times
// (a concurrent Update changes what it read before it commits) and checks
// that Update reruns it, and gives up with ErrConflict after maxAttempts.
func TestConflictRetry(t *testing.T) {
	s := createStore(t, t.TempDir(), ModeKeyFile)
	defer s.Close()
	for _, conflicts := range []int{1, maxAttempts} {
		runs := 0
		err := s.Update(context.Background(), func(tx *store.Tx) error {
			runs++
			v, err := tx.Counters().Get("c")
			if err != nil {
				return err
			}
			if runs <= conflicts {
				done := make(chan error)
				go func() { done <- bumpCounter(s) }()
				if err := <-done; err != nil {
					return err
				}
			}
			// A fresh key each run, so that every run writes.
			return tx.Seen().Add(seenHash(int(v)<<16+runs), t0)
		})
		switch conflicts {
		case 1:
			if err != nil || runs != 2 {
				t.Errorf("one conflict: got %v after %d runs, want success after 2", err, runs)
			}
		default:
			if !errors.Is(err, store.ErrConflict) || runs != maxAttempts {
				t.Errorf("endless conflicts: got %v after %d runs, want ErrConflict after %d", err, runs, maxAttempts)
			}
		}
	}
}

func TestTxnTooBig(t *testing.T) {
	s, err := Create(context.Background(), t.TempDir(), ModeUnencrypted, Options{MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Update(context.Background(), func(tx *store.Tx) error {
		for i := 0; i < 100000; i++ {
			if err := tx.Seen().Add(seenHash(i), t0); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, store.ErrTxnTooBig) {
		t.Errorf("huge transaction: got %v, want ErrTxnTooBig", err)
	}
}

// TestLogger checks that badger's messages reach the injected logger.
func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	mu := syncWriter{w: &buf}
	log := slog.New(slog.NewTextHandler(&mu, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := Create(context.Background(), t.TempDir(), ModeKeyFile, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, "component=badger") {
		t.Errorf("no badger message in the log:\n%s", out)
	}
}

type syncWriter struct {
	sync.Mutex
	w *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.Lock()
	defer s.Unlock()
	return s.w.Write(p)
}
