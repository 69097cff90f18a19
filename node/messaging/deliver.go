package messaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Delivery. Every outbox entry is owned either by the store (waiting for
// its NextAttempt) or, in memory, by the delivery loop of its peer's
// device, which keeps one stream open while it has work, writes Deliver
// frames pipelined (up to MaxInflight and maxInflightBytes unacknowledged)
// and reads the Acks on a second goroutine. An OK ack deletes the entry
// (the peer's device committed the message) and moves a text message to
// sent. A refusal, a failed connection or a failed stream gives the entries
// back to the store with the next attempt after an exponential backoff
// with jitter; the scheduler hands them out again when they are due, and
// every entry of a peer whenever a stream to it opens. An entry is always
// sent as the bytes committed when it was queued, except when the peer
// reports that it cannot decrypt it (it lost the session): then it is
// encrypted again, in another session, under the same message ID.

// maxInflightBytes bounds the payload bytes sent on a stream and not yet
// acknowledged.
const maxInflightBytes = 8 << 20

// maxWrite bounds the bytes of frames written at once.
const maxWrite = 1 << 20

// outItem is one outbox entry in the delivery loop.
type outItem struct {
	id      protocol.MessageID
	peer    identity.UserID
	payload []byte
	seq     uint64
	sid     uint64 // Deliver ID on the current stream
}

// outbox routes entries to per-device delivery loops.
type outbox struct {
	s     *Service
	conns event.Subscription // peer connections
	mu    sync.Mutex
	peers map[string]*peerQueue
	owned map[protocol.MessageID]bool
	wake  chan struct{}
	// establishing is the peers for which a new session is being made.
	establishing map[identity.UserID]bool
	// renewed is when a new session was last started with a peer because
	// its relayed message decrypted nowhere (renewSession).
	renewed map[identity.UserID]time.Time
}

type peerQueue struct {
	dev     []byte
	pid     peer.ID
	uid     identity.UserID
	pending []*outItem
	signal  chan struct{}
	running bool
}

func newOutbox(s *Service) *outbox {
	return &outbox{
		s:            s,
		peers:        map[string]*peerQueue{},
		owned:        map[protocol.MessageID]bool{},
		wake:         make(chan struct{}, 1),
		establishing: map[identity.UserID]bool{},
		renewed:      map[identity.UserID]time.Time{},
	}
}

// add hands items for device dev to its delivery loop (starting it), and
// skips items already owned by a loop.
func (o *outbox) add(dev []byte, items ...*outItem) {
	pid, err := peer.IDFromBytes(dev)
	if err != nil {
		o.s.log.Error("messaging: outbox entry for a bad device ID", "err", err)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(items) == 0 {
		return
	}
	pq := o.peers[string(dev)]
	if pq == nil {
		// uid is set once: the loop reads it without the lock.
		pq = &peerQueue{dev: bytes.Clone(dev), pid: pid, uid: items[0].peer, signal: make(chan struct{}, 1)}
		o.peers[string(dev)] = pq
	}
	for _, it := range items {
		if o.owned[it.id] {
			continue
		}
		o.owned[it.id] = true
		pq.pending = append(pq.pending, it)
	}
	o.startLocked(pq)
}

// startLocked starts pq's loop if it has work and none runs, or wakes it.
func (o *outbox) startLocked(pq *peerQueue) {
	if len(pq.pending) == 0 {
		return
	}
	if pq.running {
		select {
		case pq.signal <- struct{}{}:
		default:
		}
		return
	}
	pq.running = true
	if !o.s.spawn(func() { o.run(pq) }) {
		pq.running = false
		for _, it := range pq.pending {
			delete(o.owned, it.id)
		}
		pq.pending = nil
	}
}

// take moves pq's pending items to the caller.
func (o *outbox) take(pq *peerQueue) []*outItem {
	o.mu.Lock()
	defer o.mu.Unlock()
	items := pq.pending
	pq.pending = nil
	return items
}

// release gives items back to the store's ownership.
func (o *outbox) release(items []*outItem) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, it := range items {
		delete(o.owned, it.id)
	}
}

// pokeScheduler makes the scheduler look at the store again.
func (o *outbox) pokeScheduler() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// run is a device's delivery loop.
func (o *outbox) run(pq *peerQueue) {
	d := &deliverer{o: o, pq: pq, inflight: map[uint64]*outItem{}, room: make(chan struct{}, 1)}
	d.loop()
	o.mu.Lock()
	pq.running = false
	if o.s.ctx.Err() != nil {
		for _, it := range pq.pending {
			delete(o.owned, it.id)
		}
		pq.pending = nil
		delete(o.peers, string(pq.dev))
	} else if len(pq.pending) > 0 {
		o.startLocked(pq)
	} else {
		delete(o.peers, string(pq.dev))
	}
	o.mu.Unlock()
}

// deliverer is one run of a delivery loop with its stream.
type deliverer struct {
	o  *outbox
	pq *peerQueue

	str        network.Stream
	boxes      []protocol.Mailbox // the contact's mailboxes (relay.go)
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
				// what this run holds, in order (relay.go).
				d.relayed = err
			} else {
				stored, err := d.o.claimStored(d.pq)
				if err != nil {
					s.log.Warn("messaging: read the outbox", "err", err)
				}
				// The new connection's flushDevice may have handed
				// entries to pending before claimStored could claim
				// them: they join too, so that all goes in sequence
				// order (else a retried message could arrive after a
				// later one).
				queue = append(append(stored, queue...), d.o.take(d.pq)...)
				sortBySeq(queue)
			}
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

// ackResult is one acknowledged item.
type ackResult struct {
	it   *outItem
	code protocol.Code
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

// acked commits the effect of acknowledgements: an OK deletes the entry
// and moves a text message to sent (a receipt or card record is deleted);
// a refusal reschedules the entry, or re-encrypts it when the peer lost
// the session. The items go back to the store afterwards.
func (o *outbox) acked(res []ackResult) error {
	items := make([]*outItem, len(res))
	for i, r := range res {
		items[i] = r.it
	}
	j, err := o.s.submit(o.s.ctx, false, len(res), func(w *work) error {
		for _, r := range res {
			if err := w.ackOne(r.it.id, r.it.payload, r.code); err != nil {
				return err
			}
		}
		w.after(func() { o.release(items) })
		return nil
	})
	if err == nil {
		err = o.s.await(j)
	}
	if err != nil {
		o.release(items)
	}
	return err
}

// ackOne commits the peer's answer code to the delivery of payload, the
// bytes of message id that were sent.
func (w *work) ackOne(id protocol.MessageID, payload []byte, code protocol.Code) error {
	entry, err := w.tx.Outbox().Get(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil // delivered meanwhile (a receipt came first), or removed
	}
	if err != nil {
		return err
	}
	if code != protocol.CodeOK && code != protocol.CodeDuplicate && !bytes.Equal(entry.Payload, payload) {
		// Refused, but encrypted again meanwhile (requeueLost): the new
		// bytes have not been tried.
		return w.dueNow(entry)
	}
	if code == protocol.CodeOK || code == protocol.CodeDuplicate {
		if err := w.tx.Outbox().Delete(id); err != nil {
			return err
		}
		m, err := w.tx.Messages().Get(id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if m.Kind != kindText {
			// Receipts and cards need nothing more: receipts get no receipts.
			return w.tx.Messages().Delete(id)
		}
		if stateRank(m.State) < stateRank(store.MessageSent) {
			m.State, m.Reason = store.MessageSent, ""
			if err := w.tx.Messages().Put(&m); err != nil {
				return err
			}
			w.stateChanged(&m)
		}
		return nil
	}
	w.s.log.Debug("messaging: the peer refused a message", "code", code.String(), "attempts", entry.Attempts)
	switch code {
	case protocol.CodeUnknownSession, protocol.CodeDecryptFailed:
		return w.reencrypt(entry, code)
	case protocol.CodeRateLimited, protocol.CodeInternal, protocol.CodeQuotaExceeded:
		return w.reschedule(entry, "the peer answered "+code.String(), false)
	}
	return w.reschedule(entry, "the peer refused it: "+code.String(), true)
}

// backoff returns the wait before attempt n+1 (n >= 1), with jitter.
func (s *Service) backoff(n uint32) time.Duration {
	d := s.opt.RetryMin
	for i := uint32(1); i < n && d < s.opt.RetryMax; i++ {
		d *= 2
	}
	d = min(d, s.opt.RetryMax)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + time.Duration(s.rand.uint64()%uint64(half+1))
}

// reschedule gives an entry a later attempt; after FailAfter attempts (or
// at once if failed) a text message shows the state failed with reason.
func (w *work) reschedule(e store.OutboxEntry, reason string, failed bool) error {
	e.Attempts++
	e.NextAttempt = w.now.Add(w.s.backoff(e.Attempts))
	reason = truncate(reason)
	e.LastError = reason
	if err := w.tx.Outbox().Put(e); err != nil {
		return err
	}
	w.scheduleChanged()
	if !failed && int(e.Attempts) < w.s.opt.FailAfter {
		return nil
	}
	m, err := w.tx.Messages().Get(e.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if m.Kind != kindText || stateRank(m.State) > 0 || (m.State == store.MessageFailed && m.Reason == reason) {
		return nil
	}
	m.State, m.Reason = store.MessageFailed, reason
	if err := w.tx.Messages().Put(&m); err != nil {
		return err
	}
	w.stateChanged(&m)
	return nil
}

// scheduleChanged wakes the outbox scheduler once the transaction
// committed (once per transaction): an entry's next attempt changed.
func (w *work) scheduleChanged() {
	if !w.rescheduled {
		w.rescheduled = true
		w.after(w.s.out.pokeScheduler)
	}
}

// fail reschedules items after a failed connection or stream.
func (o *outbox) fail(items []*outItem, cause error) {
	if len(items) == 0 {
		return
	}
	o.s.log.Debug("messaging: delivery failed", "messages", len(items), "err", cause)
	reason := cause.Error()
	err := o.s.do(o.s.ctx, false, func(w *work) error {
		for _, it := range items {
			e, err := w.tx.Outbox().Get(it.id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if err := w.reschedule(e, reason, false); err != nil {
				return err
			}
		}
		return nil
	})
	o.release(items)
	o.pokeScheduler()
	if err != nil && !errors.Is(err, ErrClosed) {
		o.s.log.Warn("messaging: reschedule failed deliveries", "err", err)
	}
}

// reencrypt handles a peer's report that it cannot decrypt an entry: the
// session it was encrypted in is gone there. The session is dropped here
// too and the message encrypted again in the best other session; without
// one, a new session is made from the peer's bundle.
func (w *work) reencrypt(e store.OutboxEntry, code protocol.Code) error {
	c, err := w.contact(e.Peer)
	if err != nil {
		return err
	}
	if c == nil || c.c.IdentityChanged || !bytes.Equal(c.c.Device, e.Device) {
		return w.reschedule(e, "the peer cannot decrypt it: "+code.String(), true)
	}
	if ses, err := w.session(e.Peer, e.Device, e.Session); err != nil {
		return err
	} else if ses != nil {
		ses.deleted = true
	}
	if c.c.Session == e.Session {
		best, err := w.bestSession(e.Peer, e.Device, e.Session)
		if err != nil {
			return err
		}
		c.c.Session = store.SessionID{}
		if best != nil {
			c.c.Session = best.rec.ID
		}
		c.dirty = true
	}
	m, err := w.tx.Messages().Get(e.ID)
	if errors.Is(err, store.ErrNotFound) {
		return w.tx.Outbox().Delete(e.ID)
	}
	if err != nil {
		return err
	}
	o, err := outgoingOf(&m)
	if err != nil {
		w.s.log.Error("messaging: stored outgoing message does not decode", "err", err)
		return w.reschedule(e, "cannot encrypt it again", true)
	}
	if _, err := w.queue(c, o); errors.Is(err, errNoSession) {
		uid := e.Peer
		w.after(func() { w.s.out.renew(uid) })
		return w.reschedule(e, "the peer lost the session; making a new one", false)
	} else if err != nil {
		return err
	}
	return nil
}

// outgoingOf rebuilds what was encrypted from a stored outgoing message.
func outgoingOf(m *store.Message) (outgoing, error) {
	o := outgoing{kind: m.Kind, id: m.ID, seq: m.Seq, sentAt: m.SentAt}
	switch m.Kind {
	case kindText:
		o.text = string(m.Body)
	case kindDelivery, kindRead:
		if len(m.Body) == 0 || len(m.Body)%16 != 0 {
			return o, errors.New("bad receipt body")
		}
		for b := m.Body; len(b) > 0; b = b[16:] {
			o.covers = append(o.covers, protocol.MessageID(b[:16]))
		}
	case kindCard:
		o.card = new(protocol.Card)
		if err := o.card.Unmarshal(m.Body); err != nil {
			return o, err
		}
	default:
		return o, fmt.Errorf("kind %d", m.Kind)
	}
	return o, nil
}

// renew makes a new session with a peer that lost every session, then
// encrypts again what waits for it in a session that is gone.
func (o *outbox) renew(uid identity.UserID) {
	o.mu.Lock()
	if o.establishing[uid] {
		o.mu.Unlock()
		return
	}
	o.establishing[uid] = true
	o.mu.Unlock()
	o.s.spawn(func() {
		defer func() {
			o.mu.Lock()
			delete(o.establishing, uid)
			o.mu.Unlock()
		}()
		s := o.s
		ctx, cancel := context.WithTimeout(s.ctx, 2*s.opt.DialTimeout)
		defer cancel()
		if err := s.establish(ctx, uid, false); err != nil {
			s.log.Info("messaging: could not make a new session", "user_id", uid.String(), "err", err)
			return
		}
		err := s.do(ctx, false, func(w *work) error {
			all, err := w.tx.Outbox().List()
			if err != nil {
				return err
			}
			c, err := w.contact(uid)
			if err != nil || c == nil {
				return err
			}
			for _, e := range all {
				if e.Peer != uid || !bytes.Equal(e.Device, c.c.Device) || o.isOwned(e.ID) {
					continue
				}
				if ses, err := w.session(uid, e.Device, e.Session); err != nil || ses != nil {
					if err != nil {
						return err
					}
					continue // its session is still there
				}
				m, err := w.tx.Messages().Get(e.ID)
				if err != nil {
					continue
				}
				og, err := outgoingOf(&m)
				if err != nil {
					continue
				}
				if _, err := w.queue(c, og); err != nil && !errors.Is(err, errNoSession) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			s.log.Warn("messaging: encrypt again for a new session", "err", err)
		}
	})
}

func (o *outbox) isOwned(id protocol.MessageID) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.owned[id]
}

// claimStored takes every entry of pq's device from the store that no
// loop owns, ordered by sequence number: when a stream opens, everything
// waiting for the peer goes, whatever its backoff.
func (o *outbox) claimStored(pq *peerQueue) ([]*outItem, error) {
	var items []*outItem
	err := o.s.st.View(o.s.ctx, func(tx *store.Tx) error {
		all, err := tx.Outbox().List()
		if err != nil {
			return err
		}
		for _, e := range all {
			if !bytes.Equal(e.Device, pq.dev) {
				continue
			}
			items = append(items, o.itemOf(tx, &e))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	out := items[:0]
	for _, it := range items {
		if !o.owned[it.id] {
			o.owned[it.id] = true
			out = append(out, it)
		}
	}
	sortBySeq(out)
	return out, nil
}

// itemOf builds the delivery item of a stored entry.
func (o *outbox) itemOf(tx *store.Tx, e *store.OutboxEntry) *outItem {
	it := &outItem{id: e.ID, peer: e.Peer, payload: e.Payload}
	if m, err := tx.Messages().Get(e.ID); err == nil {
		it.seq = m.Seq
	}
	return it
}

func sortBySeq(items []*outItem) {
	slices.SortStableFunc(items, func(a, b *outItem) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
}

// scheduleLoop hands due outbox entries to the delivery loops: every entry
// when the service starts (resuming after a restart), then those whose
// NextAttempt has come, sleeping on the service's clock until the next.
//
// When a connection to a device opens (whoever dialled), what waits for it
// goes at once, whatever its backoff.
func (o *outbox) scheduleLoop() {
	s := o.s
	t := s.clock.NewTimer(0)
	defer t.Stop()
	first := true
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C():
		case <-o.wake:
		case e, ok := <-o.conns.Out():
			if !ok {
				return
			}
			if ev, ok := e.(event.EvtPeerConnectednessChanged); ok && ev.Connectedness == network.Connected {
				o.flushDevice(ev.Peer)
			}
			continue
		}
		now := s.clock.Now()
		byDev := map[string][]*outItem{}
		var devs []string
		var next time.Time
		var any bool
		n := 0
		err := s.st.View(s.ctx, func(tx *store.Tx) error {
			var due []store.OutboxEntry
			var err error
			if first {
				due, err = tx.Outbox().List()
			} else {
				due, err = tx.Outbox().Due(now, maxDispatch)
			}
			if err != nil {
				return err
			}
			n = len(due)
			for i := range due {
				e := &due[i]
				if o.isOwned(e.ID) {
					continue
				}
				k := string(e.Device)
				if _, ok := byDev[k]; !ok {
					devs = append(devs, k)
				}
				byDev[k] = append(byDev[k], o.itemOf(tx, e))
			}
			next, any, err = tx.Outbox().Next()
			return err
		})
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("messaging: read the outbox", "err", err)
				t.Reset(s.opt.RetryMin)
			}
			continue
		}
		first = false
		for _, k := range devs {
			items := byDev[k]
			sortBySeq(items)
			o.add([]byte(k), items...)
		}
		switch {
		case !any:
		case next.After(now):
			// The delay from the clock's time now, not from before the
			// read: the read may have taken a while under load (and a
			// test's clock may have been moved meanwhile).
			t.Reset(max(next.Sub(s.clock.Now()), 0))
		case n >= maxDispatch:
			t.Reset(0)
		default:
			// Everything due is owned by a delivery loop, which keeps
			// its NextAttempt in the past while it tries. Look again
			// soon: entries rescheduled meanwhile fall due after their
			// backoff, and an OK acknowledgement does not wake this
			// loop (sleeping leaseTime here stalled them for minutes).
			t.Reset(s.opt.RetryMin)
		}
	}
}

// flushDevice hands every stored entry for device p to its delivery loop.
func (o *outbox) flushDevice(p peer.ID) {
	var items []*outItem
	err := o.s.st.View(o.s.ctx, func(tx *store.Tx) error {
		all, err := tx.Outbox().List()
		if err != nil {
			return err
		}
		for i := range all {
			if string(all[i].Device) == string(p) && !o.isOwned(all[i].ID) {
				items = append(items, o.itemOf(tx, &all[i]))
			}
		}
		return nil
	})
	if err != nil || len(items) == 0 {
		return
	}
	sortBySeq(items)
	o.add([]byte(p), items...)
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

// maxDispatch bounds the entries the scheduler reads at once.
const maxDispatch = 4096

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
