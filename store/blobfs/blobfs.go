// Package blobfs keeps content-addressed blobs as files: one file per blob,
// named by the hex SHA-256 of its bytes, under a directory of 256
// subdirectories (the hash's first byte), so no directory grows past a few
// thousand entries at 10 GiB of 256 KiB blobs.
//
// A relay keeps attachment blobs here rather than in its key-value store:
// each is written once, read a few times and deleted once, which a file
// does with one unlink while an LSM tree's value log would rewrite it at
// every garbage collection; and the page cache, not the process, holds
// what is read (the relay's anonymous memory does not grow with its
// blobs).
//
// A blob is written to a temporary file, checked against its hash, synced,
// and renamed into place (then the directory is synced), so a blob under
// its name is always whole and durable; a crash leaves at most a temporary
// file, which Open removes. Keeping the records that reference blobs in
// step is the caller's part (store.RelayBlobs documents the order).
package blobfs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

var (
	// ErrHash: the bytes written do not hash to the name they were
	// committed under.
	ErrHash = errors.New("blobfs: blob does not match its hash")
	// ErrNotFound: no blob of that name.
	ErrNotFound = errors.New("blobfs: no such blob")
)

const tmpDir = "tmp"

// Dir is a directory of blobs. Its methods are safe for concurrent use.
type Dir struct{ root string }

// Open opens (creating it if needed) the blob directory root and removes
// the temporary files a crash left.
func Open(root string) (*Dir, error) {
	if err := os.MkdirAll(filepath.Join(root, tmpDir), 0o700); err != nil {
		return nil, fmt.Errorf("blobfs: %w", err)
	}
	tmp := filepath.Join(root, tmpDir)
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return nil, fmt.Errorf("blobfs: %w", err)
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(tmp, e.Name())); err != nil {
			return nil, fmt.Errorf("blobfs: remove leftover: %w", err)
		}
	}
	return &Dir{root: root}, nil
}

// Root returns the directory.
func (d *Dir) Root() string { return d.root }

func (d *Dir) path(h [32]byte) (dir, file string) {
	name := hex.EncodeToString(h[:])
	dir = filepath.Join(d.root, name[:2])
	return dir, filepath.Join(dir, name)
}

// Writer writes one blob. Not safe for concurrent use.
type Writer struct {
	d    *Dir
	f    *os.File
	h    hash.Hash
	n    int64
	done bool
}

// Create starts a new blob.
func (d *Dir) Create() (*Writer, error) {
	f, err := os.CreateTemp(filepath.Join(d.root, tmpDir), "blob-*")
	if err != nil {
		return nil, fmt.Errorf("blobfs: %w", err)
	}
	return &Writer{d: d, f: f, h: sha256.New()}, nil
}

// Write appends p to the blob.
func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("blobfs: %w", err)
	}
	return n, nil
}

// Size returns the bytes written so far.
func (w *Writer) Size() int64 { return w.n }

// Commit checks that the bytes written hash to h (else ErrHash), makes
// them durable and stores them under h. If a blob of that name is already
// stored, it is kept and the new copy dropped: the bytes are the same.
// The Writer is finished either way.
func (w *Writer) Commit(h [32]byte) error {
	if w.done {
		return errors.New("blobfs: commit of a finished blob")
	}
	var got [32]byte
	w.h.Sum(got[:0])
	if got != h {
		w.Abort()
		return ErrHash
	}
	if err := w.f.Sync(); err != nil {
		w.Abort()
		return fmt.Errorf("blobfs: sync: %w", err)
	}
	if err := w.f.Close(); err != nil {
		w.Abort()
		return fmt.Errorf("blobfs: %w", err)
	}
	w.done = true
	dir, name := w.d.path(h)
	if _, err := os.Stat(name); err == nil {
		os.Remove(w.f.Name())
		return nil
	}
	created := false
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			os.Remove(w.f.Name())
			return fmt.Errorf("blobfs: %w", err)
		}
		created = true
	}
	if err := os.Rename(w.f.Name(), name); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("blobfs: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if created {
		return syncDir(w.d.root)
	}
	return nil
}

// Abort drops the blob being written. It is safe after Commit.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.f.Close()
	os.Remove(w.f.Name())
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("blobfs: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("blobfs: sync %s: %w", dir, err)
	}
	return nil
}

// Open opens blob h for reading and returns its size. ErrNotFound: none.
func (d *Dir) Open(h [32]byte) (*os.File, int64, error) {
	_, name := d.path(h)
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("blobfs: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("blobfs: %w", err)
	}
	return f, st.Size(), nil
}

// Has reports whether blob h is stored.
func (d *Dir) Has(h [32]byte) bool {
	_, name := d.path(h)
	_, err := os.Stat(name)
	return err == nil
}

// Remove deletes blob h; a missing blob is not an error. A reader that has
// it open keeps reading it.
func (d *Dir) Remove(h [32]byte) error {
	_, name := d.path(h)
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blobfs: %w", err)
	}
	return nil
}

// Walk calls fn with the name and size of every stored blob, in no
// particular order. Files that are not blobs are skipped.
func (d *Dir) Walk(fn func(h [32]byte, size int64) error) error {
	subs, err := os.ReadDir(d.root)
	if err != nil {
		return fmt.Errorf("blobfs: %w", err)
	}
	for _, s := range subs {
		if !s.IsDir() || len(s.Name()) != 2 {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(d.root, s.Name()))
		if err != nil {
			return fmt.Errorf("blobfs: %w", err)
		}
		for _, e := range entries {
			var h [32]byte
			b, err := hex.DecodeString(e.Name())
			if err != nil || len(b) != 32 || !strings.HasPrefix(e.Name(), s.Name()) || e.Name() != strings.ToLower(e.Name()) {
				continue
			}
			copy(h[:], b)
			info, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			if err := fn(h, info.Size()); err != nil {
				return err
			}
		}
	}
	return nil
}
