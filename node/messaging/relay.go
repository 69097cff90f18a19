package messaging

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Relays. The service receives through its own mailboxes on community
// relays and deposits into its contacts' mailboxes, all through
// Config.Mailbox (node/mailbox), never the device's host. This file is
// the API (AddRelay, Relays, RemoveRelay); the rest is cut by concern:
//
//   - tokens.go: what the store holds. Each own mailbox has one deposit
//     token per live invite (derived from the invite secret,
//     protocol.InviteToken) and one per accepted contact (random); the
//     card a contact gets lists the own mailboxes with that contact's
//     tokens, and making tokens for a contact raises the own card's
//     sequence number, so that the contact takes the new card.
//   - reconcile.go: the reconciler, which brings the relays in line with
//     the tokens (registers, revokes, uploads card and bundle blobs) and
//     keeps them stocked with one-time prekeys.
//   - deliver.go: deposit, the relay outcome of a delivery loop whose
//     direct connection fails, beside the acknowledgement of the direct
//     one.
//   - relayreceive.go: what arrives from the own mailboxes.

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
	if err := s.recon.run(ctx); err != nil {
		s.log.Info("messaging: relay tokens not all registered yet", "err", err)
	}
	s.recon.poke()
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
	s.recon.poke()
	return err
}
