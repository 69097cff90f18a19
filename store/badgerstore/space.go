package badgerstore

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
	"golang.org/x/sys/unix"

	"github.com/sealpost/sealpost/store"
)

// A full disk.
//
// Badger writes its memtable logs (.mem), value-log files (.vlog), tables
// (.sst) and discard statistics (DISCARD) through shared memory maps of
// files it sizes with ftruncate. Such a file is sparse: a page of it gets a
// block of the disk only when it is first touched, and on a full disk that
// touch is a SIGBUS, which no Go program survives (the runtime turns it
// into a fatal error in whichever of badger's goroutines touched the
// page). On tmpfs even reading a hole needs a block, so a memtable log
// left with holes by a crash faulted again on every start.
//
// The store therefore keeps these rules:
//
//  1. No file of badger's that exists when a write is admitted has a hole.
//     Every .mem and .vlog file (and DISCARD) is allocated in full with
//     fallocate before badger opens, and each one badger creates later is
//     allocated before the Update that made badger create it returns (the
//     sync round every Update waits for lists badger's directory anyway),
//     and before the next write is admitted. A write into a file that is
//     allocated in full cannot fault, whatever else fills the disk.
//  2. Writes are admitted (Update, value-log GC) only while the file
//     system has room for every file badger may create before the store
//     looks again: the next memtable log and value-log file, the tables of
//     the memtables it flushes, the outputs of the largest compaction its
//     current tables allow (computed from badger's table list), and a
//     margin. Otherwise Update fails with a *store.DiskFullError (wrapping
//     store.ErrDiskFull) without writing anything; View goes on.
//  3. A reserve file ("reserve", next to the key file), allocated with
//     fallocate, holds room for the work badger does at Close: flushing
//     its memtables to tables, the compactions that starts, and the
//     appends to MANIFEST and KEYREGISTRY. The store keeps it while it
//     refuses writes (freed then, it went to whichever program was
//     filling the disk, and the flush at Close found no block: a SIGBUS)
//     and frees it only at Close, just before badger closes. If even then
//     the disk has no room for the flush (a sparse store, or a reserve
//     that could not grow), Close leaves badger open rather than let it
//     fault: every acknowledged write is in badger's synced logs, which
//     it replays at the next open.
//
// The store looks at the free space before every write while the disk is
// near full (less than nearFull beyond the room rule 2 keeps), at most
// every freshFor otherwise, and every tickEvery in the background, so it
// refuses writes, and resumes them, by itself.
//
// Why a SIGBUS cannot happen, and where it still can: a write into a file
// that exists cannot fault (rule 1), whatever fills the disk. A file
// badger creates is the one place left: badger creates it and writes it
// through the map in one step (a memtable log or value-log file on the
// write path; a table when it flushes a full memtable, milliseconds after
// the write that filled it, or compacts), so nothing outside badger can
// allocate it first. Its blocks come from the room rule 2 kept free when
// the write was admitted; so a fault needs another program to take all of
// that room (tens of MiB) between the store's look and the end of the
// flushes and compactions that write started. The store's own writes
// alone never do, and Close never does (rule 3).
//
// With Options.Sparse, or on a file system without fallocate, the files
// keep their holes and there is no reserve; the room rule 2 keeps then
// includes the holes (the difference of each file's size and its
// allocated blocks), and a SIGBUS needs another program to take that room
// between two looks (a tenth of a second apart while writing). Sparse
// suits many stores on one disk (a test network), where allocating tens
// of MiB per store adds up.

const (
	reserveFileName = "reserve"
	// discardFileName is badger's discard statistics, which it maps.
	discardFileName = "DISCARD"
	// spaceMargin is room kept beyond what rule 2 counts.
	spaceMargin = 4 << 20
	// freshFor is how old a look at the free space may be for a write to
	// be admitted on it; tickEvery is how often the store looks when
	// nothing is written.
	freshFor  = 100 * time.Millisecond
	tickEvery = time.Second
	// nearFull is how much more room than rule 2 keeps makes the store
	// trust a look at the free space for freshFor.
	nearFull = 256 << 20
	// budgetEvery is how many ticks pass between computations of the
	// largest compaction.
	budgetEvery = 10
)

// space keeps the rules above for one open store.
type space struct {
	dir    string // badger's directory
	store  string // the store's directory (the reserve file's)
	log    *slog.Logger
	statfs func(dir string) (int64, error)

	// The sizes badger creates files at: a memtable log, a value-log
	// file, and (at most) the table of one memtable; memtables is how
	// many memtables badger keeps.
	memLog, vlogFile, table int64
	memtables               int64

	full    atomic.Bool
	lastErr atomic.Pointer[store.DiskFullError]

	mu         sync.Mutex
	allocated  map[string]bool // .mem and .vlog files allocated in full
	holes      int64           // unallocated bytes of files fallocate could not fill
	compaction int64           // the largest compaction's outputs
	free       int64           // at the last look
	freeAt     time.Time
	reserve    int64 // the reserve file's size
	// sparse: the files are not allocated and no reserve is kept
	// (Options.Sparse, or a file system without fallocate).
	sparse bool
	ticks  int
}

func newSpace(dir string, o badger.Options, log *slog.Logger) *space {
	return &space{
		dir:       dir,
		store:     filepath.Dir(dir),
		log:       log,
		statfs:    statFree,
		memLog:    2 * o.MemTableSize, // badger maps them at twice their size
		vlogFile:  2 * o.ValueLogFileSize,
		table:     o.MemTableSize + o.MemTableSize/4, // a full memtable, its last batch and the table's index
		memtables: int64(o.NumMemtables),
		allocated: map[string]bool{},
	}
}

// need is the free room rule 2 keeps; the caller holds mu.
func (s *space) need() int64 {
	return s.memLog + s.vlogFile + s.memtables*s.table + s.compaction + spaceMargin + s.holes
}

// reserveSize is the reserve rule 3 holds: the memtables' tables, the
// largest compaction, and the MANIFEST's and KEYREGISTRY's appends; the
// caller holds mu.
func (s *space) reserveSize() int64 {
	if s.sparse {
		return 0
	}
	return s.memtables*s.table + s.compaction + closeMargin
}

// closeMargin is room for the appends to MANIFEST and KEYREGISTRY at
// Close.
const closeMargin = 1 << 20

// statFree returns the bytes of dir's file system this process may use.
func statFree(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// prepare runs before badger opens the database. It checks that the disk
// has room for what opening creates (a memtable log, a value-log file,
// the tables of the memtables it replays, the blocks of files a crash
// left with holes) and then for writing (rule 2, counting no compaction
// yet) and the reserve (rule 3), where the reserve file of the last run
// counts as room; and then allocates in full the files of badger's that
// exist (rule 1). A store without that room does not open: a
// *store.DiskFullError.
func (s *space) prepare() error {
	names, err := listDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		names, err = nil, nil
	}
	if err != nil {
		return err
	}
	var mems int64
	for _, n := range names {
		if filepath.Ext(n) == ".mem" {
			mems++
		}
	}
	free, err := s.statfs(s.store)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(filepath.Join(s.store, reserveFileName)); err == nil {
		free += fi.Size()
		s.reserve = fi.Size()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	need := s.memLog + s.vlogFile + mems*s.table + s.holesOf(names) + s.need() + s.reserveSize()
	if free < need {
		return &store.DiskFullError{Dir: s.store, Free: free, Need: need}
	}
	return s.allocateLocked(names, true)
}

// holesOf returns the unallocated bytes of the files among names that
// badger maps.
func (s *space) holesOf(names []string) int64 {
	var h int64
	for _, n := range names {
		if mapped(n) {
			h += holes(filepath.Join(s.dir, n))
		}
	}
	return h
}

// mapped reports whether badger writes the file named n through a map
// after it created it (rule 1). Tables are written in full when made.
func mapped(n string) bool {
	switch filepath.Ext(n) {
	case ".mem", ".vlog":
		return true
	}
	return n == discardFileName
}

// holes returns the bytes of the file at path that have no block.
func holes(path string) int64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return max(0, st.Size-st.Blocks*512)
}

// opened runs once badger has opened: it allocates what opening created,
// computes the largest compaction, and takes the reserve. If the store
// would not admit writes now (the largest compaction was more than
// prepare could count on), it fails with a *store.DiskFullError that
// counts the room badger's new files will free when it closes.
func (s *space) opened(db *badger.DB) error {
	names, err := listDir(s.dir)
	if err != nil {
		return err
	}
	tables := db.Tables()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.allocateLocked(names, true); err != nil {
		return err
	}
	s.compaction = compactionBound(tables, s.tableSize)
	rerr := s.takeReserveLocked()
	if err := s.refreshLocked(time.Now()); err != nil {
		return err
	}
	if rerr == nil && !s.full.Load() {
		return nil
	}
	free := s.free + s.memLog + s.vlogFile + s.reserve
	return &store.DiskFullError{Dir: s.store, Free: free, Need: free + s.need() + s.reserveSize() - s.free - s.reserve}
}

// observe allocates the files badger created since the last call (rule 1)
// given the names in its directory now; the sync round calls it. It
// returns an error only when a file cannot be allocated: the store then
// refuses writes.
func (s *space) observe(names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.allocateLocked(names, false); err != nil {
		s.log.Warn("store: a new file of the database cannot be allocated", "err", err)
	}
}

// allocateLocked allocates in full every .mem and .vlog file among names
// not yet allocated, and DISCARD when it has holes, and forgets files that
// are gone; the caller holds mu. An allocation that fails for want of
// room trips the store into refusing writes (at prepare: an error).
func (s *space) allocateLocked(names []string, preparing bool) error {
	live := make(map[string]bool, len(s.allocated))
	s.holes = 0
	var errs error
	for _, n := range names {
		if !mapped(n) {
			continue
		}
		live[n] = true
		if s.allocated[n] {
			continue
		}
		path := filepath.Join(s.dir, n)
		if s.sparse {
			// Rule 2 counts the holes until badger has filled them.
			if h := holes(path); h > 0 {
				s.holes += h
			} else {
				s.allocated[n] = true
			}
			continue
		}
		err := fallocate(path)
		switch {
		case err == nil:
			s.allocated[n] = true
		case errors.Is(err, unix.EOPNOTSUPP):
			s.sparse = true
			s.log.Warn("store: the file system cannot preallocate files; a full disk is noticed by the room left alone", "dir", s.dir)
			s.holes += holes(path)
		case errors.Is(err, unix.ENOSPC):
			s.holes += holes(path)
			if preparing {
				free, _ := s.statfs(s.store)
				return &store.DiskFullError{Dir: s.store, Free: free, Need: free + holes(path)}
			}
			errs = errors.Join(errs, err)
		case errors.Is(err, os.ErrNotExist):
			// Deleted meanwhile.
		default:
			errs = errors.Join(errs, err)
		}
	}
	for n := range s.allocated {
		if !live[n] {
			delete(s.allocated, n)
		}
	}
	if errs != nil && !preparing {
		s.tripLocked(time.Now())
	}
	return errs
}

// fallocate gives every byte of the file at path a block, leaving its
// size and contents as they are.
func fallocate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err == nil && st.Blocks*512 >= fi.Size() {
		return nil
	}
	if fi.Size() == 0 {
		return nil
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, fi.Size()); err != nil {
		return fmt.Errorf("allocate %s: %w", filepath.Base(path), err)
	}
	return nil
}

// admit returns nil if a write may go ahead now (rule 2), else a
// *store.DiskFullError. It looks at the free space again if the disk is
// near full or the last look is older than freshFor.
func (s *space) admit() error {
	s.mu.Lock()
	var err error
	if now := time.Now(); now.Sub(s.freeAt) >= freshFor || s.free < s.need()+nearFull {
		err = s.refreshLocked(now)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.fullErr()
}

// fullErr returns the *store.DiskFullError writes get now, or nil.
func (s *space) fullErr() error {
	if !s.full.Load() {
		return nil
	}
	if e := s.lastErr.Load(); e != nil {
		return e
	}
	return store.ErrDiskFull
}

// tick looks at the free space and, every budgetEvery ticks, computes the
// largest compaction again.
func (s *space) tick(db *badger.DB) {
	var tables []badger.TableInfo
	s.mu.Lock()
	s.ticks++
	again := s.ticks%budgetEvery == 0
	s.mu.Unlock()
	if again {
		tables = db.Tables()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if again {
		// Badger grows DISCARD (by ftruncate) when it fills: look again.
		delete(s.allocated, discardFileName)
		if names, err := listDir(s.dir); err == nil {
			s.allocateLocked(names, false)
		}
		s.compaction = compactionBound(tables, s.tableSize)
		if !s.full.Load() && s.reserve < s.reserveSize() {
			if err := s.takeReserveLocked(); err != nil {
				s.log.Debug("store: reserve not grown", "err", err)
			}
		}
	}
	if err := s.refreshLocked(time.Now()); err != nil {
		s.log.Warn("store: cannot tell the room left on the disk", "err", err)
	}
}

// refreshLocked looks at the free space, refuses writes if it is below
// what rule 2 keeps, and admits them again once there is room for that
// and the reserve, with a margin so that the store does not flap; the
// caller holds mu.
func (s *space) refreshLocked(now time.Time) error {
	free, err := s.statfs(s.store)
	if err != nil {
		return err
	}
	s.free, s.freeAt = free, now
	need := s.need()
	if !s.full.Load() {
		if free < need {
			s.tripLocked(now)
		}
		return nil
	}
	s.lastErr.Store(&store.DiskFullError{Dir: s.store, Free: free, Need: need + max(0, s.reserveSize()-s.reserve)})
	if free < need+max(0, s.reserveSize()-s.reserve)+spaceMargin {
		return nil
	}
	if err := s.takeReserveLocked(); err != nil {
		return nil // taken meanwhile by another program: still full
	}
	if s.holes > 0 && !s.sparse {
		names, err := listDir(s.dir)
		if err != nil {
			return nil
		}
		if s.allocateLocked(names, false) != nil {
			return nil
		}
	}
	s.full.Store(false)
	s.log.Info("store: the disk has room again; writes resume", "dir", s.store, "free", store.MiB(free))
	return nil
}

// tripLocked makes the store refuse writes; it keeps the reserve for
// Close (rule 3). The caller holds mu.
func (s *space) tripLocked(now time.Time) {
	was := s.full.Swap(true)
	if free, err := s.statfs(s.store); err == nil {
		s.free, s.freeAt = free, now
	}
	// What writing again takes: the room rule 2 keeps and the reserve.
	need := s.need() + max(0, s.reserveSize()-s.reserve)
	s.lastErr.Store(&store.DiskFullError{Dir: s.store, Free: s.free, Need: need})
	if !was {
		s.log.Warn("store: the disk is full; writes are refused until there is room again", "dir", s.store, "free", store.MiB(s.free), "needed", store.MiB(need))
	}
}

// takeReserveLocked grows the reserve file to reserveSize; the caller
// holds mu.
func (s *space) takeReserveLocked() error {
	want := s.reserveSize()
	if s.sparse || s.reserve >= want {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(s.store, reserveFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, want); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			s.sparse = true
			s.log.Warn("store: the file system cannot preallocate files; a full disk is noticed by the room left alone", "dir", s.dir)
			return nil
		}
		return fmt.Errorf("allocate the reserve: %w", err)
	}
	s.reserve = want
	return nil
}

// tableSize returns the size of a table's file. (TableInfo.OnDiskSize
// counts the values it points to in the value log as well.)
func (s *space) tableSize(t badger.TableInfo) int64 {
	var st unix.Stat_t
	if err := unix.Stat(table.NewFilename(t.ID, s.dir), &st); err == nil {
		return st.Size
	}
	return int64(t.UncompressedSize) + int64(t.IndexSz) + int64(t.BloomFilterSize)
}

// compactionBound returns what the largest compaction badger may start
// with these tables can write before it deletes its inputs (an output
// table is no larger than its inputs): for a table of level i, it and the
// tables of level i+1 its keys overlap (all of level 0 together, since
// its tables overlap, with the next level that holds tables), twice, for
// badger's two compactors. size gives a table's size.
func compactionBound(tables []badger.TableInfo, size func(badger.TableInfo) int64) int64 {
	var levels [][]badger.TableInfo
	for _, t := range tables {
		for len(levels) <= t.Level {
			levels = append(levels, nil)
		}
		levels[t.Level] = append(levels[t.Level], t)
	}
	var first, second int64
	note := func(n int64) {
		switch {
		case n > first:
			first, second = n, first
		case n > second:
			second = n
		}
	}
	overlap := func(lvl int, left, right []byte) int64 {
		if lvl >= len(levels) {
			return 0
		}
		var n int64
		for _, t := range levels[lvl] {
			if bytes.Compare(y.ParseKey(t.Right), left) >= 0 && bytes.Compare(y.ParseKey(t.Left), right) <= 0 {
				n += size(t)
			}
		}
		return n
	}
	for lvl, ts := range levels {
		if len(ts) == 0 {
			continue
		}
		if lvl == 0 {
			var n int64
			for _, t := range ts {
				n += size(t)
			}
			// Level 0 compacts into the first level below it that holds
			// tables; count all of them.
			for next := 1; next < len(levels); next++ {
				if len(levels[next]) > 0 {
					for _, t := range levels[next] {
						n += size(t)
					}
					break
				}
			}
			note(n)
			continue
		}
		for _, t := range ts {
			note(size(t) + overlap(lvl+1, y.ParseKey(t.Left), y.ParseKey(t.Right)))
		}
	}
	return first + second
}

// listDir returns the names in dir.
func listDir(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// beforeClose runs when no write can come any more, just before badger
// closes: it frees the reserve (rule 3) and returns nil if the disk then
// has room for what badger writes at Close (the tables of the memtables
// it flushes, whose logs are the .mem files, the largest compaction, the
// blocks its discard statistics lack, and closeMargin), else a
// *store.DiskFullError: badger must not close then, or it faults.
func (s *space) beforeClose() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reserve > 0 {
		if err := os.Truncate(filepath.Join(s.store, reserveFileName), 0); err != nil {
			s.log.Warn("store: cannot free the reserve", "err", err)
		} else {
			s.reserve = 0
		}
	}
	names, err := listDir(s.dir)
	if err != nil {
		return err
	}
	need := s.compaction + closeMargin + holes(filepath.Join(s.dir, discardFileName))
	for _, n := range names {
		if filepath.Ext(n) == ".mem" {
			need += s.table
		}
	}
	free, err := s.statfs(s.store)
	if err != nil {
		return err
	}
	if free < need {
		return &store.DiskFullError{Dir: s.store, Free: free, Need: need}
	}
	return nil
}

// close removes the reserve file once badger has closed: a stopped store
// does not hold it (a home's backup need not copy it), and the next Open
// takes it again.
func (s *space) close() {
	if s.sparse {
		return
	}
	if err := os.Remove(filepath.Join(s.store, reserveFileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("store: cannot remove the reserve", "err", err)
	}
}

// String describes the store's room, for logs and tests.
func (s *space) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "free %s, need %s, reserve %s, compaction %s", store.MiB(s.free), store.MiB(s.need()), store.MiB(s.reserve), store.MiB(s.compaction))
	if s.full.Load() {
		b.WriteString(", full")
	}
	fmt.Fprintf(&b, ", allocated %v", slices.Sorted(maps.Keys(s.allocated)))
	return b.String()
}
