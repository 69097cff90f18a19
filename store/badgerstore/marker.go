package badgerstore

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sealpost/sealpost/store"
)

// Rollback detection.
//
// A store restored from an older copy (a backup, a VM snapshot), or one
// whose latest writes were lost (badger cuts a damaged write-ahead log
// short at the first bad entry and opens what came before, silently), is
// older than it was: its ratchet sessions would send again under message
// keys they used before. Nothing inside the store can tell, since a copy
// brings everything inside it along; so the store keeps a marker outside
// it, in Options.MarkerDir (the user's state directory), named by the
// store's ID:
//
//   - The store's generation (store.Tx.Generation) is raised, in a
//     transaction of its own, at Open, at most every markEvery while other
//     transactions commit, and at Close; once that transaction is durable,
//     the marker is replaced (atomically, synced) with the new generation.
//     The marker is therefore never ahead of what the store holds durably.
//   - At Open a store whose generation is below the marker's is behind:
//     the store records a store.Rollback for the node to act on (it resets
//     its sessions) and raises its generation past the marker's, in one
//     transaction, so the notice survives an interruption and the next
//     Open does not report the same rollback again.
//
// The generation is a record the store writes, not badger's commit
// timestamp: badger's largest timestamp can go back by itself when a
// compaction drops the deletion markers of the newest transaction, which
// would look like a rollback; a live record's newest version is never
// dropped.
//
// The ID of an encrypted store is derived from its data key (HKDF-SHA256,
// "sealpost/v1/store-id"), so every copy of it, however old, has the same
// marker, and the ID tells nothing about the key; an unencrypted store
// keeps a random ID in its "id" file. A copy opened where the marker is
// not (another machine, a new user account, a state directory restored
// with the home) is not told apart: the node's peers then see messages
// under keys they used before and ask for a new session.
//
// Marker layout (version 1): magic "sealpost/store-marker" (21 bytes),
// version (1), generation (8, big-endian), SHA-256 of the bytes before it
// (32), so that a damaged marker is told apart (and ignored, with a
// warning) from a valid one.

const (
	markerMagic   = "sealpost/store-marker"
	markerVersion = 1
	markerSize    = len(markerMagic) + 1 + 8 + sha256.Size
	storeIDInfo   = "sealpost/v1/store-id"
	idFileName    = "id"
	// markEvery bounds how often the generation is raised while the
	// store is written.
	markEvery = time.Second
)

// encodeMarker returns the marker of generation gen.
func encodeMarker(gen uint64) []byte {
	b := append([]byte(markerMagic), markerVersion)
	b = binary.BigEndian.AppendUint64(b, gen)
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// errMarker is what parseMarker says of bytes that are not a marker.
var errMarker = errors.New("not a store marker")

// parseMarker returns the generation a marker holds.
func parseMarker(b []byte) (uint64, error) {
	if len(b) != markerSize || !bytes.HasPrefix(b, []byte(markerMagic)) {
		return 0, errMarker
	}
	if v := b[len(markerMagic)]; v != markerVersion {
		return 0, fmt.Errorf("%w: version %d", errMarker, v)
	}
	n := markerSize - sha256.Size
	if sum := sha256.Sum256(b[:n]); !bytes.Equal(sum[:], b[n:]) {
		return 0, fmt.Errorf("%w: damaged (it does not match its checksum)", errMarker)
	}
	return binary.BigEndian.Uint64(b[len(markerMagic)+1:]), nil
}

// storeID returns the store's ID in hex: derived from the data key of an
// encrypted store, read from (or first written to) the id file of the
// unencrypted store in dir.
func storeID(dir string, dataKey []byte) (string, error) {
	if len(dataKey) > 0 {
		id, err := hkdf.Key(sha256.New, dataKey, nil, storeIDInfo, 16)
		if err != nil {
			return "", err
		}
		return hex.EncodeToString(id), nil
	}
	b, err := os.ReadFile(filepath.Join(dir, idFileName))
	if err == nil {
		id := strings.TrimSpace(string(b))
		if raw, err := hex.DecodeString(id); err == nil && len(raw) == 16 {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read store ID: %w", err)
	}
	// Missing or not an ID: a new one (a rollback before it existed is not
	// told apart, as for a copy without its marker).
	raw := make([]byte, 16)
	rand.Read(raw)
	id := hex.EncodeToString(raw)
	if err := writeFileAtomic(dir, idFileName, []byte(id+"\n"), nil); err != nil {
		return "", fmt.Errorf("write store ID: %w", err)
	}
	return id, nil
}

// marker keeps the marker of one open store.
type marker struct {
	st   *Store
	dir  string // Options.MarkerDir
	name string // the store's ID
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	commits uint64 // the store's commit count when gen was raised
	warned  bool   // a marker write failed: said once
}

// startMarker checks the store against its marker (recording a Rollback
// if it is behind), raises its generation and writes the marker, and
// starts raising it as the store is written.
func (s *Store) startMarker(ctx context.Context, dir string, dataKey []byte, o Options) error {
	id, err := storeID(dir, dataKey)
	if err != nil {
		return err
	}
	m := &marker{st: s, dir: o.MarkerDir, name: id, stop: make(chan struct{}), done: make(chan struct{})}
	expected, have := m.read(o.Logger)
	var found uint64
	err = s.Update(ctx, func(tx *store.Tx) error {
		g, err := tx.Generation()
		if err != nil {
			return err
		}
		found = g
		if have && g < expected {
			if err := tx.PutRollback(store.Rollback{DetectedAt: o.Now(), Found: g, Expected: expected}); err != nil {
				return err
			}
		}
		return tx.SetGeneration(max(g, expected) + 1)
	})
	if err != nil {
		return fmt.Errorf("open store: raise its generation: %w", err)
	}
	if have && found < expected {
		o.Logger.Warn("store: this store is older than this machine last saw it: it was restored from an older copy, or lost its latest writes (a damaged write-ahead log is cut short at the damage)",
			"generation", found, "expected", expected)
	}
	m.commits = s.b.commits.Load()
	m.write(max(found, expected)+1, o.Logger)
	s.marker = m
	go m.loop(o.Logger)
	return nil
}

// read returns the generation the marker holds, and whether there is one.
func (m *marker) read(log *slog.Logger) (uint64, bool) {
	path := filepath.Join(m.dir, m.name)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false
	}
	if err == nil {
		if len(b) > 4096 {
			err = errMarker
		} else {
			var g uint64
			if g, err = parseMarker(b); err == nil {
				return g, true
			}
		}
	}
	log.Warn("store: the rollback marker is unreadable; a rollback is not detected this time", "path", path, "err", err)
	return 0, false
}

// write replaces the marker with generation gen, which the store holds
// durably; a failure is logged (once) and leaves the older marker.
func (m *marker) write(gen uint64, log *slog.Logger) {
	err := os.MkdirAll(m.dir, 0o700)
	if err == nil {
		err = writeFileAtomic(m.dir, m.name, encodeMarker(gen), nil)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil && !m.warned {
		m.warned = true
		log.Warn("store: cannot write the rollback marker; a later rollback may go unnoticed", "dir", m.dir, "err", err)
	}
}

// raise raises the store's generation if anything committed since the last
// time, and writes the marker once that is durable.
func (m *marker) raise(log *slog.Logger) {
	if m.st.b.commits.Load() == m.commits {
		return
	}
	var gen uint64
	err := m.st.Update(context.Background(), func(tx *store.Tx) error {
		g, err := tx.Generation()
		if err != nil {
			return err
		}
		gen = g + 1
		return tx.SetGeneration(gen)
	})
	if err != nil {
		return // full, closing: the marker stays behind, which is safe
	}
	m.commits = m.st.b.commits.Load()
	m.write(gen, log)
}

// loop raises the generation every markEvery until close.
func (m *marker) loop(log *slog.Logger) {
	defer close(m.done)
	t := time.NewTicker(markEvery)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.raise(log)
		}
	}
}

// close stops the loop and raises the generation a last time, before the
// store closes.
func (m *marker) close(log *slog.Logger) {
	close(m.stop)
	<-m.done
	m.raise(log)
}
