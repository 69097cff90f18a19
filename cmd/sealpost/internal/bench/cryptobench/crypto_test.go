package cryptobench

import (
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	figs, err := Run(Options{Duration: 300 * time.Millisecond, Rounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{RatchetRoundTrip: true, RatchetDHStep: true, PQXDHInitiate: true, PQXDHRespond: true, SealOpen: true, RatchetAllocs: true}
	for _, f := range figs {
		t.Logf("%-28s %12.1f %-10s limit %12.1f ratio %.2f", f.Name, f.Value, f.Unit, f.Limit, f.Ratio)
		if !want[f.Name] {
			t.Errorf("unexpected figure %q", f.Name)
		}
		delete(want, f.Name)
		if f.Value <= 0 {
			t.Errorf("%s: value %v", f.Name, f.Value)
		}
		if f.Unit == "ops/s" && (f.Limit <= 0 || f.Ratio <= 0) {
			t.Errorf("%s: no limit", f.Name)
		}
	}
	for name := range want {
		t.Errorf("figure %s missing", name)
	}
}

// BenchmarkRun runs the full runner once per iteration and reports each
// figure and ratio: go test -run '^$' -bench Run -benchtime 1x.
func BenchmarkRun(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		figs, err := Run(Options{})
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range figs {
			b.ReportMetric(f.Value, f.Name+"_"+f.Unit)
			if f.Ratio != 0 {
				b.ReportMetric(f.Ratio, f.Name+"_ratio")
			}
		}
	}
}
