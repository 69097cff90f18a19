package home

import "unsafe"

// clearString zeroes the bytes of s. It is only for a string the caller
// knows to be a heap copy that nothing else will read: the runtime's copy
// of an environment variable after os.Unsetenv dropped its own reference.
func clearString(s string) {
	if len(s) == 0 {
		return
	}
	clear(unsafe.Slice(unsafe.StringData(s), len(s)))
}
