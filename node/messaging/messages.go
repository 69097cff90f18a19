package messaging

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Send encrypts text once for the contact nameOrUserID and commits the
// ciphertext, the new session state and the message (state queued) in one
// transaction; delivery continues in the background, with retries, across
// restarts. Without a session that can send, it first fetches the
// contact's current bundle from its device or, if the device does not
// answer, from the contact's relays (ErrUnreachable if neither has it).
// Refusals: ErrUnknownContact,
// ErrUntrustedIdentity (the contact's key changed), ErrNotAccepted (a
// request), ErrEmptyMessage, ErrTooLong.
func (s *Service) Send(ctx context.Context, nameOrUserID, text string) (SendResult, error) {
	if text == "" || !utf8.ValidString(text) {
		return SendResult{}, ErrEmptyMessage
	}
	if len(text) > MaxText {
		return SendResult{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLong, len(text), MaxText)
	}
	id, err := s.queueNew(ctx, nameOrUserID, jobWeight(1, len(text)), nil, outgoing{kind: kindText, text: text})
	if err != nil {
		return SendResult{}, err
	}
	return SendResult{ID: id.String(), State: StateQueued}, nil
}

// SendGroupControl sends a group control (a step of joining a group, for
// node/groups) to the contact uid, as Send does a text: encrypted once,
// committed, delivered in the background. A contact in state request gets
// it only with toRequest (its user accepted the group it invited to).
// Refusals as for Send.
func (s *Service) SendGroupControl(ctx context.Context, uid identity.UserID, c *protocol.GroupControl, toRequest bool) (protocol.MessageID, error) {
	if err := c.Validate(); err != nil {
		return protocol.MessageID{}, err
	}
	return s.queueNew(ctx, uid.String(), jobWeight(1, protocol.MaxGroupControl), nil, outgoing{kind: kindGroup, group: c, toRequest: toRequest})
}

// Bounds of one transaction of markRead: a conversation with more unread
// messages is marked read in several.
const (
	markReadBatch = 1024
	markReadBytes = 256 << 10
)

// Messages returns the last limit text messages of the conversation with
// nameOrUserID (limit <= 0: all), oldest first, and marks the
// conversation read: every received message becomes read, and a read
// receipt goes to an accepted contact. Within the window, each sender's
// messages are in sequence order and Gap tells how many of its sequence
// numbers are missing before a message.
func (s *Service) Messages(ctx context.Context, nameOrUserID string, limit int) ([]Message, error) {
	return s.MessagesBefore(ctx, nameOrUserID, 0, limit)
}

// MessagesBefore is Messages for one page of a long conversation: the
// last limit text messages whose Cursor is below before (0: no bound).
// To page back, pass the Cursor of the first message returned; a page
// shorter than limit is the start of the conversation. It marks the
// conversation read, as Messages does.
func (s *Service) MessagesBefore(ctx context.Context, nameOrUserID string, before uint64, limit int) ([]Message, error) {
	out, uid, err := s.page(ctx, nameOrUserID, before, limit)
	if err != nil {
		return nil, err
	}
	marked := map[protocol.MessageID]bool{}
	_, err = s.markRead(ctx, uid.String(), marked)
	if errors.Is(err, store.ErrDiskFull) {
		// Shown all the same; what is not marked stays unread until there
		// is room.
		err = nil
	}
	if err != nil {
		return nil, err
	}
	for i := range out {
		id, _ := ParseMessageID(out[i].ID)
		if marked[id] {
			out[i].State = StateRead
		}
	}
	return out, nil
}

// Page is MessagesBefore without marking anything read: a client that
// shows the page first and marks the conversation read afterwards
// (MarkRead) need not wait for the marking, which writes every unread
// message of the conversation.
func (s *Service) Page(ctx context.Context, nameOrUserID string, before uint64, limit int) ([]Message, error) {
	out, _, err := s.page(ctx, nameOrUserID, before, limit)
	return out, err
}

// page reads the page of MessagesBefore and returns it with the contact's
// user ID.
func (s *Service) page(ctx context.Context, nameOrUserID string, before uint64, limit int) ([]Message, identity.UserID, error) {
	var (
		out   []Message
		uid   identity.UserID
		c     store.Contact
		start bool // the window reaches the start of the conversation
	)
	err := s.st.View(ctx, func(tx *store.Tx) error {
		w := newWork(s, tx, s.clock.Now())
		e, err := w.lookup(nameOrUserID)
		if err != nil {
			return err
		}
		c, uid = e.c, e.c.UserID
		var msgs []store.Message // texts, and the other kinds received
		texts := 0
		page := 256
		if limit > 0 {
			page = max(limit, 16)
		}
		for {
			batch, err := tx.Messages().List(uid, page, before)
			if err != nil {
				return err
			}
			for i := len(batch) - 1; i >= 0 && (limit <= 0 || texts < limit); i-- {
				if shown(batch[i].Kind) {
					texts++
				} else if batch[i].Outgoing {
					continue
				}
				msgs = append(msgs, batch[i])
			}
			if len(batch) < page {
				start = true
				break
			}
			if limit > 0 && texts >= limit {
				break
			}
			before = batch[0].Order
		}
		slices.Reverse(msgs)
		out = s.window(tx, msgs, &c, start)
		return nil
	})
	return out, uid, err
}

// window orders a conversation's messages for display: the received ones
// are put in sequence order among the positions they hold, and each gets
// its gap (counting the receipts and cards received, which take sequence
// numbers too). It returns the text messages.
func (s *Service) window(tx *store.Tx, msgs []store.Message, c *store.Contact, start bool) []Message {
	var pos []int
	for i := range msgs {
		if !msgs[i].Outgoing {
			pos = append(pos, i)
		}
	}
	in := make([]store.Message, len(pos))
	for i, p := range pos {
		in[i] = msgs[p]
	}
	slices.SortStableFunc(in, func(a, b store.Message) int { return cmp.Compare(a.Seq, b.Seq) })
	for i, p := range pos {
		msgs[p] = in[i]
	}
	out := make([]Message, 0, len(msgs))
	var prev uint64
	first := true
	for i := range msgs {
		m := &msgs[i]
		var gap uint64
		if !m.Outgoing {
			switch {
			case !first && m.Seq > prev+1:
				gap = m.Seq - prev - 1
			case first && start && m.Seq > 1:
				gap = m.Seq - 1
			}
			prev, first = m.Seq, false
		}
		if shown(m.Kind) {
			am := s.apiMessage(tx, m, c)
			am.Gap = gap
			out = append(out, am)
		}
	}
	return out
}

// markRead marks every received message of the conversation with
// nameOrUserID read, adds their IDs to marked, and queues read receipts
// for them. It finds the unread messages first, from the newest back to
// one already read (everything older was read then), and marks them the
// oldest first, in transactions of at most markReadBatch messages and
// markReadBytes of bodies, each durable with its receipts before the next
// begins: stopped at any point, what is read is older than what is not,
// so the next call goes on where this one stopped. It returns the
// contact; ErrUnknownContact if there is none.
func (s *Service) markRead(ctx context.Context, nameOrUserID string, marked map[protocol.MessageID]bool) (store.Contact, error) {
	var (
		c      store.Contact
		unread []protocol.MessageID
	)
	err := s.st.View(ctx, func(tx *store.Tx) error {
		w := newWork(s, tx, s.clock.Now())
		e, err := w.lookup(nameOrUserID)
		if err != nil {
			return err
		}
		c, unread = e.c, nil
		const page = 256
		before := uint64(0)
		for {
			batch, err := tx.Messages().List(c.UserID, page, before)
			if err != nil {
				return err
			}
			for i := len(batch) - 1; i >= 0; i-- {
				m := &batch[i]
				if m.Outgoing || !shown(m.Kind) {
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
		return store.Contact{}, err
	}
	slices.Reverse(unread)
	for len(unread) > 0 {
		var (
			ids  []protocol.MessageID
			done int
		)
		chunk := unread[:min(len(unread), markReadBatch)]
		j, err := s.submit(ctx, false, jobWeight(len(chunk), markReadBytes), func(w *work) error {
			ids, done = nil, 0
			size := 0
			for _, id := range chunk {
				if size >= markReadBytes {
					break
				}
				done++
				m, err := w.tx.Messages().Get(id)
				if isNotFound(err) {
					continue // deleted meanwhile
				}
				if err != nil {
					return err
				}
				if m.State != store.MessageReceived {
					continue // marked meanwhile
				}
				m.State = store.MessageRead
				if err := w.tx.Messages().Put(&m); err != nil {
					return err
				}
				ids = append(ids, id)
				size += len(m.Body)
			}
			if err := w.queueReceipts(c.UserID, kindRead, ids); err != nil {
				return fmt.Errorf("mark %s read: %w", c.Name, err)
			}
			return nil
		})
		if err == nil {
			err = s.await(j)
		}
		if err != nil {
			return store.Contact{}, err
		}
		for _, id := range ids {
			marked[id] = true
		}
		unread = unread[done:]
	}
	return c, nil
}

// Inbox returns up to limit received text messages (limit <= 0: all), of
// conversations and of groups (with Group set), committed after the
// message with cursor after (0: from the start), in the order they were
// committed, and the cursor to continue from. It does not mark anything
// read. Messages from a message request have Request set.
func (s *Service) Inbox(ctx context.Context, after uint64, limit int) ([]Message, uint64, error) {
	var out []Message
	next := after
	err := s.st.View(ctx, func(tx *store.Tx) error {
		contacts := map[identity.UserID]*store.Contact{}
		groups := map[protocol.GroupID]string{}
		const page = 512
		for limit <= 0 || len(out) < limit {
			batch, err := tx.Messages().Since(next, page)
			if err != nil {
				return err
			}
			for i := range batch {
				m := &batch[i]
				next = m.Order
				if m.Outgoing || !shown(m.Kind) {
					continue
				}
				c, ok := contacts[m.Peer]
				if !ok {
					if cc, err := tx.Contacts().Get(m.Peer); err == nil {
						c = &cc
					} else if !isNotFound(err) {
						return err
					}
					contacts[m.Peer] = c
				}
				msg := s.apiMessage(tx, m, c)
				if !m.Group.IsZero() {
					g, ok := groups[m.Group]
					if !ok {
						gg, err := tx.Groups().Get(m.Group)
						if err != nil && !isNotFound(err) {
							return err
						}
						g, groups[m.Group] = gg.Name, gg.Name
					}
					msg.Group, msg.GroupID, msg.Request = g, m.Group.String(), false
				}
				out = append(out, msg)
				if limit > 0 && len(out) >= limit {
					return nil
				}
			}
			if len(batch) < page {
				return nil
			}
		}
		return nil
	})
	return out, next, err
}

// Name returns the display name of this node's user.
func (s *Service) Name() string { return s.name }
