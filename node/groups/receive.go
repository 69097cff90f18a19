package groups

import (
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/mls"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// batch is what processing some messages produced, written in one
// transaction with the MLS state (flush).
type batch struct {
	// state: the MLS state changed in more than its keys (a commit, a
	// proposal, a re-encryption): it is written whole.
	state bool
	// keys: only the keys of the MLS state moved (this member's own
	// application message, its sender ratchet), and must be durable with
	// the batch: the keys are written, not the whole state (flush).
	keys bool
	rec  bool // the group record changed
	// soft: the state changed by application messages only, and the
	// first home's cursor moved: written within stateEvery, with the
	// next batch that writes the state or the record, or alone.
	soft bool
	// deferred: writeState's batch: the keys messages of others moved,
	// written within StateEvery.
	deferred bool
	msgs     []store.Message
	receipts map[identity.UserID][]protocol.MessageID // receipts of others, by sender
	covers   map[identity.UserID][]protocol.MessageID // messages to cover in the next receipts, by sender
	drop     []identity.UserID                        // members removed: their pending deliveries go
	fn       []func(tx *store.Tx) error               // more writes
	after    []func()                                 // after the commit: events
	// lazy: the goroutine goes on once the transaction is committed
	// (visible), without waiting for it to be durable. Only for what
	// nothing leaves the node on: a batch that encrypted (sealed) waits,
	// since its ciphertext must never go out from a state a crash could
	// take back (the same keys would encrypt again). A later durable write
	// makes every write before it durable (one log, synced in order).
	lazy, sealed bool
	// durable run once the batch is durable, with the write's error: on
	// the writing goroutine for a lazy batch.
	durable []func(error)
}

func (g *group) newBatch() *batch {
	return &batch{receipts: map[identity.UserID][]protocol.MessageID{}, covers: map[identity.UserID][]protocol.MessageID{}}
}

func (b *batch) empty() bool {
	return !b.state && !b.keys && !b.rec && !b.soft && len(b.msgs) == 0 && len(b.receipts) == 0 && len(b.covers) == 0 &&
		len(b.drop) == 0 && len(b.fn) == 0 && len(b.after) == 0
}

// remember notes a message hash as processed.
func (g *group) remember(h [32]byte) {
	if _, ok := g.recent[h]; ok {
		return
	}
	g.recent[h] = struct{}{}
	g.recentOrd = append(g.recentOrd, h)
	if len(g.recentOrd) > recentHashes {
		delete(g.recent, g.recentOrd[0])
		g.recentOrd = g.recentOrd[1:]
	}
}

// receiveTopic processes messages from the topic.
func (g *group) receiveTopic(in []inbound) {
	if g.mg == nil {
		return
	}
	b := g.newBatch()
	b.lazy = true
	for _, x := range in {
		if len(x.m.Seqs) > 0 && x.m.Seqs[0] > max(g.gossipThrough, g.rec.Homes[0].Cursor)+topicLead {
			// Far ahead of what this member has read (it is catching up
			// from the log): decrypting it now would move its sender's
			// ratchet past the messages in between, of which MLS keeps
			// the keys of only a window. The log brings it in its turn.
			g.fetchAt = g.s.clock.Now()
			continue
		}
		if len(x.m.Seqs) > 0 {
			g.seenOnTopic(x.m.Seqs[0])
		}
		g.receive(b, x.m, -1, 0)
	}
	g.flush(b)
}

// topicLead is how far ahead of the first home's entries read so far (by
// sequence number) a message from the topic is processed at once: the
// entries in between are fewer than the skipped keys MLS keeps.
const topicLead = mls.DefaultOutOfOrderWindow / 2

// maxGossipSeen bounds the sequence numbers kept beyond a gap: past it the
// next fetch fills the gap anyway.
const maxGossipSeen = 4096

// seenOnTopic notes that the topic brought the first home's entry seq,
// and moves gossipThrough over the entries seen without a gap.
func (g *group) seenOnTopic(seq uint64) {
	through := max(g.gossipThrough, g.rec.Homes[0].Cursor)
	if seq <= through {
		return
	}
	if g.gossipSeen == nil {
		g.gossipSeen = map[uint64]struct{}{}
	}
	if len(g.gossipSeen) >= maxGossipSeen {
		clear(g.gossipSeen)
	}
	g.gossipSeen[seq] = struct{}{}
	for {
		if _, ok := g.gossipSeen[through+1]; !ok {
			break
		}
		delete(g.gossipSeen, through+1)
		through++
	}
	g.gossipThrough = through
}

// receive processes one message: from the topic (home -1) or from home
// relay home's log at seq. Commits are taken from the first home's log
// only: the relay that orders them (PROTOCOL.md §12.8).
func (g *group) receive(b *batch, m *protocol.GroupMessage, home int, seq uint64) {
	if g.mg == nil || !g.mg.Active() {
		return
	}
	h := m.Hash()
	if _, ok := g.recent[h]; ok {
		g.s.met.duplicate.Inc()
		return
	}
	switch m.Kind {
	case protocol.GroupWelcome:
		return
	case protocol.GroupApplication:
		if len(m.Body) > MaxApplicationBody {
			g.remember(h)
			g.s.met.dropped.WithLabelValues(dropMalformed).Inc()
			return
		}
	case protocol.GroupCommit:
		if home != 0 {
			if home < 0 {
				g.fetchAt = g.s.clock.Now()
			}
			g.s.met.dropped.WithLabelValues(dropNotMember).Inc()
			return
		}
	}
	if home < 0 {
		if hd, err := mls.Peek(m.Body); err != nil || !kindMatches(m.Kind, hd.Kind) {
			g.s.met.dropped.WithLabelValues(dropMalformed).Inc()
			return
		}
	}
	// A message from the topic may come before others of its sender that
	// the log still holds: it must not push their keys out of MLS's
	// window (they could never be read). Such a message is left to the
	// log, which brings each sender's messages in order.
	r, err := g.mg.ProcessWith(m.Body, g.s.clock.Now(), mls.ProcessOptions{KeepSkipped: home < 0})
	switch {
	case errors.Is(err, mls.ErrWouldEvict):
		g.schedule(&g.fetchAt, g.s.opt.FetchGrace)
		return
	case errors.Is(err, mls.ErrEpochAhead):
		if len(g.ahead) < MaxAhead {
			g.ahead = append(g.ahead, m)
		}
		if home < 0 {
			// The topic carries the next epoch: its commit is in the log
			// (commits travel only there), whatever the subscription said.
			g.schedule(&g.fetchAt, g.s.opt.FetchGrace)
		}
		return
	case errors.Is(err, mls.ErrOwnMessage) && m.Kind == protocol.GroupCommit:
		// This device's commit closed the epoch but its pending state is
		// gone: it cannot follow the group (commitLost keeps it so this
		// does not happen). Said, never silent.
		g.remember(h)
		g.stuck = fmt.Sprintf("this device's commit closed epoch %d without its keys", m.Epoch)
		g.s.log.Warn("group: own commit without its pending state", "group", g.id.String(), "epoch", m.Epoch)
		return
	case errors.Is(err, mls.ErrOwnMessage), errors.Is(err, mls.ErrDuplicate):
		g.remember(h)
		g.s.met.duplicate.Inc()
		return
	case errors.Is(err, mls.ErrEvicted):
		// Not a copy of a message processed before (its hash would be in
		// recent): a message this member cannot read any more.
		g.remember(h)
		g.s.met.dropped.WithLabelValues(dropEvicted).Inc()
		g.s.log.Warn("group: message arrived after MLS gave up its key", "group", g.id.String(), "epoch", m.Epoch, "home", home, "seq", seq)
		return
	case errors.Is(err, mls.ErrEpochGone):
		g.remember(h)
		g.s.met.dropped.WithLabelValues(dropEpoch).Inc()
		return
	case errors.Is(err, mls.ErrRefused):
		g.remember(h)
		g.s.met.dropped.WithLabelValues(dropRefused).Inc()
		if m.Kind == protocol.GroupCommit {
			// The relay closed the epoch with a commit the group's rules
			// refuse: the group goes on in new logs.
			g.s.log.Warn("group: a refused commit closed the epoch; moving to new logs", "group", g.id.String(), "epoch", m.Epoch)
			g.resetLogs(b)
		}
		return
	case err != nil:
		g.remember(h)
		g.s.met.dropped.WithLabelValues(dropAuth).Inc()
		g.s.log.Debug("group: message refused", "group", g.id.String(), "err", err)
		return
	}
	g.remember(h)
	if r.Kind == mls.KindApplication {
		b.soft = true
	} else {
		b.state = true
	}
	switch r.Kind {
	case mls.KindApplication:
		g.application(b, r)
	case mls.KindProposal:
		g.proposals++
		if g.isAdmin() {
			g.wantCommit(b)
		}
	case mls.KindCommit:
		g.applyCommit(b, r, m, seq)
	}
}

// resetLogs moves the group to new logs on its home relays, open at the
// current epoch, because the first home closed the epoch with a commit
// the group's rules refuse (a member broke them; the relay cannot tell).
// Every member that refuses the commit derives the same new log IDs from
// the epoch's exporter and the old IDs, and creates them (a retry for all
// but the first); an outsider cannot derive them. What the epoch held up to
// the refused commit was read: fetches stop at a commit.
func (g *group) resetLogs(b *batch) {
	for i := range g.rec.Homes {
		old := g.rec.Homes[i].Log
		id, err := g.mg.Export(protocol.GroupLogResetLabel, old[:], protocol.GroupLogIDSize)
		if err != nil {
			g.stuck = "the home relay took a commit the group's rules refuse"
			return
		}
		copy(g.rec.Homes[i].Log[:], id)
		g.rec.Homes[i].Cursor = 0
	}
	g.s.met.logResets.Inc()
	g.lags = nil
	g.saveLagsIn(b)
	g.rec.UpdatedAt = g.s.clock.Now()
	b.rec = true
	g.sub, g.heads, g.gossipSeen, g.gossipThrough = nil, 0, nil, 0
	g.subN++
	g.schedule(&g.subAt, g.s.opt.RetryMin)
	for i := range g.rec.Homes {
		g.recreate(i)
	}
	g.schedule(&g.fetchAt, g.s.opt.RetryMin)
}

// application commits a member's message or receipt.
func (g *group) application(b *batch, r *mls.Received) {
	who, err := memberOf(r.Sender.Credential)
	if err != nil {
		g.s.met.dropped.WithLabelValues(dropMalformed).Inc()
		return
	}
	var p protocol.Plaintext
	if err := p.Unmarshal(r.Data); err != nil || p.ValidateGroup() != nil {
		g.s.met.dropped.WithLabelValues(dropMalformed).Inc()
		return
	}
	g.s.met.received.Inc()
	switch p.Kind {
	case protocol.KindDeliveryReceipt:
		b.receipts[who.user] = append(b.receipts[who.user], p.Covers...)
	case protocol.KindText, protocol.KindFile:
		body := []byte(p.Text)
		if p.Kind == protocol.KindFile {
			var err error
			if body, err = p.Marshal(); err != nil {
				return
			}
		}
		b.msgs = append(b.msgs, store.Message{
			ID: p.ID, Group: g.id, Peer: who.user, Seq: p.Seq, Kind: uint8(p.Kind), Body: body,
			SentAt: time.UnixMilli(p.SentAt), ReceivedAt: g.s.clock.Now(), State: store.MessageReceived,
		})
		b.covers[who.user] = append(b.covers[who.user], p.ID)
	}
}

// isAdmin reports whether this node is an admin in the current epoch.
func (g *group) isAdmin() bool { return g.meta != nil && g.meta.IsAdmin(g.s.self) }

// wantCommit queues a commit of the proposals received (an admin's client
// commits a member's leaving or update), unless one is queued.
func (g *group) wantCommit(b *batch) {
	if g.commitQueued {
		return
	}
	g.commitQueued, g.changesDue = true, true
	b.fn = append(b.fn, func(tx *store.Tx) error {
		_, err := tx.Groups().AddWork(store.GroupWork{Group: g.id, Kind: workChange, Data: encodeWork(change{Op: changeCommit})})
		return err
	})
}

// applyCommit moves the group to the epoch a commit started (another
// member's, or this node's own coming back from the log).
func (g *group) applyCommit(b *batch, r *mls.Received, m *protocol.GroupMessage, seq uint64) {
	info := r.Commit
	if info.PendingDiscarded || info.Own {
		g.commitDone(b, info, r.Epoch, seq)
	}
	if info.SelfRemoved {
		g.left(b, "removed")
		return
	}
	g.afterCommit(b, info)
}

// afterCommit records a new epoch: the record, the events, the pending
// deliveries of removed members, then the epoch's topic and log.
func (g *group) afterCommit(b *batch, info *mls.CommitInfo) {
	oldMeta := g.meta
	g.keepToken(b, g.mg.Epoch()-1)
	if err := g.enterEpoch(); err != nil {
		g.s.log.Warn("group: new epoch", "group", g.id.String(), "err", err)
	}
	g.rec.Epoch = g.mg.Epoch()
	g.rec.Members = uint32(len(g.members))
	g.rec.Admin = g.isAdmin()
	if g.meta != nil {
		g.rec.Name = g.meta.Name
	}
	g.rec.UpdatedAt = g.s.clock.Now()
	for i := range g.rec.Homes {
		if i == 0 {
			continue
		}
		g.rec.Homes[i].Cursor = 0
	}
	b.rec, b.state = true, true
	epoch := g.rec.Epoch
	for _, m := range info.Added {
		if who, err := memberOf(m.Credential); err == nil {
			b.after = append(b.after, g.memberEvent(who.user, ChangeAdded, epoch))
		}
	}
	for _, m := range info.Removed {
		who, err := memberOf(m.Credential)
		if err != nil {
			continue
		}
		if _, still := g.members[who.user]; still {
			continue
		}
		b.drop = append(b.drop, who.user)
		b.after = append(b.after, g.memberEvent(who.user, ChangeRemoved, epoch))
	}
	if oldMeta != nil && g.meta != nil {
		for _, a := range g.meta.Admins {
			if !oldMeta.IsAdmin(a) {
				b.after = append(b.after, g.memberEvent(a, ChangePromoted, epoch))
			}
		}
	}
	g.flush(b)
}

// left records that this node is no longer a member: its MLS state (the
// group's secrets) goes, the history stays.
func (g *group) left(b *batch, reason string) {
	if g.rec.State == store.GroupLeaving {
		reason = "left"
	}
	g.rec.State, g.rec.Reason, g.rec.UpdatedAt = store.GroupLeft, reason, g.s.clock.Now()
	g.rec.Admin = false
	b.rec, b.state = true, false
	id := g.id
	b.fn = append(b.fn, func(tx *store.Tx) error {
		if err := tx.Groups().DeleteState(id); err != nil {
			return err
		}
		for _, k := range []store.GroupWorkKind{workOut, workChange, workWelcome, workInvite, workReceipt, workToken} {
			items, err := tx.Groups().Work(id, k, 0)
			if err != nil {
				return err
			}
			for _, w := range items {
				if err := tx.Groups().DeleteWork(id, k, w.N); err != nil {
					return err
				}
			}
		}
		return nil
	})
	b.after = append(b.after, g.memberEvent(g.s.self, ChangeLeft, g.rec.Epoch))
	g.mg = nil
	g.out = nil
	g.stop()
	g.flush(b)
}

// flush writes a batch in one transaction: the state, the record, the
// messages, receipts and work; then it emits the events. A failed write
// drops what the goroutine holds in memory and reads the stored state
// again (what was lost comes again from the log), and returns the error.
func (g *group) flush(b *batch) error {
	if b.empty() && len(g.receiptsSent) == 0 && len(g.heldReceipts) == 0 {
		return nil
	}
	forgotten := g.forgetReceipts(b)
	g.takeReceipts(b)
	switch {
	case b.state || b.keys || b.rec:
		// The record (its cursor) is never written ahead of the state
		// it was read with: both go together.
		if b.soft || g.stateDirty {
			b.keys, b.rec = true, true
		}
		g.stateDirty, g.stateAt = false, time.Time{}
	case b.soft:
		g.stateDirty = true
		g.schedule(&g.stateAt, g.s.opt.StateEvery)
	}
	var state, keys []byte
	lost, lostKeys := g.sendKeysLost(), g.lostKeys
	if b.keys && !b.state && g.mg != nil && !lost {
		// Only application messages (others' read, this member's own
		// sent) moved the state since it was written whole: anything
		// else writes it whole at once, and a failed write reads the
		// stored state again. Their keys are enough, a small part of a
		// state that grows with the group; loading applies them to the
		// state (setState), this member's sender ratchet with them.
		if k, err := g.mg.MarshalKeys(); err == nil && len(k) <= store.MaxValueSize {
			keys = k
		}
	}
	if (b.state || b.keys) && g.mg != nil && keys == nil {
		var err error
		if state, err = g.mg.MarshalBinary(); err != nil {
			g.s.log.Error("group: marshal state", "group", g.id.String(), "err", err)
			g.sentForgotten(forgotten, err)
			for _, f := range b.durable {
				f(err)
			}
			return err
		}
	}
	if state != nil || keys != nil {
		why := stateChange
		switch {
		case state != nil:
		case b.deferred:
			why = stateDeferred
		default:
			why = stateKeys
		}
		g.s.met.stateWrites.WithLabelValues(why).Inc()
		g.s.met.stateBytes.Add(float64(len(state) + len(keys)))
	}
	rec := g.rec
	now := g.s.clock.Now()
	var added []store.Message
	var delivered []protocol.MessageID
	covers, files := 0, 0
	gid := g.id
	// What the user is shown comes once it is durable: a crash never
	// takes back a message shown (it would come again from the log).
	show := func(err error) {
		if err != nil {
			return
		}
		if files > 0 {
			g.s.cfg.Files.Wake()
		}
		for i := range added {
			g.s.publish(EventMessage, g.s.apiMessage(&added[i], rec.Name, nil))
		}
		for _, id := range delivered {
			g.s.notify(id)
			g.s.publish(EventMessageState, StateEvent{ID: id.String(), Group: gid.String(), State: StateDelivered})
		}
	}
	err := g.write(b.lazy && !b.sealed, append(b.durable, show), func(tx *store.Tx) error {
		added, delivered, covers, files = added[:0], delivered[:0], 0, 0
		gs := tx.Groups()
		if state != nil {
			if err := gs.PutState(g.id, state); err != nil {
				return err
			}
			if lost {
				// Kept until the epoch ends (group.keysLost).
				if err := gs.PutStateKeys(g.id, lostKeys); err != nil {
					return err
				}
			}
		}
		if keys != nil {
			if err := gs.PutStateKeys(g.id, keys); err != nil {
				return err
			}
		}
		if b.rec {
			if err := gs.Put(&rec); err != nil {
				return err
			}
		}
		for i := range b.msgs {
			m := b.msgs[i]
			if _, err := tx.Messages().Get(m.ID); err == nil {
				continue // the same message in another ciphertext
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if err := tx.Messages().Put(&m); err != nil {
				return err
			}
			added = append(added, m)
			if m.Kind == uint8(protocol.KindFile) && !m.Outgoing && g.s.cfg.Files != nil {
				var p protocol.Plaintext
				if err := p.Unmarshal(m.Body); err != nil || p.File == nil {
					continue // checked when it arrived
				}
				if err := g.s.cfg.Files.ReceivedGroup(tx, m.ID, g.id, m.Peer, p.File, now); err != nil {
					return err
				}
				files++
			}
		}
		// Each message a receipt covered is checked once, after all of
		// them: a sender gets its message's receipts from every member
		// together, and each check reads the message's deliveries.
		var touched []protocol.MessageID
		seen := map[protocol.MessageID]bool{}
		for user, ids := range b.receipts {
			for _, id := range ids {
				ok, err := gs.Delivered(g.id, id, user, now)
				if err != nil {
					return err
				}
				if ok && !seen[id] {
					seen[id] = true
					touched = append(touched, id)
				}
			}
		}
		// check moves those of ids no member misses any more to
		// delivered.
		check := func(ids []protocol.MessageID) error {
			for _, id := range ids {
				done, err := g.checkDelivered(tx, id)
				if err != nil {
					return err
				}
				if done {
					delivered = append(delivered, id)
				}
			}
			return nil
		}
		if err := check(touched); err != nil {
			return err
		}
		for _, u := range b.drop {
			for {
				ids, err := gs.DropMember(g.id, u, 1024)
				if err != nil {
					return err
				}
				if err := check(ids); err != nil {
					return err
				}
				if len(ids) < 1024 {
					break
				}
			}
		}
		for to, ids := range b.covers {
			covers += len(ids)
			if _, err := gs.AddWork(store.GroupWork{Group: g.id, Kind: workReceipt, Data: encodeWork(receiptWork{To: to, Covers: ids})}); err != nil {
				return err
			}
		}
		for _, f := range b.fn {
			if err := f(tx); err != nil {
				return err
			}
		}
		return nil
	})
	g.sentForgotten(forgotten, err)
	if err != nil {
		g.s.log.Warn("group: write failed", "group", g.id.String(), "err", err)
		g.reload()
		return err
	}
	for _, f := range b.after {
		f()
	}
	if covers > 0 && g.receiptAt.IsZero() {
		g.schedule(&g.receiptAt, g.receiptWait())
	}
	*b = *g.newBatch()
	return nil
}

// write runs fn in an Update and calls durable with its outcome. Lazy, it
// returns once the transaction is committed, and the Update goes on
// waiting for durability on a goroutine of its own, which calls durable
// and, if the write failed after all, makes the group read its stored
// state again.
func (g *group) write(lazy bool, durable []func(error), fn func(tx *store.Tx) error) error {
	if !lazy {
		err := g.s.st.Update(g.s.ctx, fn)
		for _, f := range durable {
			f(err)
		}
		return err
	}
	committed := make(chan struct{})
	errc := make(chan error, 1)
	ctx := store.WithCommitted(g.s.ctx, func() { close(committed) })
	if !g.s.spawn(func() {
		err := g.s.st.Update(ctx, fn)
		errc <- err
		for _, f := range durable {
			f(err)
		}
		if err != nil {
			select {
			case g.results <- g.reload:
			case <-g.done:
			case <-g.s.ctx.Done():
			}
		}
	}) {
		for _, f := range durable {
			f(ErrClosed)
		}
		return ErrClosed
	}
	select {
	case <-committed:
		return nil
	case err := <-errc:
		return err
	}
}

// writeState writes a state left to wait (Options.StateEvery).
func (g *group) writeState() {
	if !g.stateDirty || g.mg == nil {
		return
	}
	b := g.newBatch()
	b.keys, b.rec, b.lazy, b.deferred = true, true, true, true
	g.flush(b)
}

// checkDelivered moves an outgoing message to delivered once no member it
// was sent to is missing.
func (g *group) checkDelivered(tx *store.Tx, id protocol.MessageID) (bool, error) {
	pending, err := tx.Groups().Pending(g.id, id)
	if err != nil || pending {
		return false, err
	}
	m, err := tx.Messages().Get(id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil || !m.Outgoing || m.State == store.MessageDelivered || m.State == store.MessageRead {
		return false, err
	}
	return true, tx.Messages().SetState(id, store.MessageDelivered, "")
}
