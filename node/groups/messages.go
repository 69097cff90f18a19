package groups

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// contactName returns the name of contact u, the own name for this node,
// or "".
func (s *Service) contactName(u identity.UserID) string {
	if u == s.self {
		return s.cfg.Messaging.Name()
	}
	var name string
	_ = s.st.View(s.ctx, func(tx *store.Tx) error {
		if c, err := tx.Contacts().Get(u); err == nil {
			name = c.Name
		}
		return nil
	})
	return name
}

// apiMessage converts a stored group message.
func (s *Service) apiMessage(m *store.Message, group string, deliveries []Delivery) Message {
	out := Message{
		ID: m.ID.String(), Group: group, GroupID: m.Group.String(), From: m.Peer.String(), Outgoing: m.Outgoing,
		Seq: m.Seq, SentAt: m.SentAt, ReceivedAt: m.ReceivedAt, State: m.State.String(), Cursor: m.Order,
		Members: deliveries,
	}
	if m.Kind == uint8(protocol.KindFile) {
		var p protocol.Plaintext
		if p.Unmarshal(m.Body) == nil && p.File != nil {
			out.Text = p.Text
		}
	} else {
		out.Text = string(m.Body)
	}
	out.FromName = s.contactName(m.Peer)
	return out
}

// Send encrypts text once for group ref and queues it: it goes to the home
// relays, then to the members online. Refusals: ErrNotMember,
// ErrUntrustedIdentity (a member's key changed), ErrEmptyMessage,
// ErrTooLong.
func (s *Service) Send(ctx context.Context, ref, text string) (SendResult, error) {
	if text == "" || !utf8.ValidString(text) {
		return SendResult{}, ErrEmptyMessage
	}
	if len(text) > MaxText {
		return SendResult{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLong, len(text), MaxText)
	}
	g, err := s.lookup(ctx, ref)
	if err != nil {
		return SendResult{}, err
	}
	var id protocol.MessageID
	err = g.do(ctx, func() error {
		if g.mg == nil || !g.mg.Active() {
			return fmt.Errorf("%w: %s", ErrNotMember, g.rec.Name)
		}
		others := g.others()
		err := s.st.View(ctx, func(tx *store.Tx) error {
			for _, u := range others {
				c, err := tx.Contacts().Get(u)
				if err == nil && c.IdentityChanged {
					return fmt.Errorf("%w: %s", ErrUntrustedIdentity, c.Name)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := s.read(id[:]); err != nil {
			return err
		}
		p := protocol.Plaintext{ID: id, Kind: protocol.KindText, Text: text}
		b := g.newBatch()
		if err := g.encryptOut(b, &p); err != nil {
			return err
		}
		m := store.Message{ID: id, Group: g.id, Peer: s.self, Outgoing: true, Seq: p.Seq, Kind: uint8(protocol.KindText),
			Body: []byte(text), SentAt: time.UnixMilli(p.SentAt), ReceivedAt: s.clock.Now(), State: store.MessageQueued}
		gid := g.id
		b.fn = append(b.fn, func(tx *store.Tx) error {
			if err := tx.Messages().Put(&m); err != nil {
				return err
			}
			return tx.Groups().AddRecipients(gid, id, others)
		})
		g.flush(b)
		return nil
	})
	if err != nil {
		return SendResult{}, err
	}
	return SendResult{ID: id.String(), State: StateQueued}, nil
}

// ParseMessageID parses a message ID's text form.
func ParseMessageID(s string) (protocol.MessageID, error) {
	id, err := messaging.ParseMessageID(s)
	if err != nil {
		return id, fmt.Errorf("%w: %q", ErrUnknownMessage, s)
	}
	return id, nil
}

// WaitState waits until the outgoing group message id is sent or
// delivered (want), and returns it with each member's delivery. ctx's end
// returns ctx's error with the message as it is.
func (s *Service) WaitState(ctx context.Context, id protocol.MessageID, want string) (SendResult, error) {
	rank := map[string]int{StateSent: 1, StateDelivered: 2}[want]
	if rank == 0 {
		return SendResult{}, fmt.Errorf("groups: cannot wait for state %q", want)
	}
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return SendResult{}, ErrClosed
	}
	s.waiters[id] = append(s.waiters[id], ch)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.waiters[id] = slices.DeleteFunc(s.waiters[id], func(c chan struct{}) bool { return c == ch })
		if len(s.waiters[id]) == 0 {
			delete(s.waiters, id)
		}
		s.mu.Unlock()
	}()
	for {
		m, err := s.message(ctx, id)
		if err != nil {
			return SendResult{}, err
		}
		res := SendResult{ID: m.ID, State: m.State, Members: m.Members}
		r := map[string]int{StateSent: 1, StateDelivered: 2, messaging.StateRead: 3}[m.State]
		if !m.Outgoing || r >= rank {
			return res, nil
		}
		select {
		case _, ok := <-ch:
			if !ok {
				return res, ErrClosed
			}
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
}

// message reads one group message with its deliveries.
func (s *Service) message(ctx context.Context, id protocol.MessageID) (Message, error) {
	var out Message
	err := s.st.View(ctx, func(tx *store.Tx) error {
		m, err := tx.Messages().Get(id)
		if errors.Is(err, store.ErrNotFound) || err == nil && m.Group.IsZero() {
			return fmt.Errorf("%w: %s", ErrUnknownMessage, id)
		}
		if err != nil {
			return err
		}
		out, err = s.messageIn(tx, &m, "")
		return err
	})
	return out, err
}

// messageIn converts m, with its deliveries if it is outgoing.
func (s *Service) messageIn(tx *store.Tx, m *store.Message, group string) (Message, error) {
	if group == "" {
		if r, err := tx.Groups().Get(m.Group); err == nil {
			group = r.Name
		}
	}
	var ds []Delivery
	if m.Outgoing {
		all, err := tx.Groups().Deliveries(m.ID)
		if err != nil {
			return Message{}, err
		}
		for _, d := range all {
			x := Delivery{UserID: d.Member.String(), State: StatePending, At: d.At}
			if !d.At.IsZero() {
				x.State = StateDelivered
			}
			if c, err := tx.Contacts().Get(d.Member); err == nil {
				x.Name = c.Name
			}
			ds = append(ds, x)
		}
	}
	return s.apiMessage(m, group, ds), nil
}

// Messages returns the last limit messages of group ref (limit <= 0:
// all), oldest first, the outgoing ones with each member's delivery.
func (s *Service) Messages(ctx context.Context, ref string, limit int) ([]Message, error) {
	return s.Page(ctx, ref, limit, 0)
}

// Page returns the last limit messages of group ref (limit <= 0: all)
// whose Cursor is below before (0: the newest), oldest first, as Messages
// does: a client pages back with the first message's Cursor.
func (s *Service) Page(ctx context.Context, ref string, limit int, before uint64) ([]Message, error) {
	g, err := s.lookup(ctx, ref)
	if err != nil {
		return nil, err
	}
	out := []Message{}
	err = s.st.View(ctx, func(tx *store.Tx) error {
		r, err := tx.Groups().Get(g.id)
		if err != nil {
			return err
		}
		ms, err := tx.Messages().ListGroup(g.id, limit, before)
		if err != nil {
			return err
		}
		for i := range ms {
			m, err := s.messageIn(tx, &ms[i], r.Name)
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}
