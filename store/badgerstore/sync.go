package badgerstore

import (
	"errors"
	"fmt"
	"io"
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
// active memtable's log, and the two files one after the other. Only the
// sync loop calls it.
func (b *backend) syncAll() error {
	names, err := b.files.list(b.dir)
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
	fds, err := b.files.open(b.dir, append(mems, slices.MaxFunc(vlogs, compareFileNames)))
	if err != nil || len(fds) == 0 {
		return err
	}
	errs := make(chan error, len(fds))
	for _, f := range fds[1:] {
		go func() { errs <- b.files.sync(f) }()
	}
	err = b.files.sync(fds[0])
	for range fds[1:] {
		err = errors.Join(err, <-errs)
	}
	return err
}

// syncFiles keeps the store's directory and the files the sync rounds
// sync open from one round to the next: opening and closing them again in
// every round took a fifth of the CPU of an Update that waits alone for
// its sync (BenchmarkDurableUpdate). Only the sync loop uses it, and Close
// once that loop has ended.
type syncFiles struct {
	dir *os.File
	fds map[string]int // a synced file's name -> its descriptor
	mu  sync.Mutex     // guards fds against the parallel syncs' drops
}

// syncFile is a file of a round: its name and descriptor.
type syncFile struct {
	name string
	fd   int
}

// list returns the names of the files in dir.
func (s *syncFiles) list(dir string) ([]string, error) {
	if s.dir == nil {
		d, err := os.Open(dir)
		if err != nil {
			return nil, err
		}
		s.dir = d
	}
	// Seeking to the start makes Readdirnames read the directory again.
	if _, err := s.dir.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return s.dir.Readdirnames(-1)
}

// open returns descriptors of the files names in dir, opening those not
// open yet and closing those of files no longer among names. A file
// deleted meanwhile (a memtable log after its flush to a synced table)
// needs no sync and is left out.
func (s *syncFiles) open(dir string, names []string) ([]syncFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fds == nil {
		s.fds = map[string]int{}
	}
	for n, fd := range s.fds {
		if !slices.Contains(names, n) {
			unix.Close(fd)
			delete(s.fds, n)
		}
	}
	out := make([]syncFile, 0, len(names))
	for _, n := range names {
		fd, ok := s.fds[n]
		if !ok {
			var err error
			for {
				// Some file systems (network, FUSE) let a signal
				// interrupt an open, as os.OpenFile knows.
				fd, err = unix.Open(filepath.Join(dir, n), unix.O_RDWR|unix.O_CLOEXEC, 0)
				if !errors.Is(err, unix.EINTR) {
					break
				}
			}
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("open %s: %w", n, err)
			}
			s.fds[n] = fd
		}
		out = append(out, syncFile{n, fd})
	}
	return out, nil
}

// sync fdatasyncs f. A descriptor whose sync failed is closed: the next
// round opens its file again.
func (s *syncFiles) sync(f syncFile) error {
	err := unix.Fdatasync(f.fd)
	if err == nil {
		return nil
	}
	s.mu.Lock()
	if s.fds[f.name] == f.fd {
		unix.Close(f.fd)
		delete(s.fds, f.name)
	}
	s.mu.Unlock()
	return fmt.Errorf("sync %s: %w", f.name, err)
}

// close closes what s holds open.
func (s *syncFiles) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, fd := range s.fds {
		unix.Close(fd)
		delete(s.fds, n)
	}
	if s.dir != nil {
		s.dir.Close()
		s.dir = nil
	}
}

// compareFileNames orders badger's zero-padded numbered file names.
func compareFileNames(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
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
