package home

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned by Lock when another process holds the home's lock: a
// daemon already runs on this home.
var ErrLocked = errors.New("home: another daemon is running on this home")

// Lock is the exclusive hold of a home by one daemon.
type Lock struct {
	f *os.File
}

// Lock takes the home's daemon lock without waiting (flock on
// HOME/daemon.lock) and writes the process ID into the file. The lock is
// released by Unlock or when the process ends, however it ends. When another
// process holds it, the error wraps ErrLocked and names that process.
func (h Home) Lock() (*Lock, error) {
	f, err := os.OpenFile(h.Path(LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("home: lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			if pid := readPID(f); pid > 0 {
				return nil, fmt.Errorf("%w (pid %d)", ErrLocked, pid)
			}
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("home: lock: %w", err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// readPID reads the process ID that the lock's holder wrote, or 0.
func readPID(f *os.File) int {
	var buf [32]byte
	n, _ := f.ReadAt(buf[:], 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		return 0
	}
	return pid
}

// Unlock releases the lock. It is idempotent.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	f.Truncate(0)
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return f.Close()
}
