package nodetest

import (
	"os"
	"runtime/pprof"
	"sync"
	"testing"
)

// CPUProfile starts a CPU profile written to the file the environment
// variable env names, if it names one (measurements profile their window
// this way), and returns what stops it; stopping twice, or without a
// profile, does nothing.
func CPUProfile(t testing.TB, env string) (stop func()) {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return sync.OnceFunc(func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			t.Errorf("CPU profile %s: %v", path, err)
		}
	})
}
