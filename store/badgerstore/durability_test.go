package badgerstore

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/store"
)

// gateSync replaces b's sync function with one that counts calls and,
// while gate is open (not closed), blocks the first call until the test
// closes gate.
func gateSync(b *backend) (calls func() int, gate chan struct{}) {
	gate = make(chan struct{})
	var mu sync.Mutex
	n := 0
	orig := b.sync.fn
	b.sync.fn = func() error {
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		if first {
			<-gate
		}
		return orig()
	}
	return func() int { mu.Lock(); defer mu.Unlock(); return n }, gate
}

// waitWaiters waits until the syncer's open round has n waiters.
func waitWaiters(t *testing.T, s *syncer, n int) {
	t.Helper()
	for i := 0; ; i++ {
		s.mu.Lock()
		w := s.next.waiters
		s.mu.Unlock()
		if w >= n {
			return
		}
		if i > 20000 {
			t.Fatalf("open round has %d waiters, want %d", w, n)
		}
		time.Sleep(500 * time.Microsecond)
	}
}

func seenHash(i int) [32]byte {
	var h [32]byte
	binary.BigEndian.PutUint64(h[:], uint64(i))
	return h
}

// TestGroupCommit holds the first sync while 50 more Updates commit, and
// checks that a single further sync makes all of them durable.
func TestGroupCommit(t *testing.T) {
	s := createStore(t, t.TempDir(), ModeKeyFile)
	defer s.Close()
	calls, gate := gateSync(s.b)
	ctx := context.Background()
	add := func(i int) error {
		return s.Update(ctx, func(tx *store.Tx) error { return tx.Seen().Add(seenHash(i), t0) })
	}
	first := make(chan error, 1)
	go func() { first <- add(0) }()
	// The first Update is in the first sync (blocked) once the round it
	// joined has been taken; the next ones join the following round.
	for calls() == 0 {
		time.Sleep(time.Millisecond)
	}
	const n = 50
	errs := make(chan error, n)
	for i := 1; i <= n; i++ {
		go func() { errs <- add(i) }()
	}
	waitWaiters(t, s.b.sync, n)
	close(gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := calls(); got != 2 {
		t.Errorf("%d syncs for %d concurrent Updates, want 2", got, n+1)
	}
}

// TestReadWaitsForDurability checks that a View that sees a committed but
// not yet synced transaction returns only after the sync.
func TestReadWaitsForDurability(t *testing.T) {
	s := createStore(t, t.TempDir(), ModeKeyFile)
	defer s.Close()
	calls, gate := gateSync(s.b)
	ctx := context.Background()
	written := make(chan error, 1)
	go func() {
		written <- s.Update(ctx, func(tx *store.Tx) error { return tx.Seen().Add(seenHash(1), t0) })
	}()
	for calls() == 0 {
		time.Sleep(time.Millisecond)
	}
	// The write is committed (the sync runs after the commit) but not durable.
	viewed := make(chan error, 1)
	go func() {
		viewed <- s.View(ctx, func(tx *store.Tx) error {
			ok, err := tx.Seen().Has(seenHash(1))
			if err == nil && !ok {
				err = errors.New("committed write not visible")
			}
			return err
		})
	}()
	waitWaiters(t, s.b.sync, 1)
	select {
	case err := <-viewed:
		t.Fatalf("View returned before the sync: %v", err)
	default:
	}
	close(gate)
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if err := <-viewed; err != nil {
		t.Fatal(err)
	}
}

// TestCloseTimeout checks that Close returns within its timeout while an
// Update is stuck in its function, and that the store closes once it ends.
func TestCloseTimeout(t *testing.T) {
	opts := testOptions()
	opts.CloseTimeout = 50 * time.Millisecond
	dir := t.TempDir()
	s, err := Create(context.Background(), dir, ModeKeyFile, opts)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	entered := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Update(context.Background(), func(tx *store.Tx) error {
			close(entered)
			<-release
			return tx.Seen().Add(seenHash(1), t0)
		})
	}()
	<-entered
	if err := s.Close(); !errors.Is(err, store.ErrCloseTimeout) {
		t.Errorf("Close with a stuck Update: got %v, want ErrCloseTimeout", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("the stuck Update: %v", err)
	}
	// The background close finishes and releases the directory.
	for i := 0; ; i++ {
		s2, err := openWith(dir, "")
		if err == nil {
			s2.Close()
			break
		}
		if !errors.Is(err, store.ErrLocked) || i > 1000 {
			t.Fatalf("reopen: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const crashEnv = "SEALPOST_STORE_CRASH_CHILD"

// childMain is the child side of TestCrashAfterAck: it opens the store in
// the directory named by the environment, writes from several goroutines
// and prints "ack N" after each Update returns, until it is killed.
func childMain() bool {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		return false
	}
	// Small memtables, so memtables rotate (and rotated logs must be
	// synced) while acknowledgements are being given.
	s, err := Open(context.Background(), dir, Options{MemTableSize: 1 << 20, GCInterval: -1})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	body := make([]byte, 1024)
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				i++
				n := i
				next.Unlock()
				err := s.Update(context.Background(), func(tx *store.Tx) error {
					var id [16]byte
					binary.BigEndian.PutUint64(id[:], uint64(n))
					m := store.Message{ID: id, Peer: [32]byte{byte(n)}, State: store.MessageReceived, Body: body, Seq: uint64(n)}
					if err := tx.Messages().Put(&m); err != nil {
						return err
					}
					return tx.Seen().Add(seenHash(n), t0)
				})
				if err != nil {
					fmt.Println("update:", err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %d\n", n)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return true
}

// TestCrashAfterAck runs a child process that writes and acknowledges,
// SIGKILLs it, reopens the store and checks that every acknowledged write
// is there.
func TestCrashAfterAck(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	createStore(t, dir, ModeKeyFile).Close()
	for round := 0; round < 2; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[int]bool{}
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			n, err := strconv.Atoi(strings.TrimPrefix(line, "ack "))
			if err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("child: %s", line)
			}
			acked[n] = true
			if len(acked) == 3000 {
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		for sc.Scan() { // acknowledgements printed before the kill landed
			if n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "ack ")); err == nil {
				acked[n] = true
			}
		}
		cmd.Wait()
		if len(acked) < 3000 {
			t.Fatalf("child stopped after %d acknowledgements", len(acked))
		}
		s, err := openWith(dir, "")
		if err != nil {
			t.Fatalf("reopen after SIGKILL: %v", err)
		}
		missing := 0
		err = s.View(context.Background(), func(tx *store.Tx) error {
			for n := range acked {
				var id [16]byte
				binary.BigEndian.PutUint64(id[:], uint64(n))
				m, err := tx.Messages().Get(id)
				if errors.Is(err, store.ErrNotFound) {
					missing++
					continue
				}
				if err != nil {
					return err
				}
				if m.Seq != uint64(n) || len(m.Body) != 1024 {
					return fmt.Errorf("message %d: seq %d, %d bytes", n, m.Seq, len(m.Body))
				}
				if ok, err := tx.Seen().Has(seenHash(n)); err != nil || !ok {
					return fmt.Errorf("seen entry %d: %v %v", n, ok, err)
				}
			}
			return nil
		})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if missing > 0 {
			t.Fatalf("round %d: %d of %d acknowledged writes lost", round, missing, len(acked))
		}
		t.Logf("round %d: %d acknowledged writes, all present after SIGKILL", round, len(acked))
	}
}
