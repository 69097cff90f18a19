package messaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// A device's delivery loop: it keeps one stream open while it has work,
// writes Deliver frames pipelined (up to MaxInflight and maxInflightBytes
// unacknowledged) and reads the Acks on a second goroutine; when the
// device cannot be reached and its contact lists mailboxes, it deposits
// what it holds on the contact's relays instead (deliver.go).

// maxInflightBytes bounds the payload bytes sent on a stream and not yet
// acknowledged.
const maxInflightBytes = 8 << 20

// maxWrite bounds the bytes of frames written at once.
const maxWrite = 1 << 20

// deliverer is one run of a delivery loop with its stream.
type deliverer struct {
	o  *outbox
	pq *peerQueue

	str        network.Stream
	boxes      []protocol.Mailbox // the contact's mailboxes (deposit)
	relayed    error              // set once this run delivers through them
	readerDone chan struct{}
	streamErr  error // set by the reader before readerDone closes
	nextID     uint64
	buf        []byte

	mu       sync.Mutex
	inflight map[uint64]*outItem
	inBytes  int
	room     chan struct{}
}

func (d *deliverer) loop() {
	s := d.o.s
	defer d.closeStream()
	var queue []*outItem
	for {
		queue = append(queue, d.o.take(d.pq)...)
		if len(queue) > 0 && d.str == nil && d.relayed == nil {
			if err := d.open(); err != nil {
				if len(d.boxes) == 0 {
					d.o.fail(append(queue, d.takeInflight()...), err)
					return
				}
				// Not reachable directly: the contact's mailboxes take
				// what this run holds, in order (deposit).
				d.relayed = err
			}
			// Whichever way this run delivers, the entries waiting for
			// their retry go first, with it: else a message waiting
			// after a failed attempt would arrive after a later one. A
			// new connection's flushDevice may have handed entries to
			// pending before claimStored could claim them: they join
			// too, so that all goes in sequence order.
			stored, err := d.o.claimStored(d.pq)
			if err != nil {
				s.log.Warn("messaging: read the outbox", "err", err)
			}
			queue = append(append(stored, queue...), d.o.take(d.pq)...)
			sortBySeq(queue)
		}
		if len(queue) > 0 && d.relayed != nil {
			if s.ctx.Err() != nil {
				d.o.release(queue)
				return
			}
			d.o.deposit(d.boxes, queue, d.relayed)
			queue = nil
			continue
		}
		if len(queue) > 0 {
			n := d.room0(queue)
			if n > 0 {
				if err := d.send(queue[:n]); err != nil {
					d.str.Reset()
					<-d.readerDone
					d.o.fail(append(queue, d.takeInflight()...), fmt.Errorf("%w: %v", ErrUnreachable, err))
					return
				}
				queue = queue[n:]
			}
		}
		if d.str == nil && len(queue) == 0 {
			return
		}
		select {
		case <-s.ctx.Done():
			d.o.release(append(queue, d.takeInflight()...))
			return
		case <-d.pq.signal:
		case <-d.room:
		case <-d.readerDone:
			left := append(queue, d.takeInflight()...)
			err := d.streamErr
			d.unwatch()
			if len(left) == 0 {
				return // closed when idle
			}
			d.o.fail(left, err)
			return
		}
	}
}

// room0 returns how many of queue fit in the window now.
func (d *deliverer) room0(queue []*outItem) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, b := 0, d.inBytes
	for _, it := range queue {
		if len(d.inflight)+n >= d.o.s.opt.MaxInflight || (n > 0 || len(d.inflight) > 0) && b+len(it.payload) > maxInflightBytes {
			break
		}
		n++
		b += len(it.payload)
	}
	return n
}

// takeInflight removes and returns every unacknowledged item.
func (d *deliverer) takeInflight() []*outItem {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*outItem, 0, len(d.inflight))
	for _, it := range d.inflight {
		out = append(out, it)
	}
	clear(d.inflight)
	d.inBytes = 0
	return out
}

// open connects the device and opens the stream, and starts the reader.
func (d *deliverer) open() error {
	s := d.o.s
	var addrs [][]byte
	err := s.st.View(s.ctx, func(tx *store.Tx) error {
		c, err := tx.Contacts().Get(d.pq.uid)
		if err == nil && bytes.Equal(c.Device, d.pq.dev) {
			addrs = c.Addrs
			if s.mb != nil {
				d.boxes = contactBoxes(&c)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	timeout := s.opt.DialTimeout
	if len(d.boxes) > 0 {
		timeout = min(timeout, s.opt.RelayAfter)
	}
	if len(d.boxes) > 0 && s.unreachedLately(d.pq.pid) {
		return fmt.Errorf("%w: %s: no direct connection in the last %v", ErrUnreachable, d.pq.pid, directRetry)
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	if err := s.connect(ctx, d.pq.pid, addrs); err != nil {
		s.noteDirect(d.pq.pid, len(d.boxes) > 0, false)
		return err
	}
	str, err := s.host.NewStream(ctx, d.pq.pid, libp2pproto.ID(protocol.MsgProtocol))
	if err != nil {
		// Connected only through a relay, and no hole punch made a
		// direct connection in time.
		s.noteDirect(d.pq.pid, len(d.boxes) > 0, false)
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, d.pq.pid, err)
	}
	s.noteDirect(d.pq.pid, true, true)
	if !s.watch(str) {
		str.Reset()
		return ErrClosed
	}
	d.str = str
	d.readerDone = make(chan struct{})
	go d.readAcks(str)
	return nil
}

func (d *deliverer) unwatch() {
	if d.str != nil {
		d.o.s.unwatch(d.str)
		d.str = nil
	}
}

func (d *deliverer) closeStream() {
	if d.str == nil {
		return
	}
	d.str.Close()
	<-d.readerDone
	d.unwatch()
}

// send writes Deliver frames for items.
func (d *deliverer) send(items []*outItem) error {
	s := d.o.s
	d.mu.Lock()
	d.buf = d.buf[:0]
	var err error
	for i, it := range items {
		d.nextID++
		it.sid = d.nextID
		d.inflight[it.sid] = it
		d.inBytes += len(it.payload)
		d.buf, err = protocol.AppendFrame(d.buf, &protocol.Deliver{ID: it.sid, Identity: s.selfPub,
			Device: []byte(s.host.ID()), Ciphertext: it.payload})
		if err != nil {
			break
		}
		if len(d.buf) >= maxWrite || i == len(items)-1 {
			d.mu.Unlock()
			d.str.SetWriteDeadline(time.Now().Add(s.opt.AckTimeout))
			_, err = d.str.Write(d.buf)
			d.mu.Lock()
			d.buf = d.buf[:0]
			if err != nil {
				break
			}
		}
	}
	d.mu.Unlock()
	return err
}

// readAcks reads acknowledgements until the stream ends, commits their
// effect batch by batch, and frees the window.
func (d *deliverer) readAcks(str network.Stream) {
	s := d.o.s
	defer close(d.readerDone)
	fr := protocol.NewFrameReader(str, protocol.MaxMsgFrame)
	for {
		str.SetReadDeadline(time.Now().Add(s.opt.AckTimeout))
		var a protocol.Ack
		err := fr.Read(&a)
		if err != nil {
			d.mu.Lock()
			idle := len(d.inflight) == 0
			d.mu.Unlock()
			if idle && isTimeout(err) {
				str.Close()
				return
			}
			str.Reset()
			d.streamErr = fmt.Errorf("%w: stream to %s: %v", ErrUnreachable, d.pq.pid, err)
			return
		}
		acks := []protocol.Ack{a}
		for len(acks) < s.opt.MaxInflight && fr.Buffered() {
			if err := fr.Read(&a); err != nil {
				break // reported by the next blocking read
			}
			acks = append(acks, a)
		}
		var res []ackResult
		var refusal protocol.Code
		d.mu.Lock()
		for _, a := range acks {
			it := d.inflight[a.ID]
			if it == nil {
				if a.ID == 0 {
					refusal = a.Code
				}
				continue
			}
			res = append(res, ackResult{it, a.Code})
		}
		d.mu.Unlock()
		if len(res) > 0 {
			if err := d.o.acked(res); err != nil {
				str.Reset()
				d.streamErr = err
				return
			}
			d.mu.Lock()
			for _, r := range res {
				delete(d.inflight, r.it.sid)
				d.inBytes -= len(r.it.payload)
			}
			d.mu.Unlock()
			select {
			case d.room <- struct{}{}:
			default:
			}
		}
		if refusal != 0 {
			str.Reset()
			d.streamErr = fmt.Errorf("%w: the peer refused the stream: %s", ErrPeerRefused, refusal)
			return
		}
	}
}

// isTimeout reports whether err is a deadline error.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// directRetry is how long after a failed direct attempt to a device with
// mailboxes its delivery loops go straight to the mailboxes. Behind a
// symmetric NAT every attempt fails after RelayAfter (a relayed
// connection, no hole punch); without this, each message would wait that
// long before its deposit. A direct connection that opens meanwhile
// (the peer dialled, or a hole punch succeeded) ends the wait:
// flushDevice hands everything waiting to the device at once.
const directRetry = time.Minute

// unreachedLately reports whether a direct attempt to p failed within
// directRetry and p is not connected now.
func (s *Service) unreachedLately(p peer.ID) bool {
	if s.host.Network().Connectedness(p) == network.Connected {
		return false
	}
	s.unreachedMu.Lock()
	defer s.unreachedMu.Unlock()
	t, ok := s.unreached[p]
	return ok && s.clock.Now().Sub(t) < directRetry
}

// noteDirect records the outcome of a direct attempt to p (only failures
// of devices that have mailboxes to fall back to are remembered).
func (s *Service) noteDirect(p peer.ID, boxes, ok bool) {
	s.unreachedMu.Lock()
	defer s.unreachedMu.Unlock()
	switch {
	case ok:
		delete(s.unreached, p)
	case boxes:
		if len(s.unreached) >= maxUnreached {
			clear(s.unreached) // bounded; forgetting only costs a wait
		}
		s.unreached[p] = s.clock.Now()
	}
}

// maxUnreached bounds the devices unreached remembers.
const maxUnreached = 4096

// connect makes sure there is a connection to device p: through the
// addresses known for it, then through its address record in the DHT.
func (s *Service) connect(ctx context.Context, p peer.ID, addrs [][]byte) error {
	if s.host.Network().Connectedness(p) == network.Connected {
		return nil
	}
	var known []ma.Multiaddr
	for _, b := range addrs {
		if a, err := ma.NewMultiaddrBytes(b); err == nil {
			known = append(known, a)
		}
	}
	if len(known) > 0 {
		s.host.Peerstore().AddAddrs(p, known, peerstore.AddressTTL)
	}
	clearBackoff(s, p)
	err := s.host.Connect(ctx, peer.AddrInfo{ID: p, Addrs: known})
	if err == nil {
		return nil
	}
	if s.cfg.FindDevice != nil {
		found, ferr := s.cfg.FindDevice(ctx, p)
		if ferr == nil && len(found) > 0 {
			clearBackoff(s, p)
			if err = s.host.Connect(ctx, peer.AddrInfo{ID: p, Addrs: found}); err == nil {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: %s: %v", ErrUnreachable, p, err)
}

// clearBackoff clears the swarm's dial backoff for p: delivery has its own
// backoff, and the swarm's would refuse a retry the peer is ready for.
func clearBackoff(s *Service, p peer.ID) {
	if sw, ok := s.host.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(p)
	}
}
