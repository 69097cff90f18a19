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
			out.File = &messaging.Attachment{ID: out.ID, Name: p.File.Name, Size: p.File.Size, MIME: p.File.MIME,
				State: store.FileQueued.String()}
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
		if err := g.canSend(ctx); err != nil {
			return err
		}
		if err := s.read(id[:]); err != nil {
			return err
		}
		return g.sendOwn(&protocol.Plaintext{ID: id, Kind: protocol.KindText, Text: text})
	})
	if err != nil {
		return SendResult{}, err
	}
	return SendResult{ID: id.String(), State: StateQueued}, nil
}

// canSend checks that this node may send to the group now: it is an
// active member, and no member's identity key changed unconfirmed.
func (g *group) canSend(ctx context.Context) error {
	if g.mg == nil || !g.mg.Active() {
		return fmt.Errorf("%w: %s", ErrNotMember, g.rec.Name)
	}
	others := g.others()
	return g.s.st.View(ctx, func(tx *store.Tx) error {
		for _, u := range others {
			c, err := tx.Contacts().Get(u)
			if err == nil && c.IdentityChanged {
				return fmt.Errorf("%w: %s", ErrUntrustedIdentity, c.Name)
			}
		}
		return nil
	})
}

// sendOwn encrypts p (a text or a file, with its ID) for the group,
// queues it and stores it as an outgoing message to every other member.
func (g *group) sendOwn(p *protocol.Plaintext) error {
	s := g.s
	b := g.newBatch()
	if err := g.encryptOut(b, p); err != nil {
		return err
	}
	body := []byte(p.Text)
	if p.Kind == protocol.KindFile {
		var err error
		if body, err = p.Marshal(); err != nil {
			return err
		}
	}
	m := store.Message{ID: p.ID, Group: g.id, Peer: s.self, Outgoing: true, Seq: p.Seq, Kind: uint8(p.Kind),
		Body: body, SentAt: time.UnixMilli(p.SentAt), ReceivedAt: s.clock.Now(), State: store.MessageQueued}
	gid, id, others := g.id, p.ID, g.others()
	b.fn = append(b.fn, func(tx *store.Tx) error {
		if err := tx.Messages().Put(&m); err != nil {
			return err
		}
		return tx.Groups().AddRecipients(gid, id, others)
	})
	g.flush(b)
	return nil
}

// FileTarget is a group a file may be sent to (node/files): its ID, its
// home relays with its log on each, and its current epoch with that
// epoch's token, which the homes check an upload against.
type FileTarget struct {
	ID    protocol.GroupID
	Homes []protocol.GroupHome
	Epoch uint64
	Token protocol.GroupToken
}

// FileTarget resolves group ref for sending a file, with the refusals of
// Send: ErrUnknownGroup, ErrNotMember, ErrUntrustedIdentity.
func (s *Service) FileTarget(ctx context.Context, ref string) (FileTarget, error) {
	g, err := s.lookup(ctx, ref)
	if err != nil {
		return FileTarget{}, err
	}
	var t FileTarget
	err = g.do(ctx, func() error {
		if err := g.canSend(ctx); err != nil {
			return err
		}
		t = FileTarget{ID: g.id, Epoch: g.mg.Epoch(), Token: g.token}
		for i := range g.rec.Homes {
			t.Homes = append(t.Homes, g.home(i))
		}
		return nil
	})
	return t, err
}

// SendFile queues the group message of kind file that carries pointer f
// and caption, under message ID id (node/files made the pointer, and
// recorded the file under id). Queuing an ID that is already a message is
// a success that queues nothing.
func (s *Service) SendFile(ctx context.Context, group protocol.GroupID, id protocol.MessageID, caption string, f *protocol.File) error {
	g, err := s.lookup(ctx, group.String())
	if err != nil {
		return err
	}
	return g.do(ctx, func() error {
		err := s.st.View(ctx, func(tx *store.Tx) error {
			_, err := tx.Messages().Get(id)
			return err
		})
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := g.canSend(ctx); err != nil {
			return err
		}
		return g.sendOwn(&protocol.Plaintext{ID: id, Kind: protocol.KindFile, Text: caption, File: f})
	})
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
	out := s.apiMessage(m, group, ds)
	if out.File != nil {
		if f, err := tx.Files().Get(m.ID); err == nil {
			out.File.State = f.Shown(m.State).String()
		}
	}
	return out, nil
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
