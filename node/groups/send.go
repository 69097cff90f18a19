package groups

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/mls"
	"github.com/sealpost/sealpost/node/grouplog"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// skipped marks a home an entry gave up on (the home kept failing while
// another stored the entry).
const skipped = ^uint64(0)

// maxHomeFails is how many failed appends to one home an entry stored on
// another home makes before it gives that home up.
const maxHomeFails = 8

// outItem is an entry on its way to the home relays and the topic.
type outItem struct {
	n         uint64
	e         outEntry
	sealed    uint64 // group.sealed when it was encrypted (application entries)
	busy      []bool
	fails     []int
	tries     []time.Time
	published bool
	sentState bool
	// settling: the first home refused this commit for its epoch, which
	// some commit closed, perhaps this one (stored before its answer was
	// lost): it is not appended again; the fetch of the epoch settles it.
	settling bool
}

func (g *group) newItem(n uint64, e outEntry) *outItem {
	homes := len(g.rec.Homes)
	for len(e.Seqs) < homes {
		e.Seqs = append(e.Seqs, 0)
	}
	return &outItem{n: n, e: e, busy: make([]bool, homes), fails: make([]int, homes), tries: make([]time.Time, homes)}
}

// addOut queues an entry in the batch's transaction; it joins g.out once
// written.
func (g *group) addOut(b *batch, e outEntry) {
	var n uint64
	id, sealed := g.id, g.sealed
	b.fn = append(b.fn, func(tx *store.Tx) error {
		var err error
		n, err = tx.Groups().AddWork(store.GroupWork{Group: id, Kind: workOut, Data: encodeWork(e)})
		return err
	})
	b.after = append(b.after, func() {
		it := g.newItem(n, e)
		it.sealed = sealed
		g.out = append(g.out, it)
		g.poke()
	})
}

// loadWork reads the group's pending work into memory (at start).
func (g *group) loadWork() error {
	g.out, g.welcomes, g.lags, g.lagsSaved = nil, nil, nil, nil
	g.committing, g.commitQueued = false, false
	// What was encrypted before a restart may have been overtaken then:
	// it is encrypted again before its append.
	g.sealed, g.startedSealed = 1, 1
	return g.s.st.View(g.s.ctx, func(tx *store.Tx) error {
		items, err := tx.Groups().Work(g.id, workOut, 0)
		if err != nil {
			return err
		}
		for _, w := range items {
			var e outEntry
			if err := decodeWork(w.Data, &e); err != nil {
				return err
			}
			// An entry stored before its first append has no sequence
			// numbers yet (newItem gives it one per home).
			it := g.newItem(w.N, e)
			if it.e.Kind == protocol.GroupCommit && len(it.e.Seqs) > 0 && it.e.Seqs[0] == 0 {
				g.committing = true
			}
			g.out = append(g.out, it)
		}
		items, err = tx.Groups().Work(g.id, workWelcome, 0)
		if err != nil {
			return err
		}
		for _, w := range items {
			j := &welcomeItem{n: w.N}
			if err := decodeWork(w.Data, &j.job); err != nil {
				return err
			}
			g.welcomes = append(g.welcomes, j)
		}
		items, err = tx.Groups().Work(g.id, workToken, 0)
		if err != nil {
			return err
		}
		g.tokens = map[uint64]protocol.GroupToken{}
		for _, w := range items {
			var t protocol.GroupToken
			if len(w.Data) == len(t) {
				copy(t[:], w.Data)
				g.tokens[w.N-1] = t
			}
		}
		items, err = tx.Groups().Work(g.id, workLag, 0)
		if err != nil {
			return err
		}
		for _, w := range items {
			var lw lagWork
			i := int(w.N - 1)
			if decodeWork(w.Data, &lw) != nil || i < 1 || i >= len(g.rec.Homes) {
				continue
			}
			for len(g.lags) <= i {
				g.lags = append(g.lags, nil)
			}
			g.lags[i] = &lag{open: lw.Open, at: g.s.clock.Now()}
			if g.lagsSaved == nil {
				g.lagsSaved = map[int]uint64{}
			}
			g.lagsSaved[i] = lw.Open + 1
		}
		items, err = tx.Groups().Work(g.id, workChange, 0)
		if err != nil {
			return err
		}
		for _, w := range items {
			var c change
			if decodeWork(w.Data, &c) == nil && c.Op == changeCommit {
				g.commitQueued = true
			}
		}
		// Receipts not sent (or sent and not yet forgotten) before a
		// restart go now, not only once another message comes.
		items, err = tx.Groups().Work(g.id, workReceipt, 1)
		if err != nil {
			return err
		}
		if len(items) > 0 {
			g.schedule(&g.receiptAt, g.s.opt.ReceiptDelay)
		}
		return nil
	})
}

// sendOut starts the appends that are due, in the order the entries were
// made and at most MaxOutstanding in flight per home, and rebases entries
// whose epoch closed.
//
// Order matters: members read a log in its order, and MLS keeps the keys
// of only mls.DefaultOutOfOrderWindow skipped generations per sender. An
// application message written to the log after more than that many of
// this node's later ones is one its readers can no longer decrypt (lost
// to them, whatever the topic did). So appends go out in the order of
// their encryption, no more in flight than the window allows to overtake
// each other, and a message that a later one overtook (refused at first,
// over the relay's rate; or waiting for its retry) and that no home has
// taken yet is encrypted again before its append.
func (g *group) sendOut() {
	g.catchUps()
	now := g.s.clock.Now()
	inflight := make([]int, len(g.rec.Homes))
	for _, it := range g.out {
		for i, busy := range it.busy {
			if busy {
				inflight[i]++
			}
		}
	}
	for _, it := range slices.Clone(g.out) {
		if g.mg == nil {
			return
		}
		if it.settling {
			continue
		}
		if it.e.Kind == protocol.GroupApplication && g.sendKeysLost() && !it.anyBusy() && !it.anyStored() {
			continue // encrypted (again) once this member's key update ends the epoch
		}
		if it.e.Epoch != g.mg.Epoch() && !it.anyBusy() && !it.anyStored() {
			if !g.rebase(it) {
				continue
			}
		}
		for i := range it.e.Seqs {
			if it.e.Seqs[i] != 0 || it.busy[i] {
				continue
			}
			lagging := g.lagging(i)
			if lagging && !g.lagLets(i, it, inflight[i]) {
				continue
			}
			if it.e.Kind == protocol.GroupCommit && i > 0 && it.e.Seqs[0] == 0 {
				continue // the first home orders commits: it goes there first
			}
			if h := g.homeFail(i); h.at.After(now) {
				g.schedule(&g.retryAt, h.at.Sub(now))
				continue
			} else if h.fails > 0 && inflight[i] > 0 {
				continue // one append at a time to a home that fails
			}
			if inflight[i] >= MaxOutstanding {
				continue
			}
			if it.fails[i] > 0 && it.retry(i).After(now) {
				g.schedule(&g.retryAt, it.retry(i).Sub(now))
				continue
			}
			if it.sealed < g.startedSealed && !it.anyStored() && !it.anyBusy() && !g.reencrypt(it) {
				break
			}
			if lagging && !g.lags[i].answered {
				g.lags[i].probe, g.lags[i].probing = false, it
			}
			inflight[i]++
			g.startedSealed = max(g.startedSealed, it.sealed)
			g.append(it, i)
		}
	}
}

func (it *outItem) anyBusy() bool { return slices.Contains(it.busy, true) }
func (it *outItem) anyStored() bool {
	return slices.ContainsFunc(it.e.Seqs, func(s uint64) bool { return s != 0 && s != skipped })
}

// retry is when an entry tries home i again.
func (it *outItem) retry(i int) time.Time { return it.tries[i] }

// rebase makes an entry of a closed epoch again in the current one: a
// message is encrypted again (same ID and sequence number), a leave
// proposed again; anything else is dropped. It reports whether the entry
// is still to send.
func (g *group) rebase(it *outItem) bool {
	b := g.newBatch()
	keep := false
	switch {
	case it.e.Kind == protocol.GroupApplication && it.e.Plain != nil:
		body, err := g.mg.Encrypt(it.e.Plain, nil, g.s.rand())
		if err == nil {
			g.sealed++
			it.e.Body, it.sealed, keep = body, g.sealed, true
		}
	case it.e.Kind == protocol.GroupProposal && g.rec.State == store.GroupLeaving:
		body, _, err := g.mg.ProposeRemove(g.mg.LeafIndex(), g.s.rand())
		if err == nil {
			it.e.Body, keep = body, true
		}
	case it.e.Kind == protocol.GroupCommit:
		g.committing, g.changesDue = false, true
	}
	if !keep {
		g.dropItem(b, it)
		g.flush(b)
		return false
	}
	it.e.Epoch = g.mg.Epoch()
	it.e.Attempts = 0
	for i := range it.e.Seqs {
		it.e.Seqs[i] = 0
	}
	b.state = true
	g.putItem(b, it)
	g.flush(b)
	return true
}

// reencrypt encrypts an application message again, in the current epoch
// and with the same ID, before its append: messages encrypted after it
// went into the log first. Anything else is left as it is. It reports
// whether the entry is still to send.
func (g *group) reencrypt(it *outItem) bool {
	if it.e.Kind != protocol.GroupApplication || it.e.Plain == nil {
		return true
	}
	body, err := g.mg.Encrypt(it.e.Plain, nil, g.s.rand())
	if err != nil {
		g.s.log.Warn("group: encrypt again", "group", g.id.String(), "err", err)
		return false
	}
	g.sealed++
	it.e.Body, it.sealed = body, g.sealed
	b := g.newBatch()
	b.state = true
	g.putItem(b, it)
	g.flush(b)
	return true
}

func (g *group) putItem(b *batch, it *outItem) {
	w := store.GroupWork{Group: g.id, Kind: workOut, N: it.n, Data: encodeWork(it.e)}
	b.fn = append(b.fn, func(tx *store.Tx) error { return tx.Groups().PutWork(w) })
}

func (g *group) dropItem(b *batch, it *outItem) {
	g.out = slices.DeleteFunc(g.out, func(x *outItem) bool { return x == it })
	id, n := g.id, it.n
	b.fn = append(b.fn, func(tx *store.Tx) error { return tx.Groups().DeleteWork(id, workOut, n) })
}

// append appends an entry to home i.
func (g *group) append(it *outItem, i int) {
	entry, err := (&protocol.GroupMessage{Epoch: it.e.Epoch, Kind: it.e.Kind, Body: it.e.Body}).Marshal()
	if err != nil {
		b := g.newBatch()
		g.dropItem(b, it)
		g.flush(b)
		return
	}
	it.busy[i] = true
	home, commit, next := g.home(i), it.e.Kind == protocol.GroupCommit, it.e.Next
	// An entry of an epoch this node left (stored on one home, on its way
	// to another; an accepted commit) goes with the token of its epoch.
	tok, ok := g.tokenOf(it.e.Epoch)
	if !ok {
		it.busy[i] = false
		it.e.Seqs[i] = skipped
		g.progress(it)
		return
	}
	epoch := it.e.Epoch
	g.appender(i) <- func(ctx context.Context) {
		c, err := g.s.relays.conn(ctx, &home)
		var p *grouplog.PendingAppend
		if err == nil {
			p, err = c.StartAppend(home.Log, epoch, tok, entry, commit, next)
		}
		if err != nil {
			g.result(func() { g.appended(it, i, grouplog.Appended{}, err) })
			return
		}
		g.async(func(ctx context.Context) func() {
			a, err := p.Wait(ctx)
			return func() { g.appended(it, i, a, err) }
		})
	}
}

// appender returns the queue of home i's appends: one goroutine writes
// them to the relay in the order they were queued (their answers are
// awaited apart), so that the log holds them in that order. It holds at
// least MaxOutstanding: sendOut never queues more, so queueing never
// blocks.
func (g *group) appender(i int) chan<- func(context.Context) {
	for len(g.appenders) <= i {
		q := make(chan func(context.Context), MaxOutstanding)
		g.appenders = append(g.appenders, q)
		g.s.spawn(func() {
			for {
				select {
				case f := <-q:
					f(g.s.ctx)
				case <-g.done:
					return
				case <-g.s.ctx.Done():
					return
				}
			}
		})
	}
	return g.appenders[i]
}

// result hands f to the group's goroutine (from another).
func (g *group) result(f func()) {
	select {
	case g.results <- f:
	case <-g.done:
	case <-g.s.ctx.Done():
	}
}

// appended handles the answer to an append.
func (g *group) appended(it *outItem, i int, a grouplog.Appended, err error) {
	it.busy[i] = false
	g.lagAnswer(i, it, err)
	var ee *grouplog.EpochError
	if err == nil || errors.As(err, &ee) || errors.Is(err, protocol.ErrUnknownLog) {
		g.homeOK(i) // it answered as a home that works
	} else {
		g.homeFailed(i, err)
	}
	if !slices.Contains(g.out, it) {
		return
	}
	switch {
	case err == nil:
		g.s.log.Debug("group: appended", "group", g.id.String(), "home", i, "epoch", it.e.Epoch, "seq", a.Seq, "kind", it.e.Kind, "message", it.e.Message.String())
		it.e.Seqs[i] = a.Seq
		it.fails[i] = 0
		if it.e.Kind == protocol.GroupCommit && i == 0 && g.mg != nil && g.mg.Epoch() == it.e.Epoch {
			if a.Seq > g.rec.Homes[0].Cursor+1 {
				// Entries of the epoch precede the commit in the log that
				// this node has not read from it (the topic may have missed
				// them): they are read with this epoch's token first, and
				// the commit, coming back in the same fetch, is merged
				// there (Process recognizes the pending commit).
				b := g.newBatch()
				g.putItem(b, it)
				g.flush(b)
				g.fetchAt = g.s.clock.Now()
				return
			}
			g.ownCommitAccepted(it, a.Seq)
		}
		g.progress(it)
	case errors.As(err, &ee):
		switch {
		case it.e.Kind == protocol.GroupCommit && i == 0:
			g.commitLost(it)
		case i > 0 && ee.Open < it.e.Epoch && !(i < len(g.lags) && g.lags[i] != nil && g.lags[i].gaveUp && g.lags[i].open == ee.Open):
			// The home missed commits (it was down): it is caught up,
			// then the entry goes on.
			g.homeLags(i, ee.Open)
		case i > 0 && ee.Open > it.e.Epoch && it.anyStored():
			// The home closed the entry's epoch without it: it can
			// never take it.
			it.e.Seqs[i] = skipped
			g.progress(it)
		case it.anyStored():
			it.fails[i]++
			if it.fails[i] >= maxHomeFails {
				it.e.Seqs[i] = skipped
				g.progress(it)
			}
		default:
			g.fetchAt = g.s.clock.Now() // commits came first: process them, then rebase
		}
	default:
		if errors.Is(err, protocol.ErrUnknownLog) {
			g.recreate(i)
		}
		if it.e.Kind == protocol.GroupCommit && i == 0 && errors.Is(err, protocol.ErrRateLimited) {
			g.s.met.commits.WithLabelValues("rate_limited").Inc()
		}
		if i > 0 && unanswered(err) && !g.gaveUpOn(i) {
			// The home did not answer: it is caught up from this entry's
			// epoch once it does, in the first home's order (relays.go).
			g.s.log.Debug("group: append", "group", g.id.String(), "home", i, "err", err)
			g.homeDown(i, it)
			return
		}
		it.fails[i]++
		if it.anyStored() && it.fails[i] >= maxHomeFails {
			it.e.Seqs[i] = skipped
			g.progress(it)
			return
		}
		g.s.log.Debug("group: append", "group", g.id.String(), "home", i, "err", err)
		it.tries[i] = g.s.clock.Now().Add(g.backoff(it.fails[i]))
		g.schedule(&g.retryAt, it.tries[i].Sub(g.s.clock.Now()))
	}
}

// progress publishes an entry once a home stored it, marks its message
// sent, and drops it once every home has it. For an application message
// the goroutine does not wait for that write to be durable (a crash
// before it appends the message again: its members drop the copy), and
// the message is said sent once it is.
func (g *group) progress(it *outItem) {
	b := g.newBatch()
	b.lazy = it.e.Kind == protocol.GroupApplication
	if !it.published && it.anyStored() {
		it.published = true
		m := &protocol.GroupMessage{Epoch: it.e.Epoch, Kind: it.e.Kind, Body: it.e.Body}
		for _, s := range it.e.Seqs {
			if s == skipped {
				s = 0
			}
			m.Seqs = append(m.Seqs, s)
		}
		if raw, err := m.Marshal(); err == nil && g.topic != nil && it.e.Kind != protocol.GroupCommit {
			ctx, cancel := context.WithTimeout(g.s.ctx, dialTimeout)
			if err := g.topic.Publish(ctx, raw); err != nil {
				g.s.log.Debug("group: publish", "group", g.id.String(), "err", err)
			}
			cancel()
		}
		if !it.e.Message.IsZero() && !it.sentState {
			it.sentState = true
			id := it.e.Message
			b.fn = append(b.fn, func(tx *store.Tx) error {
				m, err := tx.Messages().Get(id)
				if err != nil || m.State != store.MessageQueued {
					return ignoreNotFound(err)
				}
				return tx.Messages().SetState(id, store.MessageSent, "")
			})
			gid := g.id
			b.durable = append(b.durable, func(err error) {
				if err != nil {
					return
				}
				g.s.met.sent.Inc()
				g.s.notify(id)
				g.s.publish(EventMessageState, StateEvent{ID: id.String(), Group: gid.String(), State: StateSent})
			})
		}
	}
	if !slices.Contains(it.e.Seqs, 0) && !g.unmerged(it) {
		g.dropItem(b, it)
	} else {
		g.putItem(b, it)
	}
	g.flush(b)
}

// unmerged reports whether it is this node's commit of the current epoch,
// not merged yet: it stays, whatever the homes hold, until the log brings
// it back and commitDone settles it (its Welcome, the changes it made).
// The second home can store it before that: when the first stored it past
// entries this node had not read, it is merged only once they are.
func (g *group) unmerged(it *outItem) bool {
	return it.e.Kind == protocol.GroupCommit && g.mg != nil && it.e.Epoch == g.mg.Epoch()
}

func ignoreNotFound(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// ownCommitAccepted merges this node's commit the first home accepted at
// seq, right after the last entry this node read from it.
func (g *group) ownCommitAccepted(it *outItem, seq uint64) {
	if _, pending := g.mg.PendingCommit(); !pending {
		return
	}
	r, err := g.mg.MergePendingCommit()
	if err != nil {
		g.s.log.Warn("group: merge own commit", "group", g.id.String(), "err", err)
		return
	}
	g.rec.Homes[0].Cursor = seq
	b := g.newBatch()
	b.state, b.rec = true, true
	g.applyCommit(b, r, &protocol.GroupMessage{Epoch: it.e.Epoch, Kind: protocol.GroupCommit, Body: it.e.Body}, seq)
}

// commitLost handles the first home's refusal of this node's commit for
// its epoch: a commit closed the epoch. Another's, most often; but it can
// be this very one, stored before its answer was lost (the relay or the
// connection died, the append timed out) and appended again to a relay
// that did not take the retry for a duplicate (PROTOCOL.md §12.3 asks it
// to; the member does not count on it).
// So the commit stays pending and is not sent again: the fetch of the
// epoch reaches the commit that closed it, and Process either merges the
// pending one (it was ours: commitDone) or discards it (another's: its
// changes stay, to commit again once the winner is processed). Dropping
// the pending commit here would leave this node unable to follow its own
// commit: stuck in the epoch while the group goes on.
func (g *group) commitLost(it *outItem) {
	it.settling = true
	g.fetchAt = g.s.clock.Now()
}

// commitDone settles this node's commit when the epoch it was made in
// closed: by it (Own: its changes are done, its Welcome goes out) or by
// another's (it is void).
//
// seq is where the first home stored it (0: not from the log).
func (g *group) commitDone(b *batch, info *mls.CommitInfo, epoch, seq uint64) {
	g.committing, g.changesDue = false, true
	var it *outItem
	for _, x := range g.out {
		if x.e.Kind == protocol.GroupCommit && x.e.Epoch == epoch {
			it = x
		}
	}
	if !info.Own {
		g.s.met.commits.WithLabelValues("refused").Inc()
		if it != nil {
			g.dropItem(b, it)
		}
		return
	}
	g.s.met.commits.WithLabelValues("accepted").Inc()
	if it == nil {
		return
	}
	if it.settling {
		// Stored before its answer was lost: the other homes get it now.
		it.settling = false
		if it.e.Seqs[0] == 0 {
			it.e.Seqs[0] = seq
		}
	}
	id := it.e.Changes
	gid := g.id
	b.fn = append(b.fn, func(tx *store.Tx) error {
		for _, n := range id {
			if err := tx.Groups().DeleteWork(gid, workChange, n); err != nil {
				return err
			}
		}
		return nil
	})
	g.commitQueued = false
	if info.Welcome != nil {
		tok, err := g.mg.Export(protocol.GroupTokenLabel, nil, protocol.GroupTokenSize)
		pieces, _, perr := protocol.WelcomePieces(info.Welcome)
		if err == nil && perr == nil {
			job := welcomeJob{Epoch: g.mg.Epoch(), Token: protocol.GroupToken(tok), Pieces: pieces, Joiners: it.e.Joiners,
				Done: make([]int, len(g.rec.Homes))}
			var n uint64
			b.fn = append(b.fn, func(tx *store.Tx) error {
				var err error
				n, err = tx.Groups().AddWork(store.GroupWork{Group: gid, Kind: workWelcome, Data: encodeWork(job)})
				return err
			})
			b.after = append(b.after, func() { g.welcomes = append(g.welcomes, &welcomeItem{n: n, job: job}) })
		} else {
			g.s.log.Warn("group: welcome", "group", g.id.String(), "err", errors.Join(err, perr))
		}
	}
	if !slices.Contains(it.e.Seqs, 0) {
		g.dropItem(b, it)
	} else {
		g.putItem(b, it)
	}
}

// welcomeItem is a Welcome on its way into the log.
type welcomeItem struct {
	n    uint64
	job  welcomeJob
	busy bool
	sent bool
	// fails counts the failed appends to a second home in a row (the
	// second home is best effort: after maxWelcomeFails it is given up),
	// and at is when the next append to any home may go: a failed one
	// waits its backoff, the group's other work does not.
	fails int
	at    time.Time
}

// onFirstHome reports whether the first home holds every piece of w.
func (w *welcomeItem) onFirstHome() bool { return w.job.Done[0] == len(w.job.Pieces) }

// maxWelcomeFails is how many failed appends of a Welcome's piece give a
// second home up (the first home orders the group: its Welcome is tried
// until its epoch closes).
const maxWelcomeFails = 8

// sendWelcomes appends the pieces of the Welcomes this node made to the
// epoch they start, and tells each new member where they are once the
// first home holds them: a second home is best effort, and one that fails
// (up to maxWelcomeFails tries, each after its backoff) does not keep the
// joiner waiting. The item goes once every home holds its pieces (or a
// second home was given up) and the joiners were told.
func (g *group) sendWelcomes() {
	now := g.s.clock.Now()
	var done []*welcomeItem
	defer func() {
		if len(done) == 0 {
			return
		}
		b := g.newBatch()
		for _, w := range done {
			g.dropWelcome(b, w)
		}
		g.flush(b)
	}()
	for _, w := range g.welcomes {
		if w.busy {
			continue
		}
		if !w.sent && w.onFirstHome() {
			g.announce(w)
			continue
		}
		i := slices.IndexFunc(w.job.Done, func(d int) bool { return d < len(w.job.Pieces) })
		if i < 0 {
			done = append(done, w)
			continue
		}
		if w.at.After(now) {
			continue
		}
		// i is the first home lacking pieces: a second home's go once
		// the first holds them all.
		if i > 0 && g.welcomeWaits(w, i) {
			continue
		}
		w.busy = true
		home, job, k := g.home(i), w.job, w.job.Done[i]
		entry, err := (&protocol.GroupMessage{Epoch: job.Epoch, Kind: protocol.GroupWelcome, Body: job.Pieces[k]}).Marshal()
		if err != nil {
			continue
		}
		g.async(func(ctx context.Context) func() {
			c, err := g.s.relays.conn(ctx, &home)
			if err == nil {
				_, err = c.Append(ctx, home.Log, job.Epoch, job.Token, entry, false, protocol.TokenHash{})
			}
			return func() {
				w.busy = false
				switch {
				case err == nil:
					w.job.Done[i]++
				case errors.Is(err, protocol.ErrWrongEpoch) && i == 0:
					g.s.log.Warn("group: the epoch closed before its Welcome was in the log", "group", g.id.String())
					b := g.newBatch()
					g.dropWelcome(b, w)
					g.flush(b)
					return
				case i > 0 && g.homeMissed(i, job.Epoch, err):
					return // tried again once the home is caught up
				case i > 0 && w.fails+1 < maxWelcomeFails && !errors.Is(err, protocol.ErrWrongEpoch):
					w.fails++
					w.at = g.s.clock.Now().Add(g.backoff(w.fails))
					g.schedule(&g.retryAt, w.at.Sub(g.s.clock.Now()))
					return
				case i > 0:
					g.s.log.Debug("group: welcome not on a second home", "group", g.id.String(), "home", i, "err", err)
					w.job.Done[i] = len(w.job.Pieces) // the second home is best effort
				default:
					w.at = g.s.clock.Now().Add(g.backoff(1))
					g.schedule(&g.retryAt, w.at.Sub(g.s.clock.Now()))
					return
				}
				b := g.newBatch()
				wk := store.GroupWork{Group: g.id, Kind: workWelcome, N: w.n, Data: encodeWork(w.job)}
				b.fn = append(b.fn, func(tx *store.Tx) error { return tx.Groups().PutWork(wk) })
				g.flush(b)
			}
		})
	}
}

// welcomeWaits reports whether Welcome w waits before its next piece goes
// to home i, a second home, for the commit that opens its epoch there
// (sendWelcomes checks its backoff). That is this node's own commit,
// still on its way to the home (held back by a refusal over the home's
// commit rate, or by the home's backoff), or the home's catch-up. A piece that went before
// it would be refused wrong_epoch, and the home would never hold the
// Welcome: a joiner could not join while the first home is down.
func (g *group) welcomeWaits(w *welcomeItem, i int) bool {
	if g.lagging(i) {
		return true
	}
	return slices.ContainsFunc(g.out, func(it *outItem) bool {
		return it.e.Kind == protocol.GroupCommit && it.e.Epoch < w.job.Epoch && i < len(it.e.Seqs) && it.e.Seqs[i] == 0
	})
}

// homeMissed reports whether err, the answer of home i to an append of
// epoch, says the home is open at an earlier epoch with no commit of this
// node's on its way to it: it missed a commit, and its catch-up starts.
func (g *group) homeMissed(i int, epoch uint64, err error) bool {
	var ee *grouplog.EpochError
	if !errors.As(err, &ee) || ee.Open >= epoch || g.gaveUpOn(i) {
		return false
	}
	g.homeLags(i, ee.Open)
	return true
}

// announce sends each new member of a Welcome in the log where it is;
// the item stays for sendWelcomes (its second home may be left).
func (g *group) announce(w *welcomeItem) {
	if w.sent {
		return
	}
	w.sent = true
	w.busy = true
	ref := &protocol.GroupWelcomeRef{Epoch: w.job.Epoch, Token: w.job.Token}
	for i := range g.rec.Homes {
		ref.Homes = append(ref.Homes, g.home(i))
	}
	for _, p := range w.job.Pieces {
		ref.Pieces = append(ref.Pieces, (&protocol.GroupMessage{Body: p}).Hash())
	}
	joiners := w.job.Joiners
	gid := g.id
	g.async(func(ctx context.Context) func() {
		for _, u := range joiners {
			c := &protocol.GroupControl{Op: protocol.GroupWelcomed, Group: gid, Welcome: ref}
			if _, err := g.s.cfg.Messaging.SendGroupControl(ctx, u, c, false); err != nil {
				g.s.log.Warn("group: welcome not sent", "group", gid.String(), "err", err)
			}
		}
		return func() { w.busy = false }
	})
}

func (g *group) dropWelcome(b *batch, w *welcomeItem) {
	g.welcomes = slices.DeleteFunc(g.welcomes, func(x *welcomeItem) bool { return x == w })
	g.changesDue = true
	gid, n := g.id, w.n
	b.fn = append(b.fn, func(tx *store.Tx) error { return tx.Groups().DeleteWork(gid, workWelcome, n) })
}

// encryptOut gives p this node's next sequence number and a new ID (unless
// it has one), encrypts it in the current epoch and queues it.
func (g *group) encryptOut(b *batch, p *protocol.Plaintext) error {
	if p.ID.IsZero() {
		if err := g.s.read(p.ID[:]); err != nil {
			return err
		}
	}
	g.rec.SendSeq++
	p.Seq = g.rec.SendSeq
	p.SentAt = g.s.clock.Now().UnixMilli()
	plain, err := p.Marshal()
	if err != nil {
		return fmt.Errorf("groups: encode: %w", err)
	}
	e := outEntry{Epoch: g.mg.Epoch(), Kind: protocol.GroupApplication, Plain: plain}
	if p.Kind != protocol.KindDeliveryReceipt {
		e.Message = p.ID
	}
	if g.sendKeysLost() {
		// Queued unencrypted: sendOut encrypts it (rebase) once this
		// member's key update ended the epoch.
		b.rec = true
		g.addOut(b, e)
		return nil
	}
	body, err := g.mg.Encrypt(plain, nil, g.s.rand())
	if err != nil {
		return fmt.Errorf("groups: encrypt: %w", err)
	}
	g.sealed++
	e.Body = body
	// Encrypting moved only this member's sender ratchet: its keys are
	// written, durable before the message leaves (sealed).
	b.keys, b.rec, b.sealed = true, true, true
	g.addOut(b, e)
	return nil
}

// others returns the user IDs of the members but this node.
func (g *group) others() []identity.UserID {
	out := make([]identity.UserID, 0, len(g.members))
	for u := range g.members {
		if u != g.s.self {
			out = append(out, u)
		}
	}
	slices.SortFunc(out, func(a, b identity.UserID) int { return bytes.Compare(a[:], b[:]) })
	return out
}
