package relaybench

import (
	"context"
	"testing"
	"time"
)

func TestE2E(t *testing.T) {
	figs, err := E2E(context.Background(), t.TempDir(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(figs) != 2 || figs[0].Name != "relay_e2e_p50" || figs[1].Name != "relay_e2e_p99" {
		t.Fatalf("figures: %+v", figs)
	}
	for _, f := range figs {
		if f.Value <= 0 || f.Unit != "ms" {
			t.Errorf("%s: %v %s", f.Name, f.Value, f.Unit)
		}
		t.Logf("%s = %.3f %s", f.Name, f.Value, f.Unit)
	}
	if figs[1].Value < figs[0].Value {
		t.Errorf("p99 %v below p50 %v", figs[1].Value, figs[0].Value)
	}
}
