package testnet

import (
	"testing"

	"github.com/sealpost/sealpost/node/nodetest"
)

// TestMain fails the package if a test leaves a goroutine running (a
// node, a process reaper).
func TestMain(m *testing.M) { nodetest.VerifyTestMain(m) }
