package messaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/prekey"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Invite makes a new invite: a new secret, stored (so a first message that
// presents it makes an accepted contact) until the pinned bundle version
// expires or RevokeInvite. The link carries the identity key, the device
// ID, a few addresses, the bundle pin, the secret and the display name.
func (s *Service) Invite(ctx context.Context) (Invite, error) {
	var (
		out    Invite
		relays bool
	)
	err := s.do(ctx, false, func(w *work) error {
		relays = false
		v, err := s.pk.Current(w.tx)
		if err != nil {
			return err
		}
		inv := protocol.Invite{
			Identity: s.uid.PublicKey(),
			Device:   []byte(s.host.ID()),
			Addrs:    s.hostAddrs(protocol.MaxInviteAddrs, false),
			Name:     displayName(s.name, protocol.MaxInviteName),
		}
		copy(inv.Pin[:], v.Hash[:])
		if _, err := s.rand.Read(inv.Secret[:]); err != nil {
			return err
		}
		// The own mailboxes, each with a token of this invite; the
		// card blob under it holds the rest (reconcile.go).
		rs, err := w.relays()
		if err != nil {
			return err
		}
		for _, m := range rs.boxes {
			id, err := peer.Decode(m.Relay)
			if err != nil || len(m.Addrs) == 0 || len(inv.Relays) == protocol.MaxInviteRelays {
				continue
			}
			a, err := ma.NewMultiaddr(m.Addrs[0])
			if err != nil {
				continue
			}
			inv.Relays = append(inv.Relays, protocol.InviteRelay{Peer: []byte(id), Addr: a.Bytes(), Mailbox: m.ID})
			tok := protocol.InviteToken(inv.Secret, m.ID)
			if err := w.putToken(store.DepositToken{Token: store.TokenID(tok), Relay: m.Relay, Mailbox: m.ID,
				Invite: inv.Secret, CreatedAt: w.now, ExpiresAt: v.ExpiresAt}); err != nil {
				return err
			}
			relays = true
		}
		link, err := inv.Link()
		for errors.Is(err, protocol.ErrTooLarge) && len(inv.Addrs) > 1 {
			inv.Addrs = inv.Addrs[:len(inv.Addrs)-1]
			link, err = inv.Link()
		}
		if err != nil {
			return refuse(fmt.Errorf("messaging: make invite: %w", err))
		}
		out = Invite{Link: link, ExpiresAt: v.ExpiresAt}
		return w.tx.Invites().Put(store.Invite{Secret: inv.Secret, Pin: bytes.Clone(inv.Pin[:]),
			CreatedAt: w.now, ExpiresAt: v.ExpiresAt})
	})
	if err == nil && relays && s.recon != nil {
		// The invitee fetches the card blob as soon as it has the link.
		if err := s.recon.run(ctx); err != nil {
			s.log.Info("messaging: an invite's relay tokens are not all registered yet", "err", err)
		}
	}
	return out, err
}

// RevokeInvite deletes the secret of an invite this node made: a first
// message that presents it later arrives as a message request.
func (s *Service) RevokeInvite(ctx context.Context, link string) error {
	inv, err := protocol.ParseLink(link)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidLink, err)
	}
	return s.do(ctx, false, func(w *work) error {
		if err := w.revokeTokens(identity.UserID{}, inv.Secret); err != nil {
			return err
		}
		return w.tx.Invites().Delete(inv.Secret)
	})
}

// AddContact adds the inviter of link under name (empty: the invite's
// display name, made unique): it fetches the bundle the invite pins from
// the inviter's device (the invite's addresses, then its DHT address
// record) or, when the device does not serve it, from the invite's relays
// (bundleOf), checks it against the pin and the identity key, and starts a
// session; the first message will carry the invite secret, so the inviter
// accepts the contact at once.
//
// A name that is a contact's under another identity key on another device
// is a clash (ErrNameTaken), refused before anything is fetched. If the invite's
// device is a contact's under another identity key, that contact is marked
// as having changed identity and AddContact returns ErrUntrustedIdentity;
// Verify then accepts the new key. Adding an existing contact again
// accepts it if it was a request, and names it name if given; an accepted
// contact keeps its name, and another name is refused (ErrContactExists).
func (s *Service) AddContact(ctx context.Context, link, name string) (Contact, error) {
	inv, err := protocol.ParseLink(link)
	if err != nil {
		return Contact{}, fmt.Errorf("%w: %w", ErrInvalidLink, err)
	}
	uid, err := identity.UserIDFromBytes(inv.Identity)
	if err != nil {
		return Contact{}, fmt.Errorf("%w: %w", ErrInvalidLink, err)
	}
	if uid == s.uid {
		return Contact{}, fmt.Errorf("%w: it is this node's own invite", ErrInvalidLink)
	}
	if name != "" {
		if err := ValidName(name); err != nil {
			return Contact{}, err
		}
	}
	dev, err := peer.IDFromBytes(inv.Device)
	if err != nil {
		return Contact{}, fmt.Errorf("%w: device: %w", ErrInvalidLink, err)
	}
	// A known contact: accept it, and make a session if needed. A name
	// that is another identity's is refused here, before any network.
	var known bool
	err = s.st.View(ctx, func(tx *store.Tx) error {
		if name != "" {
			c, err := tx.Contacts().ByName(name)
			if err == nil && c.UserID != uid && !bytes.Equal(c.Device, inv.Device) {
				return fmt.Errorf("%w: %q is a contact with another identity key; choose another --name", ErrNameTaken, name)
			}
			if err != nil && !isNotFound(err) {
				return err
			}
		}
		_, err := tx.Contacts().Get(uid)
		known = err == nil
		if isNotFound(err) {
			return nil
		}
		return err
	})
	if err != nil {
		return Contact{}, err
	}
	if known {
		return s.addKnown(ctx, uid, name)
	}
	// An invite with relays: the card blob there says where to deposit,
	// and holds the pinned bundle for when the device is offline.
	var (
		relayCard   *protocol.Card
		relayBundle []byte
		relayBox    *protocol.Mailbox
	)
	if len(inv.Relays) > 0 && s.mb != nil {
		relayCard, relayBundle, relayBox = s.inviteCard(ctx, inv, uid)
	}
	var relay relayBundleFunc
	if relayBundle != nil {
		relay = func(context.Context) ([]byte, *protocol.Mailbox) { return relayBundle, relayBox }
	}
	b, err := s.bundleOf(ctx, uid, dev, inv.Addrs, &inv.Pin, relay)
	if err != nil {
		return Contact{}, err
	}
	rec, err := s.initiate(b, inv.Secret[:], s.clock.Now())
	if err != nil {
		return Contact{}, fmt.Errorf("messaging: start session: %w", err)
	}
	var (
		out    Contact
		result error
	)
	err = s.do(ctx, true, func(w *work) error {
		out, result = Contact{}, nil
		if c, err := w.contact(uid); err != nil {
			return err
		} else if c != nil {
			// They wrote first meanwhile: keep their session.
			out = s.apiContact(&c.c)
			return nil
		}
		if name != "" {
			// Taken meanwhile.
			c, err := w.lookup(name)
			if err != nil && !errors.Is(err, ErrUnknownContact) {
				return err
			}
			if c != nil && !bytes.Equal(c.c.Device, inv.Device) {
				return refuse(fmt.Errorf("%w: %q is a contact with another identity key; choose another --name", ErrNameTaken, name))
			}
		}
		// An identity change: the device is a contact's with another
		// identity key.
		changed, err := w.contactByDevice(inv.Device)
		if err != nil {
			return err
		}
		w.addSession(rec, nil)
		if changed != nil {
			pub, _ := b.Identity.MarshalBinary()
			w.flagIdentityChange(changed, pub, pendingInviteCard(b, inv, w))
			out = s.apiContact(&changed.c)
			result = fmt.Errorf("%w: %s", ErrUntrustedIdentity, changed.c.Name)
			return nil
		}
		if name == "" {
			var err error
			if name, err = w.uniqueName(inv.Name, uid); err != nil {
				return err
			}
		}
		pub, _ := b.Identity.MarshalBinary()
		devRec, _ := b.Device.MarshalBinary()
		c := w.addContact(store.Contact{
			UserID: uid, Name: name, Identity: pub, State: store.ContactAccepted,
			CreatedAt: w.now, UpdatedAt: w.now,
			Device: bytes.Clone(inv.Device), DeviceRecord: devRec, Addrs: validAddrs(inv.Addrs),
			Session: rec.ID,
		})
		if relayCard != nil {
			if cb, err := relayCard.Marshal(); err == nil && len(cb) <= store.MaxCardLen {
				c.c.Card, c.c.CardSeq = cb, relayCard.Seq
			}
		}
		if _, err := w.issueTokens(c); err != nil {
			return err // the first message's card lists them
		}
		out = s.apiContact(&c.c)
		return nil
	})
	if err != nil {
		return Contact{}, err
	}
	return out, result
}

// inviteCard fetches the card blob of an invite from the first of its
// relays that has it, and returns the card (checked against the invite's
// identity and device), the bundle bytes (unchecked: the caller checks
// them as a bundle the device served), and where the invite's one-time
// prekeys are: the relay's mailbox with the invite token and its prekey
// key (nil if the blob names no K_pk). All are nil if no relay has it.
func (s *Service) inviteCard(ctx context.Context, inv *protocol.Invite, uid identity.UserID) (*protocol.Card, []byte, *protocol.Mailbox) {
	for _, r := range inv.Relays {
		box := &protocol.Mailbox{Relay: r.Peer, RelayAddrs: [][]byte{r.Addr}, ID: r.Mailbox,
			Token: protocol.InviteToken(inv.Secret, r.Mailbox)}
		cctx, cancel := context.WithTimeout(ctx, bundleTimeout)
		blob, err := s.mb.GetCard(cctx, box)
		cancel()
		if err != nil {
			s.log.Info("messaging: no card blob from an invite's relay", "relay", peerString(r.Peer), "err", err)
			continue
		}
		cb, bundle, kpk, err := mailbox.OpenCard(inv.Secret, r.Mailbox, blob)
		if err != nil {
			s.log.Info("messaging: an invite's card blob does not open", "relay", peerString(r.Peer))
			continue
		}
		card := new(protocol.Card)
		if err := card.Unmarshal(cb); err != nil {
			continue
		}
		pub, err := identity.ParsePublic(card.Identity)
		if err != nil || pub.UserID() != uid {
			continue
		}
		rec, err := identity.ParseDeviceRecord(card.Device)
		if err != nil || rec.Verify() != nil || rec.Identity() != uid || checkDevice(rec, inv.Device) != nil {
			continue
		}
		if kpk == nil {
			return card, bundle, nil
		}
		copy(box.PrekeyKey[:], kpk)
		return card, bundle, box
	}
	return nil, nil, nil
}

// pendingInviteCard is the pending card of an identity that arrived by invite.
func pendingInviteCard(b *prekey.Bundle, inv *protocol.Invite, w *work) []byte {
	card := protocol.Card{Name: inv.Name, Addrs: validAddrs(inv.Addrs), Seq: 1, UpdatedAt: max(w.now.UnixMilli(), 1)}
	card.Identity, _ = b.Identity.MarshalBinary()
	card.Device, _ = b.Device.MarshalBinary()
	out, err := card.Marshal()
	if err != nil {
		card.Addrs = nil
		out, _ = card.Marshal()
	}
	return out
}

// addKnown handles AddContact for a contact that exists.
func (s *Service) addKnown(ctx context.Context, uid identity.UserID, name string) (Contact, error) {
	var out Contact
	err := s.do(ctx, true, func(w *work) error {
		c, err := w.contact(uid)
		if err != nil || c == nil {
			if c == nil && err == nil {
				return refuse(fmt.Errorf("%w: removed meanwhile", ErrUnknownContact))
			}
			return err
		}
		if c.c.IdentityChanged {
			return refuse(fmt.Errorf("%w: %s", ErrUntrustedIdentity, c.c.Name))
		}
		if name != "" && name != c.c.Name && c.c.State != store.ContactRequest {
			return refuse(fmt.Errorf("%w: it is your contact %q; it keeps that name", ErrContactExists, c.c.Name))
		}
		if name != "" && name != c.c.Name {
			taken, err := w.nameTaken(name, uid)
			if err != nil {
				return err
			}
			if taken {
				return refuse(fmt.Errorf("%w: %q", ErrNameTaken, name))
			}
		}
		if name != "" {
			c.c.Name = name
		}
		if err := w.accept(c); err != nil {
			return err
		}
		c.c.UpdatedAt = w.now
		c.dirty = true
		out = s.apiContact(&c.c)
		return nil
	})
	if err != nil {
		return Contact{}, err
	}
	if err := s.establish(ctx, uid, false); err != nil {
		s.log.Info("messaging: no session with a known contact yet", "err", err)
	}
	return out, nil
}

// Contacts returns every contact, by name.
func (s *Service) Contacts(ctx context.Context) ([]Contact, error) {
	var out []Contact
	err := s.st.View(ctx, func(tx *store.Tx) error {
		all, err := tx.Contacts().List()
		if err != nil {
			return err
		}
		out = make([]Contact, 0, len(all))
		for i := range all {
			out = append(out, s.apiContact(&all[i]))
		}
		return nil
	})
	return out, err
}

// Contact returns the contact with the name or user ID nameOrUserID.
func (s *Service) Contact(ctx context.Context, nameOrUserID string) (Contact, error) {
	var out Contact
	err := s.st.View(ctx, func(tx *store.Tx) error {
		w := newWork(s, tx, s.clock.Now())
		c, err := w.lookup(nameOrUserID)
		if err != nil {
			return err
		}
		out = s.apiContact(&c.c)
		return nil
	})
	return out, err
}

// Verify marks a contact verified, after checking safetyNumber against it
// if one is given (spaces ignored). For a contact whose identity changed,
// it accepts the new identity (checking the safety number against that):
// the contact is pinned to the new key, keeps its name, state and history,
// and its sessions with the old key go; messages still queued for the old
// key are marked failed.
func (s *Service) Verify(ctx context.Context, nameOrUserID, safetyNumber string) (Contact, error) {
	var (
		out      Contact
		old, nu  identity.UserID
		switched bool
	)
	err := s.do(ctx, true, func(w *work) error {
		switched = false
		c, err := w.lookup(nameOrUserID)
		if err != nil {
			return refuse(err)
		}
		if !c.c.IdentityChanged {
			if safetyNumber != "" && !identity.NewSafetyNumber(s.uid, c.c.UserID).Matches(safetyNumber) {
				return refuse(ErrSafetyMismatch)
			}
			c.c.Verified = true
			c.c.UpdatedAt = w.now
			c.dirty = true
			out = s.apiContact(&c.c)
			return nil
		}
		pub, err := identity.ParsePublic(c.c.PendingIdentity)
		if err != nil {
			return refuse(fmt.Errorf("messaging: the pending identity does not parse: %w", err))
		}
		if safetyNumber != "" && !identity.NewSafetyNumber(s.uid, pub.UserID()).Matches(safetyNumber) {
			return refuse(ErrSafetyMismatch)
		}
		nc, err := w.switchIdentity(c, pub)
		if err != nil {
			return err
		}
		old, nu, switched = c.c.UserID, nc.c.UserID, true
		out = s.apiContact(&nc.c)
		return nil
	})
	if err != nil || !switched {
		return out, err
	}
	// Move the rest of the history, a bounded number of messages per
	// transaction.
	for {
		var n int
		err := s.do(ctx, true, func(w *work) error {
			var err error
			n, err = w.tx.Messages().MoveConversation(old, nu, moveChunk)
			return err
		})
		if err != nil || n == 0 {
			return out, err
		}
	}
}

// moveChunk bounds the messages moved or deleted per transaction.
const moveChunk = 2000

// switchIdentity pins contact c to its pending identity pub.
func (w *work) switchIdentity(c *contactEntry, pub *identity.Public) (*contactEntry, error) {
	newUID := pub.UserID()
	var card protocol.Card
	hasCard := card.Unmarshal(c.c.PendingCard) == nil
	if err := w.dropPeer(c.c.UserID, "not delivered: the contact's identity key changed"); err != nil {
		return nil, err
	}
	nc, err := w.contact(newUID)
	if err != nil {
		return nil, err
	}
	pubBytes, _ := pub.MarshalBinary()
	if nc == nil {
		nc = w.addContact(store.Contact{UserID: newUID, CreatedAt: c.c.CreatedAt})
	}
	name := c.c.Name
	c.deleted = true
	nc.c.Name = name
	nc.c.Identity = pubBytes
	nc.c.State = store.ContactAccepted
	nc.c.Verified = true
	nc.c.IdentityChanged, nc.c.PendingIdentity, nc.c.PendingCard = false, nil, nil
	nc.c.UpdatedAt = w.now
	if hasCard {
		if rec, err := identity.ParseDeviceRecord(card.Device); err == nil && rec.Identity() == newUID &&
			rec.Verify() == nil && checkDevice(rec, rec.DeviceID()) == nil {
			nc.c.Device = rec.DeviceID()
			nc.c.DeviceRecord = bytes.Clone(card.Device)
		}
		if len(nc.c.Addrs) == 0 {
			nc.c.Addrs = validAddrs(card.Addrs)
		}
	}
	nc.c.Session = store.SessionID{}
	if len(nc.c.Device) > 0 {
		best, err := w.bestSession(newUID, nc.c.Device, store.SessionID{})
		if err != nil {
			return nil, err
		}
		if best != nil {
			nc.c.Session = best.rec.ID
		}
	}
	nc.dirty = true
	if _, err := w.tx.Messages().MoveConversation(c.c.UserID, newUID, moveChunk); err != nil {
		return nil, err
	}
	// The old key's deposit tokens go; the new one gets its own.
	if err := w.revokeTokens(c.c.UserID, protocol.InviteSecret{}); err != nil {
		return nil, err
	}
	if _, err := w.issueTokens(nc); err != nil {
		return nil, err
	}
	return nc, nil
}

// dropPeer deletes every session with peer and its outbox entries; text
// messages waiting in it are marked failed with reason.
func (w *work) dropPeer(peer identity.UserID, reason string) error {
	sessions, err := w.tx.Sessions().List(peer)
	if err != nil {
		return err
	}
	for _, ses := range sessions {
		if e, err := w.session(peer, ses.Device, ses.ID); err != nil {
			return err
		} else if e != nil {
			e.deleted = true
		}
	}
	entries, err := w.tx.Outbox().List()
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Peer != peer {
			continue
		}
		if err := w.tx.Outbox().Delete(e.ID); err != nil {
			return err
		}
		m, err := w.tx.Messages().Get(e.ID)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if !shown(m.Kind) {
			if err := w.tx.Messages().Delete(e.ID); err != nil {
				return err
			}
			continue
		}
		m.State, m.Reason = store.MessageFailed, reason
		if err := w.tx.Messages().Put(&m); err != nil {
			return err
		}
		w.stateChanged(&m)
	}
	return nil
}

// Accept accepts a message request: from now on receipts go back, and the
// messages received so far get their delivery (and, if read, read)
// receipts. Accepting an accepted contact does nothing. A contact whose
// identity changed must be verified first (ErrUntrustedIdentity).
func (s *Service) Accept(ctx context.Context, nameOrUserID string) (Contact, error) {
	var out Contact
	err := s.do(ctx, true, func(w *work) error {
		c, err := w.lookup(nameOrUserID)
		if err != nil {
			return refuse(err)
		}
		if c.c.IdentityChanged {
			return refuse(fmt.Errorf("%w: %s", ErrUntrustedIdentity, c.c.Name))
		}
		if err := w.accept(c); err != nil {
			return err
		}
		out = s.apiContact(&c.c)
		return nil
	})
	return out, err
}

// accept moves a request to accepted and queues the receipts it held back.
func (w *work) accept(c *contactEntry) error {
	if c.c.State == store.ContactAccepted {
		return nil
	}
	c.c.State = store.ContactAccepted
	c.c.RequestMessages, c.c.RequestBytes = 0, 0
	if _, err := w.tx.Seen().KeepRequest(c.c.UserID); err != nil {
		return err
	}
	c.c.UpdatedAt = w.now
	c.dirty = true
	if made, err := w.issueTokens(c); err != nil {
		return err
	} else if made {
		if _, err := w.queue(c, outgoing{kind: kindCard}); err != nil && !errors.Is(err, errNoSession) {
			return err
		}
	}
	msgs, err := w.tx.Messages().List(c.c.UserID, protocol.MaxReceiptIDs, 0)
	if err != nil {
		return err
	}
	var delivered, read []protocol.MessageID
	for _, m := range msgs {
		if m.Outgoing || !shown(m.Kind) {
			continue
		}
		delivered = append(delivered, m.ID)
		if m.State == store.MessageRead {
			read = append(read, m.ID)
		}
	}
	if err := w.queueReceipts(c.c.UserID, kindDelivery, delivered); err != nil {
		return err
	}
	return w.queueReceipts(c.c.UserID, kindRead, read)
}

// Remove deletes a contact (or a message request), its sessions and its
// conversation: every message, with their files; what was still to be
// sent is not sent. A long conversation is deleted in several
// transactions, the contact with the last, so a stop part-way leaves the
// contact with the newer part of its conversation (Remove again finishes).
func (s *Service) Remove(ctx context.Context, nameOrUserID string) error {
	for {
		done := false
		err := s.do(ctx, true, func(w *work) error {
			c, err := w.lookup(nameOrUserID)
			if err != nil {
				return refuse(err)
			}
			if n, _, err := w.deleteConversation(c.c.UserID, 0); err != nil || n == deleteChunk {
				return err // more in the next transaction
			}
			done = true
			return w.removeContact(c)
		})
		if err != nil || done {
			return err
		}
	}
}

// removeContact deletes the contact c and its sessions; its tokens are
// revoked.
func (w *work) removeContact(c *contactEntry) error {
	if err := w.dropPeer(c.c.UserID, "not delivered: the contact was removed"); err != nil {
		return err
	}
	if err := w.revokeTokens(c.c.UserID, protocol.InviteSecret{}); err != nil {
		return err
	}
	if _, err := w.tx.Seen().ForgetRequest(c.c.UserID, 0); err != nil {
		return err
	}
	if c.c.IdentityChanged {
		if p, err := identity.ParsePublic(c.c.PendingIdentity); err == nil {
			if pc, err := w.contact(p.UserID()); err != nil {
				return err
			} else if pc == nil {
				if err := w.dropPeer(p.UserID(), "not delivered: the contact was removed"); err != nil {
					return err
				}
			}
		}
	}
	c.deleted = true
	return nil
}
