package messaging

import (
	"bytes"
	"context"
	"errors"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// What arrives from the own mailboxes: the mailbox client fetches every
// own mailbox's backlog, then subscribes, and hands what it opened to
// receiveRelayed.

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
