package mailbox

import (
	"context"
	"crypto/ecdh"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Delivery is one envelope from an own mailbox, opened: the sender's
// claims and the sealed payload. The claims are unverified (see
// crypto/seal): the handler accepts them only if the session that
// decrypts the payload is theirs.
type Delivery struct {
	Mailbox protocol.MailboxID
	Seq     uint64
	// Sender is the claimed sender's public identity (crypto/identity
	// encoding), Device its claimed device ID.
	Sender, Device []byte
	// Payload is what was sealed (an encoded protocol.Ciphertext).
	Payload []byte
}

// Handler commits deliveries and reports, per delivery, whether the relay
// may delete it: true once it is committed (or refused for good), false to
// keep it on the relay (it comes again on the next fetch). An error means
// nothing was committed; the subscription starts over after a backoff.
type Handler func(ctx context.Context, ds []Delivery) ([]bool, error)

// Status is the state of one own mailbox as Run sees it.
type Status struct {
	Mailbox protocol.MailboxID
	Relay   string
	// State is StateConnecting, StateFetching, StateSubscribed or
	// StateError.
	State string
	// Err is the last error, while State is "error" or "connecting".
	Err string
	// Stored and StoredBytes are what the relay reported holding for the
	// mailbox (at the last fetch, subscription or acknowledgement);
	// Prekeys the one-time prekeys it holds.
	Stored, StoredBytes, Prekeys uint64
	// Since is when State last changed.
	Since time.Time
}

// The states of an own mailbox (Status.State).
const (
	StateConnecting = "connecting"
	StateFetching   = "fetching"
	StateSubscribed = "subscribed"
	StateError      = "error"
)

// Statuses returns the status of every mailbox Run works on, by mailbox
// ID.
func (c *Client) Statuses() []Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Status, 0, len(c.status))
	for _, s := range c.status {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Status) int { return slices.Compare(a.Mailbox[:], b.Mailbox[:]) })
	return out
}

func (c *Client) setStatus(m *store.Mailbox, f func(s *Status)) {
	c.mu.Lock()
	s := c.status[m.ID]
	if s == nil {
		s = &Status{Mailbox: m.ID, Relay: m.Relay, State: StateConnecting, Since: c.clock.Now()}
		c.status[m.ID] = s
	}
	old := *s
	f(s)
	changed := s.State != old.State
	if changed {
		s.Since = c.clock.Now()
	}
	cp := *s
	c.mu.Unlock()
	if cp != old {
		select {
		case c.change <- struct{}{}:
		default:
		}
	}
	if changed && c.cfg.OnStatus != nil {
		c.cfg.OnStatus(cp)
	}
}

// Run receives from every own mailbox until ctx ends or the client
// closes: per mailbox it fetches the backlog, hands it to h, deletes what
// h committed, then subscribes and does the same with what the relay
// pushes; a failed connection starts over after a backoff. Refresh makes
// it pick up added and removed mailboxes.
func (c *Client) Run(ctx context.Context, h Handler) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	type worker struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	workers := map[protocol.MailboxID]*worker{}
	var wg sync.WaitGroup
	defer func() {
		for _, w := range workers {
			w.cancel()
		}
		wg.Wait()
	}()
	for {
		boxes, err := c.ownMailboxes(ctx)
		if err == nil {
			live := map[protocol.MailboxID]bool{}
			for _, m := range boxes {
				live[m.ID] = true
				if workers[m.ID] != nil {
					continue
				}
				wctx, wcancel := context.WithCancel(ctx)
				w := &worker{cancel: wcancel, done: make(chan struct{})}
				workers[m.ID] = w
				wg.Add(1)
				go func(m store.Mailbox) {
					defer wg.Done()
					defer close(w.done)
					c.receive(wctx, &m, h)
				}(m)
			}
			for id, w := range workers {
				if !live[id] {
					w.cancel()
					<-w.done
					delete(workers, id)
					c.mu.Lock()
					delete(c.status, id)
					c.mu.Unlock()
				}
			}
		} else if ctx.Err() == nil {
			c.log.Warn("mailbox: read mailboxes", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
	}
}

// receive is the loop of one mailbox.
func (c *Client) receive(ctx context.Context, m *store.Mailbox, h Handler) {
	sealing, err := ecdh.X25519().NewPrivateKey(m.SealingKey)
	if err != nil {
		c.setStatus(m, func(s *Status) { s.State, s.Err = StateError, "the stored sealing key is invalid" })
		c.log.Error("mailbox: stored sealing key", "mailbox", mailboxString(m.ID), "err", err)
		return
	}
	backoff := c.opt.RetryMin
	for ctx.Err() == nil {
		started := c.clock.Now()
		err := c.session(ctx, m, sealing, h)
		if ctx.Err() != nil {
			return
		}
		c.setStatus(m, func(s *Status) { s.State, s.Err = StateError, err.Error() })
		c.log.Info("mailbox: subscription ended", "relay", m.Relay, "mailbox", mailboxString(m.ID), "err", err)
		if c.clock.Now().Sub(started) > c.opt.RetryMax {
			backoff = c.opt.RetryMin // it had worked for a while
		}
		wait := backoff/2 + time.Duration(randUint64(c.cfg.Rand)%uint64(backoff/2+1))
		backoff = min(2*backoff, c.opt.RetryMax)
		t := c.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		c.setStatus(m, func(s *Status) { s.State = StateConnecting })
	}
}

// Batch bounds of the receive path.
const (
	fetchLimit    = 512
	maxBatch      = 256
	maxBatchBytes = 1 << 20
)

// session fetches the backlog of m, then subscribes, until an error.
func (c *Client) session(ctx context.Context, m *store.Mailbox, sealing *ecdh.PrivateKey, h Handler) error {
	r, key, err := c.owned(m)
	if err != nil {
		return err
	}
	c.setStatus(m, func(s *Status) { s.State = StateFetching })
	// The backlog, page by page.
	var after uint64
	for {
		var pushed []*protocol.RelayResponse
		req := &protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.ID, After: after, Limit: fetchLimit}
		resp, err := r.call(ctx, req, key, func(p *protocol.RelayResponse) error {
			if len(pushed) >= fetchLimit {
				return fmt.Errorf("%w: %s: more pushes than the fetch limit", ErrBadRelay, r.id)
			}
			pushed = append(pushed, p)
			return nil
		})
		if err != nil {
			return err
		}
		c.setStatus(m, func(s *Status) { s.Stored, s.StoredBytes, s.Prekeys = resp.Count, resp.Bytes, resp.Prekeys })
		for start := 0; start < len(pushed); {
			end := min(start+maxBatch, len(pushed))
			if err := c.handle(ctx, r, key, m, sealing, h, pushed[start:end]); err != nil {
				return err
			}
			start = end
		}
		if len(pushed) > 0 {
			after = max(after, pushed[len(pushed)-1].Seq)
		}
		if !resp.More || len(pushed) == 0 {
			break
		}
	}
	// The subscription: a stream of its own that the relay pushes on.
	rs, err := r.openStream(ctx)
	if err != nil {
		return err
	}
	defer rs.s.Reset()
	stop := context.AfterFunc(ctx, func() { rs.s.Reset() })
	defer stop()
	req := &protocol.RelayRequest{Op: protocol.RelaySubscribe, Mailbox: m.ID, After: after}
	if err := rs.prepare([]byte(r.id), req, key); err != nil {
		return err
	}
	rs.s.SetDeadline(time.Now().Add(c.opt.Timeout))
	if err := protocol.WriteFrame(rs.s, req); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, r.id, err)
	}
	for {
		var batch []*protocol.RelayResponse
		size := 0
		for len(batch) < maxBatch && size < maxBatchBytes {
			if len(batch) > 0 && !rs.fr.Buffered() {
				break
			}
			resp := new(protocol.RelayResponse)
			if err := rs.fr.Read(resp); err != nil {
				return rs.readErr(r, err)
			}
			switch {
			case resp.ID != req.ID:
				return fmt.Errorf("%w: %s: subscription frame for request %d", ErrBadRelay, r.id, resp.ID)
			case resp.Op == protocol.RelaySubscribe:
				if resp.Code != protocol.CodeOK {
					return &refusal{op: resp.Op, code: resp.Code}
				}
				// Pushes come when they come: the request's deadline
				// ends here (libp2p's keepalive finds a dead
				// connection).
				rs.s.SetDeadline(time.Time{})
				c.setStatus(m, func(s *Status) {
					s.State, s.Err = StateSubscribed, ""
					s.Stored, s.StoredBytes, s.Prekeys = resp.Count, resp.Bytes, resp.Prekeys
				})
			case resp.Op == protocol.RelayPush:
				batch = append(batch, resp)
				size += len(resp.Envelope)
				if resp.Prekeys != 0 {
					c.setStatus(m, func(s *Status) { s.Prekeys = resp.Prekeys })
				}
			default:
				return fmt.Errorf("%w: %s: %s frame on a subscription", ErrBadRelay, r.id, resp.Op)
			}
		}
		if len(batch) > 0 {
			if err := c.handle(ctx, r, key, m, sealing, h, batch); err != nil {
				return err
			}
		}
	}
}

// handle opens pushed envelopes, hands them to h, and deletes from the
// relay what h committed and what does not open.
func (c *Client) handle(ctx context.Context, r *relayConn, key []byte, m *store.Mailbox, sealing *ecdh.PrivateKey, h Handler, pushed []*protocol.RelayResponse) error {
	var (
		ds   []Delivery
		seqs []uint64
	)
	for _, p := range pushed {
		d, ok := open(m.ID, sealing, p.Seq, p.Envelope)
		if !ok {
			// Not for this mailbox's key: nobody can ever read it.
			c.log.Info("mailbox: deleting an envelope that does not open", "mailbox", mailboxString(m.ID), "seq", p.Seq)
			seqs = append(seqs, p.Seq)
			continue
		}
		ds = append(ds, d)
	}
	if len(ds) > 0 {
		ok, err := h(ctx, ds)
		if err != nil {
			return fmt.Errorf("mailbox: commit: %w", err)
		}
		for i, d := range ds {
			if i < len(ok) && ok[i] {
				seqs = append(seqs, d.Seq)
			}
		}
	}
	return c.ack(ctx, r, key, m, seqs)
}

// ack deletes envelopes from the relay, MaxAckSeqs at a time.
func (c *Client) ack(ctx context.Context, r *relayConn, key []byte, m *store.Mailbox, seqs []uint64) error {
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	for len(seqs) > 0 {
		n := min(len(seqs), protocol.MaxAckSeqs)
		req := &protocol.RelayRequest{Op: protocol.RelayAck, Mailbox: m.ID, Seqs: seqs[:n]}
		resp, err := r.call(ctx, req, key, nil)
		if err != nil && !errors.Is(err, protocol.ErrNotFound) {
			return err
		}
		if err == nil {
			c.setStatus(m, func(s *Status) { s.Stored, s.StoredBytes = resp.Count, resp.Bytes })
		}
		seqs = seqs[n:]
	}
	return nil
}

// mailboxString is the short form of a mailbox ID for logs.
func mailboxString(id protocol.MailboxID) string { return fmt.Sprintf("%x", id[:8]) }

// randUint64 reads a random number (zero if the source fails).
func randUint64(r interface{ Read([]byte) (int, error) }) uint64 {
	var b [8]byte
	if _, err := r.Read(b[:]); err != nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b[:])
}
