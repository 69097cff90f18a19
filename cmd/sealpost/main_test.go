package main

import (
	"testing"

	"github.com/sealpost/sealpost/node/nodetest"
)

// TestMain fails the package if a test leaves a goroutine running (a
// daemon run in the test process, its servers).
func TestMain(m *testing.M) { nodetest.VerifyTestMain(m) }
