package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/protocol"
)

// Groups is what the group routes serve; *groups.Service implements it.
type Groups interface {
	Create(ctx context.Context, name string, relays []string) (groups.Info, error)
	List(ctx context.Context) ([]groups.Summary, error)
	Show(ctx context.Context, ref string) (groups.Group, error)
	Add(ctx context.Context, ref string, contacts []string) (groups.AddResult, error)
	Remove(ctx context.Context, ref string, members []string) (groups.Info, error)
	Promote(ctx context.Context, ref string, members []string) (groups.Info, error)
	Update(ctx context.Context, ref string) (groups.Info, error)
	Leave(ctx context.Context, ref string) (groups.Info, error)
	Accept(ctx context.Context, ref string) (groups.Info, error)
	Decline(ctx context.Context, ref string) error
	Send(ctx context.Context, ref, text string) (groups.SendResult, error)
	Messages(ctx context.Context, ref string, limit int) ([]groups.Message, error)
	Page(ctx context.Context, ref string, limit int, before uint64) ([]groups.Message, error)
	MarkRead(ctx context.Context, ref string) error
	Conversations(ctx context.Context) ([]groups.Conversation, error)
	WaitState(ctx context.Context, id protocol.MessageID, want string) (groups.SendResult, error)
}

var _ Groups = (*groups.Service)(nil)

// CreateGroupRequest is the body of POST /v1/groups.
type CreateGroupRequest struct {
	Name string `json:"name"`
	// Relays are the home relays (peer IDs, or multiaddrs with /p2p/), at
	// most 2; none: the node's own relays.
	Relays []string `json:"relays,omitempty"`
}

// GroupList is the answer to GET /v1/groups.
type GroupList struct {
	Groups []groups.Summary `json:"groups"`
}

// GroupMembersRequest is the body of the routes that change members.
type GroupMembersRequest struct {
	// Members are contacts by name or user ID.
	Members []string `json:"members"`
}

// GroupSendRequest is the body of POST /v1/groups/{group}/messages.
type GroupSendRequest struct {
	Text string `json:"text"`
}

// GroupMessageList is the answer to GET /v1/groups/{group}/messages.
type GroupMessageList struct {
	Messages []groups.Message `json:"messages"`
}

// GroupReadResult is the answer to POST /v1/groups/{group}/read.
type GroupReadResult struct {
	Group string `json:"group"`
	Read  bool   `json:"read"`
}

// DeclineResult is the answer to POST /v1/groups/{group}/decline.
type DeclineResult struct {
	Group    string `json:"group"`
	Declined bool   `json:"declined"`
}

var errNoGroups = Errorf(CodeUnavailable, "groups are not available on this node")

func (s *Server) groupRoutes() []route {
	g := s.cfg.Groups
	with := func(fn func(r *http.Request) (any, error)) http.Handler {
		return s.handle(func(r *http.Request) (any, error) {
			if g == nil {
				return nil, errNoGroups
			}
			return fn(r)
		})
	}
	members := func(op func(g Groups) func(ctx context.Context, ref string, members []string) (groups.Info, error)) http.Handler {
		return with(func(r *http.Request) (any, error) {
			var req GroupMembersRequest
			if err := decodeBody(r, &req); err != nil {
				return nil, err
			}
			if len(req.Members) == 0 {
				return nil, Errorf(CodeBadRequest, "no members given")
			}
			return op(g)(r.Context(), r.PathValue("group"), req.Members)
		})
	}
	return []route{
		{"POST /v1/groups", false, with(func(r *http.Request) (any, error) {
			var req CreateGroupRequest
			if err := decodeBody(r, &req); err != nil {
				return nil, err
			}
			return g.Create(r.Context(), req.Name, req.Relays)
		})},
		{"GET /v1/groups", false, with(func(r *http.Request) (any, error) {
			list, err := g.List(r.Context())
			return GroupList{Groups: list}, err
		})},
		{"GET /v1/groups/{group}", false, with(func(r *http.Request) (any, error) {
			return g.Show(r.Context(), r.PathValue("group"))
		})},
		{"POST /v1/groups/{group}/members", false, with(func(r *http.Request) (any, error) {
			var req GroupMembersRequest
			if err := decodeBody(r, &req); err != nil {
				return nil, err
			}
			if len(req.Members) == 0 {
				return nil, Errorf(CodeBadRequest, "no members given")
			}
			return g.Add(r.Context(), r.PathValue("group"), req.Members)
		})},
		{"POST /v1/groups/{group}/remove", false, members(func(g Groups) func(context.Context, string, []string) (groups.Info, error) { return g.Remove })},
		{"POST /v1/groups/{group}/admins", false, members(func(g Groups) func(context.Context, string, []string) (groups.Info, error) { return g.Promote })},
		{"POST /v1/groups/{group}/update", false, with(func(r *http.Request) (any, error) {
			return g.Update(r.Context(), r.PathValue("group"))
		})},
		{"POST /v1/groups/{group}/leave", false, with(func(r *http.Request) (any, error) {
			return g.Leave(r.Context(), r.PathValue("group"))
		})},
		{"POST /v1/groups/{group}/accept", false, with(func(r *http.Request) (any, error) {
			return g.Accept(r.Context(), r.PathValue("group"))
		})},
		{"POST /v1/groups/{group}/decline", false, with(func(r *http.Request) (any, error) {
			ref := r.PathValue("group")
			return DeclineResult{Group: ref, Declined: true}, g.Decline(r.Context(), ref)
		})},
		{"POST /v1/groups/{group}/messages", false, with(func(r *http.Request) (any, error) {
			var req GroupSendRequest
			if err := decodeBody(r, &req); err != nil {
				return nil, err
			}
			return g.Send(r.Context(), r.PathValue("group"), req.Text)
		})},
		{"GET /v1/groups/{group}/messages", false, with(func(r *http.Request) (any, error) {
			limit := 0
			if v := r.URL.Query().Get("limit"); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 {
					return nil, Errorf(CodeBadRequest, "bad limit %q", v)
				}
				limit = n
			}
			before, err := queryInt(r, "before", 0)
			if err != nil {
				return nil, err
			}
			markRead, err := queryBool(r, "mark_read", true)
			if err != nil {
				return nil, err
			}
			// Marked first: whatever it marks read is in the answer (or in
			// an older page); a message that arrives between the two stays
			// unread.
			if markRead {
				if err := g.MarkRead(r.Context(), r.PathValue("group")); err != nil {
					return nil, err
				}
			}
			ms, err := g.Page(r.Context(), r.PathValue("group"), limit, uint64(before))
			return GroupMessageList{Messages: ms}, err
		})},
		{"POST /v1/groups/{group}/read", false, with(func(r *http.Request) (any, error) {
			ref := r.PathValue("group")
			if err := g.MarkRead(r.Context(), ref); err != nil {
				return nil, err
			}
			return GroupReadResult{Group: ref, Read: true}, nil
		})},
		{"POST /v1/groups/messages/{id}/wait", false, with(func(r *http.Request) (any, error) {
			id, err := groups.ParseMessageID(r.PathValue("id"))
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
			if req.State != groups.StateSent && req.State != groups.StateDelivered {
				return nil, Errorf(CodeBadRequest, "state must be sent or delivered")
			}
			ctx, cancel := context.WithTimeout(r.Context(), time.Duration(req.TimeoutMS)*time.Millisecond)
			defer cancel()
			res, err := g.WaitState(ctx, id, req.State)
			if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
				return nil, &Error{Code: CodeTimeout, Message: fmt.Sprintf("group message %s is %s, not %s, after %v", id, res.State, req.State, time.Duration(req.TimeoutMS)*time.Millisecond)}
			}
			return res, err
		})},
	}
}

// CreateGroup calls POST /v1/groups.
func (c *Client) CreateGroup(ctx context.Context, name string, relays []string) (groups.Info, error) {
	var out groups.Info
	err := c.do(ctx, http.MethodPost, "/v1/groups", CreateGroupRequest{Name: name, Relays: relays}, &out)
	return out, err
}

// Groups calls GET /v1/groups.
func (c *Client) Groups(ctx context.Context) ([]groups.Summary, error) {
	var out GroupList
	err := c.do(ctx, http.MethodGet, "/v1/groups", nil, &out)
	return out.Groups, err
}

func groupPath(ref string) string { return "/v1/groups/" + url.PathEscape(ref) }

// Group calls GET /v1/groups/{group}.
func (c *Client) Group(ctx context.Context, ref string) (groups.Group, error) {
	var out groups.Group
	err := c.do(ctx, http.MethodGet, groupPath(ref), nil, &out)
	return out, err
}

// AddToGroup calls POST /v1/groups/{group}/members: invite contacts.
func (c *Client) AddToGroup(ctx context.Context, ref string, contacts []string) (groups.AddResult, error) {
	var out groups.AddResult
	err := c.do(ctx, http.MethodPost, groupPath(ref)+"/members", GroupMembersRequest{Members: contacts}, &out)
	return out, err
}

// RemoveFromGroup calls POST /v1/groups/{group}/remove.
func (c *Client) RemoveFromGroup(ctx context.Context, ref string, members []string) (groups.Info, error) {
	var out groups.Info
	err := c.do(ctx, http.MethodPost, groupPath(ref)+"/remove", GroupMembersRequest{Members: members}, &out)
	return out, err
}

// PromoteInGroup calls POST /v1/groups/{group}/admins.
func (c *Client) PromoteInGroup(ctx context.Context, ref string, members []string) (groups.Info, error) {
	var out groups.Info
	err := c.do(ctx, http.MethodPost, groupPath(ref)+"/admins", GroupMembersRequest{Members: members}, &out)
	return out, err
}

// GroupAction calls POST /v1/groups/{group}/{action}: update, leave or
// accept.
func (c *Client) GroupAction(ctx context.Context, ref, action string) (groups.Info, error) {
	var out groups.Info
	err := c.do(ctx, http.MethodPost, groupPath(ref)+"/"+action, nil, &out)
	return out, err
}

// DeclineGroup calls POST /v1/groups/{group}/decline.
func (c *Client) DeclineGroup(ctx context.Context, ref string) (DeclineResult, error) {
	var out DeclineResult
	err := c.do(ctx, http.MethodPost, groupPath(ref)+"/decline", nil, &out)
	return out, err
}

// SendToGroup calls POST /v1/groups/{group}/messages.
func (c *Client) SendToGroup(ctx context.Context, ref, text string) (groups.SendResult, error) {
	var out groups.SendResult
	err := c.do(ctx, http.MethodPost, groupPath(ref)+"/messages", GroupSendRequest{Text: text}, &out)
	return out, err
}

// GroupMessages calls GET /v1/groups/{group}/messages.
func (c *Client) GroupMessages(ctx context.Context, ref string, limit int) ([]groups.Message, error) {
	var out GroupMessageList
	path := groupPath(ref) + "/messages"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out.Messages, err
}

// MarkGroupRead calls POST /v1/groups/{group}/read.
func (c *Client) MarkGroupRead(ctx context.Context, ref string) (GroupReadResult, error) {
	var out GroupReadResult
	err := c.do(ctx, http.MethodPost, groupPath(ref)+"/read", nil, &out)
	return out, err
}

// WaitGroupMessage calls POST /v1/groups/messages/{id}/wait.
func (c *Client) WaitGroupMessage(ctx context.Context, id, state string, timeout time.Duration) (groups.SendResult, error) {
	var out groups.SendResult
	err := c.do(ctx, http.MethodPost, "/v1/groups/messages/"+url.PathEscape(id)+"/wait",
		WaitRequest{State: state, TimeoutMS: timeout.Milliseconds()}, &out)
	return out, err
}
