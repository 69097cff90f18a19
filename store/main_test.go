package store_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine running (a
// batch's committer, a store not closed).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
