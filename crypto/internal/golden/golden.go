// Package golden compares test output with frozen files under
// crypto/testdata and rewrites them on request. Tests pass their own
// -update flag; golden files are text, one "name value" line each, so a
// diff shows which value changed.
package golden

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// File accumulates the lines of a golden file.
type File struct {
	buf bytes.Buffer
}

// Hex adds a line "name hex(value)".
func (f *File) Hex(name string, value []byte) {
	fmt.Fprintf(&f.buf, "%s %x\n", name, value)
}

// Text adds a line "name value"; value must not contain a newline.
func (f *File) Text(name, value string) {
	if strings.ContainsRune(value, '\n') {
		panic("golden: newline in value of " + name)
	}
	fmt.Fprintf(&f.buf, "%s %s\n", name, value)
}

// Bytes returns the file's content.
func (f *File) Bytes() []byte { return f.buf.Bytes() }

// Check compares f with the file at path; with update it writes f there
// instead. On a mismatch it reports the first differing line.
func (f *File) Check(t testing.TB, path string, update bool) {
	t.Helper()
	got := f.buf.Bytes()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(gl), len(wl)) {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("%s line %d:\n got %.200s\nwant %.200s", path, i+1, g, w)
		}
	}
	t.Fatalf("%s differs", path)
}
