// Package clock is the source of time of sealpost's own decisions — record
// expiry and republishing, retry backoff, prekey rotation, TTLs, rate
// limits — injected so that tests and `sealpost testnet` can move or skew
// it. The node, its messaging service and its relay service share these
// types (node.Clock, messaging.Clock and relay.Clock are aliases of Clock).
// libp2p, the DHT and network deadlines keep the system clock.
package clock

import "time"

// Clock is a source of time.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that fires once, after d.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer of a Clock, like time.Timer.
type Timer interface {
	// C delivers the time when the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it stopped it.
	Stop() bool
	// Reset changes the timer to fire after d; it reports whether the timer
	// had been active.
	Reset(d time.Duration) bool
}

// System returns the machine's clock.
func System() Clock { return Offset(0) }

// Offset returns the machine's clock shifted by d: a machine whose clock
// is wrong by d (testnet's clock-skew fault). Timers are not affected.
func Offset(d time.Duration) Clock { return offset(d) }

type offset time.Duration

func (o offset) Now() time.Time { return time.Now().Add(time.Duration(o)) }

func (offset) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time        { return t.t.C }
func (t sysTimer) Stop() bool                 { return t.t.Stop() }
func (t sysTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }
