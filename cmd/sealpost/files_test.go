package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/files"
)

// TestSafeName: whatever a sender calls a file, what is written is a plain
// base name in the target directory.
func TestSafeName(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef"
	long := strings.Repeat("é", 200) + ".tar.gz"
	for _, c := range []struct{ in, want string }{
		{"photo.jpg", "photo.jpg"},
		{"../../etc/passwd", "_.._etc_passwd"},
		{"/etc/passwd", "_etc_passwd"},
		{`..\..\win.ini`, "_.._win.ini"},
		{"..", "file-01234567"},
		{".", "file-01234567"},
		{"", "file-01234567"},
		{".bashrc", "bashrc"},
		{"  . hidden", "hidden"},
		{"a\x1b[31mred\x00.txt", "a[31mred_.txt"},
		{"evil\u202etxt.exe", "eviltxt.exe"},
		{"bad\xffutf8", "badutf8"},
	} {
		got := safeName(c.in, id)
		if got != c.want {
			t.Errorf("safeName(%q) = %q, want %q", c.in, got, c.want)
		}
		if strings.ContainsAny(got, "/\\\x00") || got == "." || got == ".." || strings.HasPrefix(got, ".") {
			t.Errorf("safeName(%q) = %q: not a plain name", c.in, got)
		}
	}
	got := safeName(long, id)
	if len(got) > maxSavedName || !strings.HasSuffix(got, ".gz") || !strings.HasPrefix(got, "é") {
		t.Errorf("long name: %q (%d bytes)", got, len(got))
	}
}

// TestSavePath: a directory target takes the safe name inside it; a file
// target is explicit; a target in a missing directory is refused.
func TestSavePath(t *testing.T) {
	dir := t.TempDir()
	info := files.Info{ID: "0123456789abcdef0123456789abcdef", Name: "../x.txt"}
	d, final, explicit, err := savePath(dir, info)
	if err != nil || d != dir || explicit || filepath.Dir(final) != dir || filepath.Base(final) != "_x.txt" {
		t.Errorf("dir target: %q %q %v %v", d, final, explicit, err)
	}
	_, final, explicit, err = savePath(filepath.Join(dir, "out.txt"), info)
	if err != nil || !explicit || final != filepath.Join(dir, "out.txt") {
		t.Errorf("file target: %q %v %v", final, explicit, err)
	}
	if _, _, _, err := savePath(filepath.Join(dir, "missing", "out.txt"), info); err == nil {
		t.Error("a target in a missing directory accepted")
	}
	if _, _, _, err := savePath(filepath.Join(dir, "missing")+"/", info); err == nil {
		t.Error("a missing directory accepted")
	}
}

// TestPlace: an existing file is never replaced unless explicit.
func TestPlace(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "a.txt")
	os.WriteFile(final, []byte("old"), 0o600)
	write := func(content string) string {
		f, err := os.CreateTemp(dir, ".part-*")
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(content)
		f.Close()
		return f.Name()
	}
	p, err := place(write("new"), final, false)
	if err != nil || p != filepath.Join(dir, "a (2).txt") {
		t.Fatalf("place: %q, %v", p, err)
	}
	if b, _ := os.ReadFile(final); string(b) != "old" {
		t.Errorf("the existing file became %q", b)
	}
	if p, err := place(write("newer"), final, true); err != nil || p != final {
		t.Fatalf("explicit place: %q, %v", p, err)
	}
	if b, _ := os.ReadFile(final); string(b) != "newer" {
		t.Errorf("explicit place wrote %q", b)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".part-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestBar: the bar shows bytes, rate and time left on a terminal, and is
// nothing without one or with --json.
func TestBar(t *testing.T) {
	var buf strings.Builder
	b := &bar{w: &buf, label: "saving", total: 10 << 20, start: time.Now().Add(-time.Second)}
	b.set(5 << 20)
	b.add(5 << 20)
	b.done()
	out := buf.String()
	for _, want := range []string{"saving [", "5.0 MiB / 10.0 MiB", "/s", "ETA ", "10.0 MiB / 10.0 MiB", "\r\x1b[K"} {
		if !strings.Contains(out, want) {
			t.Errorf("bar output %q lacks %q", out, want)
		}
	}
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := &cli{env: env{stderr: f}}
	if c.newBar("x", 1) != nil {
		t.Error("a bar on a file that is not a terminal")
	}
	c = &cli{env: env{stderr: os.Stderr}, json: true}
	if c.newBar("x", 1) != nil {
		t.Error("a bar with --json")
	}
	var nilBar *bar
	nilBar.set(1) // a nil bar shows nothing and does not panic
	nilBar.done()
}
