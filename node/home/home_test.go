package home

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name string
		flag string
		env  map[string]string
		want string
	}{
		{"flag wins", "/a", map[string]string{EnvHome: "/b", "XDG_DATA_HOME": "/c"}, "/a"},
		{"env", "", map[string]string{EnvHome: "/b", "XDG_DATA_HOME": "/c"}, "/b"},
		{"xdg", "", map[string]string{"XDG_DATA_HOME": "/c", "HOME": "/h"}, "/c/sealpost"},
		{"relative xdg ignored", "", map[string]string{"XDG_DATA_HOME": "c", "HOME": "/h"}, "/h/.local/share/sealpost"},
		{"home", "", map[string]string{"HOME": "/h"}, "/h/.local/share/sealpost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Resolve(tt.flag, env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if h.Dir != tt.want {
				t.Errorf("got %s, want %s", h.Dir, tt.want)
			}
		})
	}
	h, err := Resolve("rel", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(h.Dir) {
		t.Errorf("relative --home resolved to %s, want an absolute path", h.Dir)
	}
}

func TestLock(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	l, err := h.Lock()
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file, so a second open in this process
	// conflicts like another process would.
	_, err = h.Lock()
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock: got %v, want ErrLocked", err)
	}
	if want := "pid " + strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("second Lock error %q does not name %q", err, want)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatalf("second Unlock: %v", err)
	}
	l2, err := h.Lock()
	if err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	l2.Unlock()
}

func TestListenSocket(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	if _, err := h.SocketPath(); err != nil {
		t.Fatalf("SocketPath of a short home: %v", err)
	}
	// A stale socket file from a daemon that died does not stop a new one.
	stale, err := net.Listen("unix", h.Path(SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	ln, path, err := h.ListenSocket()
	if err != nil {
		t.Fatal(err)
	}
	if path != h.Path(SocketFile) {
		t.Errorf("socket at %s, want %s", path, h.Path(SocketFile))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	got, err := h.SocketPath()
	if err != nil || got != path {
		t.Errorf("SocketPath = %q, %v; want %q", got, err, path)
	}
	ln.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left after Close: %v", err)
	}
}

func TestListenSocketLongHome(t *testing.T) {
	runtimeDir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", runtimeDir)
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	h := Home{Dir: dir}
	if _, err := h.SocketPath(); !errors.Is(err, ErrNoSocket) {
		t.Fatalf("SocketPath before any daemon: got %v, want ErrNoSocket", err)
	}
	ln, path, err := h.ListenSocket()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(path, runtimeDir+"/") || len(path) > maxSocketPath {
		t.Errorf("socket at %s, want a short path under %s", path, runtimeDir)
	}
	got, err := h.SocketPath()
	if err != nil || got != path {
		t.Errorf("SocketPath = %q, %v; want %q", got, err, path)
	}
	c, err := net.Dial("unix", got)
	if err != nil {
		t.Fatalf("dial the socket named in HOME/api: %v", err)
	}
	c.Close()
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("runtime socket directory: %v, %v; want mode 0700", fi.Mode(), err)
	}
	ln.Close()
	if _, err := os.Stat(h.Path(SocketPointerFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("HOME/api left after Close: %v", err)
	}
}

func TestPassphrase(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pass")
	os.WriteFile(file, []byte("correct horse\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	long := filepath.Join(dir, "long")
	os.WriteFile(long, []byte(strings.Repeat("x", maxPassphrase+1)), 0o600)
	r, w, err := os.Pipe() // not a terminal
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()

	withEnv := env(map[string]string{EnvPassphrase: "from env"})
	tests := []struct {
		name    string
		p       Passphrase
		want    string
		wantErr error
	}{
		{"file, newline trimmed", Passphrase{File: file, Getenv: withEnv}, "correct horse", nil},
		{"env", Passphrase{Getenv: withEnv, Stdin: r}, "from env", nil},
		{"no source, no terminal", Passphrase{Getenv: env(nil), Stdin: r}, "", ErrNoPassphrase},
		{"nothing at all", Passphrase{}, "", ErrNoPassphrase},
		{"empty file", Passphrase{File: empty}, "", nil},
		{"too long", Passphrase{File: long}, "", nil},
		{"missing file", Passphrase{File: filepath.Join(dir, "nope")}, "", os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.Read(true)
			if tt.want != "" {
				if err != nil || string(got) != tt.want {
					t.Fatalf("got %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %q, want an error", got)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}
