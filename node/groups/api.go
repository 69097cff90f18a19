package groups

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/mls"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

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
		if err := s.relays.create(ctx, &homes[i], protocol.GroupToken(tok)); err != nil {
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
			if i < len(g.homeFails) {
				r.Error = g.homeFails[i].shown
			}
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
		out.Authenticator = hex.EncodeToString(g.mg.EpochAuthenticator())
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
