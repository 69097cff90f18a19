package messaging

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// The own mailboxes and deposit tokens as the store holds them, and the
// cards that list them: a transaction issues and revokes tokens here, and
// the reconciler (reconcile.go) carries the change to the relays.

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
	w.after(w.s.recon.poke)
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
// invite secret inv) revoked; the reconciler revokes them on the relays.
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
