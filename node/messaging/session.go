package messaging

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/pqxdh"
	"github.com/sealpost/sealpost/crypto/prekey"
	"github.com/sealpost/sealpost/crypto/ratchet"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// sessionID names the session a PQXDH initial message starts: the first
// 16 bytes of its replay hash, which both sides compute.
func sessionID(m *pqxdh.InitialMessage) store.SessionID {
	h := m.ReplayHash()
	return store.SessionID(h[:16])
}

// Kinds as the store keeps them.
const (
	kindText     = uint8(protocol.KindText)
	kindDelivery = uint8(protocol.KindDeliveryReceipt)
	kindRead     = uint8(protocol.KindReadReceipt)
	kindCard     = uint8(protocol.KindCard)
	kindFile     = uint8(protocol.KindFile)
	kindGroup    = uint8(protocol.KindGroup)
)

// shown reports whether messages of kind are shown to the user (texts and
// files): they have states, receipts and a place in the conversation;
// the other kinds only take sequence numbers.
func shown(kind uint8) bool { return kind == kindText || kind == kindFile }

// activeSession returns the contact's active session if it can send, or
// nil.
func (w *work) activeSession(c *contactEntry) (*sessEntry, error) {
	e, err := w.session(c.c.UserID, c.c.Device, c.c.Session)
	if err != nil || e == nil {
		return nil, err
	}
	st, err := e.state()
	if err != nil {
		return nil, err
	}
	if !st.CanSend() {
		return nil, nil
	}
	return e, nil
}

// outgoing is one plaintext to encrypt and queue.
type outgoing struct {
	kind   uint8
	text   string
	covers []protocol.MessageID
	card   *protocol.Card         // for kindCard
	file   *protocol.File         // for kindFile, whose caption is text
	group  *protocol.GroupControl // for kindGroup
	// toRequest sends to a contact in state request too (a group control
	// answering its invite, which the user accepted).
	toRequest bool
	// id is the message's ID (zero: a new random one). seq and sentAt are
	// kept when a refused message is re-encrypted; zero seq: the next
	// sequence number, and now.
	id     protocol.MessageID
	seq    uint64
	sentAt time.Time
}

// queue encrypts o for contact c in its active session, commits the
// ciphertext to the outbox and the message record (state queued), and
// hands the entry to the delivery loop after the commit. It returns
// errNoSession when c has no session that can send.
func (w *work) queue(c *contactEntry, o outgoing) (protocol.MessageID, error) {
	ses, err := w.activeSession(c)
	if err != nil {
		return protocol.MessageID{}, err
	}
	if ses == nil {
		return protocol.MessageID{}, errNoSession
	}
	st, _ := ses.state()
	p := protocol.Plaintext{
		ID:     o.id,
		Seq:    o.seq,
		SentAt: o.sentAt.UnixMilli(),
		Kind:   protocol.Kind(o.kind),
		Text:   o.text,
		File:   o.file,
	}
	if p.ID.IsZero() {
		if _, err := w.s.rand.Read(p.ID[:]); err != nil {
			return protocol.MessageID{}, err
		}
	}
	newSeq := o.seq == 0
	if newSeq {
		p.Seq = c.c.SendSeq + 1
		p.SentAt = w.now.UnixMilli()
	}
	for _, id := range o.covers {
		p.Covers = append(p.Covers, id)
	}
	p.Group = o.group
	if o.kind == kindCard {
		if o.card == nil {
			if o.card, err = w.cardFor(c); err != nil {
				return protocol.MessageID{}, err
			}
		}
		p.Card = o.card
	} else if !ses.rec.Confirmed {
		// The peer may not know us yet: attach the card until the session
		// is confirmed.
		if p.Card, err = w.cardFor(c); err != nil {
			return protocol.MessageID{}, err
		}
	}
	if ses.rec.Initiated && !ses.rec.Confirmed && len(ses.rec.Invite) == len(p.InviteSecret) {
		copy(p.InviteSecret[:], ses.rec.Invite)
	}
	pt, err := p.Marshal()
	if err != nil {
		return protocol.MessageID{}, refuse(fmt.Errorf("messaging: encode message: %w", err))
	}
	rm, err := st.Encrypt(nil, pt, w.s.rand)
	if err != nil {
		return protocol.MessageID{}, fmt.Errorf("messaging: encrypt: %w", err)
	}
	// The message key's nonce (not secret): at debug level the log shows
	// that no committed message shares a key with another.
	if nonce := st.SentNonce(); w.s.log.Enabled(context.Background(), slog.LevelDebug) {
		w.after(func() {
			w.s.log.Debug("messaging: encrypted", "id", p.ID.String(), "nonce", hex.EncodeToString(nonce[:]))
		})
	}
	ct := protocol.Ciphertext{Ratchet: rm}
	if ses.rec.Initiated && !ses.rec.Confirmed {
		ct.Prekey = ses.rec.Prekey
	}
	payload, err := ct.Marshal()
	if err != nil {
		return protocol.MessageID{}, fmt.Errorf("messaging: encode ciphertext: %w", err)
	}
	ses.dirty = true
	ses.rec.LastUsedAt = w.now
	if newSeq {
		c.c.SendSeq = p.Seq
	}
	c.dirty = true
	id := p.ID
	m := store.Message{
		ID: id, Peer: c.c.UserID, Outgoing: true, Seq: p.Seq, Kind: o.kind,
		SentAt: time.UnixMilli(p.SentAt), ReceivedAt: w.now, State: store.MessageQueued,
	}
	switch o.kind {
	case kindText, kindFile:
		m.Body = []byte(o.text)
	case kindDelivery, kindRead:
		m.Body = make([]byte, 0, 16*len(o.covers))
		for _, x := range o.covers {
			m.Body = append(m.Body, x[:]...)
		}
	case kindCard:
		if m.Body, err = o.card.Marshal(); err != nil {
			return protocol.MessageID{}, err
		}
	case kindGroup:
		if m.Body, err = o.group.Marshal(); err != nil {
			return protocol.MessageID{}, err
		}
	}
	if !newSeq {
		// Re-encryption of a refused message: keep its record.
		if old, err := w.tx.Messages().Get(id); err == nil {
			m.ReceivedAt, m.State, m.Reason = old.ReceivedAt, old.State, old.Reason
		} else if !errors.Is(err, store.ErrNotFound) {
			return protocol.MessageID{}, err
		}
	}
	if err := w.tx.Messages().Put(&m); err != nil {
		return protocol.MessageID{}, err
	}
	entry := store.OutboxEntry{
		ID: id, Peer: c.c.UserID, Device: c.c.Device, Payload: payload,
		CreatedAt: w.now, NextAttempt: w.now.Add(leaseTime), Session: ses.rec.ID,
	}
	if err := w.tx.Outbox().Put(entry); err != nil {
		return protocol.MessageID{}, err
	}
	item := &outItem{id: id, peer: c.c.UserID, payload: payload, seq: p.Seq}
	dev := c.c.Device
	w.after(func() { w.s.out.add(dev, item) })
	return id, nil
}

// leaseTime is how far a queued entry's NextAttempt is set ahead: the
// delivery loop owns it in memory meanwhile, and the scheduler picks it up
// from the store only if the node restarted (or the loop dropped it).
const leaseTime = 10 * time.Minute

// queueReceipts queues receipts of kind (kindDelivery or kindRead) for ids
// to peer, MaxReceiptIDs per receipt. It does nothing for a contact that
// is not accepted, whose identity changed, or that has no session.
func (w *work) queueReceipts(peer identity.UserID, kind uint8, ids []protocol.MessageID) error {
	c, err := w.contact(peer)
	if err != nil || c == nil || c.c.State != store.ContactAccepted || c.c.IdentityChanged {
		return err
	}
	for len(ids) > 0 {
		n := min(len(ids), protocol.MaxReceiptIDs)
		_, err := w.queue(c, outgoing{kind: kind, covers: ids[:n]})
		if errors.Is(err, errNoSession) {
			return nil
		}
		if err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// announceCard queues the own new card (with each contact's tokens) to
// every accepted contact with a session.
func (w *work) announceCard() error {
	if err := w.loadAllContacts(); err != nil {
		return err
	}
	for _, c := range w.sortedContacts() {
		if c.c.State != store.ContactAccepted || c.c.IdentityChanged {
			continue
		}
		if _, err := w.queue(c, outgoing{kind: kindCard}); err != nil && !errors.Is(err, errNoSession) {
			return err
		}
	}
	return nil
}

// promote applies the session selection rule (see the package doc) after
// a message decrypted in session s with contact c: s becomes active, unless
// the contact's active session is preferred.
func (w *work) promote(c *contactEntry, s *sessEntry, isNew bool) error {
	if c == nil || !bytes.Equal(c.c.Device, s.rec.Device) {
		return nil
	}
	if c.c.Session == s.rec.ID {
		return nil
	}
	a, err := w.session(c.c.UserID, c.c.Device, c.c.Session)
	if err != nil {
		return err
	}
	if a != nil && !w.prefer(s, a, isNew) {
		return nil
	}
	c.c.Session = s.rec.ID
	c.dirty = true
	if isNew && a != nil && (a.rec.Confirmed || a.rec.Initiated == s.rec.Initiated) {
		// The peer started a new session although it held the active one:
		// it lost that one (or could not decrypt something sent in it and
		// asks for a fresh start, receiveRelayed). What waits for it in
		// other sessions would never decrypt there.
		return w.requeueLost(c, s.rec.ID)
	}
	return nil
}

// requeueLost encrypts again, in session sid (just made active), every
// outbox entry for c's device that was encrypted in another session, under
// the same message ID (the peer drops what it already has by ID). An entry
// a delivery loop holds goes again when the loop gives it back with the
// old bytes (deposited, ackOne).
func (w *work) requeueLost(c *contactEntry, sid store.SessionID) error {
	if c.c.State != store.ContactAccepted || c.c.IdentityChanged {
		return nil
	}
	all, err := w.tx.Outbox().List()
	if err != nil {
		return err
	}
	n := 0
	for _, e := range all {
		if e.Peer != c.c.UserID || !bytes.Equal(e.Device, c.c.Device) || e.Session == sid {
			continue
		}
		m, err := w.tx.Messages().Get(e.ID)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		o, err := w.outgoingOf(&m)
		if err != nil {
			continue
		}
		if _, err := w.queue(c, o); errors.Is(err, errNoSession) {
			return nil
		} else if err != nil {
			return err
		}
		n++
	}
	if n > 0 {
		w.s.log.Info("messaging: the peer started a new session; encrypted again what waits for it", "messages", n)
	}
	return nil
}

// prefer reports whether session s, which just decrypted a message,
// should replace the active session a.
func (w *work) prefer(s, a *sessEntry, isNew bool) bool {
	if s.rec.Initiated == a.rec.Initiated {
		// Both started by the same side: the newer one, the one the peer
		// uses now (Sesame: the last session that decrypted).
		return true
	}
	if isNew && a.rec.Confirmed {
		// The peer started over although it had confirmed the active
		// session: it has lost it.
		return true
	}
	// One session started by each side at about the same time: both sides
	// keep the one started by the lower user ID.
	lower := bytes.Compare(s.rec.Peer[:], w.s.uid[:]) < 0
	if s.rec.Initiated {
		return !lower // s was started by us
	}
	return lower
}

// evict drops the oldest sessions with a device beyond KeptSessions, never
// the active one.
func (w *work) evict(c *contactEntry, peer identity.UserID, dev []byte) error {
	all, err := w.deviceSessions(peer, dev)
	if err != nil || len(all) <= w.s.opt.KeptSessions {
		return err
	}
	var active store.SessionID
	if c != nil && bytes.Equal(c.c.Device, dev) {
		active = c.c.Session
	}
	slices.SortFunc(all, func(a, b *sessEntry) int {
		return lastUse(a).Compare(lastUse(b))
	})
	for _, e := range all[:len(all)-w.s.opt.KeptSessions] {
		if e.rec.ID == active {
			continue
		}
		e.deleted = true
	}
	return nil
}

func lastUse(e *sessEntry) time.Time {
	t := e.rec.CreatedAt
	if e.rec.LastDecryptAt.After(t) {
		t = e.rec.LastDecryptAt
	}
	if e.rec.LastUsedAt.After(t) {
		t = e.rec.LastUsedAt
	}
	return t
}

// bestSession returns the session with a device that can send and was
// used last, or nil.
func (w *work) bestSession(peer identity.UserID, dev []byte, except store.SessionID) (*sessEntry, error) {
	all, err := w.deviceSessions(peer, dev)
	if err != nil {
		return nil, err
	}
	var best *sessEntry
	for _, e := range all {
		if e.rec.ID == except {
			continue
		}
		st, err := e.state()
		if err != nil {
			return nil, err
		}
		if st.CanSend() && (best == nil || lastUse(e).After(lastUse(best))) {
			best = e
		}
	}
	return best, nil
}

// initiate starts a session with a verified bundle's owner: PQXDH as
// initiator, the ratchet, and the session record (not yet stored).
// The record holds the encoded state: a job decodes its own copy, so that
// a transaction that runs twice starts from the same state.
func (s *Service) initiate(b *prekey.Bundle, invite []byte, now time.Time) (store.Session, error) {
	in, err := pqxdh.Initiate(s.self, s.device, b, now, s.rand)
	if err != nil {
		return store.Session{}, err
	}
	st, err := ratchet.NewInitiator(in.Secret, in.AD, in.RemoteSignedPrekey, in.Version, s.rand)
	if err != nil {
		return store.Session{}, err
	}
	msg, err := in.Message.MarshalBinary()
	if err != nil {
		return store.Session{}, err
	}
	state, err := st.MarshalBinary()
	if err != nil {
		return store.Session{}, err
	}
	rec := store.Session{
		Peer: b.Identity.UserID(), Device: b.Device.DeviceID(), ID: sessionID(in.Message), State: state,
		CreatedAt: now, LastUsedAt: now, Initiated: true, Prekey: msg,
	}
	if len(invite) > 0 {
		rec.Invite = bytes.Clone(invite)
	}
	return rec, nil
}

// checkBundle parses a bundle a peer served and checks it against what the
// caller expects: its identity's user ID, and its device ID (the peer it
// came from), whose key must be the record's device key.
func checkBundle(data []byte, want identity.UserID, dev peer.ID, now time.Time) (*prekey.Bundle, error) {
	b, err := prekey.ParseBundle(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadBundle, err)
	}
	if err := b.Verify(now); err != nil {
		if errors.Is(err, prekey.ErrExpired) {
			return nil, fmt.Errorf("%w: %w", ErrInviteExpired, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrBadBundle, err)
	}
	if b.Identity.UserID() != want {
		return nil, fmt.Errorf("%w: the bundle is signed by another identity", ErrBadBundle)
	}
	if err := checkDevice(b.Device, []byte(dev)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadBundle, err)
	}
	return b, nil
}

// checkDevice checks that a verified device record is for device dev and
// that dev is the peer ID of the record's device key.
func checkDevice(r *identity.DeviceRecord, dev []byte) error {
	if !bytes.Equal(r.DeviceID(), dev) {
		return errors.New("the device record is for another device")
	}
	id, err := protocol.PeerIDFromEd25519(r.DeviceKey())
	if err != nil || !bytes.Equal(id, dev) {
		return errors.New("the device ID is not the peer ID of the device key")
	}
	return nil
}

// establish starts a new session with contact uid from the bundle its
// device serves now, unless the contact has a session that can send. When
// the device does not serve it (within Options.RelayAfter if the contact
// lists mailboxes with a prekey key), the bundle comes from the contact's
// relays instead (bundleOf, relayBundle).
//
// With force, it starts one even if the contact has a session that can
// send, and makes it active.
func (s *Service) establish(ctx context.Context, uid identity.UserID, force bool) error {
	var (
		c     store.Contact
		ready bool
	)
	err := s.st.View(ctx, func(tx *store.Tx) error {
		w := newWork(s, tx, s.clock.Now())
		e, err := w.contact(uid)
		if err != nil || e == nil {
			return err
		}
		c = e.c
		a, err := w.activeSession(e)
		ready = a != nil
		return err
	})
	if err != nil {
		return err
	}
	if ready && !force {
		return nil
	}
	if len(c.Device) == 0 {
		return fmt.Errorf("%w: no device known for %s", ErrUnreachable, uid)
	}
	dev, err := peer.IDFromBytes(c.Device)
	if err != nil {
		return fmt.Errorf("messaging: contact device: %w", err)
	}
	var relay relayBundleFunc
	if s.mb != nil {
		var boxes []protocol.Mailbox
		for _, m := range contactBoxes(&c) {
			if !m.PrekeyKey.IsZero() {
				boxes = append(boxes, m)
			}
		}
		if len(boxes) > 0 {
			relay = func(ctx context.Context) ([]byte, *protocol.Mailbox) { return s.relayBundle(ctx, boxes, uid, dev) }
		}
	}
	b, err := s.bundleOf(ctx, uid, dev, c.Addrs, nil, relay)
	if err != nil {
		return err
	}
	rec, err := s.initiate(b, nil, s.clock.Now())
	if err != nil {
		return fmt.Errorf("messaging: start session: %w", err)
	}
	return s.do(ctx, false, func(w *work) error {
		e, err := w.contact(uid)
		if err != nil || e == nil {
			return err
		}
		if a, err := w.activeSession(e); err != nil || a != nil && !force {
			return err // a session appeared meanwhile
		}
		if !bytes.Equal(e.c.Device, rec.Device) {
			return nil
		}
		if w.sessions[sessKey{uid, string(rec.Device), rec.ID}] != nil {
			return nil
		}
		w.addSession(rec, nil)
		e.c.Session = rec.ID
		e.dirty = true
		return w.evict(e, uid, rec.Device)
	})
}
