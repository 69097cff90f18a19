package badgerstore

import (
	"context"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/storetest"
)

func TestMain(m *testing.M) {
	if childMain() || killChildMain() {
		return
	}
	if dir := os.Getenv(measureEnv); dir != "" {
		measureChild(dir)
		return
	}
	// badger.Open leaks these two goroutines when it fails after starting
	// them (a key that does not match the database: DB.cleanup stops
	// neither). An unclosed store would show many others (its writer,
	// flusher, compactors, syncer), so ignoring these two hides nothing.
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/dgraph-io/badger/v4.(*DB).monitorCache"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2/z.(*AllocatorPool).freeupAllocators"))
}

// fastKDF keeps tests quick; the parameters are recorded in the key file
// like any others.
var fastKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

func testOptions() Options {
	return Options{Passphrase: []byte("correct horse"), KDF: fastKDF}
}

func createStore(t testing.TB, dir string, mode Mode) *Store {
	t.Helper()
	s, err := Create(context.Background(), dir, mode, testOptions())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	for _, mode := range []Mode{ModePassphrase, ModeUnencrypted} {
		t.Run(mode.String(), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				s := createStore(t, t.TempDir(), mode)
				t.Cleanup(func() { s.Close() })
				return s
			})
		})
	}
}

func TestBackendConformance(t *testing.T) {
	storetest.RunBackend(t, func(t *testing.T) store.Backend {
		b, err := openBackend(t.TempDir(), nil, Options{}.withDefaults())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	})
}
