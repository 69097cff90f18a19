package testnet

import (
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
)

func TestProfMem(t *testing.T) {
	if os.Getenv("TESTNET_PROF") == "" {
		t.Skip()
	}
	var once sync.Once
	o := Options{Nodes: 200, Relays: 4, Messages: 2000, Offline: 0.3, Dir: t.TempDir()}
	o.Progress = func(p Progress) {
		if p.Phase == PhaseSend && p.Sent > 1000 {
			once.Do(func() {
				f, _ := os.Create("/tmp/heap.prof")
				runtime.GC()
				pprof.WriteHeapProfile(f)
				f.Close()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				t.Logf("heap inuse %d MiB, sys %d MiB, stack %d MiB, goroutines %d", ms.HeapInuse>>20, ms.Sys>>20, ms.StackInuse>>20, runtime.NumGoroutine())
			})
		}
	}
	rep, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep.Seconds, rep.Sent, rep.Delivered, rep.PeakMemoryBytes>>20, rep.CPUTimeSeconds)
}
