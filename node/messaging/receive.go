package messaging

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/pqxdh"
	"github.com/sealpost/sealpost/crypto/ratchet"
	"github.com/sealpost/sealpost/node/prekeys"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Incoming is one ciphertext that arrived for this node, with its
// sender's claims. On a direct stream the device is the stream's remote
// peer; on other paths (relay mailboxes) both claims are checked
// against the session that decrypts the ciphertext.
type Incoming struct {
	// Identity is the sender's public identity (crypto/identity encoding).
	Identity []byte
	// Device is the sender's device ID (libp2p peer ID bytes).
	Device []byte
	// Ciphertext is an encoded protocol.Ciphertext.
	Ciphertext []byte
	// Via is the path it took (ViaDirect, ViaRelayed, ViaMailbox), shown in
	// message.received. Zero: none is shown.
	Via string
}

// Paths of a received message (Message.Via in message.received).
const (
	// ViaDirect: a message stream on a direct connection.
	ViaDirect = "direct"
	// ViaRelayed: a message stream on a relayed (circuit relay v2)
	// connection.
	ViaRelayed = "relayed"
	// ViaMailbox: one of this node's mailboxes on a relay.
	ViaMailbox = "mailbox"
)

// maxBatchBytes bounds the frame bytes one receive job holds: what it
// commits stays well inside what badger takes in one transaction (about
// 1.2 MiB with the default memtable).
const maxBatchBytes = 512 << 10

// readAhead is the read buffer of a message stream: what has arrived up to
// this size is taken into one batch.
const readAhead = 64 << 10

// Receive processes ciphertexts in one store transaction and returns a
// wire code for each: protocol.CodeOK once the message is committed (or was
// already: a duplicate), another code when it was refused and nothing was
// committed for it. Only then may the caller acknowledge or delete the
// ciphertexts. The error is for a failed transaction: nothing is committed.
func (s *Service) Receive(ctx context.Context, items []Incoming) ([]protocol.Code, error) {
	codes := make([]protocol.Code, len(items))
	cts := make([]*protocol.Ciphertext, len(items))
	for i, it := range items {
		ct := new(protocol.Ciphertext)
		if err := ct.Unmarshal(it.Ciphertext); err != nil {
			codes[i] = protocol.CodeOf(err)
			continue
		}
		cts[i] = ct
	}
	// Jobs of at most MaxBatch items and maxBatchBytes each; the writer
	// may still commit several together.
	var jobs []*job
	for start := 0; start < len(items); {
		end, size := start, 0
		for end < len(items) && end-start < s.opt.MaxBatch && (end == start || size+len(items[end].Ciphertext) <= maxBatchBytes) {
			size += len(items[end].Ciphertext)
			end++
		}
		lo, hi := start, end
		j, err := s.submit(ctx, false, jobWeight(hi-lo, size), func(w *work) error {
			for i := lo; i < hi; i++ {
				if cts[i] == nil {
					continue
				}
				code, err := w.receive(&items[i], cts[i])
				if err != nil {
					return err
				}
				codes[i] = code
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
		start = end
	}
	for _, j := range jobs {
		if err := s.await(j); err != nil {
			return nil, err
		}
	}
	return codes, nil
}

// receive processes one ciphertext inside the writer's transaction.
func (w *work) receive(it *Incoming, ct *protocol.Ciphertext) (protocol.Code, error) {
	w.via = it.Via
	h := ct.SeenKey()
	if seen, err := w.seenHas(h); err != nil || seen {
		return protocol.CodeOK, err
	}
	pub, err := identity.ParsePublic(it.Identity)
	if err != nil {
		return protocol.CodeMalformed, nil
	}
	if pub.UserID() == w.s.uid {
		return protocol.CodeWrongSender, nil
	}
	if len(ct.Prekey) > 0 {
		return w.receiveFirst(it, ct, pub, h)
	}
	return w.receiveNext(it, ct, pub.UserID(), h)
}

// receiveNext decrypts a message of an existing session: the active one is
// tried first, then the other sessions kept with the device.
func (w *work) receiveNext(it *Incoming, ct *protocol.Ciphertext, uid identity.UserID, h [32]byte) (protocol.Code, error) {
	c, err := w.contact(uid)
	if err != nil {
		return 0, err
	}
	all, err := w.deviceSessions(uid, it.Device)
	if err != nil {
		return 0, err
	}
	if c != nil && bytes.Equal(c.c.Device, it.Device) {
		for i, e := range all {
			if e.rec.ID == c.c.Session && i > 0 {
				all[0], all[i] = all[i], all[0]
			}
		}
	}
	for _, e := range all {
		code, done, err := w.tryDecrypt(c, e, ct, h, nil)
		if err != nil || done {
			return code, err
		}
	}
	return protocol.CodeUnknownSession, nil
}

// firstInfo is what a verified PQXDH initial message told about its sender.
type firstInfo struct {
	pub    []byte // the initiator's public identity
	record *identity.DeviceRecord
}

// tryDecrypt decrypts ct in session e and, if it authenticates, commits
// it. done is false when the message is not of this session.
func (w *work) tryDecrypt(c *contactEntry, e *sessEntry, ct *protocol.Ciphertext, h [32]byte, first *firstInfo) (protocol.Code, bool, error) {
	st, err := e.state()
	if err != nil {
		w.s.log.Error("messaging: stored session does not decode", "err", err)
		return 0, false, nil
	}
	snap, err := st.MarshalBinary()
	if err != nil {
		return 0, false, err
	}
	pt, err := st.Decrypt(nil, ct.Ratchet, w.now)
	switch {
	case errors.Is(err, ratchet.ErrDecrypt):
		return 0, false, nil
	case errors.Is(err, ratchet.ErrDuplicate):
		// Of this session, at a position whose key was used, but not the
		// ciphertext seen then (the seen-set has every one received):
		// the sender encrypted again from an older state of the session
		// (its store was rolled back) and so under a message key it used
		// before. Answering ok would leave that message sent and never
		// delivered; decrypt_failed makes the sender encrypt it again, in
		// another session. (A ciphertext seen so long ago that the
		// seen-set forgot it gets the same answer; the copy the sender
		// makes again is the same message, stored once.)
		w.s.log.Info("messaging: a message reused a message key of its session (the sender's state went back); asking for it again in a new session",
			"user_id", e.rec.Peer.String())
		return protocol.CodeDecryptFailed, true, nil
	case err != nil:
		return protocol.CodeDecryptFailed, true, nil
	}
	var p protocol.Plaintext
	if err := p.Unmarshal(pt); err != nil {
		// Refuse it as if it had not decrypted: the sender is broken, and
		// keeps its message (failed, with the reason).
		if err := st.UnmarshalBinary(snap); err != nil {
			return 0, true, err
		}
		return protocol.CodeOf(err), true, nil
	}
	e.dirty = true
	e.rec.LastDecryptAt = w.now
	if !e.rec.Confirmed && (e.rec.Initiated || len(ct.Prekey) == 0) {
		// The peer decrypted one of ours in this session: it has our
		// card, and an initiator need not send the initial message any
		// more.
		e.rec.Confirmed = true
		e.rec.Prekey, e.rec.Invite = nil, nil
	}
	if err := w.promote(c, e, false); err != nil {
		return 0, true, err
	}
	code, err := w.deliver(c, e, &p, h, first)
	return code, true, err
}

// receiveFirst handles a message that carries a PQXDH initial message: one
// of a session the sender started and has not seen confirmed yet.
func (w *work) receiveFirst(it *Incoming, ct *protocol.Ciphertext, pub *identity.Public, h [32]byte) (protocol.Code, error) {
	uid := pub.UserID()
	im, err := pqxdh.ParseInitialMessage(ct.Prekey)
	if err != nil {
		return protocol.CodeMalformed, nil
	}
	if im.Initiator.UserID() != uid {
		return protocol.CodeMalformed, nil
	}
	if !bytes.Equal(im.InitiatorDevice.DeviceID(), it.Device) {
		return protocol.CodeWrongSender, nil
	}
	c, err := w.contact(uid)
	if err != nil {
		return 0, err
	}
	sid := sessionID(im)
	if e, err := w.session(uid, it.Device, sid); err != nil {
		return 0, err
	} else if e != nil {
		code, done, err := w.tryDecrypt(c, e, ct, h, nil)
		if err != nil || done {
			return code, err
		}
		return protocol.CodeDecryptFailed, nil
	}
	// Starting a session costs a KEM decapsulation and several DH and
	// signature checks: a device gets few of them per second.
	if w.s.firstLim.Take(peer.ID(it.Device), 1) == 0 {
		return protocol.CodeRateLimited, nil
	}
	replay := im.ReplayHash()
	if seen, err := w.seenHas(replay); err != nil || seen {
		// The session this message started is gone here: never start it
		// again (a replay, or a session removed since). PROTOCOL.md §9.6
		// answers decrypt_failed.
		return protocol.CodeDecryptFailed, err
	}
	r, err := w.s.pk.Responder(w.tx, im)
	if errors.Is(err, prekeys.ErrUnknownPrekey) {
		return protocol.CodeUnknownSession, nil
	}
	if err != nil {
		return 0, err
	}
	res, err := pqxdh.Respond(r, im)
	switch {
	case errors.Is(err, pqxdh.ErrNotForUs):
		return protocol.CodeMalformed, nil
	case errors.Is(err, pqxdh.ErrPrekeys):
		return protocol.CodeUnknownSession, nil
	case err != nil:
		return protocol.CodeDecryptFailed, nil
	}
	if err := checkDevice(res.InitiatorDevice, it.Device); err != nil {
		return protocol.CodeWrongSender, nil
	}
	st, err := ratchet.NewResponder(res.Secret, res.AD, res.SignedPrekey, res.Version)
	if err != nil {
		return protocol.CodeDecryptFailed, nil
	}
	pt, err := st.Decrypt(nil, ct.Ratchet, w.now)
	if err != nil {
		return protocol.CodeDecryptFailed, nil
	}
	var p protocol.Plaintext
	if err := p.Unmarshal(pt); err != nil {
		return protocol.CodeOf(err), nil
	}
	pubBytes, _ := res.Initiator.MarshalBinary()
	if c == nil {
		// A device we know under another identity: an identity change.
		// Nothing is committed for the message until the user verifies
		// the new key; the sender keeps retrying.
		other, err := w.contactByDevice(it.Device)
		if err != nil {
			return 0, err
		}
		if other != nil {
			card := w.pendingCard(res.Initiator, res.InitiatorDevice, p.Card)
			w.flagIdentityChange(other, pubBytes, card)
			return protocol.CodeUntrustedIdentity, nil
		}
	}
	rec := store.Session{Peer: uid, Device: bytes.Clone(it.Device), ID: sid,
		CreatedAt: w.now, LastDecryptAt: w.now, LastUsedAt: w.now}
	e := w.addSession(rec, st)
	if err := w.seenAddFirst(replay, im.SignedPrekeyID); err != nil {
		return 0, err
	}
	if res.UsedOneTime {
		if err := w.s.pk.Consume(w.tx, res.OneTimeID); err != nil {
			return 0, err
		}
		w.after(w.s.poke)
	}
	first := &firstInfo{pub: pubBytes, record: res.InitiatorDevice}
	if c == nil {
		if c, err = w.newContact(uid, e, first, &p); err != nil {
			return 0, err
		}
	} else {
		w.updateDevice(c, it.Device, res.InitiatorDevice)
		if err := w.promote(c, e, true); err != nil {
			return 0, err
		}
	}
	if err := w.evict(c, uid, it.Device); err != nil {
		return 0, err
	}
	return w.deliver(c, e, &p, h, first)
}

// updateDevice switches a contact to a new device of the same identity
// when its record is an update of the one held (v1 has one device per
// identity).
func (w *work) updateDevice(c *contactEntry, dev []byte, rec *identity.DeviceRecord) {
	if bytes.Equal(c.c.Device, dev) {
		return
	}
	if len(c.c.DeviceRecord) > 0 {
		old, err := identity.ParseDeviceRecord(c.c.DeviceRecord)
		if err == nil && identity.CheckUpdate(old, rec) != nil {
			return
		}
	}
	c.c.Device = bytes.Clone(dev)
	c.c.DeviceRecord, _ = rec.MarshalBinary()
	c.c.Addrs = nil
	c.c.Session = store.SessionID{}
	c.dirty = true
}

// newContact creates the contact of a stranger whose first message
// arrived: accepted if it presents a valid invite secret of ours, else a
// message request.
func (w *work) newContact(uid identity.UserID, e *sessEntry, first *firstInfo, p *protocol.Plaintext) (*contactEntry, error) {
	state := store.ContactRequest
	if !p.InviteSecret.IsZero() {
		inv, err := w.tx.Invites().Get(p.InviteSecret)
		switch {
		case err == nil:
			if w.now.Before(inv.ExpiresAt.Add(protocolTolerance)) {
				state = store.ContactAccepted
			}
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
	}
	base := ""
	if p.Card != nil {
		base = p.Card.Name
	}
	name, err := w.uniqueName(base, uid)
	if err != nil {
		return nil, err
	}
	rec, _ := first.record.MarshalBinary()
	c := w.addContact(store.Contact{
		UserID: uid, Name: name, Identity: first.pub, State: state,
		CreatedAt: w.now, UpdatedAt: w.now,
		Device: bytes.Clone(e.rec.Device), DeviceRecord: rec, Session: e.rec.ID,
	})
	if state == store.ContactRequest {
		ev := ContactEvent{Name: name, UserID: uid.String()}
		w.after(func() { w.s.cfg.Publish(EventContactRequest, ev) })
	} else if _, err := w.issueTokens(c); err != nil {
		// The card attached to the replies lists the new tokens.
		return nil, err
	}
	return c, nil
}

// deliver commits a decrypted plaintext: the message record (text), the
// states its receipt covers (receipts), the card, the sequence number and
// the seen-entry.
func (w *work) deliver(c *contactEntry, e *sessEntry, p *protocol.Plaintext, h [32]byte, first *firstInfo) (protocol.Code, error) {
	uid := e.rec.Peer
	if c != nil && c.c.State == store.ContactRequest {
		if err := w.seenAddRequest(uid, h, w.now.Add(w.s.opt.SeenRetention)); err != nil {
			return 0, err
		}
	} else if err := w.seenAdd(h, w.now.Add(w.s.opt.SeenRetention)); err != nil {
		return 0, err
	}
	var gap uint64
	if c != nil {
		if p.Card != nil {
			w.applyCard(c, p.Card)
		}
		if p.Seq > c.c.RecvSeq {
			gap = p.Seq - c.c.RecvSeq - 1
			c.c.RecvSeq = p.Seq
			c.c.UpdatedAt = w.now
			c.dirty = true
		}
	}
	switch p.Kind {
	case protocol.KindText, protocol.KindFile:
		id := p.ID
		if _, err := w.tx.Messages().Get(id); err == nil {
			return protocol.CodeOK, nil // the same message in another ciphertext
		} else if !errors.Is(err, store.ErrNotFound) {
			return 0, err
		}
		m := store.Message{ID: id, Peer: uid, Seq: p.Seq, Kind: uint8(p.Kind), Body: []byte(p.Text),
			SentAt: time.UnixMilli(p.SentAt), ReceivedAt: w.now, State: store.MessageReceived}
		if err := w.tx.Messages().Put(&m); err != nil {
			return 0, err
		}
		if c != nil && c.c.State == store.ContactRequest {
			if err := w.holdRequest(c, &m); err != nil {
				return 0, err
			}
		}
		accepted := c != nil && c.c.State == store.ContactAccepted && !c.c.IdentityChanged
		if p.Kind == protocol.KindFile && w.s.cfg.Files != nil {
			// The pointer becomes an incoming file in this transaction; a
			// message request's waits to be asked for.
			if err := w.s.cfg.Files.Received(w.tx, id, uid, p.File, w.now, accepted); err != nil {
				return 0, err
			}
			w.after(w.s.cfg.Files.Wake)
		}
		var cc *store.Contact
		if c != nil {
			cc = &c.c
			if accepted {
				w.receipt(uid, id)
			}
		}
		msg := w.s.apiMessage(w.tx, &m, cc)
		msg.Gap = gap
		msg.Via = w.via
		w.after(func() { w.s.cfg.Publish(EventMessageReceived, msg) })
	case protocol.KindDeliveryReceipt, protocol.KindReadReceipt:
		state := store.MessageDelivered
		if p.Kind == protocol.KindReadReceipt {
			state = store.MessageRead
		}
		for _, id := range p.Covers {
			if err := w.advance(uid, id, state); err != nil {
				return 0, err
			}
		}
		fallthrough
	default:
		if p.Kind == protocol.KindGroup {
			if err := w.groupControl(c, uid, p); err != nil {
				return 0, err
			}
		}
		// Receipts, cards and the reserved kinds are recorded without a
		// body, so that their sequence numbers are not shown as gaps.
		id := p.ID
		if _, err := w.tx.Messages().Get(id); err == nil {
			return protocol.CodeOK, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return 0, err
		}
		m := store.Message{ID: id, Peer: uid, Seq: p.Seq, Kind: uint8(p.Kind),
			SentAt: time.UnixMilli(p.SentAt), ReceivedAt: w.now, State: store.MessageReceived}
		if err := w.tx.Messages().Put(&m); err != nil {
			return 0, err
		}
		if c != nil && c.c.State == store.ContactRequest {
			if err := w.holdRequest(c, &m); err != nil {
				return 0, err
			}
		}
	}
	return protocol.CodeOK, nil
}

// groupControl hands a contact's group control to the group engine: it
// goes to store.Groups' inbox in the transaction that commits the message,
// so that it is handled once, after a crash too. A control from a stranger
// (no contact) is dropped: only contacts invite or answer.
func (w *work) groupControl(c *contactEntry, uid identity.UserID, p *protocol.Plaintext) error {
	if c == nil {
		return nil
	}
	if _, err := w.tx.Messages().Get(p.ID); err == nil {
		return nil // handled when it first arrived
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	b, err := p.Group.Marshal()
	if err != nil {
		return err
	}
	e := store.GroupInboxEntry{From: uid, Accepted: c.c.State == store.ContactAccepted && !c.c.IdentityChanged, Control: b, ReceivedAt: w.now}
	if err := w.tx.Groups().AddInbox(e); err != nil {
		return err
	}
	w.after(w.s.cfg.OnGroupControl)
	return nil
}

// stateRank orders the states of an outgoing message; a receipt or an
// acknowledgement only ever moves a message up.
func stateRank(s store.MessageState) int {
	switch s {
	case store.MessageSent:
		return 1
	case store.MessageDelivered:
		return 2
	case store.MessageRead:
		return 3
	}
	return 0 // queued, failed
}

// advance moves the outgoing text message id to peer to state (delivered
// or read) if that is further than where it is; the outbox entry goes.
func (w *work) advance(peer identity.UserID, id protocol.MessageID, state store.MessageState) error {
	m, err := w.tx.Messages().Get(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !m.Outgoing || m.Peer != peer || !shown(m.Kind) || stateRank(m.State) >= stateRank(state) {
		return nil
	}
	m.State, m.Reason = state, ""
	if err := w.tx.Messages().Put(&m); err != nil {
		return err
	}
	if err := w.tx.Outbox().Delete(id); err != nil {
		return err
	}
	w.stateChanged(&m)
	return nil
}

// stateChanged publishes message.state and wakes waiters after the commit.
func (w *work) stateChanged(m *store.Message) {
	ev := StateEvent{ID: m.ID.String(), Peer: m.Peer.String(), State: m.State.String(), Reason: m.Reason}
	id, st := m.ID, m.State
	w.after(func() {
		w.s.cfg.Publish(EventMessageState, ev)
		w.s.waiters.notify(id, st)
	})
}

// applyCard takes a card the peer sent in an authenticated session: it
// must name the session's identity and the contact's device; a newer card
// replaces the addresses, the display name and the card kept.
func (w *work) applyCard(c *contactEntry, card *protocol.Card) {
	if card.Seq <= c.c.CardSeq {
		return
	}
	pub, err := identity.ParsePublic(card.Identity)
	if err != nil || pub.UserID() != c.c.UserID || pub.Verify() != nil {
		w.s.log.Info("messaging: ignored a card that names another identity")
		return
	}
	rec, err := identity.ParseDeviceRecord(card.Device)
	if err != nil || rec.Verify() != nil || rec.Identity() != c.c.UserID || checkDevice(rec, rec.DeviceID()) != nil {
		w.s.log.Info("messaging: ignored a card with an invalid device record")
		return
	}
	if !bytes.Equal(rec.DeviceID(), c.c.Device) {
		return // another device: v1 keeps one device per identity
	}
	c.c.Identity = bytes.Clone(card.Identity)
	if len(c.c.DeviceRecord) > 0 {
		if old, err := identity.ParseDeviceRecord(c.c.DeviceRecord); err == nil && identity.CheckUpdate(old, rec) == nil {
			c.c.DeviceRecord = bytes.Clone(card.Device)
		}
	} else {
		c.c.DeviceRecord = bytes.Clone(card.Device)
	}
	c.c.Addrs = validAddrs(card.Addrs)
	c.c.CardSeq = card.Seq
	if b, err := card.Marshal(); err == nil && len(b) <= store.MaxCardLen {
		c.c.Card = b
	}
	c.c.UpdatedAt = w.now
	c.dirty = true
}

// validAddrs keeps the binary multiaddrs that parse, at most
// protocol.MaxCardAddrs.
func validAddrs(addrs [][]byte) [][]byte {
	var out [][]byte
	for _, a := range addrs {
		if len(out) == protocol.MaxCardAddrs {
			break
		}
		if _, err := ma.NewMultiaddrBytes(a); err == nil && len(a) <= store.MaxAddrLen {
			out = append(out, bytes.Clone(a))
		}
	}
	return out
}

// pendingCard is what is kept of a new identity until the user verifies
// it: the card it sent if that card names it, else a card made of its
// verified identity and device record.
func (w *work) pendingCard(pub *identity.Public, rec *identity.DeviceRecord, sent *protocol.Card) []byte {
	card := protocol.Card{Seq: 1, UpdatedAt: max(w.now.UnixMilli(), 1)}
	card.Identity, _ = pub.MarshalBinary()
	card.Device, _ = rec.MarshalBinary()
	if sent != nil {
		if p, err := identity.ParsePublic(sent.Identity); err == nil && p.UserID() == pub.UserID() {
			card.Name = sent.Name
			card.Addrs = validAddrs(sent.Addrs)
		}
	}
	b, err := card.Marshal()
	if err != nil {
		card.Addrs, card.Name = nil, ""
		b, _ = card.Marshal()
	}
	return b
}

// flagIdentityChange marks contact c as having presented a new identity.
func (w *work) flagIdentityChange(c *contactEntry, pub, card []byte) {
	if c.c.IdentityChanged && bytes.Equal(c.c.PendingIdentity, pub) {
		return
	}
	c.c.IdentityChanged = true
	c.c.PendingIdentity = bytes.Clone(pub)
	c.c.PendingCard = card
	c.c.Verified = false
	c.c.UpdatedAt = w.now
	c.dirty = true
	ev := IdentityEvent{Name: c.c.Name, UserID: c.c.UserID.String()}
	if p, err := identity.ParsePublic(pub); err == nil {
		ev.NewUserID = p.UserID().String()
	}
	w.after(func() { w.s.cfg.Publish(EventIdentityChanged, ev) })
}
