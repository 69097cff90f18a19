package groups

import (
	"time"

	"github.com/sealpost/sealpost/node/messaging"
)

// Event types (Config.Publish).
const (
	// EventMessage: a member's text or file was committed. Data: Message.
	EventMessage = "group.message"
	// EventMember: the membership changed (added, removed, left, joined,
	// promoted, invited, declined). Data: MemberEvent.
	EventMember = "group.member"
	// EventRequest: a contact not accepted invited this node to a group;
	// accept or decline it. Data: RequestEvent.
	EventRequest = "group.request"
	// EventMessageState: an outgoing group message changed state (sent,
	// delivered); the same event type as messaging's. Data: StateEvent.
	EventMessageState = messaging.EventMessageState
	// EventRelay: a home relay of a group kept failing this node's
	// appends (HomeFailsShown rounds in a row), or took one again after
	// that (Error empty). Data: RelayEvent.
	EventRelay = "group.relay"
)

// Membership changes, as MemberEvent.Change says them.
const (
	ChangeAdded    = "added"
	ChangeRemoved  = "removed"
	ChangeLeft     = "left"
	ChangeJoined   = "joined"
	ChangePromoted = "promoted"
	ChangeInvited  = "invited"
	ChangeDeclined = "declined"
)

// Message states as the API shows them.
const (
	StateQueued    = messaging.StateQueued
	StateSent      = messaging.StateSent
	StateDelivered = messaging.StateDelivered
	StateReceived  = messaging.StateReceived
	StatePending   = "pending"
)

// Info is what Create returns.
type Info struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Epoch uint64 `json:"epoch"`
}

// Summary is one group of List.
type Summary struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Members int    `json:"members"`
	Epoch   uint64 `json:"epoch"`
	// State is active, request, joining, leaving or left.
	State string `json:"state"`
	Admin bool   `json:"admin,omitempty"`
}

// Member is a member of a group.
type Member struct {
	UserID string `json:"user_id"`
	// Name is the contact's name, or "" for a member who is no contact.
	Name   string `json:"name,omitempty"`
	Admin  bool   `json:"admin,omitempty"`
	Self   bool   `json:"self,omitempty"`
	Device string `json:"device"`
	// IdentityChanged: the contact's key changed and is not verified;
	// sending to the group waits.
	IdentityChanged bool `json:"identity_changed,omitempty"`
}

// Relay is a home relay of a group.
type Relay struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"`
	// Error says since when and why this node's appends to it fail, once
	// they failed HomeFailsShown rounds in a row (until one is taken).
	Error string `json:"error,omitempty"`
}

// Group is a group in detail (Show).
type Group struct {
	Summary
	Inviter string   `json:"inviter,omitempty"`
	Members []Member `json:"members"`
	// Invited are contacts asked to join that have not answered.
	Invited []string `json:"invited,omitempty"`
	Relays  []Relay  `json:"relays"`
	// Reason says why this node left; Error why the group cannot go on.
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
	// Authenticator is the epoch authenticator (RFC 9420 §8.7) in hex:
	// every member of the epoch holds the same; members who compare it out
	// of band know they are in the same group state.
	Authenticator string `json:"authenticator,omitempty"`
}

// Delivery is one member's delivery of an outgoing message.
type Delivery struct {
	UserID string    `json:"user_id"`
	Name   string    `json:"name,omitempty"`
	State  string    `json:"state"` // delivered or pending
	At     time.Time `json:"at,omitzero"`
}

// Message is a group message as the API shows it.
type Message struct {
	ID       string    `json:"id"`
	Group    string    `json:"group"`
	GroupID  string    `json:"group_id"`
	From     string    `json:"from"`
	FromName string    `json:"from_name,omitempty"`
	Outgoing bool      `json:"outgoing"`
	Text     string    `json:"text"`
	Seq      uint64    `json:"seq"`
	SentAt   time.Time `json:"sent_at"`
	// ReceivedAt is when it arrived here (outgoing: when it was queued).
	ReceivedAt time.Time `json:"received_at"`
	State      string    `json:"state"`
	Cursor     uint64    `json:"cursor"`
	// Members is, for an outgoing message, each member's delivery.
	Members []Delivery `json:"members,omitempty"`
	// File is the attachment of a file message (whose Text is its
	// caption, possibly empty); nil for a text.
	File *messaging.Attachment `json:"file,omitempty"`
}

// SendResult is what Send returns.
type SendResult struct {
	ID      string     `json:"id"`
	State   string     `json:"state"`
	Members []Delivery `json:"members,omitempty"`
}

// MemberEvent is the data of group.member.
type MemberEvent struct {
	Group   string `json:"group"`
	GroupID string `json:"group_id"`
	UserID  string `json:"user_id"`
	Name    string `json:"name,omitempty"`
	Change  string `json:"change"`
	Epoch   uint64 `json:"epoch"`
}

// RequestEvent is the data of group.request.
type RequestEvent struct {
	Group   string `json:"group"`
	GroupID string `json:"group_id"`
	From    string `json:"from"`
	// FromName is the inviter's contact name.
	FromName string `json:"from_name"`
}

// RelayEvent is the data of group.relay.
type RelayEvent struct {
	Group   string `json:"group"`
	GroupID string `json:"group_id"`
	Relay   string `json:"relay"`
	// Error is what Relay.Error shows; empty: the relay took an append
	// again.
	Error string `json:"error,omitempty"`
}

// StateEvent is the data of message.state for a group message.
type StateEvent struct {
	ID    string `json:"id"`
	Group string `json:"group_id"`
	State string `json:"state"`
}

// AddResult is what Add returns: the contacts invited (they join when
// they answer).
type AddResult struct {
	Invited []string `json:"invited"`
}
