package messaging

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Event types this service publishes (Config.Publish).
const (
	// EventMessageReceived: a text or file message was committed. Data:
	// Message.
	EventMessageReceived = "message.received"
	// EventMessageState: an outgoing message changed state (sent,
	// delivered, read, failed). Data: StateEvent.
	EventMessageState = "message.state"
	// EventContactRequest: a stranger's first message arrived; it waits in
	// a contact in state request. Data: ContactEvent.
	EventContactRequest = "contact.request"
	// EventIdentityChanged: a known contact, device or name presented a
	// new identity key. Data: IdentityEvent.
	EventIdentityChanged = "identity.changed"
)

// Limits of the API.
const (
	// MaxText is the longest text Send takes, in bytes of UTF-8.
	MaxText = protocol.MaxText
	// MaxName is the longest contact name, in bytes of UTF-8.
	MaxName = protocol.MaxName
)

// Message states as the API shows them.
const (
	StateQueued    = "queued"
	StateSent      = "sent"
	StateDelivered = "delivered"
	StateRead      = "read"
	StateFailed    = "failed"
	StateReceived  = "received"
)

// ParseMessageID parses the text form of a message ID (protocol.MessageID's
// String: 32 lowercase hex digits).
func ParseMessageID(s string) (protocol.MessageID, error) {
	var id protocol.MessageID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%w: message ID %q", ErrUnknownMessage, s)
	}
	copy(id[:], b)
	return id, nil
}

// Message is one text message as the API shows it (DESIGN.md §6).
type Message struct {
	ID string `json:"id"`
	// From is the sender's user ID (this node's own for outgoing
	// messages) and FromName the sender's name (the contact's name, or the
	// own display name).
	From     string `json:"from"`
	FromName string `json:"from_name"`
	// Peer and PeerName are the other party of the conversation.
	Peer     string `json:"peer"`
	PeerName string `json:"peer_name"`
	Outgoing bool   `json:"outgoing"`
	Text     string `json:"text"`
	// Seq is the sender's sequence number in the conversation.
	Seq uint64 `json:"seq"`
	// SentAt is the sender's clock (a claim); ReceivedAt this node's when
	// the message arrived (for outgoing ones: when it was queued).
	SentAt     time.Time `json:"sent_at"`
	ReceivedAt time.Time `json:"received_at"`
	State      string    `json:"state"`
	// Reason says why a message failed (it is still retried).
	Reason string `json:"reason,omitempty"`
	// Request marks a message from a contact not accepted yet.
	Request bool `json:"request,omitempty"`
	// Gap is the number of the sender's sequence numbers missing right
	// before this message (not received, or not yet): gaps are shown, not
	// hidden.
	Gap uint64 `json:"gap,omitempty"`
	// Cursor orders messages as they were committed here; Inbox takes it
	// to continue after a message.
	Cursor uint64 `json:"cursor"`
	// Via is how the message arrived (ViaDirect, ViaRelayed, ViaMailbox),
	// in message.received only (it is not stored).
	Via string `json:"via,omitempty"`
	// File is the attachment of a file message (whose Text is its
	// caption, possibly empty); nil for a text.
	File *Attachment `json:"file,omitempty"`
	// Group is the name of the group of a group message, GroupID its ID
	// (node/groups); Peer and From are then its sender.
	Group   string `json:"group,omitempty"`
	GroupID string `json:"group_id,omitempty"`
}

// Attachment is the file a message carries, as the API shows it
// (node/files has the rest: progress, sources, the content).
type Attachment struct {
	// ID names the file: it is its message's ID.
	ID string `json:"id"`
	// Name is the sender's file name (may be empty); a claim, checked to
	// be a base name, never a path.
	Name string `json:"name"`
	Size int64  `json:"size"`
	MIME string `json:"mime"`
	// State is queued, sent, delivered (outgoing), downloading, saved
	// (incoming) or failed.
	State string `json:"state"`
}

// StateEvent is the data of message.state.
type StateEvent struct {
	ID     string `json:"id"`
	Peer   string `json:"peer"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// ContactEvent is the data of contact.request.
type ContactEvent struct {
	Name   string `json:"name"`
	UserID string `json:"user_id"`
}

// IdentityEvent is the data of identity.changed.
type IdentityEvent struct {
	Name string `json:"name"`
	// UserID is the identity the contact is pinned to; NewUserID the one
	// it presented.
	UserID    string `json:"user_id"`
	NewUserID string `json:"new_user_id"`
}

// Contact is a contact as the API shows it.
type Contact struct {
	Name   string `json:"name"`
	UserID string `json:"user_id"`
	// State is "accepted" or "request".
	State    string `json:"state"`
	Verified bool   `json:"verified"`
	// SafetyNumber is the 60-digit safety number of this node's identity
	// and the contact's, in groups of 5.
	SafetyNumber string `json:"safety_number"`
	// IdentityChanged is set when the contact presented a new identity
	// (PendingUserID, with its safety number) that Verify must accept
	// before sending resumes.
	IdentityChanged     bool   `json:"identity_changed,omitempty"`
	PendingUserID       string `json:"pending_user_id,omitempty"`
	PendingSafetyNumber string `json:"pending_safety_number,omitempty"`
	// DeviceID is the contact's device (libp2p peer ID).
	DeviceID string `json:"device_id,omitempty"`
	// DisplayName is the name the contact gives itself in its card.
	DisplayName string    `json:"display_name,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// Invite is a new invite.
type Invite struct {
	// Link is the one-line sealpost:// link.
	Link string `json:"link"`
	// ExpiresAt is when the bundle the link pins gets too old.
	ExpiresAt time.Time `json:"expires_at"`
}

// SendResult is what Send returns.
type SendResult struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

// apiMessage converts a stored text or file message, read in tx; c is the
// contact of its conversation (nil if there is none).
func (s *Service) apiMessage(tx *store.Tx, m *store.Message, c *store.Contact) Message {
	out := Message{
		ID:         m.ID.String(),
		Peer:       m.Peer.String(),
		Outgoing:   m.Outgoing,
		Text:       string(m.Body),
		Seq:        m.Seq,
		SentAt:     m.SentAt,
		ReceivedAt: m.ReceivedAt,
		State:      m.State.String(),
		Reason:     m.Reason,
		Cursor:     m.Order,
	}
	if c != nil {
		out.PeerName = c.Name
		out.Request = c.State == store.ContactRequest && !m.Outgoing
	}
	if m.Outgoing {
		out.From, out.FromName = s.uid.String(), s.name
	} else {
		out.From, out.FromName = out.Peer, out.PeerName
	}
	if m.Kind == kindFile {
		out.File = &Attachment{ID: out.ID, State: store.FileQueued.String()}
		if f, err := tx.Files().Get(m.ID); err == nil {
			out.File.Name, out.File.Size, out.File.MIME = f.Name, int64(f.Size), f.MIME
			out.File.State = f.Shown(m.State).String()
		}
	}
	return out
}

// apiContact converts a stored contact.
func (s *Service) apiContact(c *store.Contact) Contact {
	uid := c.UserID
	out := Contact{
		Name:         c.Name,
		UserID:       uid.String(),
		State:        c.State.String(),
		Verified:     c.Verified,
		SafetyNumber: identity.NewSafetyNumber(s.uid, uid).String(),
		CreatedAt:    c.CreatedAt,
	}
	if len(c.Device) > 0 {
		out.DeviceID = peerString(c.Device)
	}
	if len(c.Card) > 0 {
		var card protocol.Card
		if card.Unmarshal(c.Card) == nil {
			out.DisplayName = card.Name
		}
	}
	if c.IdentityChanged {
		out.IdentityChanged = true
		if p, err := identity.ParsePublic(c.PendingIdentity); err == nil {
			out.PendingUserID = p.UserID().String()
			out.PendingSafetyNumber = identity.NewSafetyNumber(s.uid, p.UserID()).String()
		}
	}
	return out
}

// ValidName checks a contact name a user chose: 1 to MaxName bytes of
// UTF-8 without control or bidirectional formatting characters, without
// white space at either end, and not of the form of a user ID (which
// Contact and the other lookups also accept). It returns an error wrapping
// ErrInvalidName.
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > MaxName:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidName, MaxName)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: not UTF-8", ErrInvalidName)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%w: white space at an end", ErrInvalidName)
	}
	for _, r := range name {
		if unicode.IsControl(r) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) ||
			r == 0x200E || r == 0x200F || r == 0x061C {
			return fmt.Errorf("%w: control character %U", ErrInvalidName, r)
		}
	}
	if _, err := identity.ParseUserID(name); err == nil {
		return fmt.Errorf("%w: it has the form of a user ID", ErrInvalidName)
	}
	return nil
}

// displayName makes a name that ValidName accepts out of s (a display
// name from a card or the node's own), at most max bytes; "" if nothing is
// left.
func displayName(s string, max int) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "") {
		if unicode.IsControl(r) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) ||
			r == 0x200E || r == 0x200F || r == 0x061C {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	out := strings.TrimSpace(b.String())
	if ValidName(out) != nil {
		return ""
	}
	return out
}

// waiters wakes WaitState calls when a message's state changes.
type waiters struct {
	mu     sync.Mutex
	m      map[protocol.MessageID][]chan struct{}
	closed bool
}

func newWaiters() *waiters { return &waiters{m: map[protocol.MessageID][]chan struct{}{}} }

func (w *waiters) register(id protocol.MessageID) chan struct{} {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		close(ch)
		return ch
	}
	w.m[id] = append(w.m[id], ch)
	return ch
}

func (w *waiters) unregister(id protocol.MessageID, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.m[id]
	for i, c := range l {
		if c == ch {
			l = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(w.m, id)
	} else {
		w.m[id] = l
	}
}

func (w *waiters) notify(id protocol.MessageID, _ store.MessageState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ch := range w.m[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (w *waiters) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for _, l := range w.m {
		for _, ch := range l {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// WaitState waits until the outgoing message id has reached want (sent,
// delivered or read; a later state counts too) and returns the state it
// found. It returns ctx's error when ctx ends first (the API maps a
// deadline to exit code 7), ErrUnknownMessage for an ID it does not hold,
// and ErrBadState for another want.
func (s *Service) WaitState(ctx context.Context, id protocol.MessageID, want string) (string, error) {
	var rank int
	switch want {
	case StateSent:
		rank = 1
	case StateDelivered:
		rank = 2
	case StateRead:
		rank = 3
	default:
		return "", fmt.Errorf("%w: %q", ErrBadState, want)
	}
	sid := id
	ch := s.waiters.register(sid)
	defer s.waiters.unregister(sid, ch)
	for {
		var m store.Message
		err := s.st.View(ctx, func(tx *store.Tx) error {
			var err error
			m, err = tx.Messages().Get(sid)
			return err
		})
		if err != nil {
			if isNotFound(err) {
				return "", fmt.Errorf("%w: %s", ErrUnknownMessage, id)
			}
			return "", err
		}
		if !m.Outgoing || stateRank(m.State) >= rank {
			return m.State.String(), nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return m.State.String(), ctx.Err()
		case <-s.ctx.Done():
			return m.State.String(), ErrClosed
		}
	}
}
