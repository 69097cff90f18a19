package storebench

import (
	"context"
	"encoding/binary"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
)

// TestRun runs the runner briefly; its figures must be sane.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("writes for a while")
	}
	d := 400 * time.Millisecond
	if s := os.Getenv("SEALPOST_BENCH_DURATION"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatal(err)
		}
	}
	figs, err := Run(context.Background(), t.TempDir(), d)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range figs {
		t.Logf("%-20s %12.1f %-12s limit %12.1f ratio %.2f", f.Name, f.Value, f.Unit, f.Limit, f.Ratio)
		names[f.Name] = true
		if f.Value <= 0 {
			t.Errorf("%s: value %v", f.Name, f.Value)
		}
	}
	for _, n := range []string{"store_durable_write", "store_batch_write", "store_batch_size"} {
		if !names[n] {
			t.Errorf("figure %s missing", n)
		}
	}
}

func benchStore(b *testing.B) *badgerstore.Store {
	s, err := badgerstore.Create(context.Background(), b.TempDir(), badgerstore.ModeKeyFile, badgerstore.Options{GCInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkDurableWrite: one durable 1 KiB write per Update, one writer.
func BenchmarkDurableWrite(b *testing.B) {
	s := benchStore(b)
	value := make([]byte, RecordSize)
	var seq atomic.Uint64
	b.ReportAllocs()
	b.SetBytes(RecordSize)
	for b.Loop() {
		if err := writeValue(context.Background(), s, &seq, value); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGroupCommit: durable 1 KiB writes from Writers goroutines per CPU.
func BenchmarkGroupCommit(b *testing.B) {
	s := benchStore(b)
	value := make([]byte, RecordSize)
	var seq atomic.Uint64
	b.ReportAllocs()
	b.SetBytes(RecordSize)
	b.SetParallelism(Writers)
	r0 := s.Syncs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := writeValue(context.Background(), s, &seq, value); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/float64(max(1, s.Syncs()-r0)), "writes/sync")
}

// BenchmarkMessagePut: a typed message with a 1 KiB body per Update, from
// 16 goroutines per CPU (they conflict on the Order counter).
func BenchmarkMessagePut(b *testing.B) {
	s := benchStore(b)
	body := make([]byte, RecordSize)
	var seq atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var id [16]byte
			binary.BigEndian.PutUint64(id[:], seq.Add(1))
			err := s.Update(context.Background(), func(tx *store.Tx) error {
				m := store.Message{ID: id, State: store.MessageReceived, Body: body}
				return tx.Messages().Put(&m)
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGet: reading one record in a View.
func BenchmarkGet(b *testing.B) {
	s := benchStore(b)
	var seq atomic.Uint64
	value := make([]byte, RecordSize)
	for range 1000 {
		if err := writeValue(context.Background(), s, &seq, value); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := valueKey(uint64(i%1000 + 1))
		i++
		err := s.Backend().View(context.Background(), func(kv store.KV) error {
			_, err := kv.Get(k)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
