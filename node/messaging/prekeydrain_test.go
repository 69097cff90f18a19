package messaging_test

import (
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// TestRelayPrekeysBounded: a relay that always says it holds no one-time
// prekeys (as one drained by takers who never use them would) does not
// make the node generate more without end: the node refills from its own
// accounting, which counts the batch it uploaded as still there until its
// keys are used or expire.
func TestRelayPrekeysBounded(t *testing.T) {
	r := nodetest.StartRelay(t, nodetest.RelayOptions{Tamper: func(_ *protocol.RelayRequest, resp *protocol.RelayResponse) {
		resp.Prekeys = 0
	}})
	bob := newPeer(t, "bob")
	if _, err := bob.m.AddRelay(nodetest.Context(t), r.Addr); err != nil {
		t.Fatal(err)
	}
	// Each invite makes a round of the relay work (its token and card
	// blob); a round refills the prekeys after the cards, so once the
	// card of the last invite is there, every earlier round is done.
	const rounds = 6
	for i := range rounds {
		if _, err := bob.m.Invite(nodetest.Context(t)); err != nil {
			t.Fatal(err)
		}
		nodetest.WaitFor(t, 20*time.Second, "the invite's card blob", func() bool { return r.Server.Stats().Cards == uint64(i+1) })
	}
	var made int
	if err := bob.st.View(nodetest.Context(t), func(tx *store.Tx) error {
		for _, state := range []store.PrekeyState{store.PrekeyHandedOut, store.PrekeyUploaded} {
			n, err := tx.Prekeys().Count(store.PrekeyOneTime, state)
			if err != nil {
				return err
			}
			made += n
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if made == 0 || made > protocol.MaxPrekeyBatch {
		t.Errorf("bob keeps %d one-time prekeys made for the relay after %d rounds, want 1 to %d", made, rounds, protocol.MaxPrekeyBatch)
	}
	if n := r.Server.Stats().Prekeys; n > protocol.MaxPrekeyBatch {
		t.Errorf("the relay holds %d of bob's prekeys, want at most %d", n, protocol.MaxPrekeyBatch)
	}
}
