package filebench

import (
	"context"
	"strings"
	"testing"
)

// TestRun measures small figures: each is positive, the throughputs have
// their limits, and both heap figures are there.
func TestRun(t *testing.T) {
	figs, err := Run(context.Background(), Options{Dir: t.TempDir(), Size: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range figs {
		names[f.Name] = true
		if f.Value <= 0 && !strings.HasPrefix(f.Name, "attachment_heap_") {
			t.Errorf("%s = %v", f.Name, f.Value)
		}
		if strings.HasPrefix(f.Name, "attachment_") && f.Unit == "MiB/s" && (f.Limit <= 0 || f.Ratio <= 0) {
			t.Errorf("%s has no limit: %+v", f.Name, f)
		}
	}
	for _, want := range []string{"attachment_encrypt", "attachment_verify", "libp2p_stream", "attachment_direct", "attachment_heap_1mib", "attachment_heap_4mib", "attachment_relay_upload", "attachment_relay_download"} {
		if !names[want] {
			t.Errorf("no figure %s in %+v", want, figs)
		}
	}
}
