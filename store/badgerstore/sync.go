package badgerstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/sealpost/sealpost/store"
)

// syncAll makes every committed transaction durable; see the package doc.
// It fdatasyncs, in parallel, the newest value-log file and the log of
// every memtable still on disk (the active one and any rotated out but not
// yet flushed). Badger writes both through shared mmaps, whose dirty pages
// fdatasync writes back like msync does; DB.Sync would sync only the
// active memtable's log, and the two files one after the other.
func (b *backend) syncAll() error {
	names, err := listDir(b.dir)
	if err != nil {
		return err
	}
	// Allocate the files badger created for this round's commits before
	// any Update returns and the next write is admitted (space.go).
	b.space.observe(names)
	var mems, vlogs []string
	for _, n := range names {
		switch filepath.Ext(n) {
		case ".mem":
			mems = append(mems, n)
		case ".vlog":
			vlogs = append(vlogs, n)
		}
	}
	if len(mems) == 0 || len(vlogs) == 0 {
		// Badger's layout changed: refuse to acknowledge anything.
		return fmt.Errorf("no memtable log or value log in %s", b.dir)
	}
	// Older value-log files were synced by badger when it rotated them.
	files := append(mems, slices.MaxFunc(vlogs, compareFileNames))
	errs := make(chan error, len(files))
	for _, n := range files[1:] {
		go func() { errs <- fdatasync(filepath.Join(b.dir, n)) }()
	}
	err = fdatasync(filepath.Join(b.dir, files[0]))
	for range files[1:] {
		err = errors.Join(err, <-errs)
	}
	return err
}

// compareFileNames orders badger's zero-padded numbered file names.
func compareFileNames(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// fdatasync syncs the file at path; a file deleted meanwhile (a memtable
// log after its flush to a synced table) needs no sync.
func fdatasync(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Base(path), err)
	}
	return nil
}

// syncer runs one sync for every caller waiting at the moment it starts
// (group commit). A caller's round is the one open when it calls wait,
// which starts after the caller's commit, so the sync covers it.
type syncer struct {
	fn   func() error
	mu   sync.Mutex
	next *round // the open round: new waiters join it
	kick chan struct{}
	done bool // the loop has ended
	// rounds counts the syncs run.
	rounds atomic.Int64
}

type round struct {
	waiters int
	err     error
	done    chan struct{}
}

func newSyncer(fn func() error) *syncer {
	return &syncer{fn: fn, next: &round{done: make(chan struct{})}, kick: make(chan struct{}, 1)}
}

// wait returns once a sync that started after the call has finished.
func (s *syncer) wait() error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return store.ErrClosed
	}
	r := s.next
	r.waiters++
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	<-r.done
	return r.err
}

// run syncs for waiting callers until stop is closed, then syncs once more
// for any that are left.
func (s *syncer) run(stop <-chan struct{}) {
	for {
		stopping := false
		select {
		case <-s.kick:
		case <-stop:
			stopping = true
		}
		s.mu.Lock()
		r := s.next
		s.next = &round{done: make(chan struct{})}
		if stopping {
			s.done = true
		}
		s.mu.Unlock()
		if r.waiters > 0 {
			r.err = s.fn()
			s.rounds.Add(1)
		}
		close(r.done)
		if stopping {
			return
		}
	}
}
