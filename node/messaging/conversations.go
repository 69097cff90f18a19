package messaging

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// ConversationContact is the Kind of a conversation with one contact
// (groups add their own kind; a client shows kinds it does not know by
// Name alone).
const ConversationContact = "contact"

// MaxUnread bounds the unread messages Conversations counts in one
// conversation: a conversation with more shows MaxUnread.
const MaxUnread = 8192

// Conversation is one conversation as a list of conversations shows it.
type Conversation struct {
	// Kind is ConversationContact.
	Kind string `json:"kind"`
	// ID names the conversation in the API: the contact's user ID.
	ID string `json:"id"`
	// Name is what to show for it: the contact's name here.
	Name string `json:"name"`
	// Contact is the contact of a ConversationContact.
	Contact *Contact `json:"contact,omitempty"`
	// Last is the newest text message, in either direction; nil when
	// there is none.
	Last *Message `json:"last,omitempty"`
	// Unread is the number of received text messages not read yet (at
	// most MaxUnread).
	Unread int `json:"unread"`
	// ActiveAt is when the conversation last changed here: Last's
	// ReceivedAt, or when the contact was added.
	ActiveAt time.Time `json:"active_at"`
}

// Conversations returns every conversation, the most recently active
// first, with its newest message and its unread count. It marks nothing
// read.
func (s *Service) Conversations(ctx context.Context) ([]Conversation, error) {
	var out []Conversation
	err := s.st.View(ctx, func(tx *store.Tx) error {
		all, err := tx.Contacts().List()
		if err != nil {
			return err
		}
		out = make([]Conversation, 0, len(all))
		for i := range all {
			c := &all[i]
			ac := s.apiContact(c)
			conv := Conversation{Kind: ConversationContact, ID: ac.UserID, Name: c.Name, Contact: &ac, ActiveAt: c.CreatedAt}
			last, unread, err := s.summary(tx, c)
			if err != nil {
				return err
			}
			if last != nil {
				conv.Last = last
				conv.ActiveAt = last.ReceivedAt
			}
			conv.Unread = unread
			out = append(out, conv)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b Conversation) int {
		if c := b.ActiveAt.Compare(a.ActiveAt); c != 0 {
			return c
		}
		var ac, bc uint64
		if a.Last != nil {
			ac = a.Last.Cursor
		}
		if b.Last != nil {
			bc = b.Last.Cursor
		}
		return cmp.Compare(bc, ac)
	})
	return out, nil
}

// summary reads a conversation from its newest message back: the newest
// text message, and the received text messages not read yet. It stops at
// a received message that is read (everything older was read then, as
// markRead assumes) once it has the newest text, or after MaxUnread
// messages.
func (s *Service) summary(tx *store.Tx, c *store.Contact) (*Message, int, error) {
	var (
		last   *Message
		unread int
		seen   int
		before uint64
	)
	const page = 64
	for seen < MaxUnread {
		batch, err := tx.Messages().List(c.UserID, page, before)
		if err != nil {
			return nil, 0, err
		}
		for i := len(batch) - 1; i >= 0; i-- {
			m := &batch[i]
			seen++
			if !shown(m.Kind) {
				continue
			}
			if last == nil {
				am := s.apiMessage(tx, m, c)
				last = &am
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
	return last, min(unread, MaxUnread), nil
}

// MarkRead marks the conversation with nameOrUserID read, as Messages
// does, without reading it: every received message becomes read, and a
// read receipt goes to an accepted contact. A client that shows the
// messages as they arrive (message.received) calls it while the
// conversation is in view. ErrUnknownContact if there is no such contact.
func (s *Service) MarkRead(ctx context.Context, nameOrUserID string) error {
	_, err := s.markRead(ctx, nameOrUserID, map[protocol.MessageID]bool{})
	return err
}
