package store

import (
	"bytes"
	"context"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
)

// NewMemory returns an empty Store that lives in memory: for tests and for
// nodes that must not touch the disk. Its Update is "durable" as soon as it
// commits.
func NewMemory() Store {
	s, err := Open(context.Background(), NewMemoryBackend())
	if err != nil {
		// Opening an empty in-memory backend cannot fail.
		panic("store: open memory store: " + err.Error())
	}
	return s
}

// NewMemoryBackend returns an empty in-memory Backend: an ordered map
// behind an atomically swapped immutable snapshot. Views read a snapshot
// without locking; Updates are serialized (so they never conflict) and
// publish a new snapshot when they commit.
func NewMemoryBackend() Backend {
	m := &memBackend{}
	m.snap.Store(&memSnap{})
	return m
}

type memEntry struct {
	key   string
	value []byte
}

// memSnap is an immutable sorted list of entries.
type memSnap struct{ entries []memEntry }

func (s *memSnap) find(k string) (int, bool) {
	return sort.Find(len(s.entries), func(i int) int {
		switch {
		case k < s.entries[i].key:
			return -1
		case k > s.entries[i].key:
			return 1
		}
		return 0
	})
}

type memBackend struct {
	writer sync.Mutex
	snap   atomic.Pointer[memSnap]
	closed atomic.Bool
}

func (m *memBackend) View(ctx context.Context, fn func(KV) error) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fn(&memTx{base: m.snap.Load()})
}

func (m *memBackend) Update(ctx context.Context, fn func(KV) error) error {
	m.writer.Lock()
	defer m.writer.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	tx := &memTx{base: m.snap.Load(), writable: true, writes: map[string][]byte{}}
	if err := fn(tx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(tx.writes) > 0 {
		m.snap.Store(tx.merged())
	}
	Committed(ctx)()
	return nil
}

func (m *memBackend) Close() error {
	m.closed.Store(true)
	return nil
}

// memTx is a transaction: a base snapshot and, for an Update, a write set
// (a nil value in writes is a deletion).
type memTx struct {
	base     *memSnap
	writable bool
	writes   map[string][]byte
	deleted  map[string]bool
}

func (t *memTx) Get(k []byte) ([]byte, error) {
	if v, ok := t.writes[string(k)]; ok {
		if t.deleted[string(k)] {
			return nil, ErrNotFound
		}
		return bytes.Clone(v), nil
	}
	i, ok := t.base.find(string(k))
	if !ok {
		return nil, ErrNotFound
	}
	return bytes.Clone(t.base.entries[i].value), nil
}

func (t *memTx) Set(k, v []byte) error {
	if !t.writable {
		return ErrReadOnly
	}
	if len(k) == 0 {
		return ErrInvalid
	}
	if v == nil {
		v = []byte{}
	}
	t.writes[string(k)] = bytes.Clone(v)
	delete(t.deleted, string(k))
	return nil
}

func (t *memTx) Delete(k []byte) error {
	if !t.writable {
		return ErrReadOnly
	}
	if t.deleted == nil {
		t.deleted = map[string]bool{}
	}
	t.writes[string(k)] = nil
	t.deleted[string(k)] = true
	return nil
}

func (t *memTx) Scan(lo, hi []byte, reverse bool, fn func(k, v []byte) error) error {
	inRange := func(k string) bool {
		return k >= string(lo) && (hi == nil || k < string(hi))
	}
	// The overlay: this transaction's writes in range, sorted.
	var over []string
	for k := range t.writes {
		if inRange(k) {
			over = append(over, k)
		}
	}
	slices.Sort(over)
	// The base range [b0, b1).
	b0, _ := t.base.find(string(lo))
	b1 := len(t.base.entries)
	if hi != nil {
		b1, _ = t.base.find(string(hi))
	}
	visit := func(k string, v []byte, fromOverlay bool) error {
		if fromOverlay && t.deleted[k] {
			return nil
		}
		return fn([]byte(k), v)
	}
	if !reverse {
		i, j := b0, 0
		for i < b1 || j < len(over) {
			switch {
			case j == len(over) || (i < b1 && t.base.entries[i].key < over[j]):
				e := t.base.entries[i]
				i++
				if err := visit(e.key, e.value, false); err != nil {
					return err
				}
			default:
				k := over[j]
				j++
				if i < b1 && t.base.entries[i].key == k {
					i++
				}
				if err := visit(k, t.writes[k], true); err != nil {
					return err
				}
			}
		}
		return nil
	}
	i, j := b1-1, len(over)-1
	for i >= b0 || j >= 0 {
		switch {
		case j < 0 || (i >= b0 && t.base.entries[i].key > over[j]):
			e := t.base.entries[i]
			i--
			if err := visit(e.key, e.value, false); err != nil {
				return err
			}
		default:
			k := over[j]
			j--
			if i >= b0 && t.base.entries[i].key == k {
				i--
			}
			if err := visit(k, t.writes[k], true); err != nil {
				return err
			}
		}
	}
	return nil
}

// merged returns a new snapshot: the base with the writes applied.
func (t *memTx) merged() *memSnap {
	over := make([]string, 0, len(t.writes))
	for k := range t.writes {
		over = append(over, k)
	}
	slices.Sort(over)
	base := t.base.entries
	out := make([]memEntry, 0, len(base)+len(over))
	i, j := 0, 0
	for i < len(base) || j < len(over) {
		switch {
		case j == len(over) || (i < len(base) && base[i].key < over[j]):
			out = append(out, base[i])
			i++
		default:
			k := over[j]
			j++
			if i < len(base) && base[i].key == k {
				i++
			}
			if !t.deleted[k] {
				out = append(out, memEntry{k, t.writes[k]})
			}
		}
	}
	return &memSnap{entries: slices.Clip(out)}
}
