package messaging

import (
	"bytes"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/store"
)

// A stranger's messages are stored before the user decides about them, so
// what strangers can make a node store is capped. Each message request
// counts the messages it holds and their bytes (store.Contact's
// RequestMessages and RequestBytes); beyond Options.RequestMessages or
// RequestBytes its oldest messages go, and beyond Options.RequestsMessages
// or RequestsBytes over all requests the oldest requests (by when they
// first wrote) go whole: contact, sessions and messages. Both are counted
// (RequestDrops) and logged. Accepting a request clears its counts. The
// seen-set entries of a request's ciphertexts are bounded the same way
// (seenAddRequest): the latest RequestMessages, and none once the request
// is dropped or removed.

// messageOverhead is what a stored message counts against the request
// caps besides its body: about the size of its record and its two index
// entries.
const messageOverhead = 128

// messageCost is what the stored message m counts against the caps.
func messageCost(m *store.Message) uint64 { return uint64(len(m.Body)) + messageOverhead }

// RequestDrops returns how many messages of message requests were dropped
// over the caps (those of requests dropped whole included) and how many
// requests were dropped whole, since the service started.
func (s *Service) RequestDrops() (messages, requests uint64) {
	return s.dropMsgs.Load(), s.dropReqs.Load()
}

// holdRequest counts the message m, just stored from the message request
// c, and drops what goes beyond the caps: the oldest messages of c, then
// the oldest other requests.
func (w *work) holdRequest(c *contactEntry, m *store.Message) error {
	c.c.RequestMessages++
	c.c.RequestBytes += messageCost(m)
	c.dirty = true
	o := &w.s.opt
	for c.c.RequestMessages > uint64(o.RequestMessages) || c.c.RequestBytes > uint64(o.RequestBytes) {
		old, err := w.oldestReceived(c.c.UserID)
		if err != nil {
			return err
		}
		if old == nil {
			// Counted beyond what is stored: nothing is left to drop.
			c.c.RequestMessages, c.c.RequestBytes = 0, 0
			break
		}
		if err := w.deleteMessage(old); err != nil {
			return err
		}
		w.dropped(1, 0)
	}
	if err := w.loadAllContacts(); err != nil {
		return err
	}
	for {
		msgs, size, oldest := w.requestTotals(c)
		if oldest == nil || msgs <= uint64(o.RequestsMessages) && size <= uint64(o.RequestsBytes) {
			return nil
		}
		if err := w.dropRequest(oldest); err != nil {
			return err
		}
	}
}

// requestTotals sums what the message requests hold (a request counts as
// at least one message: its contact and sessions take room too) and
// returns the oldest request other than keep.
func (w *work) requestTotals(keep *contactEntry) (msgs, size uint64, oldest *contactEntry) {
	for _, e := range w.contacts {
		if !e.exists || e.deleted || e.c.State != store.ContactRequest {
			continue
		}
		msgs += max(e.c.RequestMessages, 1)
		size += e.c.RequestBytes
		if e == keep {
			continue
		}
		if oldest == nil || e.c.CreatedAt.Before(oldest.c.CreatedAt) ||
			e.c.CreatedAt.Equal(oldest.c.CreatedAt) && bytes.Compare(e.c.UserID[:], oldest.c.UserID[:]) < 0 {
			oldest = e
		}
	}
	return msgs, size, oldest
}

// dropRequest deletes the message request c over the total caps: its
// messages, its sessions and the contact.
func (w *work) dropRequest(c *contactEntry) error {
	n, _, err := w.deleteConversation(c.c.UserID, 0)
	if err != nil {
		return err
	}
	if err := w.dropPeer(c.c.UserID, "not delivered: the message request was dropped"); err != nil {
		return err
	}
	if _, err := w.tx.Seen().ForgetRequest(c.c.UserID, 0); err != nil {
		return err
	}
	c.deleted = true
	w.dropped(n, 1)
	return nil
}

// dropped counts messages and requests dropped over the caps; the counts
// and one log line go out after the commit.
func (w *work) dropped(msgs, reqs int) {
	if w.dropMsgs == 0 && w.dropReqs == 0 {
		w.after(func() {
			w.s.dropMsgs.Add(uint64(w.dropMsgs))
			w.s.dropReqs.Add(uint64(w.dropReqs))
			w.s.log.Info("messaging: message requests over their caps: dropped the oldest",
				"messages", w.dropMsgs, "requests", w.dropReqs)
		})
	}
	w.dropMsgs += msgs
	w.dropReqs += reqs
}

// oldestReceived returns the oldest message received from peer in its
// conversation, or nil if there is none.
func (w *work) oldestReceived(peer identity.UserID) (*store.Message, error) {
	var after uint64
	for {
		page, err := w.tx.Messages().Oldest(peer, after, 16)
		if err != nil || len(page) == 0 {
			return nil, err
		}
		for i := range page {
			if !page[i].Outgoing {
				return &page[i], nil
			}
		}
		after = page[len(page)-1].Order
	}
}
