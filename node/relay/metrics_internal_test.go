package relay

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/store"
)

// TestTotalsInCommitOrder: the writer's batches report the totals their
// transactions read in commit order, but finish their fsyncs in any order;
// the totals of a transaction that finished last but committed first must
// not replace those of the one after it (the relay reported 3417 envelopes
// while it held 3419 and had answered each deposit ok).
func TestTotalsInCommitOrder(t *testing.T) {
	m := &metrics{
		batch:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "batch"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "commit"}),
	}
	m.setTotals(store.RelayTotals{})
	first, second := m.nextBatch(), m.nextBatch()
	m.committed(1, 0, store.RelayTotals{Envelopes: 3419}, second)
	m.committed(2, 0, store.RelayTotals{Envelopes: 3417}, first)
	if got := m.totals.Load().Envelopes; got != 3419 {
		t.Fatalf("%d envelopes reported after both batches, want 3419", got)
	}
	third := m.nextBatch()
	m.committed(1, 0, store.RelayTotals{Envelopes: 3420}, third)
	if got := m.totals.Load().Envelopes; got != 3420 {
		t.Fatalf("%d envelopes reported after the third batch, want 3420", got)
	}
}
