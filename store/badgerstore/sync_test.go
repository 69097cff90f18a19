package badgerstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealpost/sealpost/store"
)

// cpuTime is the CPU (user and system) this process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDurableUpdate is one writer's durable Update of a 300-byte
// value (a received message's size), one after the other, each with a
// sync round of its own, as a node writes a message that comes alone.
// Besides the time it reports cpu-us/op, the CPU the process spent per
// Update (badger's commit and the sync round: the directory read and the
// files synced), and next to it, from the same run, the
// limit: file-cpu-us/op, the CPU of appending as many bytes to a plain
// file in the same directory and fdatasyncing it.
func BenchmarkDurableUpdate(b *testing.B) {
	dir := b.TempDir()
	s := createStore(b, dir, ModeKeyFile)
	defer s.Close()
	value := make([]byte, 300)
	rand.Read(value)
	ctx := context.Background()
	key := make([]byte, 9)
	key[0] = 0xf0
	n := uint64(0)
	cpu0 := cpuTime(b)
	for b.Loop() {
		n++
		binary.BigEndian.PutUint64(key[1:], n)
		if err := s.Backend().Update(ctx, func(kv store.KV) error { return kv.Set(key, value) }); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(n), "cpu-us/op")

	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	cpu0 = cpuTime(b)
	for range n {
		if _, err := f.Write(value); err != nil {
			b.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(n), "file-cpu-us/op")
}

// TestSyncFilesFollowRotation writes through several value-log files and
// memtables and checks that the sync rounds' open files follow
// them: the newest value log and every memtable log on disk are open, and
// nothing else stays open.
func TestSyncFilesFollowRotation(t *testing.T) {
	o := testOptions()
	o.MemTableSize = 1 << 20
	o.vlogFileSize = 1 << 20
	dir := t.TempDir()
	s, err := Create(context.Background(), dir, ModeKeyFile, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	value := make([]byte, 16<<10)
	ctx := context.Background()
	for i := range 400 { // 6 MiB of values: six value logs
		key := binary.BigEndian.AppendUint64([]byte{0xf0}, uint64(i))
		if err := s.Backend().Update(ctx, func(kv store.KV) error { return kv.Set(key, value) }); err != nil {
			t.Fatal(err)
		}
	}
	small := make([]byte, 32) // kept in the memtable: they fill it
	for i := range 40 {
		err := s.Backend().Update(ctx, func(kv store.KV) error {
			for j := range 1000 {
				if err := kv.Set(binary.BigEndian.AppendUint64([]byte{0xf1}, uint64(i*1000+j)), small); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	b := s.b
	b.files.mu.Lock()
	open := make(map[string]bool)
	for n := range b.files.fds {
		open[n] = true
	}
	b.files.mu.Unlock()
	names, err := listDir(b.dir)
	if err != nil {
		t.Fatal(err)
	}
	var vlogs []string
	for _, n := range names {
		switch filepath.Ext(n) {
		case ".vlog":
			vlogs = append(vlogs, n)
		case ".mem":
			// Badger makes a memtable's log only while it writes, so
			// every one on disk now was there at the last round.
			if !open[n] {
				t.Errorf("memtable log %s is not open for the sync rounds (open: %v)", n, open)
			}
		}
	}
	if len(vlogs) < 4 {
		t.Fatalf("%d value-log files: the test did not rotate them", len(vlogs))
	}
	if open["00001.mem"] {
		t.Fatalf("the first memtable's log is open: the test did not rotate memtables (open: %v)", open)
	}
	if newest := slices.MaxFunc(vlogs, compareFileNames); !open[newest] {
		t.Errorf("the newest value log %s is not open (open: %v)", newest, open)
	}
	for n := range open {
		if filepath.Ext(n) == ".vlog" && n != slices.MaxFunc(vlogs, compareFileNames) {
			t.Errorf("an older value log %s is still open", n)
		}
	}
	if len(open) > 4 {
		t.Errorf("%d files open for the sync rounds, want at most the 3 memtable logs and a value log: %v", len(open), open)
	}
}
