package groups

import (
	"context"

	"github.com/sealpost/sealpost/node/messaging"
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
// message. Group messages have no read state: Unread is 0.
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
			last, err := tx.Messages().ListGroup(r.ID, 1, 0)
			if err != nil {
				return err
			}
			if len(last) == 1 {
				m := s.apiMessage(&last[0], r.Name, nil)
				c.Last = &messaging.Message{
					ID: m.ID, From: m.From, FromName: m.FromName, Outgoing: m.Outgoing, Text: m.Text, Seq: m.Seq,
					SentAt: m.SentAt, ReceivedAt: m.ReceivedAt, State: m.State, Cursor: m.Cursor,
					Group: m.Group, GroupID: m.GroupID,
				}
				if m.ReceivedAt.After(c.ActiveAt) {
					c.ActiveAt = m.ReceivedAt
				}
			}
			out = append(out, c)
		}
		return nil
	})
	return out, err
}
