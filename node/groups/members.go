package groups

import (
	"context"
	"fmt"
	"slices"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// memberEvent returns a function that emits a group.member event.
func (g *group) memberEvent(u identity.UserID, change string, epoch uint64) func() {
	name := g.rec.Name
	return func() {
		g.s.publish(EventMember, MemberEvent{Group: name, GroupID: g.id.String(), UserID: u.String(),
			Name: g.s.contactName(u), Change: change, Epoch: epoch})
	}
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
	if !g.isAdmin() && !g.s.opt.BreakRules {
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
	g.changesDue = true
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
