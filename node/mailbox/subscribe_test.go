package mailbox_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/store"
)

// A subscription stays up while nothing arrives for longer than the
// client's request Timeout: the deadline of the subscribe request ends
// when the relay confirms it. (It used to stay on the stream, so every
// quiet subscription ended after Timeout, and envelopes deposited until
// the client subscribed again waited for it.)
func TestQuietSubscriptionStays(t *testing.T) {
	ctx := context.Background()
	r := nodetest.StartRelay(t, nodetest.RelayOptions{})
	var (
		mu     sync.Mutex
		states []string
	)
	st := store.NewMemory()
	owner, err := mailbox.New(ctx, mailbox.Config{Store: st,
		Options: mailbox.Options{Timeout: 300 * time.Millisecond, RetryMin: 50 * time.Millisecond, RetryMax: time.Second},
		OnStatus: func(s mailbox.Status) {
			mu.Lock()
			states = append(states, s.State)
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		owner.Close()
		st.Close()
	})
	own(t, owner, st, r)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		owner.Run(rctx, func(_ context.Context, ds []mailbox.Delivery) ([]bool, error) {
			return make([]bool, len(ds)), nil
		})
	}()
	defer func() {
		cancel()
		<-done
	}()
	nodetest.WaitFor(t, 10*time.Second, "the subscription", func() bool { return state(owner) == mailbox.StateSubscribed })
	time.Sleep(5 * 300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for i, s := range states {
		if s == mailbox.StateSubscribed && i+1 < len(states) {
			t.Fatalf("states %q: the quiet subscription ended", states)
		}
	}
	if got := state(owner); got != mailbox.StateSubscribed {
		t.Fatalf("state %q after a quiet while, want subscribed", got)
	}
}
