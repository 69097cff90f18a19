package groups

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/mls"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// workJoin is a Welcome reference received, waiting to be joined with
// (its data: the encoded GroupControl).
const workJoin store.GroupWorkKind = 7

// inboxLoop handles the group controls contacts sent (store.Groups'
// inbox, filled by messaging).
func (s *Service) inboxLoop() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		}
		for s.ctx.Err() == nil {
			var in []store.GroupInboxEntry
			err := s.st.View(s.ctx, func(tx *store.Tx) error {
				var err error
				in, err = tx.Groups().Inbox(64)
				return err
			})
			if err != nil || len(in) == 0 {
				break
			}
			for _, e := range in {
				if err := s.control(e); err != nil {
					s.log.Warn("group control", "from", e.From.String(), "err", err)
				}
				if err := s.st.Update(s.ctx, func(tx *store.Tx) error { return tx.Groups().DeleteInbox(e.N) }); err != nil {
					s.log.Warn("group control: delete", "err", err)
				}
			}
		}
	}
}

// control handles one control from a contact.
func (s *Service) control(e store.GroupInboxEntry) error {
	var c protocol.GroupControl
	if err := c.Unmarshal(e.Control); err != nil {
		return err
	}
	s.mu.Lock()
	g := s.groups[c.Group]
	n := len(s.groups)
	s.mu.Unlock()
	switch c.Op {
	case protocol.GroupInvite:
		if g != nil {
			return g.do(s.ctx, func() error { return g.invited(e, &c) })
		}
		if n >= MaxGroups {
			return fmt.Errorf("%w: an invite to a group is dropped", ErrTooMany)
		}
		now := s.clock.Now()
		rec := store.Group{ID: c.Group, Name: c.Name, State: store.GroupRequest, Inviter: e.From, CreatedAt: now, UpdatedAt: now}
		if err := s.st.Update(s.ctx, func(tx *store.Tx) error { return tx.Groups().Put(&rec) }); err != nil {
			return err
		}
		if err := s.start(&rec); err != nil {
			return err
		}
		s.mu.Lock()
		g = s.groups[c.Group]
		s.mu.Unlock()
		return g.do(s.ctx, func() error { return g.invited(e, &c) })
	case protocol.GroupKeyPackage:
		if g == nil {
			return nil
		}
		return g.do(s.ctx, func() error { return g.keyPackage(e.From, c.KeyPackage) })
	case protocol.GroupWelcomed:
		if g == nil {
			return nil
		}
		return g.do(s.ctx, func() error { return g.welcomed(e.From, &c) })
	case protocol.GroupDecline:
		if g == nil {
			return nil
		}
		return g.do(s.ctx, func() error { return g.declined(e.From) })
	}
	return nil
}

// invited handles an invite to a group this node has a record of (a
// request, or one just made): an accepted inviter gets a KeyPackage at
// once, another makes the group a request.
func (g *group) invited(e store.GroupInboxEntry, c *protocol.GroupControl) error {
	switch g.rec.State {
	case store.GroupActive, store.GroupLeaving:
		return nil // already a member
	case store.GroupJoining:
		if g.rec.Inviter != e.From {
			return nil
		}
	case store.GroupLeft:
		g.rec.State = store.GroupRequest
	}
	g.rec.Inviter, g.rec.Name, g.rec.UpdatedAt = e.From, c.Name, g.s.clock.Now()
	if !e.Accepted {
		g.rec.State = store.GroupRequest
		b := g.newBatch()
		b.rec = true
		ev := RequestEvent{Group: c.Name, GroupID: g.id.String(), From: e.From.String(), FromName: g.s.contactName(e.From)}
		b.after = append(b.after, func() { g.s.publish(EventRequest, ev) })
		g.flush(b)
		return nil
	}
	return g.sendKeyPackage(false)
}

// sendKeyPackage answers the inviter with a fresh KeyPackage and keeps its
// private keys until the Welcome (PROTOCOL.md §12.7).
func (g *group) sendKeyPackage(toRequest bool) error {
	s := g.s
	now := s.clock.Now()
	kp, err := mls.NewKeyPackageWith(s.cred, s.sigKey, now.Add(-time.Hour), now.Add(keyPackageLifetime),
		mls.KeyPackageOptions{Extensions: []mls.ExtensionType{protocol.GroupMetaExtension}}, s.rand())
	if err != nil {
		return err
	}
	priv, err := kp.MarshalBinary()
	if err != nil {
		return err
	}
	pub, err := kp.KeyPackage().MarshalBinary()
	if err != nil {
		return err
	}
	g.rec.State, g.rec.UpdatedAt = store.GroupJoining, now
	gid := g.id
	err = s.st.Update(s.ctx, func(tx *store.Tx) error {
		old, err := tx.Groups().Work(gid, workKeyPackage, 0)
		if err != nil {
			return err
		}
		for _, w := range old {
			if err := tx.Groups().DeleteWork(gid, workKeyPackage, w.N); err != nil {
				return err
			}
		}
		if _, err := tx.Groups().AddWork(store.GroupWork{Group: gid, Kind: workKeyPackage, Data: priv}); err != nil {
			return err
		}
		rec := g.rec
		return tx.Groups().Put(&rec)
	})
	if err != nil {
		return err
	}
	c := &protocol.GroupControl{Op: protocol.GroupKeyPackage, Group: g.id, KeyPackage: pub}
	_, err = s.cfg.Messaging.SendGroupControl(s.ctx, g.rec.Inviter, c, toRequest)
	return err
}

// keyPackage handles an invited contact's KeyPackage (admins): the add
// waits for the next commit.
func (g *group) keyPackage(from identity.UserID, b []byte) error {
	if g.activeAdmin() != nil {
		return nil
	}
	var n uint64
	err := g.s.st.View(g.s.ctx, func(tx *store.Tx) error {
		items, err := tx.Groups().Work(g.id, workInvite, 0)
		for _, w := range items {
			var inv invite
			if decodeWork(w.Data, &inv) == nil && inv.User == from {
				n = w.N
			}
		}
		return err
	})
	if err != nil || n == 0 {
		return err // not invited: dropped
	}
	kp, err := mls.ParseKeyPackage(b)
	if err != nil {
		return err
	}
	who, err := memberOf(kp.Credential())
	if err != nil {
		return err
	}
	if who.user != from {
		return errors.New("groups: a KeyPackage for another identity than its sender's")
	}
	if err := validateCredential(kp.Credential(), kp.SignatureKey(), nil); err != nil {
		return err
	}
	gid := g.id
	bt := g.newBatch()
	bt.fn = append(bt.fn, func(tx *store.Tx) error {
		if err := tx.Groups().DeleteWork(gid, workInvite, n); err != nil {
			return err
		}
		_, err := tx.Groups().AddWork(store.GroupWork{Group: gid, Kind: workChange, Data: encodeWork(change{Op: changeAdd, KeyPackage: b})})
		return err
	})
	g.changesDue = true
	g.flush(bt)
	g.poke()
	return nil
}

// declined handles an invited contact's refusal.
func (g *group) declined(from identity.UserID) error {
	gid := g.id
	found := false
	b := g.newBatch()
	b.fn = append(b.fn, func(tx *store.Tx) error {
		items, err := tx.Groups().Work(gid, workInvite, 0)
		if err != nil {
			return err
		}
		for _, w := range items {
			var inv invite
			if decodeWork(w.Data, &inv) == nil && inv.User == from {
				found = true
				return tx.Groups().DeleteWork(gid, workInvite, w.N)
			}
		}
		return nil
	})
	b.after = append(b.after, func() {
		if found {
			g.memberEvent(from, ChangeDeclined, g.rec.Epoch)()
		}
	})
	g.flush(b)
	return nil
}

// welcomed keeps a Welcome reference from the inviter, to join with.
func (g *group) welcomed(from identity.UserID, c *protocol.GroupControl) error {
	if g.rec.State != store.GroupJoining || from != g.rec.Inviter {
		return nil
	}
	data, err := c.Marshal()
	if err != nil {
		return err
	}
	gid := g.id
	b := g.newBatch()
	b.fn = append(b.fn, func(tx *store.Tx) error {
		_, err := tx.Groups().AddWork(store.GroupWork{Group: gid, Kind: workJoin, Data: data})
		return err
	})
	g.flush(b)
	g.joinFail = 0
	g.joinAt = g.s.clock.Now()
	return nil
}

// tryJoin fetches the Welcome a reference names and joins with it.
func (g *group) tryJoin() {
	if g.joining || g.rec.State != store.GroupJoining {
		return
	}
	var refs []store.GroupWork
	var kps []store.GroupWork
	err := g.s.st.View(g.s.ctx, func(tx *store.Tx) error {
		var err error
		if refs, err = tx.Groups().Work(g.id, workJoin, 0); err != nil {
			return err
		}
		kps, err = tx.Groups().Work(g.id, workKeyPackage, 0)
		return err
	})
	if err != nil || len(refs) == 0 || len(kps) == 0 {
		g.joinAt = time.Time{}
		return
	}
	w := refs[len(refs)-1]
	var c protocol.GroupControl
	if err := c.Unmarshal(w.Data); err != nil {
		g.dropJoin(refs)
		return
	}
	kp, err := mls.UnmarshalKeyPackagePrivate(kps[len(kps)-1].Data)
	if err != nil {
		g.dropJoin(refs)
		return
	}
	ref := c.Welcome
	g.joining = true
	g.async(func(ctx context.Context) func() {
		welcome, seq, home, err := g.s.fetchWelcome(ctx, ref)
		return func() {
			g.joining = false
			if err == nil {
				err = g.join(welcome, kp, ref, home, seq, refs, kps)
			}
			if err != nil {
				g.joinFail++
				g.s.log.Warn("group: join", "group", g.id.String(), "attempt", g.joinFail, "err", err)
				if g.joinFail >= 8 {
					g.dropJoin(refs)
					return
				}
				g.joinAt = g.s.clock.Now().Add(g.backoff(g.joinFail))
			}
		}
	})
}

func (g *group) dropJoin(refs []store.GroupWork) {
	g.joinAt = time.Time{}
	gid := g.id
	b := g.newBatch()
	b.fn = append(b.fn, func(tx *store.Tx) error {
		for _, w := range refs {
			if err := tx.Groups().DeleteWork(gid, workJoin, w.N); err != nil {
				return err
			}
		}
		return nil
	})
	g.flush(b)
}

// fetchWelcome reads the pieces of a Welcome from a home relay's log and
// returns the Welcome, the last sequence number read and the home.
func (s *Service) fetchWelcome(ctx context.Context, ref *protocol.GroupWelcomeRef) ([]byte, uint64, int, error) {
	var errs []error
	for i := range ref.Homes {
		h := ref.Homes[i]
		c, err := s.relays.conn(ctx, &h)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pieces := map[[32]byte][]byte{}
		var after uint64
		for len(pieces) < len(ref.Pieces) {
			f, err := c.Fetch(ctx, h.Log, ref.Epoch, ref.Token, after, 0)
			if err != nil {
				errs = append(errs, err)
				break
			}
			for _, e := range f.Entries {
				after = e.Seq
				var m protocol.GroupMessage
				if m.Unmarshal(e.Entry) != nil || m.Kind != protocol.GroupWelcome {
					continue
				}
				pieces[m.Hash()] = m.Body
			}
			if !f.More {
				break
			}
		}
		var welcome []byte
		complete := true
		for _, p := range ref.Pieces {
			b, ok := pieces[p]
			if !ok {
				complete = false
				break
			}
			welcome = append(welcome, b...)
		}
		if complete {
			return welcome, after, i, nil
		}
		errs = append(errs, fmt.Errorf("%d of %d pieces of the Welcome on home %d", len(pieces), len(ref.Pieces), i))
	}
	return nil, 0, 0, errors.Join(errs...)
}

// join joins with a Welcome and checks the group it enters: the invite's
// ID, the inviter an admin, the reference's token (PROTOCOL.md §12.7).
func (g *group) join(welcome []byte, kp *mls.KeyPackagePrivate, ref *protocol.GroupWelcomeRef, home int, seq uint64,
	refs, kps []store.GroupWork) error {
	mg, err := mls.Join(g.mlsConfig(), welcome, []*mls.KeyPackagePrivate{kp}, mls.JoinOptions{})
	if err != nil {
		return err
	}
	if !bytes.Equal(mg.GroupID(), g.id[:]) {
		return errors.New("groups: the Welcome is for another group than the invite")
	}
	meta, err := metaOf(mg.Extensions())
	if err != nil {
		return err
	}
	if !meta.IsAdmin(g.rec.Inviter) {
		return errors.New("groups: the inviter is no admin of the group")
	}
	tok, err := mg.Export(protocol.GroupTokenLabel, nil, protocol.GroupTokenSize)
	if err != nil || !protocol.GroupToken(tok).Equal(ref.Token) || mg.Epoch() != ref.Epoch {
		return errors.New("groups: the Welcome's epoch is not the one announced")
	}
	state, err := mg.MarshalBinary()
	if err != nil {
		return err
	}
	rec := g.rec
	rec.State, rec.Name, rec.Epoch, rec.Members = store.GroupActive, meta.Name, mg.Epoch(), uint32(len(mg.Members()))
	rec.Admin, rec.UpdatedAt, rec.Reason = meta.IsAdmin(g.s.self), g.s.clock.Now(), ""
	rec.Homes = nil
	for i, h := range meta.Homes {
		// The log the Welcome was read from is the home's log now (the
		// group may have moved to new logs since the meta was written).
		log := h.Log
		if i < len(ref.Homes) && bytes.Equal(ref.Homes[i].Relay, h.Relay) {
			log = ref.Homes[i].Log
		}
		rec.Homes = append(rec.Homes, store.GroupHomeCursor{Relay: h.Relay, Addrs: h.Addrs, Log: log})
	}
	gid := g.id
	err = g.s.st.Update(g.s.ctx, func(tx *store.Tx) error {
		if err := tx.Groups().Put(&rec); err != nil {
			return err
		}
		if err := tx.Groups().PutState(gid, state); err != nil {
			return err
		}
		for _, w := range append(refs, kps...) {
			if err := tx.Groups().DeleteWork(gid, w.Kind, w.N); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	g.rec = rec
	g.joinAt = time.Time{}
	if err := g.setState(state, nil); err != nil {
		return err
	}
	g.s.met.groups.Inc()
	g.memberEvent(g.s.self, ChangeJoined, rec.Epoch)()
	return nil
}

// Accept accepts the group request ref: this node answers its inviter
// with a KeyPackage and joins when the inviter adds it.
func (s *Service) Accept(ctx context.Context, ref string) (Info, error) {
	g, err := s.lookup(ctx, ref)
	if err != nil {
		return Info{}, err
	}
	var info Info
	err = g.do(ctx, func() error {
		if g.rec.State != store.GroupRequest {
			return fmt.Errorf("%w: %s is %s", ErrNotRequest, g.rec.Name, g.rec.State)
		}
		info = Info{ID: g.id.String(), Name: g.rec.Name}
		return g.sendKeyPackage(true)
	})
	return info, err
}

// Decline declines the group request ref: the inviter is told, and the
// request goes.
func (s *Service) Decline(ctx context.Context, ref string) error {
	g, err := s.lookup(ctx, ref)
	if err != nil {
		return err
	}
	var inviter identity.UserID
	err = g.do(ctx, func() error {
		if g.rec.State != store.GroupRequest {
			return fmt.Errorf("%w: %s is %s", ErrNotRequest, g.rec.Name, g.rec.State)
		}
		inviter = g.rec.Inviter
		return s.st.Update(ctx, func(tx *store.Tx) error { return tx.Groups().Delete(g.id) })
	})
	if err != nil {
		return err
	}
	s.forget(g)
	c := &protocol.GroupControl{Op: protocol.GroupDecline, Group: g.id}
	_, err = s.cfg.Messaging.SendGroupControl(ctx, inviter, c, true)
	return err
}

// forget stops a group's goroutine (its record is gone).
func (s *Service) forget(g *group) {
	s.mu.Lock()
	if s.groups[g.id] == g {
		delete(s.groups, g.id)
	}
	s.mu.Unlock()
	g.quit()
}
