package messaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// The outcomes of delivery, both paths side by side. On a stream
// (deliverer.go) each Deliver frame gets an Ack: ok deletes the entry (the
// peer's device committed the message) and moves a text message to sent;
// a refusal gives the entry a later attempt after an exponential backoff
// with jitter, or, when the peer reports that it cannot decrypt it (it
// lost the session), encrypts it again in another session under the same
// message ID. Through relays (deposit) each relay the contact lists
// answers with a custody receipt: an entry with one is sent (a receipt or
// card is done), and waits for its delivery receipt, deposited again
// whenever a relay's receipt runs out. A failed connection or stream
// gives the entries a later attempt (fail).

// ackResult is one acknowledged item.
type ackResult struct {
	it   *outItem
	code protocol.Code
}

// acked commits the effect of acknowledgements: an OK deletes the entry
// and moves a text message to sent (a receipt or card record is deleted);
// a refusal reschedules the entry, or re-encrypts it when the peer lost
// the session. The items go back to the store once it committed.
func (o *outbox) acked(res []ackResult) error {
	items := make([]*outItem, len(res))
	for i, r := range res {
		items[i] = r.it
	}
	j, err := o.s.submit(o.s.ctx, false, len(res), func(w *work) error {
		// First of what runs after the commit: an entry encrypted again
		// here is handed to its delivery loop then (queue), and the
		// outbox skips an entry a loop owns, so the items must be
		// released by then, else the new bytes wait for their lease.
		w.after(func() { o.release(items) })
		for _, r := range res {
			if err := w.ackOne(r.it.id, r.it.payload, r.code); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = o.s.await(j)
	}
	if err != nil {
		o.release(items)
	}
	return err
}

// ackOne commits the peer's answer code to the delivery of payload, the
// bytes of message id that were sent.
func (w *work) ackOne(id protocol.MessageID, payload []byte, code protocol.Code) error {
	entry, err := w.tx.Outbox().Get(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil // delivered meanwhile (a receipt came first), or removed
	}
	if err != nil {
		return err
	}
	if code != protocol.CodeOK && code != protocol.CodeDuplicate && !bytes.Equal(entry.Payload, payload) {
		// Refused, but encrypted again meanwhile (requeueLost): the new
		// bytes have not been tried.
		return w.dueNow(entry)
	}
	if code == protocol.CodeOK || code == protocol.CodeDuplicate {
		if err := w.tx.Outbox().Delete(id); err != nil {
			return err
		}
		m, err := w.tx.Messages().Get(id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if !shown(m.Kind) {
			// Receipts and cards need nothing more: receipts get no receipts.
			return w.tx.Messages().Delete(id)
		}
		if stateRank(m.State) < stateRank(store.MessageSent) {
			m.State, m.Reason = store.MessageSent, ""
			if err := w.tx.Messages().Put(&m); err != nil {
				return err
			}
			w.stateChanged(&m)
		}
		return nil
	}
	w.s.log.Debug("messaging: the peer refused a message", "code", code.String(), "attempts", entry.Attempts)
	switch code {
	case protocol.CodeUnknownSession, protocol.CodeDecryptFailed:
		return w.reencrypt(entry, code)
	case protocol.CodeRateLimited, protocol.CodeInternal, protocol.CodeQuotaExceeded:
		return w.reschedule(entry, "the peer answered "+code.String(), false)
	}
	return w.reschedule(entry, "the peer refused it: "+code.String(), true)
}

// backoff returns the wait before attempt n+1 (n >= 1), with jitter.
func (s *Service) backoff(n uint32) time.Duration {
	d := s.opt.RetryMin
	for i := uint32(1); i < n && d < s.opt.RetryMax; i++ {
		d *= 2
	}
	d = min(d, s.opt.RetryMax)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + time.Duration(s.rand.uint64()%uint64(half+1))
}

// reschedule gives an entry a later attempt; after FailAfter attempts (or
// at once if failed) a text message shows the state failed with reason.
func (w *work) reschedule(e store.OutboxEntry, reason string, failed bool) error {
	e.Attempts++
	e.NextAttempt = w.now.Add(w.s.backoff(e.Attempts))
	reason = truncate(reason)
	e.LastError = reason
	if err := w.tx.Outbox().Put(e); err != nil {
		return err
	}
	w.scheduleChanged()
	if !failed && int(e.Attempts) < w.s.opt.FailAfter {
		return nil
	}
	m, err := w.tx.Messages().Get(e.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !shown(m.Kind) || stateRank(m.State) > 0 || (m.State == store.MessageFailed && m.Reason == reason) {
		return nil
	}
	m.State, m.Reason = store.MessageFailed, reason
	if err := w.tx.Messages().Put(&m); err != nil {
		return err
	}
	w.stateChanged(&m)
	return nil
}

// scheduleChanged wakes the outbox scheduler once the transaction
// committed (once per transaction): an entry's next attempt changed.
func (w *work) scheduleChanged() {
	if !w.rescheduled {
		w.rescheduled = true
		w.after(w.s.out.pokeScheduler)
	}
}

// fail reschedules items after a failed connection or stream.
func (o *outbox) fail(items []*outItem, cause error) {
	if len(items) == 0 {
		return
	}
	o.s.log.Debug("messaging: delivery failed", "messages", len(items), "err", cause)
	reason := cause.Error()
	o.settle(items, "reschedule failed deliveries", func(w *work, _ int, e store.OutboxEntry) error {
		return w.reschedule(e, reason, false)
	})
}

// settle ends an attempt at items: it commits f's outcome for the entry
// of each item still in the outbox (the i-th of items), gives the items
// back to the store and wakes the scheduler; what names the work in the
// log if the commit fails.
func (o *outbox) settle(items []*outItem, what string, f func(w *work, i int, e store.OutboxEntry) error) {
	err := o.s.do(o.s.ctx, false, func(w *work) error {
		for i, it := range items {
			e, err := w.tx.Outbox().Get(it.id)
			if isNotFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			if err := f(w, i, e); err != nil {
				return err
			}
		}
		return nil
	})
	o.release(items)
	o.pokeScheduler()
	if err != nil && !errors.Is(err, ErrClosed) {
		o.s.log.Warn("messaging: "+what, "err", err)
	}
}

// reencrypt handles a peer's report that it cannot decrypt an entry: the
// session it was encrypted in is gone there. The session is dropped here
// too and the message encrypted again in the best other session; without
// one, a new session is made from the peer's bundle.
func (w *work) reencrypt(e store.OutboxEntry, code protocol.Code) error {
	c, err := w.contact(e.Peer)
	if err != nil {
		return err
	}
	if c == nil || c.c.IdentityChanged || !bytes.Equal(c.c.Device, e.Device) {
		return w.reschedule(e, "the peer cannot decrypt it: "+code.String(), true)
	}
	if ses, err := w.session(e.Peer, e.Device, e.Session); err != nil {
		return err
	} else if ses != nil {
		ses.deleted = true
	}
	if c.c.Session == e.Session {
		best, err := w.bestSession(e.Peer, e.Device, e.Session)
		if err != nil {
			return err
		}
		c.c.Session = store.SessionID{}
		if best != nil {
			c.c.Session = best.rec.ID
		}
		c.dirty = true
	}
	m, err := w.tx.Messages().Get(e.ID)
	if errors.Is(err, store.ErrNotFound) {
		return w.tx.Outbox().Delete(e.ID)
	}
	if err != nil {
		return err
	}
	o, err := w.outgoingOf(&m)
	if err != nil {
		w.s.log.Error("messaging: stored outgoing message does not decode", "err", err)
		return w.reschedule(e, "cannot encrypt it again", true)
	}
	if _, err := w.queue(c, o); errors.Is(err, errNoSession) {
		uid := e.Peer
		w.after(func() { w.s.out.renew(uid) })
		return w.reschedule(e, "the peer lost the session; making a new one", false)
	} else if err != nil {
		return err
	}
	return nil
}

// outgoingOf rebuilds what was encrypted from a stored outgoing message
// (a file message's pointer is in its file record).
func (w *work) outgoingOf(m *store.Message) (outgoing, error) {
	o := outgoing{kind: m.Kind, id: m.ID, seq: m.Seq, sentAt: m.SentAt}
	switch m.Kind {
	case kindText:
		o.text = string(m.Body)
	case kindFile:
		o.text = string(m.Body)
		f, err := w.tx.Files().Get(m.ID)
		if err != nil {
			return o, fmt.Errorf("the file of message %s: %w", m.ID, err)
		}
		o.file = new(protocol.File)
		if err := o.file.Unmarshal(f.Pointer); err != nil {
			return o, err
		}
	case kindDelivery, kindRead:
		if len(m.Body) == 0 || len(m.Body)%16 != 0 {
			return o, errors.New("bad receipt body")
		}
		for b := m.Body; len(b) > 0; b = b[16:] {
			o.covers = append(o.covers, protocol.MessageID(b[:16]))
		}
	case kindCard:
		o.card = new(protocol.Card)
		if err := o.card.Unmarshal(m.Body); err != nil {
			return o, err
		}
	case kindGroup:
		o.group = new(protocol.GroupControl)
		if err := o.group.Unmarshal(m.Body); err != nil {
			return o, err
		}
	default:
		return o, fmt.Errorf("kind %d", m.Kind)
	}
	return o, nil
}

// renew makes a new session with a peer that lost every session, then
// encrypts again what waits for it in a session that is gone.
func (o *outbox) renew(uid identity.UserID) {
	o.mu.Lock()
	if o.establishing[uid] {
		o.mu.Unlock()
		return
	}
	o.establishing[uid] = true
	o.mu.Unlock()
	o.s.spawn(func() {
		defer func() {
			o.mu.Lock()
			delete(o.establishing, uid)
			o.mu.Unlock()
		}()
		s := o.s
		ctx, cancel := context.WithTimeout(s.ctx, 2*s.opt.DialTimeout)
		defer cancel()
		if err := s.establish(ctx, uid, false); err != nil {
			s.log.Info("messaging: could not make a new session", "user_id", uid.String(), "err", err)
			return
		}
		err := s.do(ctx, false, func(w *work) error {
			all, err := w.tx.Outbox().List()
			if err != nil {
				return err
			}
			c, err := w.contact(uid)
			if err != nil || c == nil {
				return err
			}
			for _, e := range all {
				if e.Peer != uid || !bytes.Equal(e.Device, c.c.Device) || o.isOwned(e.ID) {
					continue
				}
				if ses, err := w.session(uid, e.Device, e.Session); err != nil || ses != nil {
					if err != nil {
						return err
					}
					continue // its session is still there
				}
				m, err := w.tx.Messages().Get(e.ID)
				if err != nil {
					continue
				}
				og, err := w.outgoingOf(&m)
				if err != nil {
					continue
				}
				if _, err := w.queue(c, og); err != nil && !errors.Is(err, errNoSession) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			s.log.Warn("messaging: encrypt again for a new session", "err", err)
		}
	})
}

// contactBoxes returns the mailboxes a contact's card lists.
func contactBoxes(c *store.Contact) []protocol.Mailbox {
	if len(c.Card) == 0 {
		return nil
	}
	var card protocol.Card
	if card.Unmarshal(c.Card) != nil {
		return nil
	}
	return card.Mailboxes
}

// deposit is the relay path of a delivery loop: it deposits each item in
// every mailbox the contact lists whose relay holds no receipt of it
// still valid (the mailbox client seals it to each), and commits the
// receipts: an entry with one is sent (a receipt or card is done), and
// waits for its delivery receipt until the first stored-until passes; one
// without is rescheduled.
func (o *outbox) deposit(boxes []protocol.Mailbox, items []*outItem, cause error) {
	s := o.s
	now := s.clock.Now()
	// What each item already holds.
	have := map[protocol.MessageID][]store.Receipt{}
	if err := s.st.View(s.ctx, func(tx *store.Tx) error {
		for _, it := range items {
			if e, err := tx.Outbox().Get(it.id); err == nil {
				have[it.id] = e.Receipts
			}
		}
		return nil
	}); err != nil {
		o.fail(items, err)
		return
	}
	type result struct {
		box protocol.Mailbox
		idx []int
		res []mailbox.Result
		err error
	}
	results := make([]result, len(boxes))
	var wg sync.WaitGroup
	for bi := range boxes {
		b := &boxes[bi]
		r := &results[bi]
		r.box = *b
		relay := peerString(b.Relay)
		var payloads [][]byte
		for i, it := range items {
			if validReceipt(have[it.id], relay, now) {
				continue
			}
			payloads = append(payloads, it.payload)
			r.idx = append(r.idx, i)
		}
		if len(payloads) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(s.ctx, s.opt.DialTimeout)
			defer cancel()
			r.res, r.err = s.mb.Deposit(ctx, b, s.self.Public(), []byte(s.host.ID()), payloads)
		}()
	}
	wg.Wait()
	got := make([][]store.Receipt, len(items))
	var reason string
	for _, r := range results {
		for k, i := range r.idx {
			if k < len(r.res) && r.res[k].Err == nil {
				rc := r.res[k].Receipt
				got[i] = append(got[i], store.Receipt{Relay: rc.Relay.String(), StoredUntil: rc.StoredUntil, Signed: rc.Signature})
				continue
			}
			err := r.err
			if k < len(r.res) && r.res[k].Err != nil {
				err = r.res[k].Err
			}
			if err != nil && reason == "" {
				reason = "relay " + peerString(r.box.Relay) + ": " + err.Error()
			}
		}
		if r.err != nil && len(r.idx) == 0 && reason == "" {
			reason = r.err.Error()
		}
	}
	if reason == "" && cause != nil {
		reason = cause.Error()
	}
	o.settle(items, "commit custody receipts", func(w *work, i int, e store.OutboxEntry) error {
		return w.deposited(e, items[i].payload, got[i], boxes, reason)
	})
}

// validReceipt reports whether rs holds a receipt of relay that lasts
// beyond now plus the clock tolerance.
func validReceipt(rs []store.Receipt, relay string, now time.Time) bool {
	for _, r := range rs {
		if r.Relay == relay && r.StoredUntil.After(now.Add(protocolTolerance)) {
			return true
		}
	}
	return false
}

// deposited commits the custody receipts an entry got for payload, the
// bytes deposited.
func (w *work) deposited(e store.OutboxEntry, payload []byte, got []store.Receipt, boxes []protocol.Mailbox, reason string) error {
	if !bytes.Equal(e.Payload, payload) {
		// Encrypted again meanwhile (the peer started a new session): the
		// receipts are for bytes that will not decrypt there. The new
		// bytes go now.
		return w.dueNow(e)
	}
	again := false
	for _, r := range got {
		if slices.ContainsFunc(e.Receipts, func(x store.Receipt) bool { return x.Relay == r.Relay }) {
			again = true // that relay's receipt ran out
		}
		e.Receipts = slices.DeleteFunc(e.Receipts, func(x store.Receipt) bool { return x.Relay == r.Relay })
		if len(e.Receipts) < store.MaxReceipts {
			e.Receipts = append(e.Receipts, r)
		}
	}
	if again && e.Redeposits < math.MaxUint32 {
		e.Redeposits++
	}
	// Only receipts of relays the contact lists now, still valid, count
	// (one that just came counts until its end: a relay with a TTL under
	// the clock tolerance gets the message again halfway through it).
	var until time.Time
	covered := 0
	fresh := func(r store.Receipt) bool {
		return slices.ContainsFunc(got, func(g store.Receipt) bool { return g.Relay == r.Relay }) && r.StoredUntil.After(w.now)
	}
	for _, b := range boxes {
		relay := peerString(b.Relay)
		for _, r := range e.Receipts {
			if r.Relay == relay && (r.StoredUntil.After(w.now.Add(protocolTolerance)) || fresh(r)) {
				covered++
				if until.IsZero() || r.StoredUntil.Before(until) {
					until = r.StoredUntil
				}
				break
			}
		}
	}
	if covered == 0 {
		return w.reschedule(e, reason, false)
	}
	m, err := w.tx.Messages().Get(e.ID)
	if err != nil && !isNotFound(err) {
		return err
	}
	if err == nil && !shown(m.Kind) {
		// Receipts and cards get no receipt: the relay's custody is the end.
		if err := w.tx.Outbox().Delete(e.ID); err != nil {
			return err
		}
		return w.tx.Messages().Delete(e.ID)
	}
	if covered < len(boxes) {
		// Some relay still lacks it: try again after a backoff.
		e.Attempts++
		e.NextAttempt = w.now.Add(w.s.backoff(e.Attempts))
		e.LastError = truncate(reason)
	} else {
		e.NextAttempt = until.Add(-protocolTolerance)
		if half := w.now.Add(until.Sub(w.now) / 2); e.NextAttempt.Before(half) {
			e.NextAttempt = half
		}
		e.LastError = ""
	}
	if err := w.tx.Outbox().Put(e); err != nil {
		return err
	}
	w.scheduleChanged()
	if err != nil || stateRank(m.State) > stateRank(store.MessageSent) {
		return nil
	}
	state, why := store.MessageSent, ""
	if int(e.Redeposits) >= w.s.opt.FailAfterRedeposits {
		// Held by relays for their whole TTL, more than once, and no
		// delivery receipt: the recipient has been offline that long, or
		// cannot decrypt it (and has not told us by starting a new
		// session, receiveRelayed). Say so; keep depositing it.
		state, why = store.MessageFailed, truncate(fmt.Sprintf("no delivery receipt after %d deposits on the recipient's relays: "+
			"the recipient may be offline or unable to decrypt it; still trying", e.Redeposits+1))
	}
	if m.State != state || m.Reason != why {
		m.State, m.Reason = state, why
		if err := w.tx.Messages().Put(&m); err != nil {
			return err
		}
		w.stateChanged(&m)
	}
	return nil
}

// dueNow makes an outbox entry due at once (its payload changed while a
// delivery loop held the old one).
func (w *work) dueNow(e store.OutboxEntry) error {
	e.NextAttempt = w.now
	if err := w.tx.Outbox().Put(e); err != nil {
		return err
	}
	w.scheduleChanged()
	return nil
}

func truncate(s string) string {
	if len(s) > store.MaxReasonLen {
		return s[:store.MaxReasonLen]
	}
	return s
}
