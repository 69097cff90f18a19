// Package disk tells how much room a file system has left, so that a
// large write (an attachment's ciphertext, a relay's blob) is refused
// before it fills the disk instead of failing half-way.
package disk

import "syscall"

// Free returns the bytes available to this process on the file system of
// dir, and false if it cannot tell.
func Free(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}
