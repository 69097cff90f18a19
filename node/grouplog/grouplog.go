// Package grouplog is the client of a relay's group log service
// (protocol.GroupLogProtocol, docs/PROTOCOL.md §12.3): one Conn per stream,
// requests pipelined and matched to their answers by ID.
//
// The caller opens the stream (through a client key of its own for that
// relay, never the device key: node/mailbox) and hands it to NewConn; a
// Conn that fails (Err) is closed and replaced by a new one.
package grouplog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/sealpost/sealpost/protocol"
)

// Errors.
var (
	// ErrClosed: the Conn was closed, or its stream ended.
	ErrClosed = errors.New("grouplog: connection closed")
	// ErrBadRelay: the relay answered something that breaks the protocol.
	ErrBadRelay = errors.New("grouplog: the relay broke the protocol")
	// ErrSilent: a request waited AnswerTimeout with nothing from the
	// relay; the Conn is ended (its stream reset).
	ErrSilent = errors.New("grouplog: the relay stopped answering")
)

// EpochError is the ErrWrongEpoch answer to a request: Open is the log's
// open epoch. For an append, the epoch appended to is not the open one;
// for a fetch or a subscription, the log does not keep the epoch: it
// expired (Open is past it) or the log lags behind (Open is before it: a
// home relay that missed commits). errors.Is(err, protocol.ErrWrongEpoch)
// holds.
type EpochError struct{ Open uint64 }

func (e *EpochError) Error() string {
	return fmt.Sprintf("%v: the log is open at epoch %d", protocol.ErrWrongEpoch, e.Open)
}

// Unwrap returns protocol.ErrWrongEpoch.
func (e *EpochError) Unwrap() error { return protocol.ErrWrongEpoch }

// writeTimeout bounds one write of a request.
const writeTimeout = 30 * time.Second

// AnswerTimeout is how long a request waits for its answer while the
// relay sends nothing at all on the stream (pushes of a long fetch count
// as something). Past it the relay is taken for gone: a relay that
// accepted the stream and went silent, or a connection that died without
// a reset, fails the Conn instead of blocking its caller forever.
const AnswerTimeout = 30 * time.Second

// Conn is a client of one relay's group logs over one stream. Its methods
// are safe for concurrent use.
type Conn struct {
	str     network.Stream
	timeout time.Duration
	// lastRead is when the relay last sent a frame (unix nanoseconds).
	lastRead atomic.Int64

	wmu sync.Mutex // serializes writes

	mu      sync.Mutex
	nextID  uint64
	calls   map[uint64]*call
	subs    map[uint64]*Subscription
	err     error // why the Conn ended
	done    chan struct{}
	closeMu sync.Once
}

// call is one request waiting for its answer (and, for a fetch, its
// pushes).
type call struct {
	op     protocol.GroupLogOp
	pushes []Entry
	max    int // pushes accepted (a fetch's limit)
	bytes  int // bytes of the entries pushed, at most protocol.MaxFetchBytes
	resp   chan *protocol.GroupLogResponse
}

// Entry is one entry of a log.
type Entry struct {
	Seq    uint64
	Commit bool
	// Entry is the encoded protocol.GroupMessage.
	Entry []byte
}

// NewConn starts a client on str, which speaks protocol.GroupLogProtocol.
// A request fails the Conn with ErrSilent when the relay sends nothing for
// answerTimeout while it waits (0: AnswerTimeout).
func NewConn(str network.Stream, answerTimeout time.Duration) *Conn {
	if answerTimeout <= 0 {
		answerTimeout = AnswerTimeout
	}
	c := &Conn{str: str, timeout: answerTimeout, calls: map[uint64]*call{}, subs: map[uint64]*Subscription{}, done: make(chan struct{})}
	c.lastRead.Store(time.Now().UnixNano())
	go c.readLoop()
	return c
}

// Close resets the stream and fails what is waiting. It is idempotent.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	c.str.Reset()
	<-c.done
	return nil
}

// Done is closed when the Conn has ended; Err says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the Conn ended (nil while it runs).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// fail ends the Conn with err (the first reason sticks) and wakes every
// waiter.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	for id, cl := range c.calls {
		close(cl.resp)
		delete(c.calls, id)
	}
	for id, s := range c.subs {
		s.end(err)
		delete(c.subs, id)
	}
}

func (c *Conn) readLoop() {
	defer close(c.done)
	fr := protocol.NewFrameReader(c.str, protocol.MaxGroupLogFrame)
	for {
		var r protocol.GroupLogResponse
		err := fr.Read(&r)
		switch {
		case errors.Is(err, io.EOF):
			c.fail(ErrClosed)
			return
		case errors.Is(err, protocol.ErrMalformed), errors.Is(err, protocol.ErrTooLarge), errors.Is(err, protocol.ErrUnsupportedVersion):
			c.fail(fmt.Errorf("%w: %v", ErrBadRelay, err))
			c.str.Reset()
			return
		case err != nil:
			c.fail(fmt.Errorf("%w: %v", ErrClosed, err))
			return
		}
		c.lastRead.Store(time.Now().UnixNano())
		if err := c.dispatch(&r); err != nil {
			c.fail(err)
			c.str.Reset()
			return
		}
	}
}

// dispatch hands a frame to its waiter.
func (c *Conn) dispatch(r *protocol.GroupLogResponse) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Op == 0 {
		return fmt.Errorf("%w: the relay refused a frame: %s", ErrBadRelay, r.Code)
	}
	if r.Op == protocol.GroupLogPush {
		if s := c.subs[r.ID]; s != nil {
			if len(r.Entry) > 0 {
				return fmt.Errorf("%w: a subscription's push with an entry", ErrBadRelay)
			}
			if s.push(r.Seq, r.Commit) {
				delete(c.subs, r.ID)
			}
			return nil
		}
		cl := c.calls[r.ID]
		if cl == nil || cl.op != protocol.GroupLogFetch || len(r.Entry) == 0 || len(cl.pushes) >= cl.max {
			return fmt.Errorf("%w: a push for no fetch", ErrBadRelay)
		}
		if cl.bytes += len(r.Entry); cl.bytes > protocol.MaxFetchBytes {
			return fmt.Errorf("%w: a fetch's pushes past %d bytes", ErrBadRelay, protocol.MaxFetchBytes)
		}
		cl.pushes = append(cl.pushes, Entry{Seq: r.Seq, Commit: r.Commit, Entry: r.Entry})
		return nil
	}
	cl := c.calls[r.ID]
	if cl == nil || cl.op != r.Op {
		return fmt.Errorf("%w: an answer to no request (id %d, %s)", ErrBadRelay, r.ID, r.Op)
	}
	delete(c.calls, r.ID)
	cl.resp <- r
	return nil
}

// do sends req and waits for its answer. A fetch's pushes come back in
// the call; a subscription is registered before the request is sent.
func (c *Conn) do(ctx context.Context, req *protocol.GroupLogRequest, sub *Subscription) (*protocol.GroupLogResponse, *call, error) {
	cl, err := c.start(req, sub)
	if err != nil {
		return nil, nil, err
	}
	return c.wait(ctx, req, cl, time.Now())
}

// start registers req (and sub) and writes it: requests reach the relay
// in the order of the calls to start.
func (c *Conn) start(req *protocol.GroupLogRequest, sub *Subscription) (*call, error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	c.nextID++
	req.ID = c.nextID
	cl := &call{op: req.Op, resp: make(chan *protocol.GroupLogResponse, 1), max: int(req.Limit)}
	if cl.max == 0 {
		cl.max = protocol.MaxFetchLimit
	}
	c.calls[req.ID] = cl
	if sub != nil {
		sub.id = req.ID
		c.subs[req.ID] = sub
	}
	c.mu.Unlock()
	if err := req.Validate(); err != nil {
		c.forget(req.ID)
		return nil, err
	}
	c.wmu.Lock()
	c.str.SetWriteDeadline(time.Now().Add(writeTimeout))
	err := protocol.WriteFrame(c.str, req)
	c.wmu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("%w: %v", ErrClosed, err))
		return nil, c.Err()
	}
	return cl, nil
}

// wait waits for the answer to req, written at sent.
func (c *Conn) wait(ctx context.Context, req *protocol.GroupLogRequest, cl *call, sent time.Time) (*protocol.GroupLogResponse, *call, error) {
	t := time.NewTimer(c.timeout)
	defer t.Stop()
	for {
		select {
		case r, ok := <-cl.resp:
			if !ok {
				return nil, nil, c.Err()
			}
			return r, cl, nil
		case <-ctx.Done():
			// The answer may still come; the Conn drops it. A subscription
			// asked for is ended.
			c.forget(req.ID)
			return nil, nil, ctx.Err()
		case <-t.C:
			// Silent since the request went out, or since the last frame
			// if that came later: wait out the rest, or give the relay up.
			last := time.Unix(0, c.lastRead.Load())
			if last.Before(sent) {
				last = sent
			}
			if rest := c.timeout - time.Since(last); rest > 0 {
				t.Reset(rest)
				continue
			}
			c.fail(fmt.Errorf("%w: no answer to %s in %v", ErrSilent, req.Op, c.timeout))
			c.str.Reset()
			return nil, nil, c.Err()
		}
	}
}

func (c *Conn) forget(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.calls, id)
	if s := c.subs[id]; s != nil {
		s.end(context.Canceled)
		delete(c.subs, id)
	}
}

// Create creates a log open at epoch for token and returns its ID.
func (c *Conn) Create(ctx context.Context, log protocol.GroupLogID, epoch uint64, token protocol.GroupToken) error {
	r, _, err := c.do(ctx, &protocol.GroupLogRequest{Op: protocol.GroupLogCreate, Log: log, Epoch: epoch, TokenHash: token.Hash()}, nil)
	if err != nil {
		return err
	}
	if err := r.Err(); err != nil {
		return err
	}
	if r.Log != log {
		return fmt.Errorf("%w: created log %s, asked for %s", ErrBadRelay, r.Log, log)
	}
	return nil
}

// Appended is the answer to an append.
type Appended struct {
	Seq         uint64
	StoredUntil time.Time
	// Open is the log's open epoch after the append (the next one, for a
	// commit that won).
	Open uint64
}

// Append stores entry, an encoded protocol.GroupMessage of epoch, in the
// log. A commit carries next, the hash of the next epoch's token. A commit
// that lost (or an entry for an epoch the log closed) fails with an
// *EpochError.
func (c *Conn) Append(ctx context.Context, log protocol.GroupLogID, epoch uint64, token protocol.GroupToken, entry []byte, commit bool, next protocol.TokenHash) (Appended, error) {
	p, err := c.StartAppend(log, epoch, token, entry, commit, next)
	if err != nil {
		return Appended{}, err
	}
	return p.Wait(ctx)
}

// PendingAppend is an append written to the relay, its answer to come.
type PendingAppend struct {
	c    *Conn
	req  *protocol.GroupLogRequest
	cl   *call
	sent time.Time
}

// StartAppend writes an append as Append does, without waiting for its
// answer: appends started one after the other reach the relay, and so its
// log, in that order. Wait takes the answer.
func (c *Conn) StartAppend(log protocol.GroupLogID, epoch uint64, token protocol.GroupToken, entry []byte, commit bool, next protocol.TokenHash) (*PendingAppend, error) {
	req := &protocol.GroupLogRequest{Op: protocol.GroupLogAppend, Log: log, Epoch: epoch, Token: token, Entry: entry, Commit: commit}
	if commit {
		req.TokenHash = next
	}
	cl, err := c.start(req, nil)
	if err != nil {
		return nil, err
	}
	return &PendingAppend{c: c, req: req, cl: cl, sent: time.Now()}, nil
}

// Wait waits for the answer to the append, as Append.
func (p *PendingAppend) Wait(ctx context.Context) (Appended, error) {
	r, _, err := p.c.wait(ctx, p.req, p.cl, p.sent)
	if err != nil {
		return Appended{}, err
	}
	if r.Code == protocol.CodeWrongEpoch {
		return Appended{}, &EpochError{Open: r.Epoch}
	}
	if err := r.Err(); err != nil {
		return Appended{}, err
	}
	return Appended{Seq: r.Seq, StoredUntil: time.UnixMilli(r.StoredUntil), Open: r.Epoch}, nil
}

// Fetched is the answer to a fetch.
type Fetched struct {
	Entries []Entry
	// Open is the log's open epoch; More that the fetch stopped at its
	// limit, or short of it (at protocol.MaxFetchBytes, or at the relay's
	// bound of answer bytes queued), with more entries of the epoch
	// stored: fetch again after the last entry.
	Open uint64
	More bool
}

// Fetch returns the entries of epoch after seq after, at most limit (0:
// the relay's default). An epoch the relay no longer keeps is
// protocol.ErrWrongEpoch.
func (c *Conn) Fetch(ctx context.Context, log protocol.GroupLogID, epoch uint64, token protocol.GroupToken, after uint64, limit int) (Fetched, error) {
	req := &protocol.GroupLogRequest{Op: protocol.GroupLogFetch, Log: log, Epoch: epoch, Token: token, After: after, Limit: uint32(min(max(limit, 0), protocol.MaxFetchLimit))}
	r, cl, err := c.do(ctx, req, nil)
	if err != nil {
		return Fetched{}, err
	}
	if r.Code == protocol.CodeWrongEpoch {
		return Fetched{}, &EpochError{Open: r.Epoch}
	}
	if err := r.Err(); err != nil {
		return Fetched{}, err
	}
	prev := after
	for _, e := range cl.pushes {
		if e.Seq <= prev {
			return Fetched{}, fmt.Errorf("%w: fetch pushed %d after %d", ErrBadRelay, e.Seq, prev)
		}
		prev = e.Seq
	}
	return Fetched{Entries: cl.pushes, Open: r.Epoch, More: r.More}, nil
}

// Subscription tells of the newest entry of one epoch of a log: Heads
// receives a value (coalesced: only the newest counts) whenever it moves,
// until the epoch's commit, after which Done is closed.
type Subscription struct {
	c  *Conn
	id uint64

	// Start is the newest entry of the epoch when the subscription began
	// (0: none); Open the log's open epoch then.
	Start, Open uint64

	mu     sync.Mutex
	head   uint64
	commit bool
	err    error
	wake   chan struct{}
	done   chan struct{}
}

// push records a head; it reports whether the subscription ended (a
// commit).
func (s *Subscription) push(seq uint64, commit bool) bool {
	s.mu.Lock()
	if seq > s.head {
		s.head = seq
	}
	if commit {
		s.commit = true
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if commit {
		s.end(nil)
	}
	return commit
}

func (s *Subscription) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
	default:
		s.err = err
		close(s.done)
	}
}

// Wake receives a value when the head moved.
func (s *Subscription) Wake() <-chan struct{} { return s.wake }

// Done is closed when the subscription ended: at the epoch's commit (Err
// nil) or with the Conn.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Head returns the newest entry known and whether it is the epoch's
// commit.
func (s *Subscription) Head() (seq uint64, commit bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head, s.commit
}

// Err returns why the subscription ended before the commit.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Subscribe subscribes to the newest entry of epoch.
func (c *Conn) Subscribe(ctx context.Context, log protocol.GroupLogID, epoch uint64, token protocol.GroupToken, after uint64) (*Subscription, error) {
	s := &Subscription{c: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
	req := &protocol.GroupLogRequest{Op: protocol.GroupLogSubscribe, Log: log, Epoch: epoch, Token: token, After: after}
	r, _, err := c.do(ctx, req, s)
	if err != nil {
		return nil, err
	}
	if r.Code == protocol.CodeWrongEpoch {
		c.forget(s.id)
		return nil, &EpochError{Open: r.Epoch}
	}
	if err := r.Err(); err != nil {
		c.forget(s.id)
		return nil, err
	}
	s.mu.Lock()
	s.Start, s.Open = r.Seq, r.Epoch
	if r.Seq > s.head {
		s.head = r.Seq
	}
	s.mu.Unlock()
	return s, nil
}
