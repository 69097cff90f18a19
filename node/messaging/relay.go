package messaging

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdh"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/prekey"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/node/prekeys"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Relays. The service receives through its own mailboxes on
// community relays and deposits into its contacts' mailboxes, all through
// Config.Mailbox (node/mailbox), never the device's host.
//
// Tokens: each own mailbox has one deposit token per live invite (derived
// from the invite secret, protocol.InviteToken) and one per accepted
// contact (random). A token is created in the store first and registered
// on the relay by the token loop (syncRelays), which also revokes the
// tokens of removed contacts and revoked or expired invites, and uploads
// the card blob of each invite token (mailbox.SealCard: the own card with
// the invite's tokens, and the bundle version the invite pins) and the
// bundle blob of each contact's token (mailbox.SealBundle: the current
// bundle version, under K_pk). The card a contact gets (cardFor) lists the
// own mailboxes with that contact's tokens and their K_pk; creating tokens for a contact raises the own card's sequence
// number, so the contact takes the new card.
//
// Sending: a delivery loop whose direct connection fails (within
// Options.RelayAfter, when the contact lists mailboxes) deposits what it
// holds on every relay the contact lists instead, sealed per mailbox
// (deposit). An entry with at least one custody receipt is sent; it stays
// in the outbox until a delivery receipt, and is deposited again on a
// relay whose receipt's stored-until passes (less the clock tolerance) or
// that has none yet. Receipts and cards are done with their first custody
// receipt (they get no end-to-end receipt).
//
// Receiving: the mailbox client fetches every own mailbox's backlog, then
// subscribes; what arrives goes through Receive (seen-set first, one
// transaction) and is deleted on the relay only after it committed, or
// refused for good (receiveRelayed).

// ErrRelayExists: the node already has a mailbox on that relay. API:
// conflict (exit 1).
var ErrRelayExists = errors.New("messaging: the node already receives through that relay")

// ErrUnknownRelay: no own mailbox is on that relay. API: not_found (exit 1).
var ErrUnknownRelay = errors.New("messaging: unknown relay")

// ErrNoRelays: the node has no mailbox client. API: unavailable (exit 2).
var ErrNoRelays = errors.New("messaging: relays are not available on this node")

// maxRelays bounds the own mailboxes: a card lists at most this many.
const maxRelays = protocol.MaxMailboxes

// Relay is one relay the node receives through, as the API shows it.
type Relay struct {
	// ID is the relay's peer ID.
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"`
	// Mailbox is the mailbox ID in hex.
	Mailbox string `json:"mailbox"`
	// State is connecting, fetching, subscribed or error (Error says
	// why).
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// Stored and StoredBytes are what the relay reported holding for the
	// mailbox; Prekeys the one-time prekeys it holds.
	Stored      uint64    `json:"stored"`
	StoredBytes uint64    `json:"stored_bytes"`
	Prekeys     uint64    `json:"prekeys"`
	CreatedAt   time.Time `json:"created_at"`
}

// AddRelay makes a mailbox on the relay at addr (a multiaddr with /p2p/)
// and receives through it from then on: it registers a token for each
// live invite and each accepted contact, and sends those contacts a card
// update that lists the new mailbox; invites made afterwards list it.
func (s *Service) AddRelay(ctx context.Context, addr string) (Relay, error) {
	if s.mb == nil {
		return Relay{}, ErrNoRelays
	}
	id, _, err := mailbox.ParseAddr(addr)
	if err != nil {
		return Relay{}, fmt.Errorf("%w: %v", ErrInvalidRelay, err)
	}
	if id == s.host.ID() {
		return Relay{}, fmt.Errorf("%w: that is this node", ErrInvalidRelay)
	}
	var boxes []store.Mailbox
	if err := s.st.View(ctx, func(tx *store.Tx) error {
		var err error
		boxes, err = tx.Mailboxes().List()
		return err
	}); err != nil {
		return Relay{}, err
	}
	if slices.ContainsFunc(boxes, func(m store.Mailbox) bool { return m.Relay == id.String() }) {
		return Relay{}, fmt.Errorf("%w: %s", ErrRelayExists, id)
	}
	if len(boxes) >= maxRelays {
		return Relay{}, fmt.Errorf("%w: at most %d relays", ErrTooManyRelays, maxRelays)
	}
	m, err := s.mb.Create(ctx, addr)
	if err != nil {
		return Relay{}, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	err = s.do(ctx, true, func(w *work) error {
		if err := w.tx.Mailboxes().Put(m); err != nil {
			return err
		}
		w.relayCache = nil
		invites, err := w.tx.Invites().List()
		if err != nil {
			return err
		}
		for _, inv := range invites {
			if !w.now.Before(inv.ExpiresAt) {
				continue
			}
			tok := protocol.InviteToken(inv.Secret, m.ID)
			if err := w.putToken(store.DepositToken{Token: store.TokenID(tok), Relay: m.Relay, Mailbox: m.ID,
				Invite: inv.Secret, CreatedAt: w.now, ExpiresAt: inv.ExpiresAt}); err != nil {
				return err
			}
		}
		if err := w.loadAllContacts(); err != nil {
			return err
		}
		for _, c := range w.sortedContacts() {
			if c.c.State != store.ContactAccepted || c.c.IdentityChanged {
				continue
			}
			if _, err := w.issueTokens(c); err != nil {
				return err
			}
			if _, err := w.queue(c, outgoing{kind: kindCard}); err != nil && !errors.Is(err, errNoSession) {
				return err
			}
		}
		return w.bumpCard()
	})
	if err != nil {
		return Relay{}, err
	}
	s.mb.Refresh()
	if err := s.syncRelays(ctx); err != nil {
		s.log.Info("messaging: relay tokens not all registered yet", "err", err)
	}
	s.pokeRelays()
	return s.relayOf(&m), nil
}

// ErrInvalidRelay: a relay address is malformed. API: bad_request (exit 1).
var ErrInvalidRelay = errors.New("messaging: invalid relay address")

// ErrTooManyRelays: the node has as many relays as a card can list. API:
// limit (exit 5).
var ErrTooManyRelays = errors.New("messaging: too many relays")

// Relays returns the relays the node receives through, by peer ID.
func (s *Service) Relays(ctx context.Context) ([]Relay, error) {
	var boxes []store.Mailbox
	if err := s.st.View(ctx, func(tx *store.Tx) error {
		var err error
		boxes, err = tx.Mailboxes().List()
		return err
	}); err != nil {
		return nil, err
	}
	out := make([]Relay, 0, len(boxes))
	for i := range boxes {
		out = append(out, s.relayOf(&boxes[i]))
	}
	slices.SortFunc(out, func(a, b Relay) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// relayOf is the API view of an own mailbox.
func (s *Service) relayOf(m *store.Mailbox) Relay {
	r := Relay{ID: m.Relay, Addrs: m.Addrs, Mailbox: hex.EncodeToString(m.ID[:]), State: mailbox.StateConnecting, CreatedAt: m.CreatedAt}
	if r.Addrs == nil {
		r.Addrs = []string{}
	}
	if s.mb != nil {
		for _, st := range s.mb.Statuses() {
			if st.Mailbox == m.ID {
				r.State, r.Error, r.Stored, r.StoredBytes, r.Prekeys = st.State, st.Err, st.Stored, st.StoredBytes, st.Prekeys
			}
		}
	}
	return r
}

// RemoveRelay stops receiving through the relay whose peer ID (or mailbox
// ID in hex) is id: it deletes the mailbox on the relay (if the relay
// answers) and here, with its tokens, and sends accepted contacts a card
// without it. Messages still on the relay are lost with it.
func (s *Service) RemoveRelay(ctx context.Context, id string) error {
	if s.mb == nil {
		return ErrNoRelays
	}
	var m *store.Mailbox
	if err := s.st.View(ctx, func(tx *store.Tx) error {
		boxes, err := tx.Mailboxes().List()
		for i := range boxes {
			if boxes[i].Relay == id || hex.EncodeToString(boxes[i].ID[:]) == id {
				m = &boxes[i]
			}
		}
		return err
	}); err != nil {
		return err
	}
	if m == nil {
		return fmt.Errorf("%w: %q", ErrUnknownRelay, id)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := s.mb.Delete(dctx, m); err != nil {
		s.log.Info("messaging: the relay did not delete the mailbox", "relay", m.Relay, "err", err)
	}
	cancel()
	err := s.do(ctx, true, func(w *work) error {
		if err := w.tx.Mailboxes().Delete(m.ID); err != nil {
			return err
		}
		w.relayCache = nil
		toks, err := w.tx.DepositTokens().List()
		if err != nil {
			return err
		}
		for _, t := range toks {
			if t.Mailbox == m.ID {
				if err := w.tx.DepositTokens().Delete(t.Token); err != nil {
					return err
				}
			}
		}
		if err := w.bumpCard(); err != nil {
			return err
		}
		return w.announceCard()
	})
	s.mb.Forget(m)
	s.pokeRelays()
	return err
}

// relayState is a transaction's cache of the own mailboxes and tokens.
type relayState struct {
	boxes  []store.Mailbox
	tokens []store.DepositToken
}

// relays loads the own mailboxes and tokens once per transaction.
func (w *work) relays() (*relayState, error) {
	if w.relayCache != nil {
		return w.relayCache, nil
	}
	boxes, err := w.tx.Mailboxes().List()
	if err != nil {
		return nil, err
	}
	toks, err := w.tx.DepositTokens().List()
	if err != nil {
		return nil, err
	}
	w.relayCache = &relayState{boxes: boxes, tokens: toks}
	return w.relayCache, nil
}

// putToken writes a token and keeps the cache in step.
func (w *work) putToken(t store.DepositToken) error {
	if err := w.tx.DepositTokens().Put(t); err != nil {
		return err
	}
	if rs := w.relayCache; rs != nil {
		i := slices.IndexFunc(rs.tokens, func(x store.DepositToken) bool { return x.Token == t.Token })
		if i >= 0 {
			rs.tokens[i] = t
		} else {
			rs.tokens = append(rs.tokens, t)
		}
	}
	w.after(func() { w.s.pokeRelays() })
	return nil
}

// issueTokens gives contact c a token on every own mailbox where it has
// none, and raises the card's sequence number if it did (so that c takes
// the card with them). It reports whether it made any.
func (w *work) issueTokens(c *contactEntry) (bool, error) {
	rs, err := w.relays()
	if err != nil {
		return false, err
	}
	made := false
	for _, m := range rs.boxes {
		if slices.ContainsFunc(rs.tokens, func(t store.DepositToken) bool {
			return t.Mailbox == m.ID && t.Contact == c.c.UserID && !t.Revoked
		}) {
			continue
		}
		var tok store.TokenID
		if _, err := w.s.rand.Read(tok[:]); err != nil {
			return false, err
		}
		if err := w.putToken(store.DepositToken{Token: tok, Relay: m.Relay, Mailbox: m.ID, Contact: c.c.UserID, CreatedAt: w.now}); err != nil {
			return false, err
		}
		made = true
	}
	if made {
		return true, w.bumpCard()
	}
	return false, nil
}

// revokeTokens marks the tokens of contact uid (or, with uid zero, of the
// invite secret inv) revoked; the token loop revokes them on the relays.
func (w *work) revokeTokens(uid identity.UserID, inv protocol.InviteSecret) error {
	rs, err := w.relays()
	if err != nil {
		return err
	}
	for _, t := range slices.Clone(rs.tokens) {
		if t.Revoked || (uid != (identity.UserID{}) && t.Contact != uid) ||
			(uid == (identity.UserID{}) && (t.Contact != (identity.UserID{}) || t.Invite != inv)) {
			continue
		}
		t.Revoked = true
		if err := w.putToken(t); err != nil {
			return err
		}
	}
	return nil
}

// bumpCard stores the own card again with the next sequence number: what
// some contact's card says changed (its tokens, the mailboxes).
func (w *work) bumpCard() error {
	self, err := w.tx.Self()
	if err != nil {
		return err
	}
	card := *w.s.ownCard()
	card.Seq++
	card.UpdatedAt = max(w.now.UnixMilli(), card.UpdatedAt)
	b, err := card.Marshal()
	if err != nil {
		return err
	}
	self.Card = b
	if err := w.tx.PutSelf(self); err != nil {
		return err
	}
	w.s.setCard(&card)
	return nil
}

// boxEntry makes the card entry of own mailbox m with token tok.
func boxEntry(m *store.Mailbox, tok []byte) (protocol.Mailbox, error) {
	id, err := peer.Decode(m.Relay)
	if err != nil {
		return protocol.Mailbox{}, err
	}
	priv, err := ecdh.X25519().NewPrivateKey(m.SealingKey)
	if err != nil {
		return protocol.Mailbox{}, err
	}
	e := protocol.Mailbox{Relay: []byte(id), ID: m.ID, Token: bytes.Clone(tok)}
	copy(e.SealingKey[:], priv.PublicKey().Bytes())
	copy(e.PrekeyKey[:], mailbox.PrekeyKey(m.SealingKey, m.ID))
	for _, s := range m.Addrs {
		if len(e.RelayAddrs) == protocol.MaxMailboxAddrs {
			break
		}
		if a, err := ma.NewMultiaddr(s); err == nil && len(a.Bytes()) <= protocol.MaxAddr {
			e.RelayAddrs = append(e.RelayAddrs, a.Bytes())
		}
	}
	if len(e.RelayAddrs) == 0 {
		return protocol.Mailbox{}, errors.New("no usable relay address")
	}
	return e, nil
}

// cardWith returns the own card with the mailboxes whose token pick
// returns (nil: the mailbox is left out).
func (s *Service) cardWith(boxes []store.Mailbox, pick func(m *store.Mailbox) []byte) *protocol.Card {
	base := s.ownCard()
	card := *base
	card.Mailboxes = nil
	for i := range boxes {
		tok := pick(&boxes[i])
		if tok == nil {
			continue
		}
		e, err := boxEntry(&boxes[i], tok)
		if err != nil {
			s.log.Warn("messaging: an own mailbox cannot go in a card", "relay", boxes[i].Relay, "err", err)
			continue
		}
		card.Mailboxes = append(card.Mailboxes, e)
	}
	for {
		if _, err := card.Marshal(); err == nil || len(card.Mailboxes) == 0 {
			break
		}
		// Too large: fewer relay addresses, then fewer mailboxes.
		trimmed := false
		for i := range card.Mailboxes {
			if len(card.Mailboxes[i].RelayAddrs) > 1 {
				card.Mailboxes[i].RelayAddrs = card.Mailboxes[i].RelayAddrs[:1]
				trimmed = true
			}
		}
		if !trimmed {
			card.Mailboxes = card.Mailboxes[:len(card.Mailboxes)-1]
		}
	}
	return &card
}

// cardFor returns the own card as contact c gets it: with c's tokens on
// the own mailboxes.
func (w *work) cardFor(c *contactEntry) (*protocol.Card, error) {
	rs, err := w.relays()
	if err != nil {
		return nil, err
	}
	return w.s.cardWith(rs.boxes, func(m *store.Mailbox) []byte {
		for _, t := range rs.tokens {
			if t.Mailbox == m.ID && t.Contact == c.c.UserID && !t.Revoked {
				return t.Token[:]
			}
		}
		return nil
	}), nil
}

// pokeRelays wakes the token loop.
func (s *Service) pokeRelays() {
	select {
	case s.relayWake <- struct{}{}:
	default:
	}
}

// relayLoop runs the token loop (syncRelays) when poked, after failures
// with backoff, and every MaintainEvery.
func (s *Service) relayLoop() {
	t := s.clock.NewTimer(0)
	defer t.Stop()
	backoff := s.opt.RetryMin
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C():
		case <-s.relayWake:
		case <-s.mb.Changed():
			if !s.prekeysUnknown.Load() && !s.prekeysLow() {
				continue // nothing the token loop would do
			}
		}
		if err := s.syncRelays(s.ctx); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.log.Info("messaging: relay tokens: will retry", "err", err, "in", backoff)
			t.Reset(backoff)
			backoff = min(2*backoff, s.opt.RetryMax)
			continue
		}
		backoff = s.opt.RetryMin
		if s.prekeysUnknown.Load() {
			// A mailbox's relay has not told its prekey count yet.
			t.Reset(10 * s.opt.RetryMin)
		} else {
			t.Reset(s.opt.MaintainEvery)
		}
	}
}

// syncRelays brings the relays in line with the token table: it registers
// new tokens, revokes withdrawn and expired ones (and forgets them), and
// uploads the card blob of every invite token whose blob is older than
// the own card. It returns the first failure after trying everything.
func (s *Service) syncRelays(ctx context.Context) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	var (
		boxes   = map[protocol.MailboxID]*store.Mailbox{}
		all     []store.Mailbox
		toks    []store.DepositToken
		invites = map[protocol.InviteSecret]store.Invite{}
		seq     uint64
		bundles = map[protocol.InviteSecret][]byte{}
		current *prekeys.Version // the bundle of contacts' bundle blobs
	)
	now := s.clock.Now()
	err := s.st.View(ctx, func(tx *store.Tx) error {
		var err error
		if all, err = tx.Mailboxes().List(); err != nil {
			return err
		}
		if toks, err = tx.DepositTokens().List(); err != nil {
			return err
		}
		invs, err := tx.Invites().List()
		if err != nil {
			return err
		}
		if v, err := s.pk.Current(tx); err == nil {
			current = v
		}
		for _, inv := range invs {
			invites[inv.Secret] = inv
			if v, err := s.pk.Pinned(tx, inv.Pin); err == nil {
				if b, err := v.Bundle(); err == nil {
					bundles[inv.Secret] = b
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range all {
		boxes[all[i].ID] = &all[i]
	}
	seq = s.ownCard().Seq
	var first error
	note := func(err error) {
		if first == nil {
			first = err
		}
	}
	for _, t := range toks {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m := boxes[t.Mailbox]
		isInvite := t.Contact == (identity.UserID{})
		inv, live := invites[t.Invite]
		expired := isInvite && (!live || !now.Before(t.ExpiresAt.Add(protocolTolerance)))
		switch {
		case m == nil:
			note(s.tokenDone(ctx, t, true))
			continue
		case t.Revoked || expired:
			if t.Registered {
				if err := s.mb.Revoke(ctx, m, t.Token[:]); err != nil {
					note(err)
					continue
				}
			}
			note(s.tokenDone(ctx, t, true))
			continue
		}
		justRegistered := false
		if !t.Registered {
			if err := s.mb.Register(ctx, m, mailbox.Quota{}, t.Token[:]); err != nil {
				note(err)
				continue
			}
			t.Registered, justRegistered = true, true
		}
		if !isInvite {
			// A contact's token: the bundle blob of the current bundle
			// version (whose number CardSeq keeps).
			changed := justRegistered
			if current != nil && t.CardSeq != uint64(current.ID) {
				if err := s.putBundleBlob(ctx, m, t.Token[:], current); err != nil {
					note(err)
				} else {
					t.CardSeq, changed = uint64(current.ID), true
				}
			}
			if changed {
				note(s.tokenDone(ctx, t, false))
			}
			continue
		}
		if t.CardSeq >= seq || bundles[inv.Secret] == nil {
			// (Without the pinned bundle the invite is about to expire.)
			if justRegistered {
				note(s.tokenDone(ctx, t, false))
			}
			continue
		}
		bundle := bundles[inv.Secret]
		card := s.cardWith(all, func(m *store.Mailbox) []byte {
			for _, x := range toks {
				if x.Mailbox == m.ID && x.Invite == t.Invite && x.Contact == (identity.UserID{}) && !x.Revoked {
					return x.Token[:]
				}
			}
			return nil
		})
		cb, err := card.Marshal()
		if err != nil {
			note(err)
			continue
		}
		blob, err := mailbox.SealCard(inv.Secret, t.Mailbox, cb, bundle, mailbox.PrekeyKey(m.SealingKey, m.ID), s.rand)
		if err != nil {
			note(err)
			continue
		}
		if err := s.mb.PutCard(ctx, m, t.Token[:], blob); err != nil {
			note(err)
			continue
		}
		t.CardSeq = card.Seq
		note(s.tokenDone(ctx, t, false))
	}
	s.prekeysUnknown.Store(false)
	for i := range all {
		note(s.refillPrekeys(ctx, &all[i]))
	}
	return first
}

// putBundleBlob uploads, under a contact's token tok on own mailbox m,
// the bundle blob of bundle version v (mailbox.SealBundle): what the
// contact starts a session from while this device is offline.
func (s *Service) putBundleBlob(ctx context.Context, m *store.Mailbox, tok []byte, v *prekeys.Version) error {
	b, err := v.Bundle()
	if err != nil {
		return err
	}
	blob, err := mailbox.SealBundle(mailbox.PrekeyKey(m.SealingKey, m.ID), m.ID, b, s.rand)
	if err != nil {
		return err
	}
	return s.mb.PutCard(ctx, m, tok, blob)
}

// Relay one-time prekeys: a mailbox whose relay reports fewer than
// relayPrekeysLow gets a batch of up to relayPrekeysBatch, made by
// prekeys.Manager.ForRelay (disjoint from the node's own) and encrypted
// under the mailbox's K_pk (mailbox.PrekeyKey, in the invites' card
// blobs). A batch expires a rotation period before its keys get too old
// for an initiator.
const (
	relayPrekeysLow   = 8
	relayPrekeysBatch = protocol.MaxPrekeyBatch
)

// prekeysLow reports whether a subscribed mailbox's relay holds few
// one-time prekeys.
func (s *Service) prekeysLow() bool {
	for _, st := range s.mb.Statuses() {
		if st.State == mailbox.StateSubscribed && st.Prekeys < relayPrekeysLow {
			return true
		}
	}
	return false
}

// refillPrekeys uploads a batch of one-time prekeys to m's relay if the
// relay reported it holds few (only once it reported at all).
func (s *Service) refillPrekeys(ctx context.Context, m *store.Mailbox) error {
	var have uint64
	known := false
	for _, st := range s.mb.Statuses() {
		if st.Mailbox == m.ID && st.State == mailbox.StateSubscribed {
			have, known = st.Prekeys, true
		}
	}
	if !known {
		s.prekeysUnknown.Store(true)
		return nil
	}
	if have >= relayPrekeysLow {
		return nil
	}
	var keys []*prekey.OneTimePrekey
	err := s.do(ctx, false, func(w *work) error {
		var err error
		keys, err = w.s.pk.ForRelay(w.tx, relayPrekeysBatch-int(have), w.now)
		return err
	})
	if err != nil || len(keys) == 0 {
		return err
	}
	kpk := mailbox.PrekeyKey(m.SealingKey, m.ID)
	blobs := make([][]byte, 0, len(keys))
	created := keys[0].CreatedAt()
	for _, k := range keys {
		rec, err := k.MarshalBinary()
		if err != nil {
			return err
		}
		b, err := mailbox.SealPrekey(kpk, m.ID, rec, s.rand)
		if err != nil {
			return err
		}
		blobs = append(blobs, b)
	}
	expires := created.Add(prekey.MaxAge - s.pk.Policy().RotateEvery)
	_, err = s.mb.PutPrekeys(ctx, m, blobs, expires)
	return err
}

// tokenDone commits what the token loop did for t: the record deleted,
// or its registration and card state updated (unless it changed
// meanwhile).
func (s *Service) tokenDone(ctx context.Context, t store.DepositToken, del bool) error {
	return s.do(ctx, false, func(w *work) error {
		cur, err := w.tx.DepositTokens().Get(t.Token)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if del {
			w.relayCache = nil
			return w.tx.DepositTokens().Delete(t.Token)
		}
		if cur.Revoked {
			return nil // revoked meanwhile: the next round revokes it
		}
		cur.Registered = cur.Registered || t.Registered
		cur.CardSeq = max(cur.CardSeq, t.CardSeq)
		w.relayCache = nil
		return w.tx.DepositTokens().Put(cur)
	})
}

// receiveRelayed is the mailbox client's handler: it commits what arrived
// through Receive and lets the relay delete what is committed, and what
// will never be (it does not decode or decrypt). It keeps on the relay
// what may be taken later: refused for a rate limit, an identity change
// waiting for the user, or an internal fault.
//
// A message that decrypts in no session here (unknown_session,
// decrypt_failed) and claims to come from an accepted contact's device
// was encrypted in a session this node no longer has. On a direct stream
// the sender learns that from the Ack and encrypts again; through a relay
// nothing goes back, so this node starts a new session with that contact
// and sends its card in it (renewSession): a new session from the peer
// that replaces one the sender had confirmed makes the sender encrypt
// again, in it, what waits for this node (promote, requeueLost).
func (s *Service) receiveRelayed(ctx context.Context, ds []mailbox.Delivery) ([]bool, error) {
	items := make([]Incoming, len(ds))
	for i, d := range ds {
		items[i] = Incoming{Identity: d.Sender, Device: d.Device, Ciphertext: d.Payload, Via: ViaMailbox}
	}
	codes, err := s.Receive(ctx, items)
	if err != nil {
		return nil, err
	}
	done := make([]bool, len(ds))
	for i, c := range codes {
		switch c {
		case protocol.CodeRateLimited, protocol.CodeUntrustedIdentity, protocol.CodeInternal:
		default:
			done[i] = true
		}
		if c != protocol.CodeOK {
			s.log.Debug("messaging: refused a relayed message", "code", c.String())
		}
		if c == protocol.CodeUnknownSession || c == protocol.CodeDecryptFailed {
			s.renewSession(ds[i].Sender, ds[i].Device)
		}
	}
	return done, nil
}

// renewSession starts a new session with the contact whose identity and
// device a relayed message that decrypted nowhere claims, and sends the
// own card in it, unless the claim is not an accepted contact's, a
// renewal with that contact is under way, or one was started less than
// Options.RenewEvery ago. The claim is unauthenticated (the sealed
// sender's), so all it can make this node do is that, at that rate.
func (s *Service) renewSession(identityKey, device []byte) {
	pub, err := identity.ParsePublic(identityKey)
	if err != nil {
		return
	}
	uid := pub.UserID()
	now := s.clock.Now()
	o := s.out
	o.mu.Lock()
	if o.establishing[uid] || now.Sub(o.renewed[uid]) < s.opt.RenewEvery && !o.renewed[uid].IsZero() {
		o.mu.Unlock()
		return
	}
	o.establishing[uid] = true
	o.mu.Unlock()
	ok := s.spawn(func() {
		started := false
		defer func() {
			o.mu.Lock()
			delete(o.establishing, uid)
			if started {
				o.renewed[uid] = now
			}
			o.mu.Unlock()
		}()
		eligible := false
		err := s.st.View(s.ctx, func(tx *store.Tx) error {
			w := newWork(s, tx, now)
			c, err := w.contact(uid)
			if err != nil || c == nil || c.c.State != store.ContactAccepted || c.c.IdentityChanged ||
				!bytes.Equal(c.c.Identity, identityKey) || !bytes.Equal(c.c.Device, device) {
				return err
			}
			a, err := w.session(uid, c.c.Device, c.c.Session)
			if err != nil {
				return err
			}
			// A session this node started lately and the peer has not
			// answered in yet: that is the renewal, still on its way.
			eligible = a == nil || !a.rec.Initiated || a.rec.Confirmed || now.Sub(a.rec.CreatedAt) >= s.opt.RenewEvery
			return nil
		})
		if err != nil || !eligible {
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, 2*s.opt.DialTimeout)
		defer cancel()
		if err := s.establish(ctx, uid, true); err != nil {
			s.log.Info("messaging: could not start a new session after a relayed message that does not decrypt",
				"user_id", uid.String(), "err", err)
			return
		}
		started = true
		err = s.do(ctx, false, func(w *work) error {
			c, err := w.contact(uid)
			if err != nil || c == nil {
				return err
			}
			_, err = w.queue(c, outgoing{kind: kindCard})
			if errors.Is(err, errNoSession) {
				return nil
			}
			return err
		})
		if err != nil {
			s.log.Warn("messaging: queue the card of a new session", "err", err)
			return
		}
		s.log.Info("messaging: a relayed message decrypted in no session: started a new one with its sender",
			"user_id", uid.String())
	})
	if !ok {
		o.mu.Lock()
		delete(o.establishing, uid)
		o.mu.Unlock()
	}
}

// contactBoxes returns the mailboxes a contact's card lists.
func contactBoxes(c *store.Contact) []protocol.Mailbox {
	if len(c.Card) == 0 {
		return nil
	}
	var card protocol.Card
	if card.Unmarshal(c.Card) != nil {
		return nil
	}
	return card.Mailboxes
}

// deposit is the relay path of a delivery loop: it seals each item per
// mailbox the contact lists, deposits it on every relay that holds no
// receipt of it still valid, and commits the receipts: an entry with one
// is sent (a receipt or card is done), and waits for its delivery receipt
// until the first stored-until passes; one without is rescheduled.
func (o *outbox) deposit(boxes []protocol.Mailbox, items []*outItem, cause error) {
	s := o.s
	now := s.clock.Now()
	// What each item already holds.
	have := map[protocol.MessageID][]store.Receipt{}
	if err := s.st.View(s.ctx, func(tx *store.Tx) error {
		for _, it := range items {
			if e, err := tx.Outbox().Get(it.id); err == nil {
				have[it.id] = e.Receipts
			}
		}
		return nil
	}); err != nil {
		o.fail(items, err)
		return
	}
	type result struct {
		box protocol.Mailbox
		idx []int
		res []mailbox.Result
		err error
	}
	results := make([]result, len(boxes))
	var wg sync.WaitGroup
	for bi := range boxes {
		b := &boxes[bi]
		r := &results[bi]
		r.box = *b
		relay := peerString(b.Relay)
		var payloads [][]byte
		for i, it := range items {
			if validReceipt(have[it.id], relay, now) {
				continue
			}
			payloads = append(payloads, it.payload)
			r.idx = append(r.idx, i)
		}
		if len(payloads) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(s.ctx, s.opt.DialTimeout)
			defer cancel()
			r.res, r.err = s.mb.Deposit(ctx, b, s.self.Public(), []byte(s.host.ID()), payloads)
		}()
	}
	wg.Wait()
	got := make([][]store.Receipt, len(items))
	var reason string
	for _, r := range results {
		for k, i := range r.idx {
			if k < len(r.res) && r.res[k].Err == nil {
				rc := r.res[k].Receipt
				got[i] = append(got[i], store.Receipt{Relay: rc.Relay.String(), StoredUntil: rc.StoredUntil, Signed: rc.Signature})
				continue
			}
			err := r.err
			if k < len(r.res) && r.res[k].Err != nil {
				err = r.res[k].Err
			}
			if err != nil && reason == "" {
				reason = "relay " + peerString(r.box.Relay) + ": " + err.Error()
			}
		}
		if r.err != nil && len(r.idx) == 0 && reason == "" {
			reason = r.err.Error()
		}
	}
	if reason == "" && cause != nil {
		reason = cause.Error()
	}
	err := s.do(s.ctx, false, func(w *work) error {
		for i, it := range items {
			e, err := w.tx.Outbox().Get(it.id)
			if isNotFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			if err := w.deposited(e, it.payload, got[i], boxes, reason); err != nil {
				return err
			}
		}
		return nil
	})
	o.release(items)
	o.pokeScheduler()
	if err != nil && !errors.Is(err, ErrClosed) {
		s.log.Warn("messaging: commit custody receipts", "err", err)
	}
}

// validReceipt reports whether rs holds a receipt of relay that lasts
// beyond now plus the clock tolerance.
func validReceipt(rs []store.Receipt, relay string, now time.Time) bool {
	for _, r := range rs {
		if r.Relay == relay && r.StoredUntil.After(now.Add(protocolTolerance)) {
			return true
		}
	}
	return false
}

// deposited commits the custody receipts an entry got for payload, the
// bytes deposited.
func (w *work) deposited(e store.OutboxEntry, payload []byte, got []store.Receipt, boxes []protocol.Mailbox, reason string) error {
	if !bytes.Equal(e.Payload, payload) {
		// Encrypted again meanwhile (the peer started a new session): the
		// receipts are for bytes that will not decrypt there. The new
		// bytes go now.
		return w.dueNow(e)
	}
	again := false
	for _, r := range got {
		if slices.ContainsFunc(e.Receipts, func(x store.Receipt) bool { return x.Relay == r.Relay }) {
			again = true // that relay's receipt ran out
		}
		e.Receipts = slices.DeleteFunc(e.Receipts, func(x store.Receipt) bool { return x.Relay == r.Relay })
		if len(e.Receipts) < store.MaxReceipts {
			e.Receipts = append(e.Receipts, r)
		}
	}
	if again && e.Redeposits < math.MaxUint32 {
		e.Redeposits++
	}
	// Only receipts of relays the contact lists now, still valid, count
	// (one that just came counts until its end: a relay with a TTL under
	// the clock tolerance gets the message again halfway through it).
	var until time.Time
	covered := 0
	fresh := func(r store.Receipt) bool {
		return slices.ContainsFunc(got, func(g store.Receipt) bool { return g.Relay == r.Relay }) && r.StoredUntil.After(w.now)
	}
	for _, b := range boxes {
		relay := peerString(b.Relay)
		for _, r := range e.Receipts {
			if r.Relay == relay && (r.StoredUntil.After(w.now.Add(protocolTolerance)) || fresh(r)) {
				covered++
				if until.IsZero() || r.StoredUntil.Before(until) {
					until = r.StoredUntil
				}
				break
			}
		}
	}
	if covered == 0 {
		return w.reschedule(e, reason, false)
	}
	m, err := w.tx.Messages().Get(e.ID)
	if err != nil && !isNotFound(err) {
		return err
	}
	if err == nil && m.Kind != kindText {
		// Receipts and cards get no receipt: the relay's custody is the end.
		if err := w.tx.Outbox().Delete(e.ID); err != nil {
			return err
		}
		return w.tx.Messages().Delete(e.ID)
	}
	if covered < len(boxes) {
		// Some relay still lacks it: try again after a backoff.
		e.Attempts++
		e.NextAttempt = w.now.Add(w.s.backoff(e.Attempts))
		e.LastError = truncate(reason)
	} else {
		e.NextAttempt = until.Add(-protocolTolerance)
		if half := w.now.Add(until.Sub(w.now) / 2); e.NextAttempt.Before(half) {
			e.NextAttempt = half
		}
		e.LastError = ""
	}
	if err := w.tx.Outbox().Put(e); err != nil {
		return err
	}
	w.scheduleChanged()
	if err != nil || stateRank(m.State) > stateRank(store.MessageSent) {
		return nil
	}
	state, why := store.MessageSent, ""
	if int(e.Redeposits) >= w.s.opt.FailAfterRedeposits {
		// Held by relays for their whole TTL, more than once, and no
		// delivery receipt: the recipient has been offline that long, or
		// cannot decrypt it (and has not told us by starting a new
		// session, receiveRelayed). Say so; keep depositing it.
		state, why = store.MessageFailed, truncate(fmt.Sprintf("no delivery receipt after %d deposits on the recipient's relays: "+
			"the recipient may be offline or unable to decrypt it; still trying", e.Redeposits+1))
	}
	if m.State != state || m.Reason != why {
		m.State, m.Reason = state, why
		if err := w.tx.Messages().Put(&m); err != nil {
			return err
		}
		w.stateChanged(&m)
	}
	return nil
}

// dueNow makes an outbox entry due at once (its payload changed while a
// delivery loop held the old one).
func (w *work) dueNow(e store.OutboxEntry) error {
	e.NextAttempt = w.now
	if err := w.tx.Outbox().Put(e); err != nil {
		return err
	}
	w.scheduleChanged()
	return nil
}

func truncate(s string) string {
	if len(s) > store.MaxReasonLen {
		return s[:store.MaxReasonLen]
	}
	return s
}
