package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/node/internal/disk"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// dispatch answers one request; false ends the stream with a reset.
func (c *stream) dispatch(req *protocol.RelayRequest) bool {
	s := c.s
	switch {
	case req.Op.Owner():
		c.saw(seenOwner)
	case req.Op == protocol.RelayDeposit, req.Op == protocol.RelayGetCard, req.Op == protocol.RelayTakePrekey:
		c.saw(seenDepositor)
	}
	if req.Op == protocol.RelayDeposit {
		return c.deposit(req)
	}
	resp := &protocol.RelayResponse{ID: req.ID, Op: req.Op}
	var err error
	switch {
	case req.Op == protocol.RelayChallenge:
	case req.Op == protocol.RelayGetCard:
		resp.Blob, err = s.getCard(c.ctx, req)
	case req.Op == protocol.RelayTakePrekey:
		resp.Blob, err = s.takePrekey(c.ctx, req)
	case req.Op.Owner():
		err = c.owner(req, resp)
	default:
		err = fmt.Errorf("%w: op %s", protocol.ErrMalformed, req.Op)
	}
	if req.Op.Owner() || req.Op == protocol.RelayChallenge {
		if cerr := c.issueChallenge(); cerr != nil {
			return false
		}
		resp.Challenge = c.challenge
	}
	if err != nil {
		code := disk.CodeOf(err)
		if code == protocol.CodeInternal && !errors.Is(err, protocol.ErrInternal) {
			if errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) {
				return false
			}
			s.log.Error("relay: request failed", "op", req.Op.String(), "err", err)
		}
		s.met.reject(code.String())
		// An error response holds nothing but the code (and the challenge).
		*resp = protocol.RelayResponse{ID: resp.ID, Op: resp.Op, Code: code, Challenge: resp.Challenge}
	} else {
		resp.Code = protocol.CodeOK
	}
	if !c.send(resp) {
		return false
	}
	if err == nil && req.Op == protocol.RelaySubscribe {
		c.startSubscription(req)
	}
	return true
}

// owner checks an owner op's challenge and signature and runs it, filling
// resp.
func (c *stream) owner(req *protocol.RelayRequest, resp *protocol.RelayResponse) error {
	s := c.s
	if err := c.checkChallenge(req); err != nil {
		return err
	}
	if req.Op == protocol.RelayCreate {
		if !req.VerifyOwner(s.self, req.OwnerKey) {
			return protocol.ErrBadSignature
		}
		return c.create(req, resp)
	}
	var m store.RelayMailbox
	err := s.st.View(c.ctx, func(tx *store.Tx) error {
		var err error
		m, err = liveMailbox(tx.Relay(), req.Mailbox)
		return err
	})
	if err != nil {
		return err
	}
	if !req.VerifyOwner(s.self, m.OwnerKey) {
		return protocol.ErrBadSignature
	}
	mb := req.Mailbox
	switch req.Op {
	case protocol.RelayRegisterToken:
		return s.registerToken(c.ctx, mb, req, resp)
	case protocol.RelayRevokeToken:
		return s.do(c.ctx, 2, func(tx *store.Tx, now time.Time) error {
			return tx.Relay().DeleteToken(mb, req.TokenHash)
		})
	case protocol.RelayFetch:
		return c.fetch(req, resp)
	case protocol.RelaySubscribe:
		if c.subscriptions() >= s.res.MaxSubscriptions {
			return protocol.ErrRateLimited
		}
		resp.Count, resp.Bytes, resp.Prekeys = m.Count, m.Bytes, m.Prekeys
		return nil
	case protocol.RelayAck:
		return s.ack(c.ctx, mb, req.Seqs, resp)
	case protocol.RelayDeleteMailbox:
		return s.deleteMailbox(c.ctx, mb)
	case protocol.RelayPutCard:
		return s.putCard(c.ctx, mb, req)
	case protocol.RelayPutPrekeys:
		return s.putPrekeys(c.ctx, mb, req, resp)
	}
	return fmt.Errorf("%w: op %s", protocol.ErrMalformed, req.Op)
}

// create makes a mailbox with a random ID.
func (c *stream) create(req *protocol.RelayRequest, resp *protocol.RelayResponse) error {
	s := c.s
	if !s.countMailbox(c.connID, 1) {
		return protocol.ErrTooManyMailboxes
	}
	var id protocol.MailboxID
	if err := s.readRandom(id[:]); err != nil {
		s.countMailbox(c.connID, -1)
		return err
	}
	var refused quotaRefusal
	err := s.do(c.ctx, 1, func(tx *store.Tx, now time.Time) error {
		refused = quotaRefusal{}
		if err := s.checkCreate(tx.Relay(), c.quotas); err != nil {
			if !errors.As(err, &refused) {
				return err
			}
			return nil
		}
		err := tx.Relay().CreateMailbox(store.RelayMailbox{
			ID: id, OwnerKey: req.OwnerKey, SealingKey: req.SealingKey, CreatedAt: now, SeenAt: now,
			Quotas: c.quotas,
		})
		if errors.Is(err, store.ErrExists) {
			// 2^-256: a broken random source. Refuse rather than share.
			return fmt.Errorf("%w: mailbox ID taken", protocol.ErrInternal)
		}
		return err
	})
	if err == nil && refused.err != nil {
		s.met.quotaRefused(refused.quota)
		err = refused.err
	}
	if err != nil {
		s.countMailbox(c.connID, -1)
		return err
	}
	resp.Mailbox = id
	resp.Count, resp.Bytes = s.res.MailboxMaxCount, s.res.MailboxMaxBytes
	return nil
}

// registerToken registers a token hash with the quota asked for, cut to the
// relay's per-token limits.
func (s *Server) registerToken(ctx context.Context, mb protocol.MailboxID, req *protocol.RelayRequest, resp *protocol.RelayResponse) error {
	count, bytes := s.res.TokenMaxCount, s.res.TokenMaxBytes
	if req.Count != 0 {
		count = min(count, req.Count)
	}
	if req.Bytes != 0 {
		bytes = min(bytes, req.Bytes)
	}
	var refused error
	err := s.do(ctx, 2, func(tx *store.Tx, now time.Time) error {
		refused = nil
		r := tx.Relay()
		m, err := liveMailbox(r, mb)
		if errors.Is(err, protocol.ErrUnknownMailbox) {
			refused = err
			return nil
		}
		if err != nil {
			return err
		}
		h := req.TokenHash
		if _, err := r.Token(mb, h); errors.Is(err, store.ErrNotFound) {
			if m.Tokens >= s.res.MaxTokens {
				refused = fmt.Errorf("%w: %d tokens", protocol.ErrMailboxQuota, m.Tokens)
				return nil
			}
		} else if err != nil {
			return err
		}
		_, _, err = r.PutToken(mb, store.RelayToken{Hash: h, MaxCount: count, MaxBytes: bytes, CreatedAt: now})
		if err != nil {
			return err
		}
		return r.Seen(mb, now)
	})
	if err != nil {
		return err
	}
	if refused != nil {
		return refused
	}
	resp.Count, resp.Bytes = count, bytes
	return nil
}

// ack deletes envelopes the owner committed.
func (s *Server) ack(ctx context.Context, mb protocol.MailboxID, seqs []uint64, resp *protocol.RelayResponse) error {
	var m store.RelayMailbox
	var missing bool
	err := s.do(ctx, 2*len(seqs), func(tx *store.Tx, now time.Time) error {
		missing = false
		r := tx.Relay()
		for _, q := range seqs {
			if _, err := r.DeleteEnvelope(mb, q); err != nil {
				return err
			}
		}
		var err error
		m, err = r.Mailbox(mb)
		if errors.Is(err, store.ErrNotFound) {
			missing = true
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if missing {
		return protocol.ErrUnknownMailbox
	}
	resp.Count, resp.Bytes = m.Count, m.Bytes
	return nil
}

// deleteBatch is the records one transaction of a mailbox deletion removes.
const deleteBatch = 1024

// deleteMailbox deletes a mailbox and all it holds, in bounded
// transactions, and ends its subscription.
func (s *Server) deleteMailbox(ctx context.Context, mb protocol.MailboxID) error {
	for {
		var done bool
		j := &job{exclusive: true, weight: deleteBatch, fn: func(tx *store.Tx, now time.Time) error {
			var err error
			done, err = tx.Relay().DeleteMailbox(mb, deleteBatch)
			return err
		}}
		if err := s.submit(ctx, j); err != nil {
			return err
		}
		if err := s.await(j); err != nil {
			return err
		}
		if done {
			break
		}
	}
	s.endSubscription(mb, protocol.CodeUnknownMailbox)
	return nil
}

// putCard stores the card blob of a registered token.
func (s *Server) putCard(ctx context.Context, mb protocol.MailboxID, req *protocol.RelayRequest) error {
	var refused error
	var quota string
	err := s.do(ctx, 1+len(req.Blob)>>10, func(tx *store.Tx, now time.Time) error {
		refused, quota = nil, ""
		r := tx.Relay()
		h := req.TokenHash
		if _, err := r.Token(mb, h); errors.Is(err, store.ErrNotFound) {
			refused = protocol.ErrTokenRefused
			return nil
		} else if err != nil {
			return err
		}
		m, err := liveMailbox(r, mb)
		if errors.Is(err, protocol.ErrUnknownMailbox) {
			refused = err
			return nil
		}
		if err != nil {
			return err
		}
		n := uint64(len(req.Blob))
		if refused, quota, err = s.checkKeyBytes(r, &m, n); refused != nil || err != nil {
			return err
		}
		err = r.PutCard(mb, h, req.Blob)
		if errors.Is(err, store.ErrNotFound) {
			refused = protocol.ErrUnknownMailbox
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if quota != "" {
		s.met.quotaRefused(quota)
	}
	return refused
}

// checkKeyBytes checks n more bytes of card or prekey blobs for mailbox m
// against its creator's quotas and the relay's total: it returns the
// refusal (and the creator quota's name for one), or a store error.
func (s *Server) checkKeyBytes(r store.Relay, m *store.RelayMailbox, n uint64) (refused error, quota string, err error) {
	if err := s.checkBytes(r, m, n); err != nil {
		var qr quotaRefusal
		if errors.As(err, &qr) {
			return qr.err, qr.quota, nil
		}
		return nil, "", err
	}
	t, err := r.Totals()
	if err != nil {
		return nil, "", err
	}
	if t.EnvelopeBytes+t.BlobBytes+n > s.res.StoreMaxBytes {
		return protocol.ErrStoreFull, "", nil
	}
	return nil, "", nil
}

// putPrekeys stores a batch of prekey blobs, expiring at the time asked
// for, or MaxPrekeyTTL from now if that is sooner.
func (s *Server) putPrekeys(ctx context.Context, mb protocol.MailboxID, req *protocol.RelayRequest, resp *protocol.RelayResponse) error {
	size := 0
	for _, b := range req.Blobs {
		size += len(b)
	}
	var refused error
	var quota string
	var left uint64
	var expires time.Time
	err := s.do(ctx, 2*len(req.Blobs)+size>>10, func(tx *store.Tx, now time.Time) error {
		refused, quota = nil, ""
		expires = time.UnixMilli(req.ExpiresAt)
		if limit := now.Add(s.res.MaxPrekeyTTL); expires.After(limit) {
			expires = limit.Truncate(time.Millisecond)
		}
		if !expires.After(now) {
			refused = fmt.Errorf("%w: prekey batch expires before it is stored", protocol.ErrExpired)
			return nil
		}
		r := tx.Relay()
		m, err := liveMailbox(r, mb)
		if errors.Is(err, protocol.ErrUnknownMailbox) {
			refused = err
			return nil
		}
		if err != nil {
			return err
		}
		if m.Prekeys+uint64(len(req.Blobs)) > s.res.MaxPrekeys {
			refused = fmt.Errorf("%w: %d prekeys held", protocol.ErrMailboxQuota, m.Prekeys)
			return nil
		}
		if refused, quota, err = s.checkKeyBytes(r, &m, uint64(size)); refused != nil || err != nil {
			return err
		}
		if err := r.AddPrekeys(mb, req.Blobs, expires); err != nil {
			return err
		}
		left = m.Prekeys + uint64(len(req.Blobs))
		return r.Seen(mb, now)
	})
	if err != nil {
		return err
	}
	if quota != "" {
		s.met.quotaRefused(quota)
	}
	if refused != nil {
		return refused
	}
	resp.StoredUntil, resp.Prekeys = expires.UnixMilli(), left
	return nil
}

// liveMailbox returns mailbox mb, or protocol.ErrUnknownMailbox if there
// is none or its deletion has begun.
func liveMailbox(r store.Relay, mb protocol.MailboxID) (store.RelayMailbox, error) {
	m, err := r.Mailbox(mb)
	if errors.Is(err, store.ErrNotFound) || err == nil && m.Deleting {
		return m, protocol.ErrUnknownMailbox
	}
	return m, err
}

// checkToken checks that token is registered for a live mailbox: the
// common part of GetCard and TakePrekey, which anyone holding a token may
// ask, at TokenRate per token.
func (s *Server) checkToken(tx *store.Tx, mb protocol.MailboxID, h protocol.TokenHash) error {
	r := tx.Relay()
	if _, err := liveMailbox(r, mb); err != nil {
		return err
	}
	if _, err := r.Token(mb, h); errors.Is(err, store.ErrNotFound) {
		return protocol.ErrTokenRefused
	} else if err != nil {
		return err
	}
	return nil
}

func (s *Server) getCard(ctx context.Context, req *protocol.RelayRequest) ([]byte, error) {
	h := protocol.HashToken(req.Token)
	if s.tokens.Take(h, 1) == 0 {
		return nil, protocol.ErrRateLimited
	}
	mb := req.Mailbox
	var blob []byte
	err := s.st.View(ctx, func(tx *store.Tx) error {
		if err := s.checkToken(tx, mb, h); err != nil {
			return err
		}
		var err error
		blob, err = tx.Relay().Card(mb, h)
		if errors.Is(err, store.ErrNotFound) {
			return protocol.ErrNotFound
		}
		return err
	})
	return blob, err
}

// takePrekey hands one prekey blob to this requester alone: the take is a
// write through the writer, so two requests never get the same blob.
func (s *Server) takePrekey(ctx context.Context, req *protocol.RelayRequest) ([]byte, error) {
	h := protocol.HashToken(req.Token)
	if s.tokens.Take(h, 1) == 0 {
		return nil, protocol.ErrRateLimited
	}
	mb := req.Mailbox
	var blob []byte
	var refused error
	err := s.do(ctx, 2, func(tx *store.Tx, now time.Time) error {
		blob, refused = nil, nil
		if err := s.checkToken(tx, mb, h); err != nil {
			if protocol.CodeOf(err) == protocol.CodeInternal {
				return err
			}
			refused = err
			return nil
		}
		b, ok, err := tx.Relay().TakePrekey(mb, now)
		if err != nil {
			return err
		}
		if !ok {
			refused = fmt.Errorf("%w: no prekey left", protocol.ErrNotFound)
		}
		blob = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	if refused != nil {
		return nil, refused
	}
	s.met.prekeysTaken.Inc()
	return blob, nil
}
