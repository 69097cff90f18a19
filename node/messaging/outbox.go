package messaging

import (
	"bytes"
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// The outbox. Every outbox entry is owned either by the store (waiting
// for its NextAttempt) or, in memory, by the delivery loop of its peer's
// device (deliverer.go). The scheduler hands entries to the loops when
// they fall due, and every entry of a device whenever a connection to it
// opens; an entry goes back to the store when its attempt ends
// (deliver.go). An entry is always sent as the bytes committed when it was
// queued, unless the peer lost the session it was encrypted in.

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
	slices.SortStableFunc(items, func(a, b *outItem) int { return cmp.Compare(a.seq, b.seq) })
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

// maxDispatch bounds the entries the scheduler reads at once.
const maxDispatch = 4096
