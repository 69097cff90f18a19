package messaging

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node/addrrecord"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// ownCard returns the card this node attaches to the first messages of a
// session and sends when it changes.
func (s *Service) ownCard() *protocol.Card {
	s.cardMu.Lock()
	defer s.cardMu.Unlock()
	return s.card
}

// hostAddrs returns up to n of the host's addresses in binary form, best
// first (addrrecord.Select): public, relay circuit, and private ones only
// with lan (the card, which only contacts get) or when there is nothing
// else.
func (s *Service) hostAddrs(n int, lan bool) [][]byte {
	var out [][]byte
	for _, a := range addrrecord.Select(s.host.Addrs(), n, lan) {
		if b := a.Bytes(); len(b) <= protocol.MaxAddr {
			out = append(out, b)
		}
	}
	return out
}

// refreshCard makes the own card from the identity, the device record, the
// display name and the current addresses, and stores it with the next
// sequence number if it differs from the stored one. It reports whether a
// card that contacts hold has changed (the first card is no change).
func (s *Service) refreshCard(tx *store.Tx, now time.Time) (bool, error) {
	self, err := tx.Self()
	if err != nil {
		return false, err
	}
	var old *protocol.Card
	if len(self.Card) > 0 {
		old = new(protocol.Card)
		if err := old.Unmarshal(self.Card); err != nil {
			old = nil
		}
	}
	card := &protocol.Card{
		Identity: s.selfPub,
		Device:   s.devRec,
		Name:     displayName(s.name, protocol.MaxName),
		Addrs:    s.hostAddrs(protocol.MaxCardAddrs, true),
	}
	if old != nil && sameCard(old, card) {
		s.setCard(old)
		return false, nil
	}
	card.Seq = 1
	if old != nil {
		card.Seq = old.Seq + 1
	}
	card.UpdatedAt = max(now.UnixMilli(), 1)
	b, err := card.Marshal()
	for errors.Is(err, protocol.ErrTooLarge) && len(card.Addrs) > 0 {
		card.Addrs = card.Addrs[:len(card.Addrs)-1]
		b, err = card.Marshal()
	}
	if err != nil {
		return false, fmt.Errorf("messaging: own card: %w", err)
	}
	self.Card = b
	if err := tx.PutSelf(self); err != nil {
		return false, err
	}
	s.setCard(card)
	return old != nil, nil
}

func (s *Service) setCard(c *protocol.Card) {
	s.cardMu.Lock()
	s.card = c
	s.cardMu.Unlock()
}

// sameCard compares what a card says, not its sequence number or time.
func sameCard(a, b *protocol.Card) bool {
	return bytes.Equal(a.Identity, b.Identity) && bytes.Equal(a.Device, b.Device) && a.Name == b.Name &&
		slices.EqualFunc(a.Addrs, b.Addrs, bytes.Equal) && len(a.Mailboxes) == 0 && len(b.Mailboxes) == 0
}

// peerString is the text form of a peer ID given as bytes.
func peerString(b []byte) string {
	id, err := peer.IDFromBytes(b)
	if err != nil {
		return ""
	}
	return id.String()
}

// isNotFound reports a store miss.
func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// lookup finds a contact by name or by user ID text.
func (w *work) lookup(nameOrUserID string) (*contactEntry, error) {
	if nameOrUserID != "" && len(nameOrUserID) <= store.MaxNameLen {
		for _, e := range w.contacts {
			if e.exists && !e.deleted && e.c.Name == nameOrUserID {
				return e, nil
			}
		}
		c, err := w.tx.Contacts().ByName(nameOrUserID)
		if err == nil {
			if e, err := w.contact(c.UserID); err != nil || (e != nil && e.c.Name == nameOrUserID) {
				return e, err
			}
		} else if !isNotFound(err) {
			return nil, err
		}
	}
	if uid, err := identity.ParseUserID(nameOrUserID); err == nil {
		e, err := w.contact(uid)
		if err != nil || e != nil {
			return e, err
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownContact, nameOrUserID)
}

// uniqueName returns a free contact name made from base (a display name
// from a card or invite): base, base-2, base-3, ...
func (w *work) uniqueName(base string, id identity.UserID) (string, error) {
	base = displayName(base, MaxName-6)
	if base == "" {
		base = "contact"
	}
	for i := 1; i < 1000; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		if ValidName(name) != nil {
			continue
		}
		taken, err := w.nameTaken(name, id)
		if err != nil {
			return "", err
		}
		if !taken {
			return name, nil
		}
	}
	var r [4]byte
	w.s.rand.Read(r[:])
	return fmt.Sprintf("%s-%x", base, r), nil
}
