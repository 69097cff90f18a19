package node

import "github.com/sealpost/sealpost/node/internal/clock"

// Clock is the node's source of time: record expiry, republishing and
// bootstrap backoff read it, and the node gives it to its messaging and
// relay services (whose Clock is the same type). libp2p and the DHT keep
// their own (system) clocks; Clock governs only sealpost's own decisions.
type Clock = clock.Clock

// Timer is a one-shot timer of a Clock, like time.Timer.
type Timer = clock.Timer
