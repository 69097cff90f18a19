package messaging

import (
	"context"
	"errors"
	"fmt"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// DeleteMessage deletes the message id (a message ID's string form) from
// this node: a message of a conversation or of a group, either way.
// Nothing is deleted on the other side. An outgoing message not delivered
// yet is sent no further, and a file message's file goes with it.
// Refusals: ErrUnknownMessage.
func (s *Service) DeleteMessage(ctx context.Context, id string) error {
	mid, err := ParseMessageID(id)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrUnknownMessage, id)
	}
	return s.do(ctx, true, func(w *work) error {
		m, err := w.tx.Messages().Get(mid)
		if errors.Is(err, store.ErrNotFound) || err == nil && !shown(m.Kind) {
			return refuse(fmt.Errorf("%w: %s", ErrUnknownMessage, id))
		}
		if err != nil {
			return err
		}
		return w.deleteMessage(&m)
	})
}

// DeleteConversation deletes every message of the conversation with the
// contact nameOrUserID from this node, as DeleteMessage does one, and
// returns how many it deleted; the contact stays. A long conversation is
// deleted in several transactions, the oldest messages first. Refusals:
// ErrUnknownContact.
func (s *Service) DeleteConversation(ctx context.Context, nameOrUserID string) (int, error) {
	total := 0
	for {
		var records, messages int
		err := s.do(ctx, true, func(w *work) error {
			c, err := w.lookup(nameOrUserID)
			if err != nil {
				return refuse(err)
			}
			records, messages, err = w.deleteConversation(c.c.UserID, 0)
			return err
		})
		if err != nil {
			return total, err
		}
		total += messages
		if records < deleteChunk {
			return total, nil
		}
	}
}

// deleteChunk bounds the messages deleteConversation deletes in one
// transaction (a backend commits a bounded number of writes in one).
const deleteChunk = 1024

// deleteConversation deletes up to limit message records of the
// conversation with peer (limit <= 0: deleteChunk), the oldest first, and
// returns how many it deleted and how many of them were messages shown to
// the user (texts and files; the others are receipts and the like).
func (w *work) deleteConversation(peer identity.UserID, limit int) (records, messages int, err error) {
	if limit <= 0 {
		limit = deleteChunk
	}
	page, err := w.tx.Messages().Oldest(peer, 0, limit)
	if err != nil {
		return 0, 0, err
	}
	for i := range page {
		if err := w.deleteMessage(&page[i]); err != nil {
			return 0, 0, err
		}
		if shown(page[i].Kind) {
			messages++
		}
	}
	return len(page), messages, nil
}

// deleteMessage deletes the stored message m: its record, its outbox entry
// (an outgoing message not delivered yet goes no further), its file (the
// record now, its data after the commit) and what it counted against the
// request caps.
func (w *work) deleteMessage(m *store.Message) error {
	if err := w.tx.Messages().Delete(m.ID); err != nil {
		return err
	}
	if m.Outgoing {
		if err := w.tx.Outbox().Delete(m.ID); err != nil {
			return err
		}
	}
	if m.Kind == uint8(protocol.KindFile) && w.s.cfg.Files != nil {
		after, err := w.s.cfg.Files.Delete(w.tx, m.ID)
		if err != nil {
			return err
		}
		if after != nil {
			w.after(after)
		}
	}
	if m.Outgoing || !m.Group.IsZero() {
		return nil
	}
	c, err := w.contact(m.Peer)
	if err != nil || c == nil || c.c.State != store.ContactRequest {
		return err
	}
	cost := messageCost(m)
	c.c.RequestMessages -= min(c.c.RequestMessages, 1)
	c.c.RequestBytes -= min(c.c.RequestBytes, cost)
	c.dirty = true
	return nil
}
