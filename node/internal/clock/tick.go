package clock

import (
	"context"
	"time"
)

// Tick calls fn every d on c until ctx ends: d after it starts, then d
// after each call returns (a slow fn delays the next call instead of
// piling calls up).
func Tick(ctx context.Context, c Clock, d time.Duration, fn func()) {
	t := c.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		fn()
		t.Reset(d)
	}
}
