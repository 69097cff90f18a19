package deliverybench

import (
	"context"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	figs, err := Run(context.Background(), Options{Dir: t.TempDir(), Duration: 300 * time.Millisecond, Senders: 8, Samples: 10})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"direct_delivery", "direct_delivery_unbatched", "store_durable_write", "store_batch_write",
		"delivery_latency_p50", "delivery_latency_p99"}
	if len(figs) != len(want) {
		t.Fatalf("got %d figures, want %d: %+v", len(figs), len(want), figs)
	}
	for i, f := range figs {
		if f.Name != want[i] || f.Value <= 0 {
			t.Errorf("figure %d: %+v, want %s with a value", i, f, want[i])
		}
	}
}

// BenchmarkRun runs the whole runner once per iteration and logs the
// figures: go test -bench Run -benchtime 1x ./cmd/sealpost/internal/bench/deliverybench/
func BenchmarkRun(b *testing.B) {
	for range b.N {
		figs, err := Run(context.Background(), Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range figs {
			b.Logf("%-28s %10.1f %-8s limit %10.1f ratio %.2f", f.Name, f.Value, f.Unit, f.Limit, f.Ratio)
		}
	}
}
