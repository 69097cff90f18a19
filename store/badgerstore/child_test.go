package badgerstore

// childMain runs the child side of the crash test when the test binary is
// re-executed for it; it reports whether it did.
func childMain() bool { return false }
