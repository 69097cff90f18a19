package home

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// maxSocketPath is the longest unix socket path that every supported
// platform accepts: sun_path holds 108 bytes on Linux and 104 on the BSDs and
// macOS, counting the terminating NUL.
const maxSocketPath = 103

// ErrNoSocket is returned by SocketPath when the home names no API socket: no
// daemon has run on it, or the last one cleaned up after itself.
var ErrNoSocket = errors.New("home: no api socket")

// SocketPath returns where the daemon's API socket is: HOME/api.sock, or, when
// that path is too long for a unix socket, the path written in HOME/api. The
// socket file may be stale; only a connection tells whether a daemon listens.
func (h Home) SocketPath() (string, error) {
	p := h.Path(SocketFile)
	if len(p) <= maxSocketPath {
		return p, nil
	}
	b, err := os.ReadFile(h.Path(SocketPointerFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", ErrNoSocket
	}
	if err != nil {
		return "", fmt.Errorf("home: %w", err)
	}
	p = strings.TrimSpace(string(b))
	if !filepath.IsAbs(p) || len(p) > maxSocketPath {
		return "", fmt.Errorf("home: %s names no usable socket path", h.Path(SocketPointerFile))
	}
	return p, nil
}

// ListenSocket opens the API's unix socket with mode 0600 and returns its
// listener and path. The caller must hold the home's Lock: a socket file left
// behind by a daemon that died is removed. When HOME/api.sock is too long for
// a unix socket, the socket goes into a private directory (0700) of the
// runtime directory ($XDG_RUNTIME_DIR, else the temporary directory), and its
// path is written to HOME/api. Closing the listener removes the socket file
// and HOME/api.
func (h Home) ListenSocket() (net.Listener, string, error) {
	path := h.Path(SocketFile)
	pointer := ""
	if len(path) > maxSocketPath {
		dir, err := privateRuntimeDir()
		if err != nil {
			return nil, "", err
		}
		sum := sha256.Sum256([]byte(h.Dir))
		path = filepath.Join(dir, hex.EncodeToString(sum[:8])+".sock")
		if len(path) > maxSocketPath {
			return nil, "", fmt.Errorf("home: socket path %s is too long for a unix socket; use a shorter --home or XDG_RUNTIME_DIR", path)
		}
		pointer = h.Path(SocketPointerFile)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("home: remove stale socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, "", fmt.Errorf("home: listen on %s: %w", path, err)
	}
	// The directory is private (0700), so the moment between bind and chmod
	// gives no other user access.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, "", fmt.Errorf("home: %w", err)
	}
	if pointer == "" {
		os.Remove(h.Path(SocketPointerFile))
		return ln, path, nil
	}
	if err := writeFileAtomic(pointer, []byte(path+"\n"), 0o600); err != nil {
		ln.Close()
		return nil, "", err
	}
	return &pointerListener{UnixListener: ln, pointer: pointer}, path, nil
}

// pointerListener removes HOME/api when it is closed.
type pointerListener struct {
	*net.UnixListener
	pointer string
}

func (l *pointerListener) Close() error {
	err := l.UnixListener.Close()
	os.Remove(l.pointer)
	return err
}

// privateRuntimeDir returns a directory only this user can enter, for
// sockets whose path under the home would be too long.
func privateRuntimeDir() (string, error) {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if !filepath.IsAbs(base) {
		base = os.TempDir()
	}
	uid := os.Getuid()
	dir := filepath.Join(base, "sealpost-"+strconv.Itoa(uid))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("home: runtime dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("home: runtime dir: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 || !ok || int(st.Uid) != uid {
		return "", fmt.Errorf("home: runtime dir %s is not a private directory of this user", dir)
	}
	return dir, nil
}

// writeFileAtomic writes data to path through a temporary file and a rename.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("home: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("home: write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("home: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("home: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("home: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("home: %w", err)
	}
	return nil
}
