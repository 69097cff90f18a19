package groups

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Delivery receipts go from each member straight to the device that sent
// the messages they cover (protocol.GroupReceiptProtocol), not to the
// group: a message costs its sender one receipt per member and the other
// members nothing. Through the group, every receipt reached every member,
// so a message cost the group a number of decryptions that grew with the
// square of its size. A sender out of reach (maxDirectReceiptFails tries
// failed, over receiptOutOfReach receipt delays at least) gets its
// receipts through the group (the log keeps them until it is back).
//
// The members of a group send their receipts for a message at about the
// same time, each over a connection of its own to the sender, which a
// device with the default connection limits cannot take at once in a
// large group: it refuses what is over its limits, and its dialers then
// hold it in their dial backoff. So a member waits a receipt delay and a
// random part of a window that grows with the group (receiptSpread
// members a receipt delay), and a sender that refused is tried again
// later, not written off: only failing for long says it is out of reach.
const (
	// maxDirectReceiptFails and receiptOutOfReach: a sender whose
	// receipts failed at least this many tries, the first at least
	// receiptOutOfReach receipt delays ago, is out of reach: its
	// receipts go through the group.
	maxDirectReceiptFails = 4
	receiptOutOfReach     = 30
	// receiptSpread is how many members' receipts a receipt delay's
	// window takes: the window is the group's size over it, in receipt
	// delays.
	receiptSpread = 32
	// receiptTimeout bounds one receipt's stream: dial, frame, answer.
	receiptTimeout = 20 * time.Second
	// MaxReceiptsInbound bounds the receipts waiting for a group's
	// goroutine; a receipt beyond is answered rate_limited (its member
	// tries again).
	MaxReceiptsInbound = 1024
)

// Ways a receipt travels (sealpost_groups_receipts_total).
const (
	receiptDirect = "direct" // straight to the sender's device
	receiptGroup  = "group"  // through the group (the sender could not be reached)
)

// receiptFail counts the failed tries to reach a sender with its
// receipts since the first.
type receiptFail struct {
	tries int
	since time.Time
}

// outOfReach reports whether the sender's device failed receipts long
// enough to be written off for now (its receipts go through the group).
func (g *group) outOfReach(to identity.UserID) bool {
	f, ok := g.receiptFails[to]
	return ok && f.tries >= maxDirectReceiptFails &&
		g.s.clock.Now().Sub(f.since) >= receiptOutOfReach*g.s.opt.ReceiptDelay
}

// receiptWait is how long a member gathers receipts before it sends
// them: a receipt delay and a random part of the group's window.
func (g *group) receiptWait() time.Duration {
	d := g.s.opt.ReceiptDelay
	window := d * time.Duration(len(g.members)) / receiptSpread
	return d + rand.N(window+1)
}

// receiptIn is a receipt from a member's device, waiting for the group's
// goroutine; it answers on done.
type receiptIn struct {
	from   peer.ID
	covers []protocol.MessageID
	done   chan protocol.Code
}

// handleReceipt serves GroupReceiptProtocol: one GroupReceipt from a
// member's device, answered with an Ack once the deliveries it reports are
// written; a frame that does not decode is answered with its error.
func (s *Service) handleReceipt(str network.Stream) {
	defer str.Close()
	_ = str.SetDeadline(time.Now().Add(receiptTimeout))
	var r protocol.GroupReceipt
	if err := protocol.NewFrameReader(str, protocol.MaxGroupReceipt).Read(&r); err != nil {
		// The answer, then the end of the stream (one frame per stream):
		// a reset would drop the answer. Only a frame that arrived and
		// does not decode is malformed; a stream that ended or stalled
		// before its frame is not a dropped message.
		if errors.Is(err, protocol.ErrMalformed) || errors.Is(err, protocol.ErrTooLarge) {
			s.met.dropped.WithLabelValues(dropMalformed).Inc()
		}
		_ = protocol.WriteFrame(str, &protocol.Ack{Code: protocol.CodeOf(err)})
		return
	}
	code := s.receipt(str.Conn().RemotePeer(), &r)
	if err := protocol.WriteFrame(str, &protocol.Ack{ID: 1, Code: code}); err != nil {
		str.Reset()
	}
}

// receipt hands a receipt to its group's goroutine and waits for the
// outcome.
func (s *Service) receipt(from peer.ID, r *protocol.GroupReceipt) protocol.Code {
	s.mu.Lock()
	g := s.groups[r.Group]
	s.mu.Unlock()
	if g == nil {
		return protocol.CodeNotFound
	}
	in := receiptIn{from: from, covers: r.Covers, done: make(chan protocol.Code, 1)}
	if !g.rcpts.put(in) {
		return protocol.CodeRateLimited
	}
	select {
	case c := <-in.done:
		return c
	case <-g.done:
		return protocol.CodeInternal
	case <-time.After(receiptTimeout):
		return protocol.CodeInternal
	}
}

// receiveReceipts takes the receipts of members' devices; a device that
// is no member's in this epoch is refused at once. The others are held
// (heldReceipts) and written with the group's next write, or alone after
// receiptHold: a message's receipts come from every member, each a write
// of its own before (a disk sync each). They are answered once their
// write is durable; the goroutine does not wait for that.
func (g *group) receiveReceipts(in []receiptIn) {
	for _, x := range in {
		u, ok := g.byDevice[x.from]
		if !ok || g.mg == nil {
			g.s.met.dropped.WithLabelValues(dropNotMember).Inc()
			x.done <- protocol.CodeWrongSender
			continue
		}
		g.heldReceipts = append(g.heldReceipts, heldReceipt{user: u, covers: x.covers, done: x.done})
	}
	switch {
	case len(g.heldReceipts) >= MaxReceiptsInbound:
		b := g.newBatch()
		b.lazy = true
		g.flush(b)
	case len(g.heldReceipts) > 0:
		g.schedule(&g.heldAt, g.s.opt.ReceiptDelay/receiptHoldPart)
	}
}

// receiptHoldPart: receipts are held at most ReceiptDelay/receiptHoldPart
// before they are written (250 ms by default), so a sender writes its
// receipts at most that often per group, whatever the group's size.
const receiptHoldPart = 4

// heldReceipt is a member's receipt waiting for the group's next write.
type heldReceipt struct {
	user   identity.UserID
	covers []protocol.MessageID
	done   chan protocol.Code
}

// takeReceipts puts the receipts held into b, answered once b is durable.
func (g *group) takeReceipts(b *batch) {
	held := g.heldReceipts
	if len(held) == 0 {
		return
	}
	g.heldReceipts, g.heldAt = nil, time.Time{}
	for _, x := range held {
		b.receipts[x.user] = append(b.receipts[x.user], x.covers...)
	}
	b.durable = append(b.durable, func(err error) {
		code := protocol.CodeOK
		if err != nil {
			code = protocol.CodeInternal
		}
		for _, x := range held {
			x.done <- code
		}
	})
}

// sendReceipts sends the receipts that wait: one per sender of the
// messages they cover, straight to the sender's device; the receipts for
// a sender that could not be reached maxDirectReceiptFails times go
// through the group.
func (g *group) sendReceipts() {
	if g.mg == nil || !g.mg.Active() {
		return
	}
	var items []store.GroupWork
	err := g.s.st.View(g.s.ctx, func(tx *store.Tx) error {
		var err error
		items, err = tx.Groups().Work(g.id, workReceipt, 0)
		return err
	})
	if err != nil || len(items) == 0 {
		return
	}
	type pending struct {
		ns     []uint64
		covers []protocol.MessageID
	}
	byTo := map[identity.UserID]*pending{}
	var order []identity.UserID
	for _, w := range items {
		if g.receiptBusy[w.N] {
			continue
		}
		var r receiptWork
		if decodeWork(w.Data, &r) != nil {
			r = receiptWork{}
		}
		p := byTo[r.To]
		if p == nil {
			p = &pending{}
			byTo[r.To] = p
			order = append(order, r.To)
		}
		p.ns = append(p.ns, w.N)
		p.covers = append(p.covers, r.Covers...)
	}
	b := g.newBatch()
	for _, to := range order {
		p := byTo[to]
		m, member := g.members[to]
		switch {
		case to != (identity.UserID{}) && !member:
			// The sender left: nobody waits for these.
			g.dropReceipts(b, p.ns)
		case to == (identity.UserID{}) || g.outOfReach(to):
			// A receipt stored before receipts went direct, or a sender
			// out of reach: through the group.
			if err := g.groupReceipt(b, p.covers); err != nil {
				g.s.log.Warn("group: receipt", "group", g.id.String(), "err", err)
				g.flush(b)
				return
			}
			g.dropReceipts(b, p.ns)
			delete(g.receiptFails, to)
		default:
			g.directReceipt(to, m.device, p.ns, p.covers)
		}
	}
	g.flush(b)
}

// groupReceipt queues receipts covering covers as group messages.
func (g *group) groupReceipt(b *batch, covers []protocol.MessageID) error {
	for len(covers) > 0 {
		n := min(len(covers), protocol.MaxReceiptIDs)
		p := protocol.Plaintext{Kind: protocol.KindDeliveryReceipt, Covers: covers[:n]}
		if err := g.encryptOut(b, &p); err != nil {
			return err
		}
		g.s.met.receipts.WithLabelValues(receiptGroup).Inc()
		covers = covers[n:]
	}
	return nil
}

// dropReceipts deletes the receipt work items ns in b's transaction.
func (g *group) dropReceipts(b *batch, ns []uint64) {
	gid := g.id
	b.fn = append(b.fn, func(tx *store.Tx) error {
		for _, n := range ns {
			if err := tx.Groups().DeleteWork(gid, workReceipt, n); err != nil {
				return err
			}
		}
		return nil
	})
}

// directReceipt sends covers to the device of member to; the work items
// ns go once it answered, or wait for the next try. They are deleted
// with the group's next write (forgetReceipts), not by one of their own:
// with a sender per message, a member sends about one receipt per message
// it receives, and a write of its own was one more disk sync each. Until
// that write is committed they stay busy (not sent again); a crash before
// it is durable sends them again, and a receipt repeated counts once.
func (g *group) directReceipt(to identity.UserID, device peer.ID, ns []uint64, covers []protocol.MessageID) {
	for _, n := range ns {
		g.receiptBusy[n] = true
	}
	gid, large := g.id, len(g.members) > g.s.cfg.ConnHigh/receiptConnShare
	g.async(func(ctx context.Context) func() {
		err := g.s.sendReceipts(ctx, device, gid, covers, large)
		return func() {
			if err == nil {
				g.receiptsSent = append(g.receiptsSent, ns...)
				g.schedule(&g.stateAt, g.s.opt.StateEvery)
			} else {
				for _, n := range ns {
					delete(g.receiptBusy, n)
				}
			}
			if err != nil {
				f := g.receiptFails[to]
				if f.tries == 0 {
					f.since = g.s.clock.Now()
				}
				f.tries++
				g.receiptFails[to] = f
				g.s.met.receiptFails.Inc()
				g.s.log.Debug("group: receipt not delivered", "group", g.id.String(), "tries", f.tries, "err", err)
				g.schedule(&g.receiptAt, g.backoff(f.tries))
				return
			}
			delete(g.receiptFails, to)
			g.s.met.receipts.WithLabelValues(receiptDirect).Add(float64((len(covers) + protocol.MaxReceiptIDs - 1) / protocol.MaxReceiptIDs))
		}
	})
}

// forgetReceipts puts the deletion of the receipt work items sent
// (receiptsSent) into b and returns them; once b's write is committed
// they are no longer busy (sentForgotten).
func (g *group) forgetReceipts(b *batch) []uint64 {
	ns := g.receiptsSent
	if len(ns) == 0 {
		return nil
	}
	g.receiptsSent = nil
	g.dropReceipts(b, ns)
	return ns
}

// sentForgotten ends forgetReceipts after b's write: the items are gone
// from the store, or, if the write failed, wait for the next one.
func (g *group) sentForgotten(ns []uint64, err error) {
	if err != nil {
		g.receiptsSent = append(g.receiptsSent, ns...)
		g.schedule(&g.stateAt, g.s.opt.StateEvery)
		return
	}
	for _, n := range ns {
		delete(g.receiptBusy, n)
	}
}

// errReceiptRefused: the sender's device answered a receipt with an error.
var errReceiptRefused = errors.New("groups: receipt refused")

// receiptConnShare: a group of more members than a receipt connection
// share of a device's high watermark (ConnHigh/receiptConnShare) is
// large: its receipts take no connection to their sender for longer than
// they need.
const receiptConnShare = 3

// sendReceipts sends device receipts covering covers (a frame of at most
// protocol.MaxReceiptIDs each), dialling it if needed.
//
// A connection made for receipts alone is closed after them in a large
// group, or once this host holds many peers (two thirds of its connection
// manager's high watermark). Every member of a group connects to a
// message's sender for its receipt: kept, the connections of a large
// group's members fill the sender's limits (its high watermark is about
// the connections it takes in) until its connection manager trims them,
// and it refuses the receipts that come next, whose dialers then hold it
// in their dial backoff for seconds. In a small group, on a host with few
// peers, it is kept for the next receipt. Only the connections this dial
// opened are closed: a peer connected before (a peer of the topic's mesh)
// keeps its connection. Whether the connection manager protects the peer
// says nothing here: pubsub protects a peer of a topic's mesh, and the
// protection outlives the peer's connection.
func (s *Service) sendReceipts(ctx context.Context, device peer.ID, group protocol.GroupID, covers []protocol.MessageID, large bool) error {
	ctx, cancel := context.WithTimeout(ctx, receiptTimeout)
	defer cancel()
	h := s.cfg.Host
	if h.Network().Connectedness(device) != network.Connected {
		began := time.Now()
		if err := s.dial(ctx, device); err != nil {
			return err
		}
		defer func() {
			if !large && len(h.Network().Peers()) <= s.cfg.ConnHigh*2/3 {
				return
			}
			for _, c := range h.Network().ConnsToPeer(device) {
				if st := c.Stat(); st.Direction == network.DirOutbound && !st.Opened.Before(began) {
					_ = c.Close()
				}
			}
		}()
	}
	for len(covers) > 0 {
		n := min(len(covers), protocol.MaxReceiptIDs)
		if err := s.sendReceipt(ctx, device, &protocol.GroupReceipt{Group: group, Covers: covers[:n]}); err != nil {
			return err
		}
		covers = covers[n:]
	}
	return nil
}

// sendReceipt opens a stream to device, sends r and waits for the answer.
func (s *Service) sendReceipt(ctx context.Context, device peer.ID, r *protocol.GroupReceipt) error {
	str, err := s.cfg.Host.NewStream(ctx, device, libp2pproto.ID(protocol.GroupReceiptProtocol))
	if err != nil {
		return err
	}
	defer str.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = str.SetDeadline(d)
	}
	if err := protocol.WriteFrame(str, r); err != nil {
		str.Reset()
		return err
	}
	var ack protocol.Ack
	if err := protocol.NewFrameReader(str, protocol.MaxGroupReceipt).Read(&ack); err != nil {
		str.Reset()
		return err
	}
	if ack.Code != protocol.CodeOK {
		return fmt.Errorf("%w: %s", errReceiptRefused, ack.Code)
	}
	return nil
}

// dial connects to a member's device unless connected: with the addresses
// the host knows, or those FindDevice finds.
func (s *Service) dial(ctx context.Context, p peer.ID) error {
	h := s.cfg.Host
	if h.Network().Connectedness(p) == network.Connected {
		return nil
	}
	addrs := h.Peerstore().Addrs(p)
	if len(addrs) == 0 && s.cfg.FindDevice != nil {
		addrs, _ = s.cfg.FindDevice(ctx, p)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("groups: no address for device %s", p)
	}
	return h.Connect(ctx, peer.AddrInfo{ID: p, Addrs: slices.Clone(addrs)})
}
