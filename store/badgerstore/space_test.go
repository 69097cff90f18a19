package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/y"

	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/storetest"
)

// smallOptions make badger's files small, so that a small file system
// holds a store and its room.
func smallOptions() Options {
	o := testOptions()
	o.MemTableSize = 1 << 20
	o.vlogFileSize = 1 << 20
	o.GCInterval = -1
	return o
}

// take writes a file of n bytes at path.
func take(t *testing.T, path string, n int) {
	t.Helper()
	if err := os.WriteFile(path, make([]byte, n), 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkNoHoles fails the test if a file badger maps has a hole.
func checkNoHoles(t *testing.T, dir string) {
	t.Helper()
	names, err := listDir(filepath.Join(dir, dataDirName))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !mapped(n) {
			continue
		}
		if h := holes(filepath.Join(dir, dataDirName, n)); h > 0 {
			t.Errorf("%s has %d bytes without a block", n, h)
		}
	}
}

// putValue writes a value of n bytes under key k.
func putValue(s *Store, k string, n int) error {
	v := bytes.Repeat([]byte(k[len(k)-1:]), n)
	return s.Backend().Update(context.Background(), func(kv store.KV) error {
		return kv.Set(append([]byte{0xf0}, k...), v)
	})
}

// writeUntilFull writes values of size bytes under k00000, k00001, ...
// until the store refuses one with a DiskFullError (at most 4000), and
// returns how many it wrote and the error.
func writeUntilFull(t *testing.T, s *Store, size int) (int, *store.DiskFullError) {
	t.Helper()
	for i := range 4000 {
		err := putValue(s, fmt.Sprintf("k%05d", i), size)
		var full *store.DiskFullError
		if errors.As(err, &full) {
			return i, full
		}
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	t.Fatalf("4000 writes of %d bytes and no DiskFullError", size)
	return 0, nil
}

func getValue(s *Store, k string) ([]byte, error) {
	var v []byte
	err := s.Backend().View(context.Background(), func(kv store.KV) error {
		var err error
		v, err = kv.Get(append([]byte{0xf0}, k...))
		return err
	})
	return v, err
}

// TestFullDisk fills a small tmpfs with a store's own writes and then
// with another file, and checks that the store refuses writes with a
// store.DiskFullError instead of dying of SIGBUS (which would end this test
// binary), keeps its files without holes, reads on, closes, resumes by
// itself when room returns, and refuses to open without room with the
// same error.
func TestFullDisk(t *testing.T) {
	root := storetest.Tmpfs(t, 40<<20)
	dir := filepath.Join(root, "store")
	opts := smallOptions()
	s, err := Create(context.Background(), dir, ModeKeyFile, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkNoHoles(t, dir)

	// Another program takes part of the disk; the store's own writes fill
	// the rest.
	take(t, filepath.Join(root, "other"), 12<<20)
	const size = 48 << 10
	written, full := writeUntilFull(t, s, size)
	if !errors.Is(full, store.ErrDiskFull) || !strings.Contains(full.Error(), "is full") {
		t.Errorf("error %q does not wrap ErrDiskFull or say the disk is full", full)
	}
	t.Logf("refused after %d writes: %v (%s)", written, full, s.b.space)
	checkNoHoles(t, dir)
	if s.DiskFull() == nil {
		t.Error("DiskFull is nil while writes are refused")
	}
	if _, err := os.Stat(filepath.Join(dir, reserveFileName)); err != nil {
		t.Errorf("reserve file: %v", err)
	} else if h := holes(filepath.Join(dir, reserveFileName)); h != 0 {
		t.Errorf("the reserve has %d bytes without a block", h)
	}

	// Another program takes the rest.
	storetest.FillDisk(t, filepath.Join(root, "filler"))
	for i := range 20 {
		if err := putValue(s, fmt.Sprintf("x%05d", i), size); !errors.Is(err, store.ErrDiskFull) {
			t.Fatalf("write on a full disk: got %v, want ErrDiskFull", err)
		}
	}
	for i := 0; i < written; i += max(1, written/20) {
		v, err := getValue(s, fmt.Sprintf("k%05d", i))
		if err != nil || len(v) != size {
			t.Fatalf("read k%05d on a full disk: %d bytes, %v", i, len(v), err)
		}
	}
	checkNoHoles(t, dir)

	// Room returns: writes resume by themselves.
	for _, n := range []string{"filler", "other"} {
		if err := os.Remove(filepath.Join(root, n)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := putValue(s, "resumed", size)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrDiskFull) || time.Now().After(deadline) {
			t.Fatalf("write after room returned: %v (%s)", err, s.b.space)
		}
		time.Sleep(50 * time.Millisecond)
	}
	checkNoHoles(t, dir)

	// Full again, then closed: the flush at Close uses the reserve.
	storetest.FillDisk(t, filepath.Join(root, "filler"))
	for putValue(s, "more", size) == nil {
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close on a full disk: %v", err)
	}

	// Opening without room is refused with the same error; with room it
	// opens and holds every acknowledged write.
	_, err = Open(context.Background(), dir, opts)
	if !errors.As(err, &full) {
		t.Fatalf("Open on a full disk: got %v, want a DiskFullError", err)
	}
	t.Logf("Open on a full disk: %v", err)
	os.Remove(filepath.Join(root, "filler"))
	s, err = Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("Open with room: %v", err)
	}
	defer s.Close()
	for i := 0; i < written; i += max(1, written/20) {
		if v, err := getValue(s, fmt.Sprintf("k%05d", i)); err != nil || len(v) != size {
			t.Fatalf("k%05d after reopening: %d bytes, %v", i, len(v), err)
		}
	}
	if v, err := getValue(s, "resumed"); err != nil || len(v) != size {
		t.Fatalf("the write after room returned: %d bytes, %v", len(v), err)
	}
}

// TestFullDiskSparse fills a small tmpfs with the writes of a store that
// keeps its files sparse: writes are refused before badger needs a block
// the disk does not have (the room kept counts the holes), and there is no
// reserve.
func TestFullDiskSparse(t *testing.T) {
	root := storetest.Tmpfs(t, 40<<20)
	dir := filepath.Join(root, "store")
	opts := smallOptions()
	opts.Sparse = true
	s, err := Create(context.Background(), dir, ModeKeyFile, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	written, full := writeUntilFull(t, s, 48<<10)
	t.Logf("refused after %d writes: %v", written, full)
	if _, err := os.Stat(filepath.Join(dir, reserveFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a sparse store has a reserve file: %v", err)
	}
	if v, err := getValue(s, "k00000"); err != nil || len(v) != 48<<10 {
		t.Errorf("read on a full disk: %d bytes, %v", len(v), err)
	}
}

// TestCrashOnFullDisk kills a process writing to a store on a disk that
// another program then fills, and checks that the store opens again on
// that disk (once there is room) without a fault: a memtable log with
// holes faulted on every start on tmpfs.
func TestCrashOnFullDisk(t *testing.T) {
	if runWriter() {
		return
	}
	root := storetest.Tmpfs(t, 40<<20)
	dir := filepath.Join(root, "store")
	s, err := Create(context.Background(), dir, ModeKeyFile, smallOptions())
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	w := startWriter(t, "TestCrashOnFullDisk", dir, "")
	// Once it has written a little, fill the disk under it and kill it.
	storetest.FillDisk(t, filepath.Join(root, "filler"))
	time.Sleep(200 * time.Millisecond)
	w.kill(t)
	// Open on the full disk: a clear error, not a fault.
	if _, err := Open(context.Background(), dir, smallOptions()); !errors.Is(err, store.ErrDiskFull) {
		t.Fatalf("Open on a full disk after a crash: got %v, want ErrDiskFull", err)
	}
	os.Remove(filepath.Join(root, "filler"))
	s, err = Open(context.Background(), dir, smallOptions())
	if err != nil {
		t.Fatalf("Open after a crash: %v", err)
	}
	defer s.Close()
	if v, err := getValue(s, "k00000"); err != nil || len(v) != 1000 {
		t.Fatalf("the first write after a crash: %d bytes, %v", len(v), err)
	}
}

// Environment of a writer process (startWriter).
const (
	envWriterDir    = "SEALPOST_TEST_WRITER_DIR"
	envWriterMarker = "SEALPOST_TEST_WRITER_MARKER"
)

// writer is a process writing to a store until it is killed.
type writer struct {
	cmd *exec.Cmd
}

// startWriter runs this test binary's test (which calls runWriter first)
// as a process that opens the store in dir (with its marker in marker, if
// not empty) and writes k00000, k00001, ... (1000 bytes each) until it is
// killed. It returns once the first write is durable.
func startWriter(t *testing.T, test, dir, marker string) *writer {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^"+test+"$")
	cmd.Env = append(os.Environ(), envWriterDir+"="+dir, envWriterMarker+"="+marker)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(firstWrite))
	if _, err := io.ReadFull(out, buf); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("writer: %v", err)
	}
	return &writer{cmd: cmd}
}

// kill kills the writer (SIGKILL) and checks that it was still running.
func (w *writer) kill(t *testing.T) {
	t.Helper()
	w.cmd.Process.Kill()
	err := w.cmd.Wait()
	if ws, ok := w.cmd.ProcessState.Sys().(interface{ Signaled() bool }); ok && !ws.Signaled() {
		t.Fatalf("the writer ended by itself before it was killed: %v", err)
	}
}

const firstWrite = "first write done"

// runWriter is the writer process of startWriter: if this process is one,
// it writes until it is killed and never returns; otherwise it returns
// false.
func runWriter() bool {
	dir := os.Getenv(envWriterDir)
	if dir == "" {
		return false
	}
	opts := smallOptions()
	opts.MarkerDir = os.Getenv(envWriterMarker)
	s, err := Open(context.Background(), dir, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	for i := 0; ; i++ {
		err := putValue(s, fmt.Sprintf("k%05d", i), 1000)
		if err != nil && !errors.Is(err, store.ErrDiskFull) {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		if i == 0 {
			os.Stdout.WriteString(firstWrite)
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestDiskFullGate drives the store's gate with an injected file-system
// size: writes are refused below the room it keeps, the reserve is kept,
// reads go on, and writes resume once there is room and a margin.
func TestDiskFullGate(t *testing.T) {
	var free atomic.Int64
	free.Store(1 << 40)
	opts := smallOptions()
	opts.statfs = func(string) (int64, error) { return free.Load(), nil }
	dir := t.TempDir()
	s, err := Create(context.Background(), dir, ModeKeyFile, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := putValue(s, "k00001", 100); err != nil {
		t.Fatal(err)
	}
	reserve := func() int64 {
		fi, err := os.Stat(filepath.Join(dir, reserveFileName))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	if reserve() == 0 {
		t.Fatal("no reserve while writes are admitted")
	}
	sp := s.b.space
	sp.mu.Lock()
	need, res := sp.need(), sp.reserveSize()
	sp.mu.Unlock()

	free.Store(need - 1)
	time.Sleep(freshFor)
	err = putValue(s, "k00002", 100)
	var full *store.DiskFullError
	if !errors.As(err, &full) || full.Free != need-1 || full.Need != need {
		t.Fatalf("write below the room kept: got %v, want a DiskFullError of %d free, %d needed", err, need-1, need)
	}
	// The reserve stays for Close: freed now, it would go to the program
	// filling the disk.
	if reserve() < res {
		t.Errorf("reserve of %d bytes while writes are refused, want %d", reserve(), res)
	}
	if v, err := getValue(s, "k00001"); err != nil || len(v) != 100 {
		t.Errorf("read while full: %d bytes, %v", len(v), err)
	}
	// Room for the writes, but within the margin that keeps the store
	// from flapping: still refused.
	free.Store(need + spaceMargin - 1)
	time.Sleep(freshFor)
	if err := putValue(s, "k00002", 100); !errors.Is(err, store.ErrDiskFull) {
		t.Fatalf("write within the margin: got %v, want ErrDiskFull", err)
	}
	free.Store(need + spaceMargin)
	time.Sleep(freshFor)
	if err := putValue(s, "k00002", 100); err != nil {
		t.Fatalf("write with room again: %v", err)
	}
	if reserve() < res {
		t.Errorf("reserve of %d bytes after writes resumed, want %d", reserve(), res)
	}
}

// onDisk is the size of a table in TestCompactionBound.
func onDisk(t badger.TableInfo) int64 { return int64(t.OnDiskSize) }

// TestCompactionBound checks the largest compaction computed from a table
// list.
func TestCompactionBound(t *testing.T) {
	k := func(s string) []byte { return y.KeyWithTs([]byte(s), 1) }
	tables := []badger.TableInfo{
		{Level: 0, Left: k("a"), Right: k("z"), OnDiskSize: 10},
		{Level: 0, Left: k("b"), Right: k("y"), OnDiskSize: 20},
		{Level: 2, Left: k("a"), Right: k("f"), OnDiskSize: 100},
		{Level: 2, Left: k("g"), Right: k("m"), OnDiskSize: 100},
		{Level: 3, Left: k("a"), Right: k("c"), OnDiskSize: 1000},
		{Level: 3, Left: k("d"), Right: k("h"), OnDiskSize: 2000},
		{Level: 3, Left: k("i"), Right: k("z"), OnDiskSize: 4000},
	}
	// Level 0 with all of level 2: 230. Level 2's first table with the
	// first two of level 3: 3100; its second with the last two: 6100.
	// Level 3's largest alone: 4000. The two largest: 6100 and 4000.
	if got, want := compactionBound(tables, onDisk), int64(6100+4000); got != want {
		t.Errorf("compactionBound = %d, want %d", got, want)
	}
	if got := compactionBound(nil, onDisk); got != 0 {
		t.Errorf("compactionBound of no tables = %d", got)
	}
}

// BenchmarkAdmit is what the gate adds to every write Update (compare
// with an Update's sync, store_durable_write in `sealpost bench`).
func BenchmarkAdmit(b *testing.B) {
	s := createStore(b, b.TempDir(), ModeKeyFile)
	defer s.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.b.space.admit(); err != nil {
			b.Fatal(err)
		}
	}
}

// envCloseChild names the tmpfs a child of TestCloseOnFullDisk works in.
const envCloseChild = "SEALPOST_TEST_CLOSE_FULL_DIR"

// closeValues is how many values of closeValueSize bytes the store holds
// in its memtable when TestCloseOnFullDisk closes it: less than a
// memtable, so that Close has them to flush.
const (
	closeValues    = 10
	closeValueSize = 48 << 10
)

// TestCloseOnFullDisk closes a store whose memtable holds acknowledged
// writes on a disk with no room at all, in a child process, and checks
// that the child does not die of SIGBUS (badger writes the table it
// flushes at Close through a map of a new file, which faults when the
// disk has no block for it) and that every write is there when the store
// opens again with room.
//
// "refilled": the disk fills, the store refuses a write, and then the
// program that fills the disk goes on and takes whatever room there is
// again (as a process that keeps writing does); the store's reserve must
// still be there for the flush at Close. "sparse": a store without a
// reserve has no room for the flush, and closes without it (badger
// replays its log at the next open).
func TestCloseOnFullDisk(t *testing.T) {
	if root := os.Getenv(envCloseChild); root != "" {
		closeOnFullDiskChild(t, root)
		return
	}
	for _, mode := range []string{"refilled", "sparse"} {
		t.Run(mode, func(t *testing.T) {
			root := storetest.Tmpfs(t, 40<<20)
			cmd := exec.Command(os.Args[0], "-test.run", "^TestCloseOnFullDisk$", "-test.v")
			cmd.Env = append(os.Environ(), envCloseChild+"="+root, "SEALPOST_TEST_CLOSE_MODE="+mode)
			out, err := cmd.CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("closed:")) {
				t.Fatalf("the child closing a store on a full disk: %v\n%s", err, out)
			}
			t.Logf("child:\n%s", out)
			for _, n := range []string{"filler", "filler2"} {
				os.Remove(filepath.Join(root, n))
			}
			opts := smallOptions()
			opts.Sparse = mode == "sparse"
			s, err := Open(context.Background(), filepath.Join(root, "store"), opts)
			if err != nil {
				t.Fatalf("Open after the close on a full disk: %v", err)
			}
			defer s.Close()
			for i := range closeValues {
				if v, err := getValue(s, fmt.Sprintf("k%05d", i)); err != nil || len(v) != closeValueSize {
					t.Errorf("k%05d after the close on a full disk: %d bytes, %v", i, len(v), err)
				}
			}
		})
	}
}

// closeOnFullDiskChild is the child of TestCloseOnFullDisk: it writes,
// fills the disk, closes the store, prints "closed:" and the error, and
// exits (a store closed without its flush leaves badger's goroutines).
func closeOnFullDiskChild(t *testing.T, root string) {
	mode := os.Getenv("SEALPOST_TEST_CLOSE_MODE")
	opts := smallOptions()
	opts.Sparse = mode == "sparse"
	s, err := Create(context.Background(), filepath.Join(root, "store"), ModeKeyFile, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range closeValues {
		if err := putValue(s, fmt.Sprintf("k%05d", i), closeValueSize); err != nil {
			t.Fatal(err)
		}
	}
	storetest.FillDisk(t, filepath.Join(root, "filler"))
	if err := putValue(s, "refused", closeValueSize); !errors.Is(err, store.ErrDiskFull) {
		t.Fatalf("write on a full disk: got %v, want ErrDiskFull", err)
	}
	if mode == "refilled" {
		storetest.FillDisk(t, filepath.Join(root, "filler2"))
	}
	t.Logf("closing: %s", s.b.space)
	err = s.Close()
	fmt.Printf("closed: %v\n", err)
	os.Exit(0)
}
