package grouprelay

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"golang.org/x/sync/semaphore"

	"github.com/sealpost/sealpost/node/internal/writeq"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// stream serves one group log stream: its reader (the handler's goroutine)
// reads the requests and runs them in order, queueing their answers; its
// writer writes the queue in order, waiting for each append's commit only
// when nothing before it is left to write. The queue's capacity bounds the
// appends waiting for a commit: when it is full the reader stops reading.
// Subscriptions queue their pushes (heads, without entries) on the same
// queue. The entries of FETCHes are bounded in bytes besides (queued.go):
// they hold room in the stream's and the relay's queued bytes until
// written.
type stream struct {
	s      *Server
	str    network.Stream
	connID string
	// quotas are the creator quotas of the peer at the other end (a log it
	// creates counts in them).
	quotas [2]store.RelayQuotaKey

	ctx    context.Context // canceled when the stream ends
	cancel context.CancelFunc
	out    *writeq.Queue
	// pending bounds the bytes of the stream's requests held
	// (Resources.MaxPendingBytes; reserve).
	pending *semaphore.Weighted
	// queued bounds the bytes of the entries its FETCHes read and did
	// not write yet (Resources.MaxQueuedBytes; reserveQueued).
	queued *budget

	subsMu sync.Mutex
	subs   map[*subscription]struct{}
	subWG  sync.WaitGroup
}

// answer is a response ready to write (writeq.Item).
type answer struct{ r *protocol.GroupLogResponse }

func (a answer) Ready() bool                       { return true }
func (a answer) Append(buf []byte) ([]byte, error) { return protocol.AppendFrame(buf, a.r) }

func newStream(s *Server, str network.Stream) *stream {
	c := &stream{s: s, str: str, connID: str.Conn().ID(), subs: map[*subscription]struct{}{},
		pending: semaphore.NewWeighted(int64(s.res.MaxPendingBytes)), queued: newBudget(s.res.MaxQueuedBytes)}
	if s.cfg.Quotas != nil {
		c.quotas = s.cfg.Quotas(str.Conn().RemotePeer(), str.Conn().RemoteMultiaddr())
	}
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	c.out = writeq.New(str, s.res.MaxPending, s.res.WriteTimeout, func(err error) {
		c.cancel()
		if !errors.Is(err, network.ErrReset) {
			s.log.Debug("grouprelay: write", "err", err)
		}
	})
	return c
}

// How a stream ends.
const (
	endClose    = iota // the peer closed it: close ours
	endReset           // a fault or a deadline: reset at once
	endAnswered        // bad input, answered: reset after a linger
)

// lingerTimeout and lingerBytes bound how long, and how much, the relay
// reads from a stream it is about to reset after answering bad input, so
// that the peer gets the answer.
const (
	lingerTimeout = time.Second
	lingerBytes   = 64 << 10
)

func (c *stream) serve() {
	defer c.cancel()
	end := c.read()
	c.endSubscriptions()
	c.out.Close()
	switch end {
	case endClose:
		c.str.Close()
	case endAnswered:
		c.str.CloseWrite()
		c.str.SetReadDeadline(time.Now().Add(lingerTimeout))
		io.Copy(io.Discard, io.LimitReader(c.str, lingerBytes))
		c.str.Reset()
	default:
		c.str.Reset()
	}
}

// keepFrame is the largest frame buffer a stream keeps between requests:
// a larger frame (an entry) is read into a buffer of its own, counted in
// the pending bytes while it is held.
const keepFrame = 64 << 10

// read reads and runs requests until the stream ends, and says how to end
// it. Each frame's length is reserved in the stream's and the relay's
// pending bytes before the frame is read: while they are full, the stream
// is not read.
func (c *stream) read() int {
	s := c.s
	fr := protocol.NewFrameReader(c.str, protocol.MaxGroupLogFrame)
	fr.Keep(keepFrame)
	for {
		if c.subscriptions() == 0 {
			c.str.SetReadDeadline(time.Now().Add(s.res.StreamIdle))
		} else {
			// A member's subscription stream is quiet for hours; libp2p's
			// keepalive finds a dead connection.
			c.str.SetReadDeadline(time.Time{})
		}
		var req protocol.GroupLogRequest
		n, err := fr.Len()
		if err == nil {
			if !c.reserve(n) {
				return endReset
			}
			if err = fr.Read(&req); err != nil {
				c.release(n)
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return endClose
		case errors.Is(err, protocol.ErrMalformed), errors.Is(err, protocol.ErrTooLarge), errors.Is(err, protocol.ErrUnsupportedVersion):
			s.met.reject(protocol.CodeOf(err).String())
			c.send(&protocol.GroupLogResponse{Code: protocol.CodeOf(err)})
			return endAnswered
		default:
			return endReset
		}
		s.met.requests.WithLabelValues(req.Op.String()).Inc()
		if !c.dispatch(&req, n) {
			return endReset
		}
	}
}

// reserve counts a frame of n bytes in the stream's pending bytes, then in
// the relay's, waiting while either is full; false if the stream ended
// first.
func (c *stream) reserve(n int) bool {
	s := c.s
	if !c.pending.TryAcquire(int64(n)) {
		s.met.pendingWaits.WithLabelValues("stream").Inc()
		if c.pending.Acquire(c.ctx, int64(n)) != nil {
			return false
		}
	}
	if !s.pending.TryAcquire(int64(n)) {
		s.met.pendingWaits.WithLabelValues("relay").Inc()
		if s.pending.Acquire(c.ctx, int64(n)) != nil {
			c.pending.Release(int64(n))
			return false
		}
	}
	s.met.pendingBytes.Add(float64(n))
	return true
}

// release gives back what reserve counted.
func (c *stream) release(n int) {
	c.s.met.pendingBytes.Sub(float64(n))
	c.s.pending.Release(int64(n))
	c.pending.Release(int64(n))
}

// dispatch runs one request, read from a frame of n bytes reserved for
// it, which it releases (an append, once its transaction ended); false
// ends the stream with a reset.
func (c *stream) dispatch(req *protocol.GroupLogRequest, n int) bool {
	s := c.s
	var resp *protocol.GroupLogResponse
	var err error
	if req.Op != protocol.GroupLogAppend {
		defer c.release(n)
	}
	switch req.Op {
	case protocol.GroupLogAppend:
		var a *pendingAppend
		if a, err = s.startAppend(c, req, n); err == nil {
			return c.out.Put(c.ctx, a)
		}
	case protocol.GroupLogCreate:
		if s.creates.Take(c.connID, 1) != 1 {
			err = protocol.ErrRateLimited
		} else {
			resp, err = s.create(c.ctx, req, c.quotas)
		}
	case protocol.GroupLogFetch:
		var open uint64
		if resp, open, err = c.fetch(req); err != nil && errors.Is(err, protocol.ErrWrongEpoch) {
			return c.refuse(req, err, open)
		}
	case protocol.GroupLogSubscribe:
		return c.subscribe(req)
	default:
		err = protocol.ErrMalformed
	}
	if err != nil {
		return c.refuse(req, err, 0)
	}
	return c.send(resp)
}

// refuse answers req with err's code; false if the stream must end.
func (c *stream) refuse(req *protocol.GroupLogRequest, err error, epoch uint64) bool {
	if errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) {
		return false
	}
	code := protocol.CodeOf(err)
	if code == protocol.CodeInternal && !errors.Is(err, protocol.ErrInternal) {
		c.s.log.Error("grouprelay: request failed", "op", req.Op.String(), "err", err)
	}
	c.s.met.reject(code.String())
	return c.send(&protocol.GroupLogResponse{ID: req.ID, Op: req.Op, Code: code, Epoch: epoch})
}

// fetch pushes up to the request's limit of the epoch's entries after
// req.After, then returns the response. A refusal comes with the log's
// open epoch (for wrong_epoch: a member tells a home that lags behind
// its epoch from one that no longer keeps it).
//
// Each page of entries is read into room taken in the queued bytes
// (reserveQueued), which its pushes hold until written: the first page
// waits for room, a later one takes what is free, and the FETCH ends with
// more at the first entry that does not fit (its client fetches the rest
// once it has read these), or that would take its entries past
// protocol.MaxFetchBytes.
func (c *stream) fetch(req *protocol.GroupLogRequest) (*protocol.GroupLogResponse, uint64, error) {
	s := c.s
	limit := int(req.Limit)
	if limit == 0 {
		limit = s.res.FetchLimit
	}
	last := req.After
	var open uint64
	bytes := 0 // of the entries pushed, at most protocol.MaxFetchBytes
	done := func(more bool) *protocol.GroupLogResponse {
		resp := &protocol.GroupLogResponse{ID: req.ID, Op: req.Op, Code: protocol.CodeOK, Epoch: open, More: more}
		if last != req.After {
			resp.Seq = last
		}
		return resp
	}
	for sent := 0; ; {
		room, ok := c.reserveQueued(sent == 0)
		if !ok {
			return nil, 0, context.Canceled
		}
		if room == 0 {
			// Nothing free: the entries left wait for the client to
			// read these and fetch again.
			return done(true), open, nil
		}
		page, o, more, err := s.readPage(c.ctx, req, last, limit-sent, room, protocol.MaxFetchBytes-bytes)
		open = o
		if err != nil {
			c.releaseQueued(room)
			return nil, open, err
		}
		held := 0
		for _, e := range page {
			held += pushCost(len(e.Entry))
			bytes += len(e.Entry)
		}
		c.releaseQueued(room - held)
		for _, e := range page {
			p := &push{c: c, cost: pushCost(len(e.Entry)),
				r: protocol.GroupLogResponse{ID: req.ID, Op: protocol.GroupLogPush, Code: protocol.CodeOK, Seq: e.Seq, Commit: e.Commit, Entry: e.Entry}}
			if !c.out.Put(c.ctx, p) {
				c.releaseQueued(held)
				return nil, open, context.Canceled
			}
			held -= p.cost
			last = e.Seq
		}
		sent += len(page)
		s.met.fetched(len(page))
		if !more || sent >= limit || len(page) == 0 {
			return done(more), open, nil
		}
	}
}

// send queues a response; false if the stream has ended.
func (c *stream) send(r *protocol.GroupLogResponse) bool { return c.out.Put(c.ctx, answer{r}) }

// subscription tells a stream the newest entry of one epoch of a log, as
// entries commit, until the epoch's commit. Heads are coalesced: a push
// names the newest entry at that moment.
type subscription struct {
	c     *stream
	id    uint64
	log   protocol.GroupLogID
	epoch uint64
	wake  chan struct{}

	mu     sync.Mutex
	latest uint64
	commit bool
}

// subscribe starts a subscription: the response names the last entry of
// the epoch stored now (the client fetches up to it), then pushes follow.
func (c *stream) subscribe(req *protocol.GroupLogRequest) bool {
	s := c.s
	if c.subscriptions() >= s.res.MaxSubscriptions {
		return c.refuse(req, protocol.ErrRateLimited, 0)
	}
	sub := &subscription{c: c, id: req.ID, log: req.Log, epoch: req.Epoch, wake: make(chan struct{}, 1)}
	// Registered before the store is read, so no commit after the read is
	// missed.
	s.register(sub)
	var open, last uint64
	var closed bool
	token := req.Token.Hash()
	err := s.cfg.Store.View(c.ctx, func(tx *store.Tx) error {
		if err := s.checkRead(tx, req, token, &open); err != nil {
			return err
		}
		g, err := tx.RelayGroups().Epoch(req.Log, req.Epoch)
		if err != nil {
			return err
		}
		switch {
		case g.CommitSeq != 0:
			last, closed = g.CommitSeq, true
		default:
			l, err := tx.RelayGroups().Log(req.Log)
			if err != nil {
				return err
			}
			if l.LastSeq >= g.FirstSeq {
				last = l.LastSeq
			}
		}
		return nil
	})
	if err = readError(err); err != nil {
		s.unregister(sub)
		if !errors.Is(err, protocol.ErrWrongEpoch) {
			open = 0
		}
		return c.refuse(req, err, open)
	}
	if !c.send(&protocol.GroupLogResponse{ID: req.ID, Op: req.Op, Code: protocol.CodeOK, Epoch: open, Seq: last}) {
		s.unregister(sub)
		return false
	}
	if closed {
		// The epoch ended already: its commit's head ends the subscription.
		s.unregister(sub)
		return c.send(&protocol.GroupLogResponse{ID: req.ID, Op: protocol.GroupLogPush, Code: protocol.CodeOK, Seq: last, Commit: true})
	}
	c.subsMu.Lock()
	c.subs[sub] = struct{}{}
	c.subsMu.Unlock()
	s.met.subscriptions.Inc()
	c.subWG.Add(1)
	go sub.run(last)
	return true
}

// run pushes the newest head whenever it moves past what was pushed, until
// the epoch's commit or the stream's end.
func (sub *subscription) run(sent uint64) {
	c := sub.c
	defer c.subWG.Done()
	defer c.s.met.subscriptions.Dec()
	defer func() {
		c.s.unregister(sub)
		c.subsMu.Lock()
		delete(c.subs, sub)
		c.subsMu.Unlock()
	}()
	for {
		select {
		case <-sub.wake:
		case <-c.ctx.Done():
			return
		}
		sub.mu.Lock()
		latest, commit := sub.latest, sub.commit
		sub.mu.Unlock()
		if latest <= sent {
			continue
		}
		if !c.send(&protocol.GroupLogResponse{ID: sub.id, Op: protocol.GroupLogPush, Code: protocol.CodeOK, Seq: latest, Commit: commit}) {
			return
		}
		sent = latest
		if commit {
			return
		}
	}
}

func (c *stream) subscriptions() int {
	c.subsMu.Lock()
	defer c.subsMu.Unlock()
	return len(c.subs)
}

// endSubscriptions stops the stream's subscriptions and waits for them.
func (c *stream) endSubscriptions() {
	c.cancel()
	c.subWG.Wait()
}

func (s *Server) register(sub *subscription) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	m := s.subs[sub.log]
	if m == nil {
		m = map[*subscription]struct{}{}
		s.subs[sub.log] = m
	}
	m[sub] = struct{}{}
}

func (s *Server) unregister(sub *subscription) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	if m := s.subs[sub.log]; m != nil {
		delete(m, sub)
		if len(m) == 0 {
			delete(s.subs, sub.log)
		}
	}
}

// notify tells the subscriptions of log's epoch that entry seq committed.
func (s *Server) notify(log protocol.GroupLogID, epoch, seq uint64, commit bool) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	for sub := range s.subs[log] {
		if sub.epoch != epoch {
			continue
		}
		sub.mu.Lock()
		if seq > sub.latest {
			sub.latest = seq
		}
		if commit {
			sub.commit = true
		}
		sub.mu.Unlock()
		select {
		case sub.wake <- struct{}{}:
		default:
		}
	}
}
