package cryptobench

import (
	"testing"
	"time"

	"github.com/sealpost/sealpost/crypto/mls"
)

func TestMLS(t *testing.T) {
	sizes := []int{10}
	if !testing.Short() {
		sizes = []int{10, 40}
	}
	figs, err := MLS(MLSOptions{Duration: 300 * time.Millisecond, Sizes: sizes, Reps: 1,
		Suites: []mls.CipherSuite{mls.DefaultSuite}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range figs {
		t.Logf("%-40s %12.3f %-6s limit %12.3f ratio %.2f", f.Name, f.Value, f.Unit, f.Limit, f.Ratio)
		seen[f.Name] = true
		if f.Value <= 0 {
			t.Errorf("%s: value %v", f.Name, f.Value)
		}
		if f.Unit != "bytes" && (f.Limit <= 0 || f.Ratio <= 0) {
			t.Errorf("%s: no limit", f.Name)
		}
	}
	for _, want := range []string{MLSAppRoundTrip, "mls_add_create_pq_n10", "mls_remove_process_pq_n10",
		"mls_update_create_pq_n10", "mls_update_commit_bytes_pq_n10", "mls_add_welcome_bytes_pq_n10"} {
		if !seen[want] {
			t.Errorf("figure %s missing", want)
		}
	}
	if n, want := len(figs), 1+10*len(sizes); n != want {
		t.Errorf("%d figures, want %d", n, want)
	}
}
