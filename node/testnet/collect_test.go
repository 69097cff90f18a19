package testnet

import (
	"context"
	"testing"
	"time"
)

// TestCollectorShowsEveryMessage runs a small network (a group's
// messages among the 1:1 ones) and checks that the members' collectors,
// woken only by message.received events, recorded every message the
// recipients committed: a message whose event did not wake its
// collector stays unshown in the ledger (the drain waits for it until its
// bound), and its latency is not counted.
func TestCollectorShowsEveryMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	o := Options{Nodes: 4, Relays: 1, Messages: 40, Seed: 11, Duration: 2 * time.Second, Drain: time.Minute,
		Groups: 1, GroupSize: 3, GroupMessages: 10, Dir: t.TempDir()}
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != o.Messages || !rep.OK() {
		t.Errorf("sent %d of %d, delivered %d, lost %d, duplicated %d, send errors %d, stray %d",
			rep.Sent, o.Messages, rep.Delivered, rep.Lost, rep.Duplicated, rep.SendErrors, rep.Stray)
	}
	if got := rep.Latency.Direct.Count + rep.Latency.ViaRelay.Count; got != rep.Sent {
		t.Errorf("the collectors recorded %d of the %d messages sent", got, rep.Sent)
	}
}
