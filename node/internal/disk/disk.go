// Package disk tells how much room a file system has left, so that a
// large write (an attachment's ciphertext, a relay's blob) is refused
// before it fills the disk instead of failing half-way, and answers a
// write refused for want of room with the wire's disk_full.
package disk

import (
	"errors"
	"syscall"

	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Free returns the bytes available to this process on the file system of
// dir, and false if it cannot tell.
func Free(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}

// Full reports whether err is a write refused for want of room: the
// store's (store.ErrDiskFull) or a file's (ENOSPC).
func Full(err error) bool {
	return errors.Is(err, store.ErrDiskFull) || errors.Is(err, syscall.ENOSPC)
}

// CodeOf is protocol.CodeOf, but disk_full for a write refused for want
// of room (Full), which protocol.CodeOf would answer internal.
func CodeOf(err error) protocol.Code {
	if Full(err) {
		return protocol.CodeDiskFull
	}
	return protocol.CodeOf(err)
}
