package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sealpost/sealpost/node/messaging"
)

// contactPath is the path of a contact's routes: the name or user ID as one
// escaped path segment (dots escaped too, so that "." and ".." stay names).
func contactPath(nameOrUserID string, rest string) string {
	return "/v1/contacts/" + strings.ReplaceAll(url.PathEscape(nameOrUserID), ".", "%2E") + rest
}

// Invite calls POST /v1/invites: a new invite link.
func (c *Client) Invite(ctx context.Context) (messaging.Invite, error) {
	var inv messaging.Invite
	err := c.do(ctx, http.MethodPost, "/v1/invites", nil, &inv)
	return inv, err
}

// RevokeInvite calls POST /v1/invites/revoke: a first message that presents
// the link's secret later arrives as a message request.
func (c *Client) RevokeInvite(ctx context.Context, link string) (RevokeResult, error) {
	var res RevokeResult
	err := c.do(ctx, http.MethodPost, "/v1/invites/revoke", InviteRequest{Link: link}, &res)
	return res, err
}

// AddContact calls POST /v1/contacts: add the inviter of link under name
// (empty: the invite's display name, made unique).
func (c *Client) AddContact(ctx context.Context, link, name string) (messaging.Contact, error) {
	var ct messaging.Contact
	err := c.do(ctx, http.MethodPost, "/v1/contacts", AddContactRequest{Link: link, Name: name}, &ct)
	return ct, err
}

// Contacts calls GET /v1/contacts: every contact, by name.
func (c *Client) Contacts(ctx context.Context) ([]messaging.Contact, error) {
	var list ContactList
	err := c.do(ctx, http.MethodGet, "/v1/contacts", nil, &list)
	return list.Contacts, err
}

// Contact calls GET /v1/contacts/{contact}: the contact with that name or
// user ID.
func (c *Client) Contact(ctx context.Context, nameOrUserID string) (messaging.Contact, error) {
	var ct messaging.Contact
	err := c.do(ctx, http.MethodGet, contactPath(nameOrUserID, ""), nil, &ct)
	return ct, err
}

// Verify calls POST /v1/contacts/{contact}/verify: mark the contact
// verified, or accept its new identity key; safetyNumber, if not empty,
// must match.
func (c *Client) Verify(ctx context.Context, nameOrUserID, safetyNumber string) (messaging.Contact, error) {
	var ct messaging.Contact
	err := c.do(ctx, http.MethodPost, contactPath(nameOrUserID, "/verify"), VerifyRequest{SafetyNumber: safetyNumber}, &ct)
	return ct, err
}

// Accept calls POST /v1/contacts/{contact}/accept: accept a message
// request (an accepted contact stays as it is).
func (c *Client) Accept(ctx context.Context, nameOrUserID string) (messaging.Contact, error) {
	var ct messaging.Contact
	err := c.do(ctx, http.MethodPost, contactPath(nameOrUserID, "/accept"), nil, &ct)
	return ct, err
}

// RemoveContact calls DELETE /v1/contacts/{contact}: delete the contact (or
// request), its sessions and its conversation.
func (c *Client) RemoveContact(ctx context.Context, nameOrUserID string) (RemoveResult, error) {
	var res RemoveResult
	err := c.do(ctx, http.MethodDelete, contactPath(nameOrUserID, ""), nil, &res)
	return res, err
}

// DeleteMessage calls DELETE /v1/messages/{id}: delete one message from
// this node.
func (c *Client) DeleteMessage(ctx context.Context, id string) (DeleteMessageResult, error) {
	var res DeleteMessageResult
	err := c.do(ctx, http.MethodDelete, "/v1/messages/"+url.PathEscape(id), nil, &res)
	return res, err
}

// DeleteConversation calls DELETE /v1/contacts/{contact}/messages: delete
// every message of the conversation from this node; the contact stays.
func (c *Client) DeleteConversation(ctx context.Context, nameOrUserID string) (DeleteConversationResult, error) {
	var res DeleteConversationResult
	err := c.do(ctx, http.MethodDelete, contactPath(nameOrUserID, "/messages"), nil, &res)
	return res, err
}

// Send calls POST /v1/messages: encrypt text for the contact and queue it.
// It returns the message ID and the state queued; delivery goes on in the
// daemon.
func (c *Client) Send(ctx context.Context, to, text string) (messaging.SendResult, error) {
	var res messaging.SendResult
	err := c.do(ctx, http.MethodPost, "/v1/messages", SendRequest{To: to, Text: text}, &res)
	return res, err
}

// WaitState calls POST /v1/messages/{id}/wait: wait up to timeout (at most
// MaxWait) until the outgoing message id is in state (sent, delivered or
// read) or later. When the time runs out it returns an *Error with
// CodeTimeout.
func (c *Client) WaitState(ctx context.Context, id, state string, timeout time.Duration) (messaging.SendResult, error) {
	var res messaging.SendResult
	ms := max(timeout.Milliseconds(), 1)
	err := c.do(ctx, http.MethodPost, "/v1/messages/"+url.PathEscape(id)+"/wait", WaitRequest{State: state, TimeoutMS: ms}, &res)
	return res, err
}

// Messages calls GET /v1/contacts/{contact}/messages: the last limit text
// messages of the conversation (limit 0: all), oldest first, each given to
// fn as it is read. The daemon marks the conversation read.
func (c *Client) Messages(ctx context.Context, nameOrUserID string, limit int, fn func(messaging.Message) error) error {
	return c.MessagesBefore(ctx, nameOrUserID, 0, limit, fn)
}

// MessagesBefore is Messages for the page of the conversation before the
// message with cursor before (0: the end): to page back, pass the Cursor
// of the first message of the page before.
func (c *Client) MessagesBefore(ctx context.Context, nameOrUserID string, before uint64, limit int, fn func(messaging.Message) error) error {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	if before > 0 {
		q.Set("before", fmt.Sprint(before))
	}
	path := contactPath(nameOrUserID, "/messages")
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.request(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxMessageLine)
	for sc.Scan() {
		var m messaging.Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return fmt.Errorf("api: decode messages: %w", err)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if broken(err) {
			return stopped(err)
		}
		return fmt.Errorf("api: read messages: %w", err)
	}
	return nil
}

// MarkRead calls POST /v1/contacts/{contact}/read: mark the conversation
// read (and send the read receipts) without reading it.
func (c *Client) MarkRead(ctx context.Context, nameOrUserID string) (ReadResult, error) {
	var res ReadResult
	err := c.do(ctx, http.MethodPost, contactPath(nameOrUserID, "/read"), nil, &res)
	return res, err
}

// Conversations calls GET /v1/conversations: every conversation, the most
// recently active first, with its last message and unread count.
func (c *Client) Conversations(ctx context.Context) ([]Conversation, error) {
	var list ConversationList
	err := c.do(ctx, http.MethodGet, "/v1/conversations", nil, &list)
	return list.Conversations, err
}

// Inbox calls GET /v1/inbox: received text messages committed after the
// cursor after (0: from the first), at most limit (0: the daemon's page,
// MaxInboxPage), and the cursor to continue from.
func (c *Client) Inbox(ctx context.Context, after uint64, limit int) (InboxPage, error) {
	q := url.Values{}
	q.Set("after", fmt.Sprint(after))
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var page InboxPage
	err := c.do(ctx, http.MethodGet, "/v1/inbox?"+q.Encode(), nil, &page)
	return page, err
}

// AllInbox reads the inbox after the cursor after to its end, page by page,
// giving each message to fn, and returns the cursor to continue from.
func (c *Client) AllInbox(ctx context.Context, after uint64, fn func(messaging.Message) error) (uint64, error) {
	for {
		page, err := c.Inbox(ctx, after, 0)
		if err != nil {
			return after, err
		}
		for _, m := range page.Messages {
			if err := fn(m); err != nil {
				return after, err
			}
			after = max(after, m.Cursor)
		}
		after = max(after, page.Cursor)
		if len(page.Messages) == 0 {
			// An empty page: the daemon scanned to the end.
			return after, nil
		}
	}
}
