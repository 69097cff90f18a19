package relaybench

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestIngest runs the relay_ingest runner briefly: it must produce its
// figures (the rate itself is reported by `sealpost bench`, not checked).
// With SEALPOST_MEASURE=1 it runs for 10 s and logs them.
func TestIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("writes to disk for a while")
	}
	d := 400 * time.Millisecond
	if os.Getenv("SEALPOST_MEASURE") != "" {
		d = 10 * time.Second
	}
	figs, err := Ingest(context.Background(), t.TempDir(), d)
	if err != nil {
		t.Fatal(err)
	}
	if len(figs) != 2 || figs[0].Name != "relay_ingest" || figs[0].Value <= 0 || figs[0].Limit <= 0 || figs[1].Value < 1 {
		t.Fatalf("figures: %+v", figs)
	}
	for _, f := range figs {
		t.Logf("%s: %.0f %s (limit %.0f, ratio %.2f)", f.Name, f.Value, f.Unit, f.Limit, f.Ratio)
	}
}
