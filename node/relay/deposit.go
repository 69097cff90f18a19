package relay

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/node/internal/disk"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// deposit is one deposit on its way: checked and stored by the writer, then
// answered by its stream's writer goroutine, which signs the receipt.
type deposit struct {
	id       uint64
	mailbox  protocol.MailboxID
	envelope []byte
	token    protocol.TokenHash
	job      job

	// Set by the job.
	refused error
	quota   string // the creator quota that refused it
	until   time.Time
}

// ready reports whether the deposit's commit is done.
func (d *deposit) ready() bool {
	select {
	case <-d.job.done:
		return true
	default:
		return false
	}
}

// deposit queues a deposit for the writer and its answer for the stream's
// writer; it returns without waiting for the commit, so a client may have
// many deposits outstanding (up to MaxPending a stream).
func (c *stream) deposit(req *protocol.RelayRequest) bool {
	s := c.s
	d := &deposit{id: req.ID, mailbox: req.Mailbox, envelope: req.Envelope}
	var refused error
	switch {
	case len(req.Envelope) > s.res.MaxEnvelope:
		refused = protocol.ErrEnvelopeTooLarge
	case !s.takeDeposit(c.connID):
		refused = protocol.ErrRateLimited
	}
	if refused != nil {
		code := protocol.CodeOf(refused)
		s.met.reject(code.String())
		return c.send(&protocol.RelayResponse{ID: req.ID, Op: protocol.RelayDeposit, Code: code})
	}
	d.token = protocol.HashToken(req.Token)
	s.prepareDeposit(d)
	if err := s.submit(c.ctx, &d.job); err != nil {
		return false
	}
	return c.queue(outItem{dep: d})
}

// Deposit stores envelope in mailbox under the deposit token as a deposit
// on a stream is stored — the mailbox, token and quota checks, the writer's
// group commit, a custody receipt signed once the envelope is durable — and
// returns the response a stream would carry (its ID zero). It does not
// apply the per-connection deposit rate, which belongs to streams. The
// error is ErrClosed, or ctx's if it ended before the writer took the
// deposit; a refusal is a response with its code. `sealpost bench`
// measures the relay's ingest through it, without a network.
func (s *Server) Deposit(ctx context.Context, mailbox protocol.MailboxID, token, envelope []byte) (*protocol.RelayResponse, error) {
	if len(envelope) > s.res.MaxEnvelope {
		code := protocol.CodeOf(protocol.ErrEnvelopeTooLarge)
		s.met.reject(code.String())
		return &protocol.RelayResponse{Op: protocol.RelayDeposit, Code: code}, nil
	}
	d := &deposit{mailbox: mailbox, envelope: envelope, token: protocol.HashToken(token)}
	s.prepareDeposit(d)
	if err := s.submit(ctx, &d.job); err != nil {
		return nil, err
	}
	return s.finishDeposit(d), nil
}

// prepareDeposit sets d's job: the checks, in the order that tells a
// depositor no more than its token entitles it to (whether the mailbox
// exists, then whether its token is valid, then the quotas), and the
// write.
func (s *Server) prepareDeposit(d *deposit) {
	n := uint64(len(d.envelope))
	mb, h := d.mailbox, d.token
	d.job = job{weight: 1 + len(d.envelope)>>10}
	d.job.fn = func(tx *store.Tx, now time.Time) error {
		d.refused, d.quota, d.until = nil, "", time.Time{}
		// Receipts carry milliseconds; store what they say.
		until := now.Add(s.res.TTL).Truncate(time.Millisecond)
		r := tx.Relay()
		_, err := r.AddEnvelope(store.RelayEnvelope{Mailbox: mb, Token: h, StoredUntil: until, Envelope: d.envelope},
			func(m *store.RelayMailbox, t *store.RelayToken, tot *store.RelayTotals) error {
				switch {
				case m.Count+1 > s.res.MailboxMaxCount || m.Bytes+n > s.res.MailboxMaxBytes:
					return refusal{protocol.ErrMailboxQuota}
				case t.Count+1 > t.MaxCount || t.Bytes+n > t.MaxBytes:
					return refusal{protocol.ErrTokenQuota}
				}
				if err := s.checkBytes(r, m, n); err != nil {
					return err
				}
				if tot.EnvelopeBytes+tot.BlobBytes+n > s.res.StoreMaxBytes {
					return refusal{protocol.ErrStoreFull}
				}
				return nil
			})
		var ref refusal
		var qr quotaRefusal
		switch {
		case err == nil:
			d.until = until
		case errors.As(err, &qr):
			d.refused, d.quota = qr.err, qr.quota
		case errors.As(err, &ref):
			d.refused = ref.err
		case errors.Is(err, store.ErrNoRelayToken):
			d.refused = protocol.ErrTokenRefused
		case errors.Is(err, store.ErrNotFound):
			d.refused = protocol.ErrUnknownMailbox
		default:
			return err
		}
		return nil
	}
	d.job.after = func() {
		if d.refused == nil {
			s.notify(d.mailbox)
		}
	}
}

// refusal is a quota check's answer, told apart from a store error.
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }

// finishDeposit waits for d's commit and returns its response: a custody
// receipt signed by the relay's key, or the refusal.
func (s *Server) finishDeposit(d *deposit) *protocol.RelayResponse {
	resp := &protocol.RelayResponse{ID: d.id, Op: protocol.RelayDeposit}
	err := s.await(&d.job)
	if err == nil {
		err = d.refused
	}
	if err != nil {
		if errors.Is(err, ErrClosed) {
			err = fmt.Errorf("%w: relay closing", protocol.ErrInternal)
		}
		resp.Code = disk.CodeOf(err)
		s.met.reject(resp.Code.String())
		if d.quota != "" {
			s.met.quotaRefused(d.quota)
		}
		return resp
	}
	until := d.until.UnixMilli()
	sig, err := s.signReceipt(d.mailbox, protocol.EnvelopeHash(d.envelope), until)
	if err != nil {
		s.log.Error("relay: sign receipt", "err", err)
		resp.Code = protocol.CodeInternal
		return resp
	}
	resp.Code, resp.StoredUntil, resp.Signature = protocol.CodeOK, until, sig
	s.met.deposited(len(d.envelope))
	return resp
}

// signReceipt signs a custody receipt (protocol.Receipt) with the relay's
// key. One signature per envelope: 15 µs of Ed25519 on this machine's
// cores, done by each stream's writer goroutine in parallel, outside the
// store writer; each receipt stays verifiable alone.
func (s *Server) signReceipt(mb protocol.MailboxID, hash [32]byte, until int64) ([]byte, error) {
	r := protocol.Receipt{Relay: s.self, Mailbox: mb, Envelope: hash, StoredUntil: until}
	m, err := r.SignedMessage()
	if err != nil {
		return nil, err
	}
	return ed25519.Sign(s.key, m), nil
}
