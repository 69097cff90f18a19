package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/protocol"
)

// Messaging is what the messaging routes serve; *messaging.Service (the
// node's, node.Node.Messaging) implements it. The methods and the errors
// they return are documented in package node/messaging; the sentinels
// table maps those errors to codes.
type Messaging interface {
	Invite(ctx context.Context) (messaging.Invite, error)
	RevokeInvite(ctx context.Context, link string) error
	AddContact(ctx context.Context, link, name string) (messaging.Contact, error)
	Contacts(ctx context.Context) ([]messaging.Contact, error)
	Contact(ctx context.Context, nameOrUserID string) (messaging.Contact, error)
	Verify(ctx context.Context, nameOrUserID, safetyNumber string) (messaging.Contact, error)
	Accept(ctx context.Context, nameOrUserID string) (messaging.Contact, error)
	Remove(ctx context.Context, nameOrUserID string) error
	DeleteMessage(ctx context.Context, id string) error
	DeleteConversation(ctx context.Context, nameOrUserID string) (int, error)
	Send(ctx context.Context, nameOrUserID, text string) (messaging.SendResult, error)
	MessagesBefore(ctx context.Context, nameOrUserID string, before uint64, limit int) ([]messaging.Message, error)
	Page(ctx context.Context, nameOrUserID string, before uint64, limit int) ([]messaging.Message, error)
	MarkRead(ctx context.Context, nameOrUserID string) error
	Conversations(ctx context.Context) ([]messaging.Conversation, error)
	Inbox(ctx context.Context, after uint64, limit int) ([]messaging.Message, uint64, error)
	WaitState(ctx context.Context, id protocol.MessageID, want string) (string, error)
}

var _ Messaging = (*messaging.Service)(nil)

// Limits of the messaging routes.
const (
	// MaxSendBody bounds the body of POST /v1/messages: a text of
	// messaging.MaxText bytes in which every byte is escaped as \u00XX.
	MaxSendBody = 6*messaging.MaxText + 4096
	// MaxInboxPage is the most messages GET /v1/inbox answers at once;
	// maxInboxBytes bounds the JSON of one answer (at least one message is
	// sent, however large), so that it fits the client's response limit.
	MaxInboxPage  = 1000
	maxInboxBytes = 4 << 20
	// MaxWait bounds the timeout of POST /v1/messages/{id}/wait.
	MaxWait = 10 * time.Minute
	// maxMessageLine bounds one line of GET /v1/contacts/{contact}/messages
	// as the client reads it: a message whose text is escaped throughout,
	// with the other fields.
	maxMessageLine = 6*messaging.MaxText + 16<<10
)

// ContactList is the body of GET /v1/contacts.
type ContactList struct {
	Contacts []messaging.Contact `json:"contacts"`
}

// ConversationList is the body of GET /v1/conversations.
type ConversationList struct {
	// Conversations are the most recently active first: contacts' and
	// groups'.
	Conversations []Conversation `json:"conversations"`
}

// Conversation is one entry of GET /v1/conversations: a contact's (Kind
// contact, with Contact) or a group's (Kind group, with Group).
type Conversation = groups.Conversation

// ReadResult is the answer to POST /v1/contacts/{contact}/read.
type ReadResult struct {
	Contact string `json:"contact"`
	Read    bool   `json:"read"`
}

// InviteRequest is the body of POST /v1/invites/revoke.
type InviteRequest struct {
	Link string `json:"link"`
}

// RevokeResult is the answer to POST /v1/invites/revoke.
type RevokeResult struct {
	Link    string `json:"link"`
	Revoked bool   `json:"revoked"`
}

// AddContactRequest is the body of POST /v1/contacts.
type AddContactRequest struct {
	// Link is the invite link (sealpost://...).
	Link string `json:"link"`
	// Name is the contact's name here; empty: the invite's display name,
	// made unique.
	Name string `json:"name,omitempty"`
}

// VerifyRequest is the body of POST /v1/contacts/{contact}/verify.
type VerifyRequest struct {
	// SafetyNumber, if given, must be the contact's (spaces ignored).
	SafetyNumber string `json:"safety_number,omitempty"`
}

// RemoveResult is the answer to DELETE /v1/contacts/{contact}.
type RemoveResult struct {
	Contact string `json:"contact"`
	Removed bool   `json:"removed"`
}

// DeleteMessageResult is the answer to DELETE /v1/messages/{id}.
type DeleteMessageResult struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}

// DeleteConversationResult is the answer to DELETE
// /v1/contacts/{contact}/messages: how many messages were deleted.
type DeleteConversationResult struct {
	Contact string `json:"contact"`
	Deleted int    `json:"deleted"`
}

// SendRequest is the body of POST /v1/messages.
type SendRequest struct {
	// To is the contact's name or user ID.
	To   string `json:"to"`
	Text string `json:"text"`
}

// WaitRequest is the body of POST /v1/messages/{id}/wait.
type WaitRequest struct {
	// State is sent, delivered or read; a later state counts too.
	State string `json:"state"`
	// TimeoutMS bounds the wait in milliseconds: 1 to MaxWait.
	TimeoutMS int64 `json:"timeout_ms"`
}

// InboxPage is the answer to GET /v1/inbox.
type InboxPage struct {
	// Messages are the received text messages after the cursor asked
	// for, in the order they were committed.
	Messages []messaging.Message `json:"messages"`
	// Cursor is where the next page starts (the after parameter); it is
	// the cursor asked for when there is nothing new.
	Cursor uint64 `json:"cursor"`
}

// errNoMessaging answers the messaging routes of a server without a
// messaging service.
var errNoMessaging = Errorf(CodeUnavailable, "messaging is not running on this node")

func (s *Server) messagingRoutes() []route {
	m := s.cfg.Messaging
	with := func(fn func(r *http.Request) (any, error)) http.Handler {
		return s.handle(func(r *http.Request) (any, error) {
			if m == nil {
				return nil, errNoMessaging
			}
			return fn(r)
		})
	}
	return []route{
		{"POST /v1/invites", false, with(func(r *http.Request) (any, error) {
			return m.Invite(r.Context())
		})},
		{"POST /v1/invites/revoke", false, with(func(r *http.Request) (any, error) {
			var req InviteRequest
			if err := decodeBody(r, &req); err != nil {
				return nil, err
			}
			if err := m.RevokeInvite(r.Context(), req.Link); err != nil {
				return nil, err
			}
			return RevokeResult{Link: req.Link, Revoked: true}, nil
		})},
		{"GET /v1/contacts", false, with(func(r *http.Request) (any, error) {
			list, err := m.Contacts(r.Context())
			if err != nil {
				return nil, err
			}
			if list == nil {
				list = []messaging.Contact{}
			}
			return ContactList{Contacts: list}, nil
		})},
		{"POST /v1/contacts", false, with(func(r *http.Request) (any, error) {
			var req AddContactRequest
			if err := decodeBody(r, &req); err != nil {
				return nil, err
			}
			return m.AddContact(r.Context(), req.Link, req.Name)
		})},
		{"GET /v1/contacts/{contact}", false, with(func(r *http.Request) (any, error) {
			return m.Contact(r.Context(), r.PathValue("contact"))
		})},
		{"DELETE /v1/contacts/{contact}", false, with(func(r *http.Request) (any, error) {
			name := r.PathValue("contact")
			if err := m.Remove(r.Context(), name); err != nil {
				return nil, err
			}
			return RemoveResult{Contact: name, Removed: true}, nil
		})},
		{"POST /v1/contacts/{contact}/verify", false, with(func(r *http.Request) (any, error) {
			var req VerifyRequest
			if err := decodeBody(r, &req); err != nil {
				return nil, err
			}
			return m.Verify(r.Context(), r.PathValue("contact"), req.SafetyNumber)
		})},
		{"POST /v1/contacts/{contact}/accept", false, with(func(r *http.Request) (any, error) {
			return m.Accept(r.Context(), r.PathValue("contact"))
		})},
		{"GET /v1/contacts/{contact}/messages", false, http.HandlerFunc(s.messages)},
		{"DELETE /v1/contacts/{contact}/messages", false, with(func(r *http.Request) (any, error) {
			name := r.PathValue("contact")
			n, err := m.DeleteConversation(r.Context(), name)
			if err != nil {
				return nil, err
			}
			return DeleteConversationResult{Contact: name, Deleted: n}, nil
		})},
		{"POST /v1/contacts/{contact}/read", false, with(func(r *http.Request) (any, error) {
			name := r.PathValue("contact")
			if err := m.MarkRead(r.Context(), name); err != nil {
				return nil, err
			}
			return ReadResult{Contact: name, Read: true}, nil
		})},
		{"GET /v1/conversations", false, with(func(r *http.Request) (any, error) {
			return s.conversations(r.Context())
		})},
		{"POST /v1/messages", false, with(func(r *http.Request) (any, error) {
			var req SendRequest
			if err := decodeBodyLimit(r, &req, MaxSendBody); err != nil {
				return nil, err
			}
			return m.Send(r.Context(), req.To, req.Text)
		})},
		{"DELETE /v1/messages/{id}", false, with(func(r *http.Request) (any, error) {
			id := r.PathValue("id")
			if err := m.DeleteMessage(r.Context(), id); err != nil {
				return nil, err
			}
			return DeleteMessageResult{ID: id, Deleted: true}, nil
		})},
		{"POST /v1/messages/{id}/wait", false, with(s.wait)},
		{"GET /v1/inbox", false, with(s.inbox)},
	}
}

// messages answers GET /v1/contacts/{contact}/messages?limit=N&before=CURSOR
// with one JSON message a line (application/x-ndjson), oldest first, and
// marks the conversation read (unless mark_read=false).
func (s *Server) messages(w http.ResponseWriter, r *http.Request) {
	m := s.cfg.Messaging
	if m == nil {
		s.writeError(w, errNoMessaging)
		return
	}
	limit, err := queryInt(r, "limit", 0)
	if err != nil {
		s.writeError(w, err)
		return
	}
	before, err := queryInt(r, "before", 0)
	if err != nil {
		s.writeError(w, err)
		return
	}
	markRead, err := queryBool(r, "mark_read", true)
	if err != nil {
		s.writeError(w, err)
		return
	}
	read := m.MessagesBefore
	if !markRead {
		read = m.Page
	}
	msgs, err := read(r.Context(), r.PathValue("contact"), uint64(before), int(limit))
	if err != nil {
		s.writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	for i := range msgs {
		if err := enc.Encode(&msgs[i]); err != nil {
			return
		}
	}
}

// inbox answers GET /v1/inbox?after=CURSOR&limit=N.
func (s *Server) inbox(r *http.Request) (any, error) {
	after, err := queryInt(r, "after", 0)
	if err != nil {
		return nil, err
	}
	limit, err := queryInt(r, "limit", MaxInboxPage)
	if err != nil {
		return nil, err
	}
	if limit == 0 || limit > MaxInboxPage {
		limit = MaxInboxPage
	}
	msgs, next, err := s.cfg.Messaging.Inbox(r.Context(), uint64(after), int(limit))
	if err != nil {
		return nil, err
	}
	// Keep the answer inside maxInboxBytes; the cursor then continues
	// after the last message sent. Each message is encoded once, here.
	page := inboxAnswer{Messages: make([]json.RawMessage, 0, len(msgs)), Cursor: next}
	size := 0
	for i := range msgs {
		b, err := json.Marshal(&msgs[i])
		if err != nil {
			return nil, err
		}
		size += len(b)
		if size > maxInboxBytes && i > 0 {
			page.Cursor = msgs[i-1].Cursor
			break
		}
		page.Messages = append(page.Messages, b)
	}
	return page, nil
}

// inboxAnswer is an InboxPage as the server sends it: its messages encoded
// already, while it measured them.
type inboxAnswer struct {
	Messages []json.RawMessage `json:"messages"`
	Cursor   uint64            `json:"cursor"`
}

// wait answers POST /v1/messages/{id}/wait.
func (s *Server) wait(r *http.Request) (any, error) {
	id, err := messaging.ParseMessageID(r.PathValue("id"))
	if err != nil {
		return nil, Errorf(CodeBadRequest, "bad message ID %q: want 32 hex digits", r.PathValue("id"))
	}
	var req WaitRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.TimeoutMS < 1 || req.TimeoutMS > MaxWait.Milliseconds() {
		return nil, Errorf(CodeBadRequest, "timeout_ms must be between 1 and %d", MaxWait.Milliseconds())
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(req.TimeoutMS)*time.Millisecond)
	defer cancel()
	state, err := s.cfg.Messaging.WaitState(ctx, id, req.State)
	if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
		return nil, &Error{Code: CodeTimeout, Message: fmt.Sprintf("message %s is %s, not %s, after %v", id, state, req.State, time.Duration(req.TimeoutMS)*time.Millisecond)}
	}
	if err != nil {
		return nil, err
	}
	return messaging.SendResult{ID: id.String(), State: state}, nil
}

// conversations answers GET /v1/conversations: the contacts' and, on a
// node with groups, the groups', the most recently active first (a
// contact's before a group's at the same instant).
func (s *Server) conversations(ctx context.Context) (any, error) {
	contacts, err := s.cfg.Messaging.Conversations(ctx)
	if err != nil {
		return nil, err
	}
	var gs []Conversation
	if s.cfg.Groups != nil {
		if gs, err = s.cfg.Groups.Conversations(ctx); err != nil {
			return nil, err
		}
	}
	list := make([]Conversation, 0, len(contacts)+len(gs))
	for _, c := range contacts {
		list = append(list, Conversation{Conversation: c})
	}
	list = append(list, gs...)
	slices.SortStableFunc(list, func(a, b Conversation) int { return b.ActiveAt.Compare(a.ActiveAt) })
	return ConversationList{Conversations: list}, nil
}

// queryBool reads a boolean query parameter, true or false (def if
// absent).
func queryBool(r *http.Request, name string, def bool) (bool, error) {
	switch v := r.URL.Query().Get(name); v {
	case "":
		return def, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	default:
		return false, Errorf(CodeBadRequest, "%s must be true or false, not %q", name, v)
	}
}

// queryInt reads a non-negative integer query parameter (def if absent).
func queryInt(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, Errorf(CodeBadRequest, "%s must be a non-negative integer, not %q", name, v)
	}
	return n, nil
}
