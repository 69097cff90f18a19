package blobfs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func write(t *testing.T, d *Dir, data []byte) [32]byte {
	t.Helper()
	w, err := d.Create()
	if err != nil {
		t.Fatal(err)
	}
	for p := data; len(p) > 0; {
		n := min(len(p), 1000)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	h := sha256.Sum256(data)
	if err := w.Commit(h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestBlobs(t *testing.T) {
	root := t.TempDir()
	d, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("blob"), 5000)
	h := write(t, d, data)
	f, size, err := d.Open(h)
	if err != nil || size != int64(len(data)) {
		t.Fatalf("Open: %d, %v", size, err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, data) || !d.Has(h) {
		t.Fatal("blob read back differs")
	}
	// The same blob again is kept once.
	write(t, d, data)
	other := write(t, d, []byte("other"))
	seen := map[[32]byte]int64{}
	if err := d.Walk(func(h [32]byte, size int64) error { seen[h] = size; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[h] != int64(len(data)) || seen[other] != 5 {
		t.Fatalf("Walk: %v", seen)
	}
	// A wrong hash is refused and leaves nothing.
	w, _ := d.Create()
	w.Write([]byte("x"))
	if err := w.Commit(sha256.Sum256([]byte("y"))); !errors.Is(err, ErrHash) {
		t.Fatalf("Commit under a wrong hash: %v", err)
	}
	if d.Has(sha256.Sum256([]byte("y"))) || d.Has(sha256.Sum256([]byte("x"))) {
		t.Fatal("a refused blob was stored")
	}
	if err := w.Commit(sha256.Sum256([]byte("x"))); err == nil {
		t.Fatal("second Commit accepted")
	}
	// An aborted writer and a crash leave temporary files; Open removes them.
	w, _ = d.Create()
	w.Write([]byte("partial"))
	w2, _ := d.Create()
	w2.Write([]byte("aborted"))
	w2.Abort()
	if tmp, _ := os.ReadDir(filepath.Join(root, tmpDir)); len(tmp) != 1 {
		t.Fatalf("%d temporary files, want the one unfinished", len(tmp))
	}
	if _, err := Open(root); err != nil {
		t.Fatal(err)
	}
	if tmp, _ := os.ReadDir(filepath.Join(root, tmpDir)); len(tmp) != 0 {
		t.Fatalf("%d temporary files left after Open", len(tmp))
	}
	if err := d.Remove(h); err != nil || d.Has(h) {
		t.Fatalf("Remove: %v", err)
	}
	if err := d.Remove(h); err != nil {
		t.Fatalf("Remove of a missing blob: %v", err)
	}
	if _, _, err := d.Open(h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of a removed blob: %v", err)
	}
	// Stray files are not blobs.
	os.WriteFile(filepath.Join(root, "ab", "not-a-blob"), nil, 0o600)
	os.MkdirAll(filepath.Join(root, "ab"), 0o700)
	os.WriteFile(filepath.Join(root, "ab", "AB"+string(bytes.Repeat([]byte("0"), 62))), nil, 0o600)
	n := 0
	d.Walk(func([32]byte, int64) error { n++; return nil })
	if n != 1 {
		t.Fatalf("Walk found %d blobs, want 1", n)
	}
}
