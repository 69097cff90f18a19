package relay_test

// crashChild is replaced by the crash test's child entry point.
func crashChild() bool { return false }
