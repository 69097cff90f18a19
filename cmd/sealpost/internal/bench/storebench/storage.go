// Package storebench measures the storage figures of `sealpost bench`:
// durable and group-committed writes to a store/badgerstore store, each next
// to what a plain file with the same syncs reaches in the same run.
package storebench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
)

// RecordSize is the size of the values the storage figures write.
const RecordSize = 1024

// Writers is the number of concurrent writers of store_batch_write.
const Writers = 256

// Run measures the storage figures in a fresh encrypted (ModeKeyFile)
// store created under dir (and removed afterwards; put dir on the disk the
// node's home is on), in about d in all, a quarter of it on each of the
// four measurements:
//
// The values are written to the store's Backend, under a table byte the
// typed records do not use: the figures are the engine's and its group
// commit's, not those of a record's encoding.
//
//   - store_durable_write (ops/s): one writer, one Update per 1 KiB value,
//     each waiting until durable. Limit: the rate of {append 1 KiB to a
//     plain file in the same directory; fdatasync} measured in the same
//     run, the most a design with one sync per write can reach.
//   - store_batch_write (ops/s): Writers concurrent writers, one
//     Update per 1 KiB value, group-committed. Limit: the rate of
//     {append B values of 1 KiB to a plain file; fdatasync}, in values per
//     second, where B is the mean number of Updates per sync the store
//     achieved in its run: what a plain append-only log does with the same
//     batching.
//   - store_batch_size (writes/sync): that B, no limit.
func Run(ctx context.Context, dir string, d time.Duration) ([]bench.Figure, error) {
	work, err := os.MkdirTemp(dir, "sealpost-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	s, err := badgerstore.Create(ctx, filepath.Join(work, "store"), badgerstore.ModeKeyFile, badgerstore.Options{GCInterval: -1})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	value := make([]byte, RecordSize)
	if _, err := rand.Read(value); err != nil {
		return nil, err
	}
	var seq atomic.Uint64
	write := func() error { return writeValue(ctx, s, &seq, value) }

	d /= 4
	fsyncRate, err := fileSyncRate(ctx, work, 1, d)
	if err != nil {
		return nil, err
	}
	single, _, err := runWriters(ctx, s, 1, d, write)
	if err != nil {
		return nil, err
	}
	batch, perSync, err := runWriters(ctx, s, Writers, d, write)
	if err != nil {
		return nil, err
	}
	b := max(1, int(perSync+0.5))
	batchLimit, err := fileSyncRate(ctx, work, b, d)
	if err != nil {
		return nil, err
	}
	return []bench.Figure{
		bench.Rate("store_durable_write", "ops/s", single, fsyncRate),
		bench.Rate("store_batch_write", "ops/s", batch, batchLimit),
		{Name: "store_batch_size", Unit: "writes/sync", Value: perSync},
	}, nil
}

// writeValue durably writes value to s's backend under the next key of seq.
func writeValue(ctx context.Context, s *badgerstore.Store, seq *atomic.Uint64, value []byte) error {
	return s.Backend().Update(ctx, func(kv store.KV) error { return kv.Set(valueKey(seq.Add(1)), value) })
}

// valueKey is the 17-byte key of the n'th value: a table byte the typed
// layer does not use, then n.
func valueKey(n uint64) []byte {
	k := make([]byte, 17)
	k[0] = 0xf0
	binary.BigEndian.PutUint64(k[1:], n)
	return k
}

// runWriters runs writers goroutines calling write for about d and returns
// the writes per second and the mean writes per sync.
func runWriters(ctx context.Context, s *badgerstore.Store, writers int, d time.Duration, write func() error) (float64, float64, error) {
	syncs0 := s.Syncs()
	rate, n, err := bench.Parallel(ctx, writers, d, func(int) error { return write() })
	if err != nil {
		return 0, 0, err
	}
	return rate, float64(n) / float64(max(1, s.Syncs()-syncs0)), nil
}

// fileSyncRate appends batch values of RecordSize bytes to a plain
// file in dir and fdatasyncs, repeatedly for about d, and returns values
// per second.
func fileSyncRate(ctx context.Context, dir string, batch int, d time.Duration) (float64, error) {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, batch*RecordSize)
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
