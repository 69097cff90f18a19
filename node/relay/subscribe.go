package relay

import (
	"context"
	"errors"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// pageEnvelopes and pageBytes bound the envelopes one read of a fetch or a
// subscription holds in memory.
const (
	pageEnvelopes = 64
	pageBytes     = 1 << 20
)

var errPageFull = errors.New("relay: page full")

// readPage reads up to n envelopes of mailbox mb after seq after (and at
// most pageBytes), skipping those past their stored-until, with the
// mailbox's record. more reports that envelopes were left unread.
func (s *Server) readPage(ctx context.Context, mb protocol.MailboxID, after uint64, n int) (page []store.RelayEnvelope, m store.RelayMailbox, more bool, err error) {
	n = min(n, pageEnvelopes)
	err = s.st.View(ctx, func(tx *store.Tx) error {
		page, more = page[:0], false
		var err error
		if m, err = tx.Relay().Mailbox(mb); err != nil {
			return err
		}
		if m.Deleting {
			return store.ErrNotFound
		}
		now := s.clock.Now()
		size := 0
		err = tx.Relay().Envelopes(mb, after, 0, func(e store.RelayEnvelope) error {
			if len(page) >= n || size+len(e.Envelope) > pageBytes && len(page) > 0 {
				more = true
				return errPageFull
			}
			if !e.StoredUntil.After(now) {
				return nil // expired; the sweep removes it
			}
			page = append(page, e)
			size += len(e.Envelope)
			return nil
		})
		if errors.Is(err, errPageFull) {
			err = nil
		}
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		err = protocol.ErrUnknownMailbox
	}
	return page, m, more, err
}

// fetch pushes up to the request's limit of envelopes after req.After,
// then fills the response.
func (c *stream) fetch(req *protocol.RelayRequest, resp *protocol.RelayResponse) error {
	s := c.s
	limit := int(req.Limit)
	if limit == 0 {
		limit = s.res.FetchLimit
	}
	last := req.After
	for sent := 0; ; {
		page, m, more, err := s.readPage(c.ctx, req.Mailbox, last, limit-sent)
		if err != nil {
			return err
		}
		for _, e := range page {
			if !c.send(&protocol.RelayResponse{ID: req.ID, Op: protocol.RelayPush, Code: protocol.CodeOK, Seq: e.Seq, Envelope: e.Envelope, Prekeys: m.Prekeys}) {
				return context.Canceled
			}
			last = e.Seq
		}
		sent += len(page)
		s.met.fetched(len(page))
		if !more || sent >= limit {
			resp.Seq, resp.More = last, more
			if last == req.After {
				resp.Seq = 0
			}
			resp.Count, resp.Bytes, resp.Prekeys = m.Count, m.Bytes, m.Prekeys
			return nil
		}
	}
}

// subscription pushes a mailbox's envelopes to its owner's stream: those
// stored after the subscription's start, then each new one as its deposit
// commits. A mailbox has one subscription; a newer one replaces it.
type subscription struct {
	c     *stream
	id    uint64
	mb    protocol.MailboxID
	after uint64
	wake  chan struct{}      // a deposit committed
	stop  chan protocol.Code // replaced, or the mailbox deleted
	quit  chan struct{}      // the stream ends
	once  sync.Once
}

// startSubscription starts the subscription a Subscribe request asked for
// (its response is already queued).
func (c *stream) startSubscription(req *protocol.RelayRequest) {
	s := c.s
	sub := &subscription{c: c, id: req.ID, mb: req.Mailbox, after: req.After,
		wake: make(chan struct{}, 1), stop: make(chan protocol.Code, 1), quit: make(chan struct{})}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	old := s.subs[req.Mailbox]
	s.subs[req.Mailbox] = sub
	s.mu.Unlock()
	if old != nil {
		old.end(protocol.CodeSubscriptionEnded)
	}
	c.subsMu.Lock()
	c.subs[req.ID] = sub
	c.subsMu.Unlock()
	s.met.subscriptions.Inc()
	c.subWG.Add(1)
	go sub.run()
}

// protectTag is the connection manager's tag on subscribed peers.
const protectTag = "sealpost-relay-subscriber"

// protect counts a subscription of peer p starting (+1) or ending (-1).
// A peer with a subscription running is protected from the connection
// manager's trimming: above its high watermark it closes the least useful
// connections, and without this those of clients waiting for pushes would
// go with the rest, to be dialed again at once.
func (s *Server) protect(p peer.ID, delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.subPeer[p] + delta
	switch {
	case n <= 0:
		delete(s.subPeer, p)
		s.h.ConnManager().Unprotect(p, protectTag)
	case n == 1 && delta > 0:
		s.subPeer[p] = n
		s.h.ConnManager().Protect(p, protectTag)
	default:
		s.subPeer[p] = n
	}
}

// end stops the subscription with code (sent to the owner).
func (sub *subscription) end(code protocol.Code) {
	select {
	case sub.stop <- code:
	default:
	}
}

// notify wakes the subscription of mailbox mb, if there is one.
func (s *Server) notify(mb protocol.MailboxID) {
	s.mu.Lock()
	sub := s.subs[mb]
	s.mu.Unlock()
	if sub != nil {
		select {
		case sub.wake <- struct{}{}:
		default:
		}
	}
}

// endSubscription ends the subscription of mailbox mb with code.
func (s *Server) endSubscription(mb protocol.MailboxID, code protocol.Code) {
	s.mu.Lock()
	sub := s.subs[mb]
	s.mu.Unlock()
	if sub != nil {
		sub.end(code)
	}
}

// endSubscriptions stops the stream's subscriptions and waits for them.
func (c *stream) endSubscriptions() {
	c.subsMu.Lock()
	for _, sub := range c.subs {
		sub.once.Do(func() { close(sub.quit) })
	}
	c.subsMu.Unlock()
	c.subWG.Wait()
}

// subscriptions returns how many subscriptions the stream has running.
func (c *stream) subscriptions() int {
	c.subsMu.Lock()
	defer c.subsMu.Unlock()
	return len(c.subs)
}

// send queues a push; false once the subscription or its stream ended.
func (sub *subscription) send(r *protocol.RelayResponse) bool {
	select {
	case sub.c.out <- outItem{resp: r}:
		return true
	case <-sub.c.ctx.Done():
		return false
	case <-sub.quit:
		return false
	}
}

func (sub *subscription) run() {
	c, s := sub.c, sub.c.s
	defer c.subWG.Done()
	defer s.met.subscriptions.Dec()
	s.protect(c.peer, 1)
	defer s.protect(c.peer, -1)
	defer func() {
		s.mu.Lock()
		if s.subs[sub.mb] == sub {
			delete(s.subs, sub.mb)
		}
		s.mu.Unlock()
		c.subsMu.Lock()
		delete(c.subs, sub.id)
		c.subsMu.Unlock()
	}()
	last := sub.after
	for {
		for {
			page, m, _, err := s.readPage(c.ctx, sub.mb, last, pageEnvelopes)
			if err != nil {
				code := protocol.CodeOf(err)
				if code == protocol.CodeInternal && c.ctx.Err() == nil {
					s.log.Error("relay: subscription read", "err", err)
				}
				sub.send(&protocol.RelayResponse{ID: sub.id, Op: protocol.RelaySubscribe, Code: code})
				return
			}
			if len(page) == 0 {
				break
			}
			for _, e := range page {
				if !sub.send(&protocol.RelayResponse{ID: sub.id, Op: protocol.RelayPush, Code: protocol.CodeOK, Seq: e.Seq, Envelope: e.Envelope, Prekeys: m.Prekeys}) {
					return
				}
				last = e.Seq
			}
			s.met.fetched(len(page))
		}
		select {
		case <-sub.wake:
		case code := <-sub.stop:
			sub.send(&protocol.RelayResponse{ID: sub.id, Op: protocol.RelaySubscribe, Code: code})
			return
		case <-sub.quit:
			return
		case <-c.ctx.Done():
			return
		}
	}
}
