package badgerstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealpost/sealpost/crypto/bench"
	"github.com/sealpost/sealpost/store"
)

// BenchRecordSize is the size of the values the storage figures write.
const BenchRecordSize = 1024

// BenchWriters is the number of concurrent writers of store_batch_write.
const BenchWriters = 256

// Bench measures the storage figures in a fresh encrypted (ModeKeyFile)
// store created under dir (and removed afterwards; put dir on the disk the
// node's home is on), in about d in all, a quarter of it on each of the
// four measurements:
//
//   - store_durable_write (ops/s): one writer, one Update per 1 KiB value,
//     each waiting until durable. Limit: the rate of {append 1 KiB to a
//     plain file in the same directory; fdatasync} measured in the same
//     run, the most a design with one sync per write can reach.
//   - store_batch_write (ops/s): BenchWriters concurrent writers, one
//     Update per 1 KiB value, group-committed. Limit: the rate of
//     {append B values of 1 KiB to a plain file; fdatasync}, in values per
//     second, where B is the mean number of Updates per sync the store
//     achieved in its run: what a plain append-only log does with the same
//     batching.
//   - store_batch_size (writes/sync): that B, no limit.
func Bench(ctx context.Context, dir string, d time.Duration) ([]bench.Figure, error) {
	work, err := os.MkdirTemp(dir, "sealpost-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	s, err := Create(ctx, filepath.Join(work, "store"), ModeKeyFile, Options{GCInterval: -1})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	value := make([]byte, BenchRecordSize)
	if _, err := rand.Read(value); err != nil {
		return nil, err
	}
	var seq atomic.Uint64
	write := func() error {
		n := seq.Add(1)
		var k [17]byte
		k[0] = 0xf0 // a table byte the typed layer does not use
		binary.BigEndian.PutUint64(k[1:], n)
		return s.b.Update(ctx, func(kv store.KV) error { return kv.Set(k[:], value) })
	}

	d /= 4
	fsyncRate, err := fileSyncRate(ctx, work, 1, d)
	if err != nil {
		return nil, err
	}
	single, _, err := runWriters(ctx, s, 1, d, write)
	if err != nil {
		return nil, err
	}
	batch, perSync, err := runWriters(ctx, s, BenchWriters, d, write)
	if err != nil {
		return nil, err
	}
	b := max(1, int(perSync+0.5))
	batchLimit, err := fileSyncRate(ctx, work, b, d)
	if err != nil {
		return nil, err
	}
	return []bench.Figure{
		figure("store_durable_write", "ops/s", single, fsyncRate),
		figure("store_batch_write", "ops/s", batch, batchLimit),
		{Name: "store_batch_size", Unit: "writes/sync", Value: perSync},
	}, nil
}

func figure(name, unit string, value, limit float64) bench.Figure {
	f := bench.Figure{Name: name, Unit: unit, Value: value, Limit: limit}
	if limit > 0 {
		f.Ratio = value / limit
	}
	return f
}

// runWriters runs writers goroutines calling write for about d and returns
// the writes per second and the mean writes per sync.
func runWriters(ctx context.Context, s *Store, writers int, d time.Duration, write func() error) (float64, float64, error) {
	syncs0 := s.b.sync.rounds.Load()
	var n atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if err := write(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, 0, firstErr
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	rate := float64(n.Load()) / elapsed.Seconds()
	per := float64(n.Load()) / float64(max(1, s.b.sync.rounds.Load()-syncs0))
	return rate, per, nil
}

// fileSyncRate appends batch values of BenchRecordSize bytes to a plain
// file in dir and fdatasyncs, repeatedly for about d, and returns values
// per second.
func fileSyncRate(ctx context.Context, dir string, batch int, d time.Duration) (float64, error) {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, batch*BenchRecordSize)
	rand.Read(buf)
	n := 0
	start := time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return 0, fmt.Errorf("fdatasync: %w", err)
		}
		n += batch
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
