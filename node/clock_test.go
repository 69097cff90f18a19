package node

import (
	"time"

	"github.com/sealpost/sealpost/node/internal/clock/clocktest"
)

// newFakeClock returns a Clock that moves only when Advance is called.
func newFakeClock(now time.Time) *clocktest.Fake { return clocktest.New(now) }
