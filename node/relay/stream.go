package relay

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// stream is one relay stream: its reader (the handler's goroutine) reads
// and answers requests; its writer goroutine writes responses in the order
// they were queued, waiting for each deposit's commit and signing its
// receipt. The queue's capacity bounds the deposits waiting for a commit:
// when it is full the reader stops reading (backpressure).
type stream struct {
	s      *Server
	str    network.Stream
	peer   peer.ID
	connID string
	quotas [2]store.RelayQuotaKey // of the peer and its address range (quota.go)

	ctx    context.Context // canceled when the stream ends
	cancel context.CancelFunc
	out    chan outItem
	wdone  chan struct{}

	// Reader goroutine only.
	challenge protocol.Challenge
	issued    time.Time
	seen      [nKinds]bool // the kinds of work recorded in Server.seen

	subsMu sync.Mutex
	subs   map[uint64]*subscription // by the Subscribe request's ID
	subWG  sync.WaitGroup
}

// outItem is a response ready to write, or a deposit whose response is
// made when its commit is done.
type outItem struct {
	resp *protocol.RelayResponse
	dep  *deposit
}

// handle serves one relay stream.
func (s *Server) handle(str network.Stream) {
	c := &stream{
		s:      s,
		str:    str,
		peer:   str.Conn().RemotePeer(),
		connID: str.Conn().ID(),
		quotas: s.quotasOf(str.Conn().RemotePeer(), str.Conn().RemoteMultiaddr()),
		out:    make(chan outItem, s.res.MaxPending),
		wdone:  make(chan struct{}),
		subs:   map[uint64]*subscription{},
	}
	if !s.admit(c) {
		str.Reset()
		return
	}
	defer s.release(c)
	c.saw(seenStream)
	s.met.streams.Inc()
	defer s.met.streams.Dec()
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	defer c.cancel()
	go c.writeLoop()
	end := c.serve()
	// End the subscriptions, then the writer (after it wrote what is
	// queued), then the stream.
	c.endSubscriptions()
	close(c.out)
	<-c.wdone
	switch end {
	case endClose:
		str.Close()
	case endAnswered:
		// A reset makes the peer drop what it has not read yet: close
		// the write side, give the peer a moment to read the answer,
		// then reset.
		str.CloseWrite()
		str.SetReadDeadline(time.Now().Add(lingerTimeout))
		io.Copy(io.Discard, io.LimitReader(str, lingerBytes))
		str.Reset()
	default:
		str.Reset()
	}
}

// How a stream ends.
const (
	endClose    = iota // the peer closed it: close ours
	endReset           // a fault or a deadline: reset at once
	endAnswered        // bad input, answered: reset after a linger
)

// lingerTimeout and lingerBytes bound how long, and how much, the relay
// reads from a stream it is about to reset after answering bad input.
const (
	lingerTimeout = time.Second
	lingerBytes   = 64 << 10
)

// serve reads and answers requests until the stream ends, and says how to
// end it.
func (c *stream) serve() int {
	s := c.s
	if err := c.issueChallenge(); err != nil {
		return endReset
	}
	if !c.send(&protocol.RelayResponse{Op: protocol.RelayHello, Code: protocol.CodeOK, Challenge: c.challenge}) {
		return endReset
	}
	fr := protocol.NewFrameReader(c.str, protocol.MaxRelayFrame)
	for {
		if c.subscriptions() == 0 {
			// Stream deadlines are on the system clock (the network's),
			// not the relay's Clock.
			c.str.SetReadDeadline(time.Now().Add(s.res.StreamIdle))
		} else {
			// An owner's subscription stream is quiet for hours; libp2p's
			// keepalive finds a dead connection.
			c.str.SetReadDeadline(time.Time{})
		}
		var req protocol.RelayRequest
		err := fr.Read(&req)
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return endClose
		case errors.Is(err, protocol.ErrMalformed), errors.Is(err, protocol.ErrTooLarge), errors.Is(err, protocol.ErrUnsupportedVersion):
			// Bad input: answer with its code, reset, refuse the peer for
			// a while.
			s.met.reject(protocol.CodeOf(err).String())
			s.penalty.Penalize(c.peer)
			c.send(&protocol.RelayResponse{Code: protocol.CodeOf(err)})
			return endAnswered
		default:
			// A read error or deadline: nothing to answer.
			return endReset
		}
		s.met.request(req.Op)
		if !c.dispatch(&req) {
			return endReset
		}
	}
}

// saw records the stream's peer in the relay's recent peers of kind k,
// once per stream.
func (c *stream) saw(k peerKind) {
	if !c.seen[k] {
		c.seen[k] = true
		c.s.seen.add(k, c.peer, c.s.clock.Now())
	}
}

// send queues a response; false if the stream has ended.
func (c *stream) send(r *protocol.RelayResponse) bool {
	return c.queue(outItem{resp: r})
}

func (c *stream) queue(it outItem) bool {
	select {
	case c.out <- it:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// writeBuffer is how much the writer collects before one Write.
const writeBuffer = 64 << 10

// writeLoop writes the queued responses in order, several frames per
// Write while more are ready: it waits for a deposit's commit only when
// nothing before it is left unwritten.
func (c *stream) writeLoop() {
	defer close(c.wdone)
	var buf []byte
	var held *outItem
	failed := false
	for {
		var it outItem
		if held != nil {
			it, held = *held, nil
		} else {
			var ok bool
			if it, ok = <-c.out; !ok {
				return
			}
		}
		if failed {
			continue // drain, so that senders do not block
		}
		var err error
		buf, err = c.appendItem(buf[:0], it)
	more:
		for err == nil && len(buf) < writeBuffer {
			select {
			case next, ok := <-c.out:
				if !ok {
					break more
				}
				if next.dep != nil && !next.dep.ready() {
					held = &next
					break more
				}
				buf, err = c.appendItem(buf, next)
			default:
				break more
			}
		}
		if err != nil {
			c.s.log.Error("relay: encode response", "err", err)
		} else {
			c.str.SetWriteDeadline(time.Now().Add(c.s.res.WriteTimeout))
			_, err = c.str.Write(buf)
		}
		if err != nil {
			failed = true
			c.cancel()
			c.str.Reset()
		}
	}
}

// appendItem appends an item's frame, waiting for a deposit's commit.
func (c *stream) appendItem(buf []byte, it outItem) ([]byte, error) {
	r := it.resp
	if it.dep != nil {
		r = c.s.finishDeposit(it.dep)
	}
	return protocol.AppendFrame(buf, r)
}

// issueChallenge replaces the stream's challenge with a fresh one.
func (c *stream) issueChallenge() error {
	ch, err := c.s.newChallenge()
	if err != nil {
		c.s.log.Error("relay: challenge", "err", err)
		return err
	}
	c.challenge, c.issued = ch, c.s.clock.Now()
	return nil
}

// checkChallenge checks an owner op's challenge: the stream's current one,
// not older than ChallengeTTL. Either way the challenge is used up.
func (c *stream) checkChallenge(req *protocol.RelayRequest) error {
	ok := req.Challenge == c.challenge && !c.challenge.IsZero() &&
		c.s.clock.Now().Sub(c.issued) <= c.s.res.ChallengeTTL
	c.challenge = protocol.Challenge{}
	if !ok {
		return protocol.ErrExpiredChallenge
	}
	return nil
}
