package groups

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/node/grouplog"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// dialTimeout bounds opening a stream to a home relay.
const dialTimeout = 20 * time.Second

// relays holds one group log connection per home relay, shared by the
// groups that live there (each opened through the mailbox client's key for
// that relay, so every group of the node looks alike to it).
type relays struct {
	s  *Service
	mu sync.Mutex
	m  map[peer.ID]*relayConn
}

type relayConn struct {
	mu   sync.Mutex // one dial at a time
	conn *grouplog.Conn
}

func newRelays(s *Service) *relays { return &relays{s: s, m: map[peer.ID]*relayConn{}} }

// conn returns a live connection to home h, dialling it if needed.
func (r *relays) conn(ctx context.Context, h *protocol.GroupHome) (*grouplog.Conn, error) {
	id, err := peer.IDFromBytes(h.Relay)
	if err != nil {
		return nil, fmt.Errorf("groups: home relay: %w", err)
	}
	r.mu.Lock()
	rc := r.m[id]
	if rc == nil {
		rc = &relayConn{}
		r.m[id] = rc
	}
	r.mu.Unlock()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.conn != nil && rc.conn.Err() == nil {
		return rc.conn, nil
	}
	var addrs []ma.Multiaddr
	for _, b := range h.Addrs {
		if a, err := ma.NewMultiaddrBytes(b); err == nil {
			addrs = append(addrs, a)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	str, err := r.s.cfg.Mailbox.GroupLogStream(dctx, id, addrs)
	if err != nil {
		return nil, err
	}
	rc.conn = grouplog.NewConn(str, 0)
	return rc.conn, nil
}

// create creates h's log, at epoch 0 with tok. A connection kept open
// from before that turns out closed (the relay restarted since, and this
// node had not seen its stream end yet) is dialled again, once: a CREATE
// of a log the relay already made is a retry, answered as the first.
func (r *relays) create(ctx context.Context, h *protocol.GroupHome, tok protocol.GroupToken) error {
	var err error
	for range 2 {
		var c *grouplog.Conn
		if c, err = r.conn(ctx, h); err != nil {
			return err
		}
		if err = c.Create(ctx, h.Log, 0, tok); !errors.Is(err, grouplog.ErrClosed) {
			return err
		}
	}
	return err
}

// close closes every connection.
func (r *relays) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rc := range r.m {
		rc.mu.Lock()
		if rc.conn != nil {
			rc.conn.Close()
		}
		rc.mu.Unlock()
	}
}

// Catching up a lagging home (PROTOCOL.md §12.3). A second home that was
// down while the first took commits is open at an epoch before the
// group's: it refuses the group's appends (wrong_epoch, naming its open
// epoch) and holds nothing of the epochs it missed. A member that meets
// such an answer copies it, in the first home's order, every entry of
// each epoch from the home's open one to the member's own, each with its
// epoch's token, the commits with the hash of the next epoch's token: the
// commits the first home ordered, so the two homes cannot fork. Entries
// the home holds already are answered as duplicates; several members
// catching up one home at once only meet each other's duplicates. The
// member needs the token of every epoch copied: it keeps those of the
// last keptTokens epochs it went through (workToken), so a home that
// missed more (or epochs from before the member joined) is caught up by
// another member, or not at all: the group goes on with its other home,
// which gives that home up for each entry after maxHomeFails.
//
// While the first home does not answer, no catch-up can end a lag, and
// the member, its appends to the first home failing too, could send
// nothing; yet the lag may be stale: another member caught the home up
// since. So a catch-up that cannot read the first home lets the member's
// next entry of the current epoch go to the home (a probe, one at a
// time); once the home takes one, the member's entries of the epoch go to
// it again (lag.answered), commits excepted. The lag itself stays until a
// catch-up is done: the home may still miss entries this member gave it
// up for, which the catch-up copies once the first home answers (only
// duplicates, when the lag was stale). A commit needs the first home, so
// none waits meanwhile; once there is one again, it waits for the
// catch-up, so that it cannot close an epoch on the home before the
// entries the catch-up copies. Any failure of the home to take an entry
// ends answered: only the catch-up tries it again.
//
// A second home that does not answer (down, cut off) is caught up the
// same way from the epoch of the first entry it failed to take: its
// appends wait meanwhile, and only the catch-up tries it, backing off.
// Each entry appended one by one, on its own retry time, could reach the
// home after the epoch's commit (this member's own, retried sooner), and
// the home, its epoch closed, could never take it. An entry stored on the
// first home gives the waiting home up after maxHomeFails failed
// catch-ups: it is left to the catch-up, which copies it from the first
// home when the home answers again. A lag is stored (workLag) until its
// catch-up is done, so that a member restarted meanwhile still makes it.

// keptTokens is how many past epochs' tokens a member keeps, to copy a
// lagging home the epochs it missed.
const keptTokens = 64

// lag is what a member knows of a home behind the group's epoch.
type lag struct {
	open  uint64    // the epoch the home said it is open at
	busy  bool      // a catch-up is under way
	fails int       // failed catch-ups in a row
	at    time.Time // when to try again
	// from is where the last catch-up stopped: the epoch it was copying
	// and the first home's last entry of it copied (a catch-up stopped by
	// the home's rate goes on from there).
	from, after uint64
	// gaveUp: this member cannot catch the home up (a token it does not
	// hold, or the first home no longer keeps an epoch): its entries give
	// the home up as for a home that is down.
	gaveUp bool
	// done is when the catch-up ended (the lag is kept a while so that a
	// home found lagging again right after is caught up after a backoff,
	// again times in a row, not at once and again).
	done  time.Time
	again int
	// first is the first entry a home that did not answer failed to take:
	// what its epoch held before that entry on the first home, the home
	// took (a catch-up starts after it).
	first *outItem
	// redo is an entry before the catch-up's start that the home failed to
	// take while the catch-up was under way: it starts again from there.
	redo *outItem
	// probe: the last catch-up could not read the first home (it did not
	// answer): the member's next entry of the current epoch may go to the
	// home (probing, on its way). answered: the home took one, and the
	// member's entries of the current epoch but commits go to it until
	// the catch-up is done or the home fails one.
	probe    bool
	probing  *outItem
	answered bool
}

// saveLags stores the lag of each second home whose open epoch changed
// since it was stored, and forgets those that ended (workLag), in one
// transaction; with none changed it writes nothing. (It runs with every
// step: an empty flush would still write the receipts held for the next
// write, and forget those sent, at once.)
func (g *group) saveLags() {
	b := g.newBatch()
	g.saveLagsIn(b)
	if !b.empty() {
		g.flush(b)
	}
}

// saveLagsIn is saveLags in batch b.
func (g *group) saveLagsIn(b *batch) {
	gid := g.id
	for i := 1; i < len(g.rec.Homes); i++ {
		var want uint64 // open + 1; 0: none
		if i < len(g.lags) {
			if l := g.lags[i]; l != nil && !l.gaveUp && l.done.IsZero() {
				want = l.open + 1
			}
		}
		if want == g.lagsSaved[i] {
			continue
		}
		if g.lagsSaved == nil {
			g.lagsSaved = map[int]uint64{}
		}
		g.lagsSaved[i] = want
		n := uint64(i + 1)
		if want == 0 {
			b.fn = append(b.fn, func(tx *store.Tx) error { return tx.Groups().DeleteWork(gid, workLag, n) })
			continue
		}
		data := encodeWork(lagWork{Open: want - 1})
		b.fn = append(b.fn, func(tx *store.Tx) error {
			return tx.Groups().PutWork(store.GroupWork{Group: gid, Kind: workLag, N: n, Data: data})
		})
	}
}

// unanswered reports whether err is a home that did not answer (down,
// cut off), not a relay's refusal.
func unanswered(err error) bool {
	return errors.Is(err, mailbox.ErrUnreachable) || errors.Is(err, grouplog.ErrClosed) || errors.Is(err, grouplog.ErrSilent)
}

// tokenOf returns the token of epoch e: the current one's, or a past one
// this node kept.
func (g *group) tokenOf(e uint64) (protocol.GroupToken, bool) {
	if g.mg != nil && e == g.mg.Epoch() {
		return g.token, true
	}
	t, ok := g.tokens[e]
	return t, ok
}

// keepToken keeps the token of the epoch a commit just closed (called
// before the next epoch is entered) and forgets the one keptTokens older.
func (g *group) keepToken(b *batch, epoch uint64) {
	if g.tokens == nil {
		g.tokens = map[uint64]protocol.GroupToken{}
	}
	tok, gid := g.token, g.id
	g.tokens[epoch] = tok
	old := uint64(0)
	if epoch >= keptTokens {
		old = epoch - keptTokens
		delete(g.tokens, old)
	}
	b.fn = append(b.fn, func(tx *store.Tx) error {
		if err := tx.Groups().PutWork(store.GroupWork{Group: gid, Kind: workToken, N: epoch + 1, Data: tok[:]}); err != nil {
			return err
		}
		if epoch >= keptTokens {
			return tx.Groups().DeleteWork(gid, workToken, old+1)
		}
		return nil
	})
}

// lagging reports whether home i is known to lag and is being (or will
// be) caught up: its appends wait.
func (g *group) lagging(i int) bool {
	return i < len(g.lags) && g.lags[i] != nil && !g.lags[i].gaveUp && g.lags[i].done.IsZero()
}

// gaveUpOn reports whether this member cannot catch home i up.
func (g *group) gaveUpOn(i int) bool {
	return i < len(g.lags) && g.lags[i] != nil && g.lags[i].gaveUp
}

// homeLags notes that home i is open at epoch open, before epoch (the
// epoch of an entry, or of a fetch), and starts catching it up.
func (g *group) homeLags(i int, open uint64) {
	for len(g.lags) <= i {
		g.lags = append(g.lags, nil)
	}
	l := g.lags[i]
	switch {
	case l != nil && !l.done.IsZero():
		g.lags[i] = g.lagAgain(l, open)
	case l == nil || l.open != open && !l.busy:
		if l != nil && l.gaveUp && l.open == open {
			return
		}
		g.lags[i] = &lag{open: open, at: g.s.clock.Now()}
		if l != nil && !l.gaveUp {
			g.lags[i].fails = l.fails
			if open > l.open {
				// What the last try copied the home holds.
				g.lags[i].from, g.lags[i].after = l.from, l.after
			}
		}
	}
	g.saveLags()
	g.poke()
}

// lagAgain is a new lag of a home at open found after the catch-up done
// ended: right after it (within RetryMax), the new catch-up waits a
// backoff that grows with each such lag in a row.
func (g *group) lagAgain(done *lag, open uint64) *lag {
	now := g.s.clock.Now()
	l := &lag{open: open, at: now}
	if now.Sub(done.done) < g.s.opt.RetryMax {
		l.again = done.again + 1
		l.at = now.Add(g.backoff(l.again))
		g.schedule(&g.retryAt, l.at.Sub(now))
	}
	return l
}

// homeDown notes that home i did not answer an append of an entry of
// epoch: its appends wait, and a catch-up from that epoch tries it,
// backing off (the relay may be down for long).
func (g *group) homeDown(i int, it *outItem) {
	for len(g.lags) <= i {
		g.lags = append(g.lags, nil)
	}
	now, epoch := g.s.clock.Now(), it.e.Epoch
	switch l := g.lags[i]; {
	case l == nil:
		g.lags[i] = &lag{open: epoch, fails: 1, at: now.Add(g.backoff(1)), first: it}
	case !l.done.IsZero():
		g.lags[i] = g.lagAgain(l, epoch)
		g.lags[i].fails, g.lags[i].first = 1, it
		g.lags[i].at = maxTime(g.lags[i].at, now.Add(g.backoff(1)))
	case l.gaveUp:
	case l.busy:
		if before(it, l.open, l.first) && (l.redo == nil || before(it, l.redo.e.Epoch, l.redo)) {
			l.redo = it
		}
	case epoch < l.open:
		l.open, l.from, l.after, l.first = epoch, 0, 0, it
	case before(it, l.open, l.first):
		l.from, l.after, l.first = 0, 0, it
	}
	if l := g.lags[i]; l.at.After(now) {
		g.schedule(&g.retryAt, l.at.Sub(now))
	}
	g.saveLags()
}

// before reports whether entry it comes before entry first of epoch open
// (nil: before the epoch's first).
func before(it *outItem, open uint64, first *outItem) bool {
	return it.e.Epoch < open || it.e.Epoch == open && first != nil && it.n < first.n
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// catchUps starts the catch-ups that are due.
func (g *group) catchUps() {
	now := g.s.clock.Now()
	for i, l := range g.lags {
		if i == 0 || l == nil || l.busy || l.gaveUp || !l.done.IsZero() {
			continue
		}
		if l.at.After(now) {
			g.schedule(&g.retryAt, l.at.Sub(now))
			continue
		}
		g.catchUp(i, l)
	}
	g.saveLags()
}

// errCannotCatchUp is a catch-up this member cannot do.
var errCannotCatchUp = errors.New("groups: cannot catch the home up")

// errLagsMore is a home open at an epoch before the one a catch-up
// copies (it lags more than this member knew).
type errLagsMore struct{ open uint64 }

func (e errLagsMore) Error() string {
	return fmt.Sprintf("groups: the home is open at epoch %d, before the one copied", e.open)
}

// errSource is a catch-up's failure to read the first home.
type errSource struct{ err error }

func (e errSource) Error() string { return "groups: the first home: " + e.err.Error() }
func (e errSource) Unwrap() error { return e.err }

// lagLets reports whether entry it goes to home i, which lags, before
// the home's catch-up is done (with inflight appends to it on their way):
// an entry of the current epoch other than a commit, to a home that took
// one since the first home stopped answering the catch-up, or as the
// probe of whether it does.
func (g *group) lagLets(i int, it *outItem, inflight int) bool {
	l := g.lags[i]
	if g.mg == nil || it.e.Epoch != g.mg.Epoch() || it.e.Kind == protocol.GroupCommit {
		return false
	}
	return l.answered || l.probe && inflight == 0 && (l.probing == nil || !slices.Contains(g.out, l.probing))
}

// lagAnswer handles the answer err of home i, which lags, to entry it:
// a probe taken lets the member's entries of the epoch go to the home; a
// failure of any leaves the home to its catch-up again.
func (g *group) lagAnswer(i int, it *outItem, err error) {
	if !g.lagging(i) {
		return
	}
	l := g.lags[i]
	probe := l.probing == it
	if probe {
		l.probing = nil
	}
	switch {
	case err != nil:
		l.answered = false
	case probe && !l.answered && g.mg != nil && it.e.Epoch == g.mg.Epoch():
		l.answered = true
		g.s.log.Info("group: a lagging home takes entries of the epoch while the first home does not answer", "group", g.id.String(), "home", i, "epoch", it.e.Epoch)
		g.poke()
	}
}

// catchUp copies home i the entries of the epochs from l.open to the
// current one from the first home (from where the last try stopped).
func (g *group) catchUp(i int, l *lag) {
	cur := g.mg.Epoch()
	if l.open > cur {
		g.lags[i] = nil
		return
	}
	tokens := map[uint64]protocol.GroupToken{}
	for e := l.open; e <= cur; e++ {
		t, ok := g.tokenOf(e)
		if !ok {
			g.s.log.Info("group: a home lags behind epochs this node holds no token of", "group", g.id.String(), "home", i, "open", l.open, "epoch", cur)
			g.s.met.catchUps.WithLabelValues("given_up").Inc()
			l.gaveUp = true
			g.poke()
			return
		}
		tokens[e] = t
	}
	l.busy = true
	src, dst := g.home(0), g.home(i)
	from, after := l.open, uint64(0)
	switch {
	case l.from >= l.open && l.from <= cur && (l.from > l.open || l.after > 0):
		from, after = l.from, l.after // where the last try stopped
	case l.first != nil && l.first.e.Epoch == l.open && l.first.e.Seqs[0] != 0 && l.first.e.Seqs[0] != skipped:
		after = l.first.e.Seqs[0] - 1
	}
	g.async(func(ctx context.Context) func() {
		reached, through, copied, err := g.s.relays.copyEpochs(ctx, src, dst, tokens, from, after, cur)
		return func() {
			defer g.saveLags()
			g.s.met.catchUpEntries.Add(float64(copied))
			l.busy = false
			if g.lags == nil || i >= len(g.lags) || g.lags[i] != l || g.rec.Homes[i].Log != dst.Log {
				return // the group moved to new logs meanwhile
			}
			if r := l.redo; r != nil {
				l.redo = nil
				if r.e.Epoch < l.open {
					l.open = r.e.Epoch
				}
				l.from, l.after, l.first = 0, 0, r
				g.poke()
				return
			}
			if err == nil {
				g.s.log.Info("group: caught a lagging home up", "group", g.id.String(), "home", i, "from", l.open, "to", reached, "entries", copied)
				g.s.met.catchUps.WithLabelValues("done").Inc()
				l.done = g.s.clock.Now()
				for _, it := range g.out {
					it.fails[i], it.tries[i] = 0, time.Time{}
				}
				g.poke()
				return
			}
			l.from, l.after = reached, through
			var more errLagsMore
			if errors.As(err, &more) {
				// Copied again from the home's open epoch, at once.
				l.open, l.from, l.after = min(l.open, more.open), more.open, 0
				g.poke()
				return
			}
			if errors.Is(err, errCannotCatchUp) {
				g.s.log.Info("group: cannot catch a lagging home up", "group", g.id.String(), "home", i, "err", err)
				g.s.met.catchUps.WithLabelValues("given_up").Inc()
				l.gaveUp = true
				g.poke()
				return
			}
			g.s.log.Debug("group: catch up a lagging home", "group", g.id.String(), "home", i, "err", err)
			var src errSource
			if errors.As(err, &src) && unanswered(err) && copied == 0 {
				l.probe = true
			}
			if copied > 0 {
				// It went on (stopped by the home's rate): on soon, from
				// the last entry copied.
				l.fails = 1
			} else {
				l.fails++
			}
			l.at = g.s.clock.Now().Add(g.backoff(l.fails))
			g.schedule(&g.retryAt, l.at.Sub(g.s.clock.Now()))
			if copied > 0 {
				return
			}
			// An entry the first home holds, waiting for this one, gives it
			// up after maxHomeFails failed catch-ups in a row: the catch-up
			// copies it from the first home once the home answers.
			for _, it := range slices.Clone(g.out) {
				if it.e.Seqs[i] != 0 || it.busy[i] || !it.anyStored() {
					continue
				}
				if it.fails[i]++; it.fails[i] >= maxHomeFails {
					it.e.Seqs[i] = skipped
					g.progress(it)
				}
			}
		}
	})
}

// copyEpochs appends to home dst the entries of epochs from to cur that
// home src holds, in src's order, starting after src's entry after in
// epoch from. tokens holds each epoch's token. It returns the epoch it
// reached and the last entry of it copied, and how many entries dst took
// (duplicates included).
func (r *relays) copyEpochs(ctx context.Context, src, dst protocol.GroupHome, tokens map[uint64]protocol.GroupToken, from, after, cur uint64) (reached, through uint64, copied int, err error) {
	cs, err := r.conn(ctx, &src)
	if err != nil {
		return from, after, 0, errSource{err}
	}
	cd, err := r.conn(ctx, &dst)
	if err != nil {
		return from, after, 0, err
	}
	for e := from; e <= cur; e++ {
		if e != from {
			after = 0
		}
		tok := tokens[e]
		var next protocol.TokenHash
		if e < cur {
			next = tokens[e+1].Hash()
		}
		for {
			f, err := cs.Fetch(ctx, src.Log, e, tok, after, 0)
			var ee *grouplog.EpochError
			if errors.As(err, &ee) {
				return e, after, copied, fmt.Errorf("%w: the first home no longer keeps epoch %d: %v", errCannotCatchUp, e, err)
			}
			if err != nil {
				return e, after, copied, errSource{err}
			}
			ents := f.Entries
			for len(ents) > 0 {
				// At most MaxOutstanding appends at once; a commit goes
				// alone, once every entry before it is in (it closes the
				// epoch: one refused before it, over the home's rate,
				// could never go in after it).
				var batch []grouplog.Entry
				var pend []*grouplog.PendingAppend
				var serr error
				for len(ents) > 0 && len(pend) < MaxOutstanding {
					x := ents[0]
					if x.Commit && e == cur {
						ents = nil
						break // a commit this node has not processed yet: not copied before it is
					}
					if x.Commit && len(pend) > 0 {
						break
					}
					p, err := cd.StartAppend(dst.Log, e, tok, x.Entry, x.Commit, commitNext(x.Commit, next))
					if err != nil {
						serr = err
						break
					}
					pend, batch, ents = append(pend, p), append(batch, x), ents[1:]
					if x.Commit {
						break
					}
				}
				var werr error
				for k, p := range pend {
					_, err := p.Wait(ctx)
					if err != nil && werr == nil {
						werr = err
						if errors.As(err, &ee) && ee.Open < e {
							return e, after, copied, errLagsMore{ee.Open}
						}
						if errors.As(err, &ee) && ee.Open > e {
							// Another member moved the home past this
							// epoch meanwhile.
							if ee.Open > cur {
								return cur, 0, copied, nil
							}
							werr = nil
							e, after = ee.Open-1, 0
							ents = nil
							f.More = false
							break
						}
						continue
					}
					if werr == nil {
						copied++
						after = batch[k].Seq
					}
				}
				if err := cmp.Or(werr, serr); err != nil {
					return e, after, copied, err
				}
			}
			if !f.More {
				break
			}
		}
	}
	return cur, 0, copied, nil
}

func commitNext(commit bool, next protocol.TokenHash) protocol.TokenHash {
	if commit {
		return next
	}
	return protocol.TokenHash{}
}
