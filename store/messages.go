package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
)

// MessageState is where a message is in its life. Outgoing messages go
// queued -> sent -> delivered -> read, or to failed; incoming ones are
// received and then read.
type MessageState uint8

const (
	MessageQueued    MessageState = 1 // outgoing, not yet stored by anyone
	MessageSent      MessageState = 2 // stored by the peer or at least one relay
	MessageDelivered MessageState = 3 // end-to-end delivery receipt received
	MessageRead      MessageState = 4 // read receipt received, or (incoming) read here
	MessageFailed    MessageState = 5 // outgoing, failing (Reason says why); still retried
	MessageReceived  MessageState = 6 // incoming, not yet read
)

func (s MessageState) valid() bool { return s >= MessageQueued && s <= MessageReceived }

// String returns the state's name as the CLI and API show it.
func (s MessageState) String() string {
	switch s {
	case MessageQueued:
		return "queued"
	case MessageSent:
		return "sent"
	case MessageDelivered:
		return "delivered"
	case MessageRead:
		return "read"
	case MessageFailed:
		return "failed"
	case MessageReceived:
		return "received"
	}
	return fmt.Sprintf("MessageState(%d)", uint8(s))
}

// MaxBodyLen bounds a stored message body.
const MaxBodyLen = 1 << 20

// MaxReasonLen bounds a failure reason or an error text.
const MaxReasonLen = 1024

// Message is one message of a conversation, in either direction.
type Message struct {
	ID protocol.MessageID
	// Peer is the other party: the conversation. In a group, the sender
	// (this node's own user ID for outgoing messages).
	Peer identity.UserID
	// Group is the group of a group message (zero for a conversation
	// with Peer): the message is listed with the group's (ListGroup), not
	// with Peer's.
	Group    protocol.GroupID
	Outgoing bool
	// Seq is the sender's sequence number in the conversation.
	Seq uint64
	// Kind is the plaintext kind (protocol/ defines the values).
	Kind uint8
	Body []byte
	// SentAt is the sender's claim; ReceivedAt the local time of arrival
	// (or of queueing, for outgoing messages).
	SentAt     time.Time
	ReceivedAt time.Time
	State      MessageState
	Reason     string
	// Order is assigned by the store when the message is first put: local,
	// strictly increasing, never reused, and visible in commit order (a
	// reader that has seen Order n never later finds a new message with a
	// smaller Order).
	Order uint64
}

// Message records are version 1, or version 2 with Group (a group
// message).
const (
	messageVersion      = 1
	groupMessageVersion = 2
)

func (m *Message) validate() error {
	if !m.State.valid() {
		return fmt.Errorf("message: %w: state %d", ErrInvalid, m.State)
	}
	if len(m.Body) > MaxBodyLen || len(m.Reason) > MaxReasonLen {
		return fmt.Errorf("message: %w: field too long", ErrInvalid)
	}
	return nil
}

func (m *Message) marshal() []byte {
	v := byte(messageVersion)
	if !m.Group.IsZero() {
		v = groupMessageVersion
	}
	e := newEnc(v, 128+len(m.Body)+len(m.Reason))
	e.fixed(m.ID[:])
	e.fixed(m.Peer[:])
	e.bool(m.Outgoing)
	e.uvarint(m.Seq)
	e.u8(m.Kind)
	e.bytes(m.Body)
	e.time(m.SentAt)
	e.time(m.ReceivedAt)
	e.u8(uint8(m.State))
	e.str(m.Reason)
	e.uvarint(m.Order)
	if v == groupMessageVersion {
		e.fixed(m.Group[:])
	}
	return e.b
}

func (m *Message) unmarshal(b []byte) error {
	d, v := newDec("message", b, messageVersion, groupMessageVersion)
	d.fixed(m.ID[:])
	d.fixed(m.Peer[:])
	m.Outgoing = d.bool()
	m.Seq = d.uvarint()
	m.Kind = d.u8()
	m.Body = d.bytes(MaxBodyLen)
	m.SentAt = d.time()
	m.ReceivedAt = d.time()
	m.State = MessageState(d.u8())
	m.Reason = d.str(MaxReasonLen)
	m.Order = d.uvarint()
	if v == groupMessageVersion {
		d.fixed(m.Group[:])
	}
	if err := d.finish("message"); err != nil {
		return err
	}
	if !m.State.valid() {
		return fmt.Errorf("decode message: %w: state %d", ErrCorrupt, m.State)
	}
	return nil
}

func messageKey(id protocol.MessageID) []byte { return key(tMessage, id[:]) }

func messageConvKey(peer identity.UserID, order uint64) []byte {
	o := u64Key(order)
	return key(tMessageByConv, peer[:], o[:])
}

func messageGroupKey(g protocol.GroupID, order uint64) []byte {
	o := u64Key(order)
	return key(tMessageByGroup, g[:], o[:])
}

// listKey is the key of m in the index of its conversation or group.
func (m *Message) listKey() []byte {
	if !m.Group.IsZero() {
		return messageGroupKey(m.Group, m.Order)
	}
	return messageConvKey(m.Peer, m.Order)
}

func messageOrderKey(order uint64) []byte {
	o := u64Key(order)
	return key(tMessageByOrd, o[:])
}

// messageOrderCounter is the counter that assigns Message.Order.
const messageOrderCounter = "store.message.order"

// Messages is the table of messages, indexed by conversation and by Order.
type Messages struct{ tx *Tx }

// Messages returns the message table.
func (tx *Tx) Messages() Messages { return Messages{tx} }

// Get returns the message with ID id, or ErrNotFound.
func (s Messages) Get(id protocol.MessageID) (Message, error) {
	var m Message
	b, err := s.tx.get(messageKey(id))
	if errors.Is(err, ErrNotFound) {
		return m, notFound("message", id)
	}
	if err != nil {
		return m, err
	}
	err = m.unmarshal(b)
	return m, err
}

// Put stores m. A new message gets the next Order (written back to
// m.Order); a message whose ID exists replaces it and keeps its Order and
// conversation. Concurrent Updates that add messages conflict on the order
// counter and are retried by the backend.
func (s Messages) Put(m *Message) error {
	if err := m.validate(); err != nil {
		return err
	}
	old, err := s.Get(m.ID)
	switch {
	case err == nil:
		m.Order = old.Order
		m.Peer = old.Peer
		m.Group = old.Group
		return s.tx.set(messageKey(m.ID), m.marshal())
	case !errors.Is(err, ErrNotFound):
		return err
	}
	order, err := s.tx.Counters().Next(messageOrderCounter)
	if err != nil {
		return err
	}
	m.Order = order
	if err := s.tx.set(m.listKey(), m.ID[:]); err != nil {
		return err
	}
	if err := s.tx.set(messageOrderKey(order), m.ID[:]); err != nil {
		return err
	}
	return s.tx.set(messageKey(m.ID), m.marshal())
}

// SetState sets the state and reason of message id; ErrNotFound if missing.
func (s Messages) SetState(id protocol.MessageID, state MessageState, reason string) error {
	m, err := s.Get(id)
	if err != nil {
		return err
	}
	m.State = state
	m.Reason = reason
	if err := m.validate(); err != nil {
		return err
	}
	return s.tx.set(messageKey(id), m.marshal())
}

// List returns up to limit messages of the conversation with peer whose
// Order is below before (0: no bound), the newest ones, in ascending
// Order. To page back, pass the Order of the first message returned.
// limit <= 0 means no limit.
func (s Messages) List(peer identity.UserID, limit int, before uint64) ([]Message, error) {
	var hi []byte
	if before != 0 {
		hi = messageConvKey(peer, before)
	}
	return s.listIndex(key(tMessageByConv, peer[:]), hi, limit)
}

// Oldest returns up to limit messages of the conversation with peer whose
// Order is above after (0: from the start), the oldest ones, in ascending
// Order; limit <= 0 means no limit. To page forward, pass the Order of the
// last message returned.
func (s Messages) Oldest(peer identity.UserID, after uint64, limit int) ([]Message, error) {
	prefix := key(tMessageByConv, peer[:])
	var out []Message
	err := s.tx.scan(messageConvKey(peer, after+1), prefixEnd(prefix), false, func(k, v []byte) error {
		if len(v) != len(protocol.MessageID{}) {
			return fmt.Errorf("message index: %w", ErrCorrupt)
		}
		m, err := s.Get(protocol.MessageID(v))
		if err != nil {
			return fmt.Errorf("message index: %w", err)
		}
		out = append(out, m)
		if limit > 0 && len(out) >= limit {
			return errStop
		}
		return nil
	})
	return out, err
}

// ListGroup returns up to limit messages of group g whose Order is below
// before (0: no bound), the newest ones, in ascending Order; limit <= 0
// means no limit.
func (s Messages) ListGroup(g protocol.GroupID, limit int, before uint64) ([]Message, error) {
	var hi []byte
	if before != 0 {
		hi = messageGroupKey(g, before)
	}
	return s.listIndex(key(tMessageByGroup, g[:]), hi, limit)
}

// listIndex returns up to limit messages of the index entries under
// prefix below hi (nil: no bound), the last ones, in ascending order.
func (s Messages) listIndex(prefix, hi []byte, limit int) ([]Message, error) {
	if hi == nil {
		hi = prefixEnd(prefix)
	}
	var ids []protocol.MessageID
	err := s.tx.scan(prefix, hi, true, func(k, v []byte) error {
		if len(v) != len(protocol.MessageID{}) {
			return fmt.Errorf("message index: %w", ErrCorrupt)
		}
		ids = append(ids, protocol.MessageID(v))
		if limit > 0 && len(ids) >= limit {
			return errStop
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Message, len(ids))
	for i, id := range ids {
		m, err := s.Get(id)
		if err != nil {
			return nil, fmt.Errorf("message index: %w", err)
		}
		out[len(ids)-1-i] = m
	}
	return out, nil
}

// Since returns up to limit messages of every conversation whose Order is
// above after, in ascending Order (limit <= 0: no limit). A follower
// passes the Order of the last message it has seen.
func (s Messages) Since(after uint64, limit int) ([]Message, error) {
	if after == math.MaxUint64 {
		return nil, nil
	}
	var out []Message
	err := s.tx.scan(messageOrderKey(after+1), prefixEnd([]byte{tMessageByOrd}), false, func(k, v []byte) error {
		if len(v) != len(protocol.MessageID{}) {
			return fmt.Errorf("message index: %w", ErrCorrupt)
		}
		m, err := s.Get(protocol.MessageID(v))
		if err != nil {
			return fmt.Errorf("message index: %w", err)
		}
		out = append(out, m)
		if limit > 0 && len(out) >= limit {
			return errStop
		}
		return nil
	})
	return out, err
}

// Delete removes one message; a missing one is not an error.
func (s Messages) Delete(id protocol.MessageID) error {
	m, err := s.Get(id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.tx.del(m.listKey()); err != nil {
		return err
	}
	if err := s.tx.del(messageOrderKey(m.Order)); err != nil {
		return err
	}
	return s.tx.del(messageKey(m.ID))
}

func (s Messages) delete(id protocol.MessageID, peer identity.UserID, order uint64) error {
	if err := s.tx.del(messageConvKey(peer, order)); err != nil {
		return err
	}
	if err := s.tx.del(messageOrderKey(order)); err != nil {
		return err
	}
	return s.tx.del(messageKey(id))
}

// DeleteConversation deletes up to limit messages of the conversation with
// peer (the oldest first; limit <= 0: all) and returns how many it
// deleted. A backend commits a bounded number of writes per transaction
// (ErrTxnTooBig), so a long conversation is deleted in several Updates,
// each with a limit of a few thousand, until it returns 0.
func (s Messages) DeleteConversation(peer identity.UserID, limit int) (int, error) {
	type entry struct {
		id    protocol.MessageID
		order uint64
	}
	var victims []entry
	err := s.tx.scanPrefix(key(tMessageByConv, peer[:]), false, func(k, v []byte) error {
		if len(v) != len(protocol.MessageID{}) || len(k) != 1+32+8 {
			return fmt.Errorf("message index: %w", ErrCorrupt)
		}
		victims = append(victims, entry{protocol.MessageID(v), binary.BigEndian.Uint64(k[33:])})
		if limit > 0 && len(victims) >= limit {
			return errStop
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, e := range victims {
		if err := s.delete(e.id, peer, e.order); err != nil {
			return 0, err
		}
	}
	return len(victims), nil
}

// MoveConversation moves up to limit messages of the conversation with from
// (the oldest first; limit <= 0: all) to the conversation with to, keeping
// each message's ID and Order, and returns how many it moved. A node uses
// it when a contact's verified identity changes, so that the history stays
// one conversation. Like DeleteConversation, call it in several Updates
// with a limit of a few thousand until it returns 0.
func (s Messages) MoveConversation(from, to identity.UserID, limit int) (int, error) {
	if from == to {
		return 0, nil
	}
	type entry struct {
		id    protocol.MessageID
		order uint64
	}
	var moving []entry
	err := s.tx.scanPrefix(key(tMessageByConv, from[:]), false, func(k, v []byte) error {
		if len(v) != len(protocol.MessageID{}) || len(k) != 1+32+8 {
			return fmt.Errorf("message index: %w", ErrCorrupt)
		}
		moving = append(moving, entry{protocol.MessageID(v), binary.BigEndian.Uint64(k[33:])})
		if limit > 0 && len(moving) >= limit {
			return errStop
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, e := range moving {
		m, err := s.Get(e.id)
		if err != nil {
			return 0, fmt.Errorf("message index: %w", err)
		}
		m.Peer = to
		if err := s.tx.del(messageConvKey(from, e.order)); err != nil {
			return 0, err
		}
		if err := s.tx.set(messageConvKey(to, e.order), e.id[:]); err != nil {
			return 0, err
		}
		if err := s.tx.set(messageKey(e.id), m.marshal()); err != nil {
			return 0, err
		}
	}
	return len(moving), nil
}
