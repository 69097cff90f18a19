package groups

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/mls"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
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

// memberEvent returns a function that emits a group.member event.
func (g *group) memberEvent(u identity.UserID, change string, epoch uint64) func() {
	name := g.rec.Name
	return func() {
		g.s.publish(EventMember, MemberEvent{Group: name, GroupID: g.id.String(), UserID: u.String(),
			Name: g.s.contactName(u), Change: change, Epoch: epoch})
	}
}

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

// ParseGroupID parses a group ID's text form (64 hex digits).
func ParseGroupID(s string) (protocol.GroupID, bool) {
	var id protocol.GroupID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, false
	}
	copy(id[:], b)
	return id, true
}

// lookup finds a group by ID or name.
func (s *Service) lookup(ctx context.Context, ref string) (*group, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if id, ok := ParseGroupID(ref); ok {
		g := s.groups[id]
		s.mu.Unlock()
		if g == nil {
			return nil, fmt.Errorf("%w: %s", ErrUnknownGroup, ref)
		}
		return g, nil
	}
	s.mu.Unlock()
	var found []protocol.GroupID
	err := s.st.View(ctx, func(tx *store.Tx) error {
		all, err := tx.Groups().List()
		for _, r := range all {
			if r.Name == ref {
				found = append(found, r.ID)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w: %q", ErrUnknownGroup, ref)
	case 1:
	default:
		return nil, fmt.Errorf("%w: %q (use its ID)", ErrAmbiguous, ref)
	}
	s.mu.Lock()
	g := s.groups[found[0]]
	s.mu.Unlock()
	if g == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownGroup, ref)
	}
	return g, nil
}

// checkName checks a group name (the rules of contact names).
func checkName(name string) error {
	if err := messaging.ValidName(name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidName, err)
	}
	return nil
}

// Create makes a group with this node as its only member and admin, on
// the given home relays (peer IDs, or multiaddrs with /p2p/; at most
// protocol.MaxHomeRelays; none: the node's own relays), and creates its
// log on each.
func (s *Service) Create(ctx context.Context, name string, relays []string) (Info, error) {
	if err := checkName(name); err != nil {
		return Info{}, err
	}
	homes, err := s.homes(ctx, relays)
	if err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	n := len(s.groups) + s.creating
	if n >= MaxGroups {
		s.mu.Unlock()
		return Info{}, fmt.Errorf("%w: %d groups", ErrTooMany, MaxGroups)
	}
	s.creating++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.creating--
		s.mu.Unlock()
	}()
	var id protocol.GroupID
	if err := s.read(id[:]); err != nil {
		return Info{}, err
	}
	for i := range homes {
		if err := s.read(homes[i].Log[:]); err != nil {
			return Info{}, err
		}
	}
	meta := &protocol.GroupMeta{Name: name, Admins: []identity.UserID{s.self}, Homes: homes}
	exts, err := metaExtensions(meta)
	if err != nil {
		return Info{}, err
	}
	cfg := s.mlsCfg
	cfg.ValidateProposal = func(mls.ProposalCheck) error { return errors.New("no proposals yet") }
	mg, err := mls.NewGroup(cfg, id[:], s.cred, s.sigKey, mls.GroupOptions{Extensions: exts}, s.rand())
	if err != nil {
		return Info{}, fmt.Errorf("groups: create: %w", err)
	}
	tok, err := mg.Export(protocol.GroupTokenLabel, nil, protocol.GroupTokenSize)
	if err != nil {
		return Info{}, err
	}
	for i := range homes {
		c, err := s.relays.conn(ctx, &homes[i])
		if err == nil {
			err = c.Create(ctx, homes[i].Log, 0, protocol.GroupToken(tok))
		}
		if err != nil {
			return Info{}, fmt.Errorf("groups: create the log on %s: %w", relayName(homes[i].Relay), err)
		}
	}
	state, err := mg.MarshalBinary()
	if err != nil {
		return Info{}, err
	}
	now := s.clock.Now()
	rec := store.Group{ID: id, Name: name, State: store.GroupActive, Members: 1, Admin: true, CreatedAt: now, UpdatedAt: now}
	for _, h := range homes {
		rec.Homes = append(rec.Homes, store.GroupHomeCursor{Relay: h.Relay, Addrs: h.Addrs, Log: h.Log})
	}
	err = s.st.Update(ctx, func(tx *store.Tx) error {
		if err := tx.Groups().Put(&rec); err != nil {
			return err
		}
		return tx.Groups().PutState(id, state)
	})
	if err != nil {
		return Info{}, err
	}
	if err := s.start(&rec); err != nil {
		return Info{}, err
	}
	s.met.groups.Inc()
	return Info{ID: id.String(), Name: name, Epoch: 0}, nil
}

// homes resolves the relays a group is created on.
func (s *Service) homes(ctx context.Context, refs []string) ([]protocol.GroupHome, error) {
	if len(refs) > protocol.MaxHomeRelays {
		return nil, fmt.Errorf("%w: %d home relays, limit %d", ErrTooMany, len(refs), protocol.MaxHomeRelays)
	}
	own, err := s.cfg.Messaging.Relays(ctx)
	if err != nil {
		return nil, err
	}
	var out []protocol.GroupHome
	add := func(id peer.ID, addrs []ma.Multiaddr) error {
		if slices.ContainsFunc(out, func(h protocol.GroupHome) bool { return string(h.Relay) == string(id) }) {
			return nil
		}
		h := protocol.GroupHome{Relay: []byte(id)}
		for _, a := range addrs {
			if len(h.Addrs) < protocol.MaxMailboxAddrs {
				h.Addrs = append(h.Addrs, a.Bytes())
			}
		}
		if len(h.Addrs) == 0 {
			return fmt.Errorf("%w: no address known for relay %s", ErrNoRelay, id)
		}
		out = append(out, h)
		return nil
	}
	ownAddrs := func(id peer.ID) []ma.Multiaddr {
		var addrs []ma.Multiaddr
		for _, r := range own {
			if r.ID == id.String() {
				for _, a := range r.Addrs {
					if m, err := ma.NewMultiaddr(a); err == nil {
						addrs = append(addrs, m)
					}
				}
			}
		}
		if len(addrs) == 0 {
			addrs = s.cfg.Host.Peerstore().Addrs(id)
		}
		return addrs
	}
	for _, ref := range refs {
		if strings.HasPrefix(ref, "/") {
			m, err := ma.NewMultiaddr(ref)
			if err != nil {
				return nil, fmt.Errorf("%w: %q: %v", ErrNoRelay, ref, err)
			}
			info, err := peer.AddrInfoFromP2pAddr(m)
			if err != nil {
				return nil, fmt.Errorf("%w: %q needs a /p2p/ peer ID", ErrNoRelay, ref)
			}
			if err := add(info.ID, info.Addrs); err != nil {
				return nil, err
			}
			continue
		}
		id, err := peer.Decode(ref)
		if err != nil {
			return nil, fmt.Errorf("%w: %q is not a peer ID", ErrNoRelay, ref)
		}
		if err := add(id, ownAddrs(id)); err != nil {
			return nil, err
		}
	}
	if len(refs) == 0 {
		for _, r := range own {
			if len(out) == protocol.MaxHomeRelays {
				break
			}
			id, err := peer.Decode(r.ID)
			if err != nil {
				continue
			}
			_ = add(id, ownAddrs(id))
		}
	}
	if len(out) == 0 {
		return nil, ErrNoRelay
	}
	return out, nil
}

func relayName(b []byte) string {
	if id, err := peer.IDFromBytes(b); err == nil {
		return id.String()
	}
	return "?"
}

// List returns every group, by name.
func (s *Service) List(ctx context.Context) ([]Summary, error) {
	var out []Summary
	err := s.st.View(ctx, func(tx *store.Tx) error {
		all, err := tx.Groups().List()
		for i := range all {
			out = append(out, summaryOf(&all[i]))
		}
		return err
	})
	slices.SortFunc(out, func(a, b Summary) int { return strings.Compare(a.Name+a.ID, b.Name+b.ID) })
	if out == nil {
		out = []Summary{}
	}
	return out, err
}

func summaryOf(r *store.Group) Summary {
	return Summary{ID: r.ID.String(), Name: r.Name, Members: int(r.Members), Epoch: r.Epoch, State: r.State.String(), Admin: r.Admin}
}

// Show returns group ref in detail.
func (s *Service) Show(ctx context.Context, ref string) (Group, error) {
	g, err := s.lookup(ctx, ref)
	if err != nil {
		return Group{}, err
	}
	var out Group
	err = g.do(ctx, func() error {
		out = Group{Summary: summaryOf(&g.rec), Reason: g.rec.Reason, Error: g.stuck, Members: []Member{}}
		if !g.rec.Inviter.IsZero() {
			out.Inviter = g.rec.Inviter.String()
		}
		for i := range g.rec.Homes {
			h := g.home(i)
			r := Relay{ID: relayName(h.Relay)}
			for _, a := range h.Addrs {
				if m, err := ma.NewMultiaddrBytes(a); err == nil {
					r.Addrs = append(r.Addrs, m.String())
				}
			}
			out.Relays = append(out.Relays, r)
		}
		if g.mg == nil {
			return nil
		}
		return s.st.View(ctx, func(tx *store.Tx) error {
			for u, m := range g.members {
				mem := Member{UserID: u.String(), Admin: g.meta.IsAdmin(u), Self: u == s.self, Device: m.device.String()}
				if mem.Self {
					mem.Name = s.cfg.Messaging.Name()
				} else if c, err := tx.Contacts().Get(u); err == nil {
					mem.Name, mem.IdentityChanged = c.Name, c.IdentityChanged
				}
				out.Members = append(out.Members, mem)
			}
			invs, err := tx.Groups().Work(g.id, workInvite, 0)
			for _, w := range invs {
				var inv invite
				if decodeWork(w.Data, &inv) == nil {
					out.Invited = append(out.Invited, inv.User.String())
				}
			}
			return err
		})
	})
	slices.SortFunc(out.Members, func(a, b Member) int { return strings.Compare(a.Name+a.UserID, b.Name+b.UserID) })
	return out, err
}

// contacts resolves contacts by name or user ID.
func (s *Service) contacts(ctx context.Context, refs []string) ([]identity.UserID, error) {
	var out []identity.UserID
	for _, r := range refs {
		c, err := s.cfg.Messaging.Contact(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnknownContact, err)
		}
		u, err := identity.ParseUserID(c.UserID)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out, nil
}

// member returns a member by contact name or user ID.
func (g *group) member(ctx context.Context, ref string) (identity.UserID, error) {
	if u, err := identity.ParseUserID(ref); err == nil {
		if _, in := g.members[u]; in {
			return u, nil
		}
	}
	if c, err := g.s.cfg.Messaging.Contact(ctx, ref); err == nil {
		if u, err := identity.ParseUserID(c.UserID); err == nil {
			if _, in := g.members[u]; in {
				return u, nil
			}
		}
	}
	return identity.UserID{}, fmt.Errorf("%w: %q is not a member", ErrUnknownContact, ref)
}

// Add invites contacts (accepted ones) to group ref: each gets an invite
// and joins when its node answers with a KeyPackage (at once for a contact
// that accepted this node; after its user accepts, otherwise). Admins
// only.
func (s *Service) Add(ctx context.Context, ref string, contacts []string) (AddResult, error) {
	g, err := s.lookup(ctx, ref)
	if err != nil {
		return AddResult{}, err
	}
	users, err := s.contacts(ctx, contacts)
	if err != nil {
		return AddResult{}, err
	}
	var name string
	var todo []identity.UserID
	err = g.do(ctx, func() error {
		if err := g.activeAdmin(); err != nil {
			return err
		}
		if len(g.members)+len(users) > MaxMembers {
			return fmt.Errorf("%w: %d members", ErrTooMany, MaxMembers)
		}
		name = g.rec.Name
		b := g.newBatch()
		for _, u := range users {
			if _, in := g.members[u]; in || u == s.self {
				continue
			}
			todo = append(todo, u)
			inv := invite{User: u, At: s.clock.Now()}
			gid := g.id
			b.fn = append(b.fn, func(tx *store.Tx) error {
				items, err := tx.Groups().Work(gid, workInvite, 0)
				if err != nil {
					return err
				}
				for _, w := range items {
					var x invite
					if decodeWork(w.Data, &x) == nil && x.User == inv.User {
						return tx.Groups().PutWork(store.GroupWork{Group: gid, Kind: workInvite, N: w.N, Data: encodeWork(inv)})
					}
				}
				_, err = tx.Groups().AddWork(store.GroupWork{Group: gid, Kind: workInvite, Data: encodeWork(inv)})
				return err
			})
			b.after = append(b.after, g.memberEvent(u, ChangeInvited, g.rec.Epoch))
		}
		g.flush(b)
		return nil
	})
	if err != nil {
		return AddResult{}, err
	}
	res := AddResult{Invited: []string{}}
	for _, u := range todo {
		c := &protocol.GroupControl{Op: protocol.GroupInvite, Group: g.id, Name: name}
		if _, err := s.cfg.Messaging.SendGroupControl(ctx, u, c, false); err != nil {
			return res, err
		}
		res.Invited = append(res.Invited, u.String())
	}
	return res, nil
}

// activeAdmin refuses an admin operation of a node that is not one.
func (g *group) activeAdmin() error {
	if g.mg == nil || !g.mg.Active() {
		return fmt.Errorf("%w: %s", ErrNotMember, g.rec.Name)
	}
	if !g.isAdmin() {
		return fmt.Errorf("%w: %s", ErrNotAdmin, g.rec.Name)
	}
	return nil
}

// queueChange stores a membership change for the next commit.
func (g *group) queueChange(c change) {
	b := g.newBatch()
	gid := g.id
	b.fn = append(b.fn, func(tx *store.Tx) error {
		_, err := tx.Groups().AddWork(store.GroupWork{Group: gid, Kind: workChange, Data: encodeWork(c)})
		return err
	})
	if c.Op == changeCommit {
		g.commitQueued = true
	}
	g.flush(b)
	g.poke()
}

// Remove removes members (contacts by name, or user IDs) from group ref:
// one commit, once the first home relay accepts it. Admins only.
func (s *Service) Remove(ctx context.Context, ref string, members []string) (Info, error) {
	return s.changeMembers(ctx, ref, members, changeRemove)
}

// Promote makes members admins. Admins only.
func (s *Service) Promote(ctx context.Context, ref string, members []string) (Info, error) {
	return s.changeMembers(ctx, ref, members, changePromote)
}

func (s *Service) changeMembers(ctx context.Context, ref string, members []string, op string) (Info, error) {
	return s.asMember(ctx, ref, func(g *group) error {
		if err := g.activeAdmin(); err != nil {
			return err
		}
		c := change{Op: op}
		for _, m := range members {
			u, err := g.member(ctx, m)
			if err != nil {
				return err
			}
			if u == s.self && op == changeRemove {
				return fmt.Errorf("%w: to remove yourself, leave", ErrUnknownContact)
			}
			c.Users = append(c.Users, u)
		}
		g.queueChange(c)
		return nil
	})
}

// asMember runs f on group ref's goroutine, if this node is a member, and
// returns the group's ID, name and epoch before f.
func (s *Service) asMember(ctx context.Context, ref string, f func(g *group) error) (Info, error) {
	g, err := s.lookup(ctx, ref)
	if err != nil {
		return Info{}, err
	}
	var info Info
	err = g.do(ctx, func() error {
		if g.mg == nil || !g.mg.Active() {
			return fmt.Errorf("%w: %s", ErrNotMember, g.rec.Name)
		}
		info = Info{ID: g.id.String(), Name: g.rec.Name, Epoch: g.rec.Epoch}
		return f(g)
	})
	return info, err
}

// Update commits a fresh path of this member's own keys (any member).
func (s *Service) Update(ctx context.Context, ref string) (Info, error) {
	return s.asMember(ctx, ref, func(g *group) error {
		g.queueChange(change{Op: changeUpdate})
		return nil
	})
}

// Leave leaves group ref: this node proposes its own removal, which an
// admin's client commits; alone in the group, it simply leaves. The last
// admin of a group with other members cannot leave (ErrLastAdmin).
func (s *Service) Leave(ctx context.Context, ref string) (Info, error) {
	return s.asMember(ctx, ref, func(g *group) error {
		if g.rec.State == store.GroupLeaving {
			return nil
		}
		b := g.newBatch()
		if len(g.members) == 1 {
			g.rec.State = store.GroupLeaving
			g.left(b, "left")
			return nil
		}
		if g.isAdmin() && len(g.meta.Admins) == 1 {
			return ErrLastAdmin
		}
		body, _, err := g.mg.ProposeRemove(g.mg.LeafIndex(), s.rand())
		if err != nil {
			return err
		}
		g.rec.State, g.rec.UpdatedAt = store.GroupLeaving, s.clock.Now()
		b.state, b.rec = true, true
		g.addOut(b, outEntry{Epoch: g.mg.Epoch(), Kind: protocol.GroupProposal, Body: body})
		g.flush(b)
		return nil
	})
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
