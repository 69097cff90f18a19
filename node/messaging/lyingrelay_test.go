package messaging_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// farRelay starts a relay that stores deposits and signs receipts that
// promise to keep them for ten years: a relay that would black-hole a
// message (its sender would not deposit it again before then).
func farRelay(t *testing.T) *nodetest.Relay {
	t.Helper()
	h := nodetest.Host(t)
	return nodetest.StartRelay(t, nodetest.RelayOptions{Host: h, Tamper: func(req *protocol.RelayRequest, resp *protocol.RelayResponse) {
		if resp.Op != protocol.RelayDeposit || resp.Code != protocol.CodeOK {
			return
		}
		rc := protocol.Receipt{Relay: []byte(h.ID()), Mailbox: req.Mailbox, Envelope: protocol.EnvelopeHash(req.Envelope),
			StoredUntil: time.Now().AddDate(10, 0, 0).UnixMilli()}
		resp.StoredUntil, resp.Signature = rc.StoredUntil, nodetest.SignReceipt(t, h, rc)
	}})
}

// TestRelayFarReceipt: a relay's receipt that promises custody beyond the
// longest a relay may give counts as no receipt. Alone, such a relay
// leaves the message queued and tried again after a backoff (not in ten
// years); next to an honest relay, the message is sent on the honest
// relay's receipt alone and the liar gets it again after a backoff.
func TestRelayFarReceipt(t *testing.T) {
	liar := farRelay(t)
	honest := nodetest.StartRelay(t, nodetest.RelayOptions{})
	s := newPeer(t, "sam")
	r := newPeer(t, "rita", onDisk())
	if _, err := r.m.AddRelay(nodetest.Context(t), liar.Addr); err != nil {
		t.Fatal(err)
	}
	befriend(t, s, r)
	r.stop()

	entry := func(id protocol.MessageID) store.OutboxEntry {
		e, ok := outboxEntry(t, s, id)
		if !ok {
			t.Fatal("the message left the outbox")
		}
		return e
	}
	id := send(t, s, "rita", "to the liar")
	nodetest.WaitFor(t, 20*time.Second, "a deposit on the liar", func() bool { return liar.Server.Stats().Envelopes > 0 })
	nodetest.WaitFor(t, 20*time.Second, "the failed attempt recorded", func() bool { return entry(id).Attempts > 0 })
	e := entry(id)
	if len(e.Receipts) != 0 {
		t.Errorf("the outbox entry keeps the liar's receipt: %+v", e.Receipts)
	}
	if limit := time.Now().Add(time.Hour); e.NextAttempt.After(limit) {
		t.Errorf("next attempt at %s, want within an hour (a backoff)", e.NextAttempt)
	}
	if !strings.Contains(e.LastError, "custody") {
		t.Errorf("last error %q does not name the bad receipt", e.LastError)
	}
	if sent(t, s, id) {
		t.Error("the message is sent on the liar's receipt alone")
	}

	// With an honest relay as well.
	r.restart()
	if _, err := r.m.AddRelay(nodetest.Context(t), honest.Addr); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, 20*time.Second, "sam holds rita's second mailbox", func() bool { return len(contactMailboxes(t, s, r)) == 2 })
	// Rita gives the honest relay sam's deposit token after it is added;
	// stopped before that, she would leave a mailbox sam cannot deposit in.
	nodetest.WaitFor(t, 20*time.Second, "sam's deposit token on the honest relay", func() bool { return honest.Server.Stats().Tokens > 0 })
	r.stop()
	id2 := send(t, s, "rita", "to both")
	wait(t, s, id2, messaging.StateSent)
	e = entry(id2)
	if len(e.Receipts) != 1 || e.Receipts[0].Relay != honest.Host.ID().String() {
		t.Errorf("receipts %+v, want the honest relay's alone", e.Receipts)
	}
	if limit := time.Now().Add(time.Hour); e.NextAttempt.After(limit) {
		t.Errorf("next attempt at %s, want within an hour (the liar has no receipt)", e.NextAttempt)
	}
}

// sent reports whether an outgoing message is in the state sent.
func sent(t *testing.T, p *tnode, id protocol.MessageID) bool {
	t.Helper()
	var m store.Message
	if err := p.st.View(nodetest.Context(t), func(tx *store.Tx) error {
		var err error
		m, err = tx.Messages().Get(id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return m.State == store.MessageSent
}

// contactMailboxes returns the mailboxes p holds in other's card.
func contactMailboxes(t *testing.T, p, other *tnode) []protocol.Mailbox {
	t.Helper()
	var card protocol.Card
	if err := p.st.View(nodetest.Context(t), func(tx *store.Tx) error {
		c, err := tx.Contacts().Get(other.m.UserID())
		if err != nil {
			return err
		}
		if len(c.Card) > 0 {
			return card.Unmarshal(c.Card)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return card.Mailboxes
}
