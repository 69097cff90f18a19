package messaging

import (
	"cmp"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/prekey"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/node/prekeys"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// reconciler brings the relays in line with the store (tokens.go holds
// what the store says): it registers the deposit tokens the store holds,
// revokes the withdrawn and expired ones and forgets them, uploads the
// card blob of each invite token and the bundle blob of each contact
// token, and keeps each own mailbox stocked with one-time prekeys. Its
// goroutine runs a round when poked (a token or the own card changed,
// the signed prekey rotated), after a failure with backoff, when a relay
// reports few prekeys, and every Options.MaintainEvery; AddRelay and
// Invite run a round themselves. One round runs at a time.
type reconciler struct {
	s  *Service
	mb *mailbox.Client

	wake chan struct{}
	done chan struct{} // closed when the goroutine returns

	mu sync.Mutex // one round at a time
	// prekeysUnknown is set while a relay has not reported its prekey
	// count yet.
	prekeysUnknown atomic.Bool
}

func newReconciler(s *Service) *reconciler {
	return &reconciler{s: s, mb: s.mb, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// start starts the goroutine; it ends with the service's context, and
// wait waits for it.
func (r *reconciler) start() { go r.loop() }

func (r *reconciler) wait() { <-r.done }

// poke asks for a round soon. A nil reconciler (no mailbox client) has
// nothing to do.
func (r *reconciler) poke() {
	if r == nil {
		return
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *reconciler) loop() {
	defer close(r.done)
	s := r.s
	t := s.clock.NewTimer(0)
	defer t.Stop()
	backoff := s.opt.RetryMin
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C():
		case <-r.wake:
		case <-r.mb.Changed():
			if !r.prekeysUnknown.Load() && !r.prekeysLow() {
				continue // nothing a round would do
			}
		}
		if err := r.run(s.ctx); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.log.Info("messaging: relay tokens: will retry", "err", err, "in", backoff)
			t.Reset(backoff)
			backoff = min(2*backoff, s.opt.RetryMax)
			continue
		}
		backoff = s.opt.RetryMin
		if r.prekeysUnknown.Load() {
			// A mailbox's relay has not told its prekey count yet.
			t.Reset(10 * s.opt.RetryMin)
		} else {
			t.Reset(s.opt.MaintainEvery)
		}
	}
}

// relayView is what one round reconciles the tokens against.
type relayView struct {
	now    time.Time
	boxes  []store.Mailbox
	byID   map[protocol.MailboxID]*store.Mailbox
	tokens []store.DepositToken
	// live is the secrets of the stored invites; pinned the bundle each
	// pins (absent once its version is gone: the invite is about to
	// expire).
	live   map[protocol.InviteSecret]bool
	pinned map[protocol.InviteSecret][]byte
	// current is the bundle version of contacts' bundle blobs (nil if
	// there is none), cardSeq the own card's sequence number.
	current *prekeys.Version
	cardSeq uint64
}

// view reads what a round needs.
func (r *reconciler) view(ctx context.Context) (*relayView, error) {
	s := r.s
	v := &relayView{now: s.clock.Now(), byID: map[protocol.MailboxID]*store.Mailbox{},
		live: map[protocol.InviteSecret]bool{}, pinned: map[protocol.InviteSecret][]byte{}}
	err := s.st.View(ctx, func(tx *store.Tx) error {
		var err error
		if v.boxes, err = tx.Mailboxes().List(); err != nil {
			return err
		}
		if v.tokens, err = tx.DepositTokens().List(); err != nil {
			return err
		}
		invs, err := tx.Invites().List()
		if err != nil {
			return err
		}
		if cur, err := s.pk.Current(tx); err == nil {
			v.current = cur
		}
		for _, inv := range invs {
			v.live[inv.Secret] = true
			if pv, err := s.pk.Pinned(tx, inv.Pin); err == nil {
				if b, err := pv.Bundle(); err == nil {
					v.pinned[inv.Secret] = b
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range v.boxes {
		v.byID[v.boxes[i].ID] = &v.boxes[i]
	}
	v.cardSeq = s.ownCard().Seq
	return v, nil
}

// run is one round: a reconcile step per token, then the prekey stock of
// each mailbox. It returns the first failure after trying everything.
func (r *reconciler) run(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, err := r.view(ctx)
	if err != nil {
		return err
	}
	var first error
	for _, t := range v.tokens {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		first = cmp.Or(first, r.step(ctx, v, t))
	}
	r.prekeysUnknown.Store(false)
	for i := range v.boxes {
		first = cmp.Or(first, r.refillPrekeys(ctx, &v.boxes[i]))
	}
	return first
}

// step brings token t's relay in line with its record: a token whose
// mailbox is gone is forgotten; a revoked or expired one is revoked on the
// relay (if it was registered) and forgotten; any other is registered,
// and its blob brought up to date (inviteBlob, bundleBlob).
func (r *reconciler) step(ctx context.Context, v *relayView, t store.DepositToken) error {
	m := v.byID[t.Mailbox]
	if m == nil {
		return r.commit(ctx, t, true)
	}
	isInvite := t.Contact == (identity.UserID{})
	expired := isInvite && (!v.live[t.Invite] || !v.now.Before(t.ExpiresAt.Add(protocolTolerance)))
	if t.Revoked || expired {
		if t.Registered {
			if err := r.mb.Revoke(ctx, m, t.Token[:]); err != nil {
				return err
			}
		}
		return r.commit(ctx, t, true)
	}
	registered := false
	if !t.Registered {
		if err := r.mb.Register(ctx, m, mailbox.Quota{}, t.Token[:]); err != nil {
			return err
		}
		t.Registered, registered = true, true
	}
	if isInvite {
		return r.inviteBlob(ctx, v, m, t, registered)
	}
	return r.bundleBlob(ctx, v, m, t, registered)
}

// inviteBlob uploads the card blob of invite token t (mailbox.SealCard:
// the own card with the invite's tokens, and the bundle version the
// invite pins) if the stored one is older than the own card, and commits
// what changed (changed: t was just registered).
func (r *reconciler) inviteBlob(ctx context.Context, v *relayView, m *store.Mailbox, t store.DepositToken, changed bool) error {
	bundle := v.pinned[t.Invite]
	if t.CardSeq >= v.cardSeq || bundle == nil {
		if changed {
			return r.commit(ctx, t, false)
		}
		return nil
	}
	card := r.s.cardWith(v.boxes, func(m *store.Mailbox) []byte {
		for _, x := range v.tokens {
			if x.Mailbox == m.ID && x.Invite == t.Invite && x.Contact == (identity.UserID{}) && !x.Revoked {
				return x.Token[:]
			}
		}
		return nil
	})
	cb, err := card.Marshal()
	if err != nil {
		return err
	}
	blob, err := mailbox.SealCard(t.Invite, t.Mailbox, cb, bundle, mailbox.PrekeyKey(m.SealingKey, m.ID), r.s.rand)
	if err != nil {
		return err
	}
	if err := r.mb.PutCard(ctx, m, t.Token[:], blob); err != nil {
		return err
	}
	t.CardSeq = card.Seq
	return r.commit(ctx, t, false)
}

// bundleBlob uploads, under contact token t, the bundle blob of the
// current bundle version (mailbox.SealBundle, under the mailbox's K_pk:
// what the contact starts a session from while this device is offline)
// if the stored one is of another version (CardSeq keeps its number), and
// commits what changed (changed: t was just registered).
func (r *reconciler) bundleBlob(ctx context.Context, v *relayView, m *store.Mailbox, t store.DepositToken, changed bool) error {
	var err error
	if v.current != nil && t.CardSeq != uint64(v.current.ID) {
		if err = r.putBundleBlob(ctx, m, t.Token[:], v.current); err == nil {
			t.CardSeq, changed = uint64(v.current.ID), true
		}
	}
	if changed {
		err = cmp.Or(err, r.commit(ctx, t, false))
	}
	return err
}

func (r *reconciler) putBundleBlob(ctx context.Context, m *store.Mailbox, tok []byte, v *prekeys.Version) error {
	b, err := v.Bundle()
	if err != nil {
		return err
	}
	blob, err := mailbox.SealBundle(mailbox.PrekeyKey(m.SealingKey, m.ID), m.ID, b, r.s.rand)
	if err != nil {
		return err
	}
	return r.mb.PutCard(ctx, m, tok, blob)
}

// commit stores what a step did for t: the record deleted, or its
// registration and blob state updated (unless it was revoked meanwhile:
// the next round revokes it).
func (r *reconciler) commit(ctx context.Context, t store.DepositToken, del bool) error {
	return r.s.do(ctx, false, func(w *work) error {
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
			return nil
		}
		cur.Registered = cur.Registered || t.Registered
		cur.CardSeq = max(cur.CardSeq, t.CardSeq)
		w.relayCache = nil
		return w.tx.DepositTokens().Put(cur)
	})
}

// Relay one-time prekeys: a mailbox whose relay reports fewer than
// relayPrekeysLow is offered a batch made by prekeys.Manager.ForRelay
// (disjoint from the node's own, as many as the node's own accounting
// says the mailbox misses: the relay's report only lowers it) and
// encrypted under the mailbox's K_pk (mailbox.PrekeyKey, in the invites'
// card blobs). A batch expires a rotation period before its keys get too
// old for an initiator.
const relayPrekeysLow = 8

// prekeysLow reports whether a subscribed mailbox's relay holds few
// one-time prekeys.
func (r *reconciler) prekeysLow() bool {
	for _, st := range r.mb.Statuses() {
		if st.State == mailbox.StateSubscribed && st.Prekeys < relayPrekeysLow {
			return true
		}
	}
	return false
}

// refillPrekeys uploads a batch of one-time prekeys to m's relay if the
// relay reported it holds few (only once it reported at all).
func (r *reconciler) refillPrekeys(ctx context.Context, m *store.Mailbox) error {
	s := r.s
	var have uint64
	known := false
	for _, st := range r.mb.Statuses() {
		if st.Mailbox == m.ID && st.State == mailbox.StateSubscribed {
			have, known = st.Prekeys, true
		}
	}
	if !known {
		r.prekeysUnknown.Store(true)
		return nil
	}
	if have >= relayPrekeysLow {
		return nil
	}
	var keys []*prekey.OneTimePrekey
	err := s.do(ctx, false, func(w *work) error {
		var err error
		keys, err = s.pk.ForRelay(w.tx, m.ID, have, w.now)
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
	_, err = r.mb.PutPrekeys(ctx, m, blobs, s.pk.RelayExpiry(created))
	return err
}
