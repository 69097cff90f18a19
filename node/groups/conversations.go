package groups

import (
	"context"
	"errors"
	"slices"

	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// ConversationGroup is the Kind of a group's conversation in a list of
// conversations (messaging.Conversation's Kind).
const ConversationGroup = "group"

// Conversation is one entry of a list of conversations: a contact's
// (messaging.Conversations, Group nil) or a group's (Kind
// ConversationGroup: ID is the group's ID, Name its name, Last its newest
// message, ActiveAt when that arrived or the group last changed here).
type Conversation struct {
	messaging.Conversation
	// Group is the group of a ConversationGroup.
	Group *Summary `json:"group,omitempty"`
}

// Conversations returns every group as a conversation, with its newest
// message and the received messages not read yet (at most
// messaging.MaxUnread). It marks nothing read.
func (s *Service) Conversations(ctx context.Context) ([]Conversation, error) {
	var out []Conversation
	err := s.st.View(ctx, func(tx *store.Tx) error {
		all, err := tx.Groups().List()
		if err != nil {
			return err
		}
		out = make([]Conversation, 0, len(all))
		for i := range all {
			r := &all[i]
			sum := summaryOf(r)
			c := Conversation{
				Conversation: messaging.Conversation{Kind: ConversationGroup, ID: sum.ID, Name: r.Name, ActiveAt: r.UpdatedAt},
				Group:        &sum,
			}
			last, unread, err := s.summary(tx, r)
			if err != nil {
				return err
			}
			if last != nil {
				c.Last = last
				if last.ReceivedAt.After(c.ActiveAt) {
					c.ActiveAt = last.ReceivedAt
				}
			}
			c.Unread = unread
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

// summary reads group r's messages from the newest back: the newest
// message, and the received messages not read yet. It stops at a received
// message that is read (everything older was read then, as MarkRead
// leaves it), or after messaging.MaxUnread messages.
func (s *Service) summary(tx *store.Tx, r *store.Group) (*messaging.Message, int, error) {
	var (
		last   *messaging.Message
		unread int
		seen   int
		before uint64
	)
	const page = 64
	for seen < messaging.MaxUnread {
		batch, err := tx.Messages().ListGroup(r.ID, page, before)
		if err != nil {
			return nil, 0, err
		}
		for i := len(batch) - 1; i >= 0; i-- {
			m := &batch[i]
			seen++
			if last == nil {
				am := s.apiMessage(m, r.Name, nil)
				last = &messaging.Message{
					ID: am.ID, From: am.From, FromName: am.FromName, Outgoing: am.Outgoing, Text: am.Text, Seq: am.Seq,
					SentAt: am.SentAt, ReceivedAt: am.ReceivedAt, State: am.State, Cursor: am.Cursor,
					Group: am.Group, GroupID: am.GroupID, File: am.File,
				}
			}
			if m.Outgoing {
				continue
			}
			if m.State == store.MessageRead {
				return last, unread, nil
			}
			unread++
		}
		if len(batch) < page {
			break
		}
		before = batch[0].Order
	}
	return last, min(unread, messaging.MaxUnread), nil
}

// markReadBatch bounds the messages MarkRead rewrites in one transaction
// (a message record holds up to 32 KiB of text).
const markReadBatch = 128

// MarkRead marks every received message of group ref that is not read
// yet read, here: it finds them (from the newest back to one read
// already) and marks them oldest first, markReadBatch a transaction, so
// that a stop part-way leaves the older ones read and the newer unread,
// as Conversations counts. Group messages have no read receipts; nothing
// is sent.
func (s *Service) MarkRead(ctx context.Context, ref string) error {
	g, err := s.lookup(ctx, ref)
	if err != nil {
		return err
	}
	var unread []protocol.MessageID // newest first
	err = s.st.View(ctx, func(tx *store.Tx) error {
		const page = 256
		var before uint64
		for {
			batch, err := tx.Messages().ListGroup(g.id, page, before)
			if err != nil {
				return err
			}
			for i := len(batch) - 1; i >= 0; i-- {
				m := &batch[i]
				if m.Outgoing {
					continue
				}
				if m.State == store.MessageRead {
					return nil
				}
				unread = append(unread, m.ID)
			}
			if len(batch) < page {
				return nil
			}
			before = batch[0].Order
		}
	})
	if err != nil {
		return err
	}
	slices.Reverse(unread)
	for chunk := range slices.Chunk(unread, markReadBatch) {
		err := s.st.Update(ctx, func(tx *store.Tx) error {
			for _, id := range chunk {
				m, err := tx.Messages().Get(id)
				if errors.Is(err, store.ErrNotFound) {
					continue // deleted meanwhile
				}
				if err != nil {
					return err
				}
				if err := tx.Messages().SetState(id, store.MessageRead, m.Reason); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
