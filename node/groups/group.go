package groups

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/mls"
	"github.com/sealpost/sealpost/node/gossip"
	"github.com/sealpost/sealpost/node/grouplog"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// group is one group's engine. Everything below the channels belongs to
// its goroutine (run); other goroutines reach it through do.
type group struct {
	s  *Service
	id protocol.GroupID

	cmds    chan func()
	in      *queue[inbound]
	rcpts   *queue[receiptIn]
	results chan func()
	kick    chan struct{}
	done    chan struct{}
	quitc   chan struct{}
	quitted atomic.Bool
	epoch   atomic.Uint64 // for the topic's check, on pubsub's goroutines

	rec     store.Group
	mg      *mls.Group
	meta    *protocol.GroupMeta
	members map[identity.UserID]memberInfo
	// byDevice names the member of each device of the epoch.
	byDevice map[peer.ID]identity.UserID
	token    protocol.GroupToken
	// tokens are the tokens of past epochs, up to keptTokens of them (to
	// append entries of an epoch this node left to a home that lacks
	// them, and to catch a lagging home up).
	tokens map[uint64]protocol.GroupToken
	// lags are the homes known to lag behind the group's epoch, by index;
	// lagsSaved the open epoch + 1 of each as stored (workLag).
	lags      []*lag
	lagsSaved map[int]uint64
	welcomes  []*welcomeItem
	topic     *gossip.Topic
	sub       *grouplog.Subscription
	subN      int       // which subscription is current (async subscribes)
	subAt     time.Time // when to subscribe again (zero: not due)
	subFail   int

	recent    map[[32]byte]struct{}
	recentOrd [][32]byte
	ahead     []*protocol.GroupMessage

	fetching  bool
	fetchAt   time.Time // zero: no fetch due
	headAt    time.Time // the grace of a head announced ends (headDue)
	fetchFail int
	heads     uint64 // the newest entry the subscription announced
	// gossipSeen are the first home's sequence numbers after the cursor
	// that the topic brought; gossipThrough the newest up to which every
	// entry was seen (on the topic or fetched). An entry the topic missed
	// leaves a gap the next fetch fills.
	gossipSeen    map[uint64]struct{}
	gossipThrough uint64

	out []*outItem // the entries to append and publish, in order
	// sealed counts this node's encryptions of application entries;
	// startedSealed is the newest encryption (by that count) whose append
	// has begun. An entry encrypted before it is encrypted again before
	// its append (sendOut).
	sealed, startedSealed uint64
	appenders             []chan func(context.Context) // per home (appender)
	proposals             int                          // proposals received in the epoch
	commitQueued          bool                         // a workChange commit of the proposals waits
	retryAt               time.Time                    // the earliest backoff's end: a wake-up, each backoff gates its own work
	homeFails             []*homeFail                  // per home: its appends' failures in a row (homes.go)
	receiptAt             time.Time
	committing            bool                     // a commit of ours is on its way to the relay
	stuck                 string                   // why the group cannot go on (the log lost its epoch)
	leaving               map[identity.UserID]bool // members who proposed to leave in the epoch

	// changesDue: the stored membership changes are to be read again
	// (something may have queued one, or one waited for what changed). A
	// read on every turn of the loop would wait for the disk each time
	// (a read waits until what it may see is durable).
	changesDue bool
	// stateDirty: application messages moved the MLS state (and the
	// cursor) on since it was last written; it is written by stateAt.
	stateDirty bool
	stateAt    time.Time
	// keysLost is the epoch (plus one; zero: none) whose stored keys did
	// not fit the stored state (setState): this member's sender ratchet
	// may then be behind messages it sent, and encrypting again could
	// use their keys once more. It encrypts nothing in that epoch; its
	// key update ends it. Until then every write of the state is whole
	// and keeps lostKeys, the keys that did not fit, stored with it: a
	// crash before the update finds them again.
	keysLost uint64
	lostKeys []byte

	receiptBusy map[uint64]bool // receipt work items on their way to a sender
	// heldReceipts are members' receipts waiting for the next write (by
	// heldAt at the latest).
	heldReceipts []heldReceipt
	heldAt       time.Time
	// receiptsSent are receipt work items sent, deleted with the next
	// write (by stateAt at the latest); they stay in receiptBusy until then.
	receiptsSent []uint64
	receiptFails map[identity.UserID]receiptFail // failed tries to reach a sender with receipts

	joining  bool      // a Welcome is being fetched
	joinAt   time.Time // when to try joining (zero: nothing to join with)
	joinFail int
}

// quit ends the goroutine (the group was deleted).
func (g *group) quit() {
	if g.quitted.CompareAndSwap(false, true) {
		close(g.quitc)
	}
}

type memberInfo struct {
	device peer.ID
	leaf   uint32
}

// inbound is a message from the topic.
type inbound struct {
	m   *protocol.GroupMessage
	raw []byte
}

// start makes the goroutine of a stored group.
func (s *Service) start(rec *store.Group) error {
	g := &group{
		s: s, id: rec.ID, rec: *rec,
		cmds: make(chan func()), in: newQueue[inbound](MaxInbound), rcpts: newQueue[receiptIn](MaxReceiptsInbound),
		results: make(chan func(), 64),
		kick:    make(chan struct{}, 1), done: make(chan struct{}), quitc: make(chan struct{}),
		recent: map[[32]byte]struct{}{}, leaving: map[identity.UserID]bool{},
		receiptBusy: map[uint64]bool{}, receiptFails: map[identity.UserID]receiptFail{},
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.groups[rec.ID] != nil {
		s.mu.Unlock()
		return nil
	}
	s.groups[rec.ID] = g
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer close(g.done)
		g.run()
	}()
	return nil
}

// do runs f on the group's goroutine and returns its error.
func (g *group) do(ctx context.Context, f func() error) error {
	errc := make(chan error, 1)
	select {
	case g.cmds <- func() { errc <- f() }:
	case <-g.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-errc:
		return err
	case <-g.done:
		return ErrClosed
	}
}

// poke wakes the goroutine.
func (g *group) poke() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// async runs f (network work) on its own goroutine; the function it
// returns runs on the group's goroutine.
func (g *group) async(f func(ctx context.Context) func()) {
	g.s.spawn(func() {
		apply := f(g.s.ctx)
		if apply == nil {
			return
		}
		select {
		case g.results <- apply:
		case <-g.done:
		case <-g.s.ctx.Done():
		}
	})
}

func (g *group) run() {
	defer g.stop()
	if err := g.load(); err != nil {
		g.s.log.Warn("group: load failed", "group", g.id.String(), "err", err)
	}
	t := g.s.clock.NewTimer(time.Hour)
	defer t.Stop()
	for {
		g.step()
		// A caller's command (a Send) goes before what else waits: the
		// messages and answers queued behind it can wait a turn, the
		// user should not wait for all of them.
		select {
		case f := <-g.cmds:
			g.changesDue = true
			f()
			continue
		default:
		}
		wait := time.Hour
		if d := g.nextDue(); !d.IsZero() {
			wait = max(d.Sub(g.s.clock.Now()), time.Millisecond)
		}
		t.Reset(wait)
		var subWake, subDone <-chan struct{}
		if g.sub != nil {
			subWake, subDone = g.sub.Wake(), g.sub.Done()
		}
		select {
		case <-g.s.ctx.Done():
			return
		case <-g.quitc:
			return
		case f := <-g.cmds:
			// A caller's command may have queued a change (or stored
			// one before it called).
			g.changesDue = true
			f()
		case <-g.in.ready:
			if batch := g.in.take(256); len(batch) > 0 {
				g.receiveTopic(batch)
			}
		case <-g.rcpts.ready:
			if batch := g.rcpts.take(256); len(batch) > 0 {
				g.receiveReceipts(batch)
			}
		case f := <-g.results:
			f()
		case <-g.kick:
		case <-subWake:
			g.onHead()
		case <-subDone:
			// At the epoch's commit (fetch it), or with the connection
			// (a relay restarted): subscribe again and fetch what the
			// gap held.
			err := g.sub.Err()
			g.sub = nil
			g.schedule(&g.fetchAt, g.s.opt.RetryMin)
			if err != nil {
				g.s.log.Debug("group: subscription ended", "group", g.id.String(), "err", err)
				g.subFail++
				g.schedule(&g.subAt, g.backoff(g.subFail))
			}
		case <-t.C():
		}
	}
}

// stop leaves the topic and the subscription.
func (g *group) stop() {
	g.homesOK()
	if g.topic != nil {
		g.s.setAllowed(g.topic.Name(), nil)
		g.topic.Close()
		g.topic = nil
	}
	g.sub = nil
}

// load reads the group's MLS state (members only) and starts its epoch.
func (g *group) load() error {
	if g.rec.State == store.GroupJoining {
		g.joinAt = g.s.clock.Now()
	}
	if g.rec.State != store.GroupActive && g.rec.State != store.GroupLeaving {
		return nil
	}
	if err := g.loadWork(); err != nil {
		return err
	}
	var b, keys []byte
	err := g.s.st.View(g.s.ctx, func(tx *store.Tx) error {
		var err error
		if b, err = tx.Groups().State(g.id); err != nil {
			return err
		}
		keys, err = tx.Groups().StateKeys(g.id)
		if errors.Is(err, store.ErrNotFound) {
			err = nil
		}
		return err
	})
	if err != nil {
		return err
	}
	return g.setState(b, keys)
}

// setState makes b the group's MLS state, with the keys messages used
// after it was written (writeState; none: nil), and enters its epoch.
func (g *group) setState(b, keys []byte) error {
	mg, err := mls.UnmarshalGroup(g.mlsConfig(), b)
	if err != nil {
		return err
	}
	lost := false
	if keys != nil {
		if err := mg.ApplyKeys(keys); err != nil {
			// Never written so (the keys go with the state they came
			// from, and the next state deletes them). The state alone
			// holds keys of messages read since, read again if they
			// come; but its own sender ratchet may be behind messages
			// this member sent (written as keys): it must not encrypt
			// again in the epoch.
			g.s.log.Error("group: stored keys do not fit the stored state; sending waits for a key update", "group", g.id.String(), "err", err)
			lost = true
		}
	}
	g.mg = mg
	g.keysLost, g.lostKeys = 0, nil
	if err := g.enterEpoch(); err != nil {
		return err
	}
	if lost {
		g.keysLost, g.lostKeys = mg.Epoch()+1, keys
		g.queueChange(change{Op: changeUpdate})
	}
	return nil
}

// sendKeysLost reports whether this member may not encrypt in the
// current epoch (keysLost).
func (g *group) sendKeysLost() bool {
	return g.keysLost != 0 && g.mg != nil && g.keysLost == g.mg.Epoch()+1
}

// mlsConfig is the member's MLS policy for this group.
func (g *group) mlsConfig() mls.Config {
	cfg := g.s.mlsCfg
	cfg.ValidateProposal = g.policy
	return cfg
}

// reload drops what the goroutine changed in memory since the last write
// (a write failed) by reading the stored state again.
func (g *group) reload() {
	err := g.s.st.View(g.s.ctx, func(tx *store.Tx) error {
		rec, err := tx.Groups().Get(g.id)
		if err != nil {
			return err
		}
		g.rec = rec
		return nil
	})
	if err == nil {
		g.mg = nil
		// The messages processed since the stored state are not in it:
		// their copies from the log are read again, not skipped.
		clear(g.recent)
		g.recentOrd = nil
		g.stateDirty, g.stateAt = false, time.Time{}
		if len(g.receiptsSent) > 0 {
			g.schedule(&g.stateAt, g.s.opt.StateEvery)
		}
		err = g.load()
	}
	if err != nil {
		g.s.log.Warn("group: reload failed", "group", g.id.String(), "err", err)
	}
}

// enterEpoch derives the epoch's values (meta, members, token, topic) and
// subscribes to the log.
func (g *group) enterEpoch() error {
	mg := g.mg
	g.proposals = 0
	g.changesDue = true
	clear(g.leaving)
	meta, err := metaOf(mg.Extensions())
	if err != nil {
		return err
	}
	g.meta = meta
	g.members = map[identity.UserID]memberInfo{}
	g.byDevice = map[peer.ID]identity.UserID{}
	devices := map[peer.ID]bool{}
	for _, m := range mg.Members() {
		who, err := memberOf(m.Credential)
		if err != nil {
			continue
		}
		g.members[who.user] = memberInfo{device: who.device, leaf: m.Index}
		g.byDevice[who.device] = who.user
		if who.device != g.s.selfPeer {
			devices[who.device] = true
		}
	}
	tok, err := mg.Export(protocol.GroupTokenLabel, nil, protocol.GroupTokenSize)
	if err != nil {
		return err
	}
	g.token = protocol.GroupToken(tok)
	secret, err := mg.Export(protocol.GroupTopicLabel, nil, protocol.GroupTopicSecretSize)
	if err != nil {
		return err
	}
	name, err := protocol.GroupTopic(secret)
	if err != nil {
		return err
	}
	g.epoch.Store(mg.Epoch())
	if g.topic != nil && g.topic.Name() != name {
		g.s.setAllowed(g.topic.Name(), nil)
		g.topic.Close()
		g.topic = nil
	}
	g.s.setAllowed(name, devices)
	if g.topic == nil && mg.Active() {
		if g.topic, err = g.s.cfg.Gossip.Join(name, g.check, g.deliver); err != nil {
			g.s.log.Warn("group: topic", "group", g.id.String(), "err", err)
		}
	}
	g.sub, g.heads, g.gossipSeen, g.gossipThrough = nil, 0, nil, 0
	g.subN++ // a subscription of the epoch before, still on its way, is dropped
	g.subAt = g.s.clock.Now()
	g.connect(devices)
	g.fetchAt = g.s.clock.Now()
	// What arrived early for this epoch goes through again.
	ahead := g.ahead
	g.ahead = nil
	if len(ahead) > 0 {
		b := g.newBatch()
		for _, m := range ahead {
			g.receive(b, m, -1, 0)
		}
		g.flush(b)
	}
	return nil
}

// check runs on pubsub's goroutines before a topic's message is delivered
// or forwarded: no decryption, only the clear header. A commit is refused:
// commits travel only through the first home's log (a member publishing
// one breaks the protocol, and forwarded it would make every member
// fetch).
func (g *group) check(from peer.ID, m *protocol.GroupMessage) error {
	switch {
	case m.Kind == protocol.GroupCommit:
		return errors.New("a commit on the topic")
	case m.Kind == protocol.GroupApplication && len(m.Body) > MaxApplicationBody:
		return fmt.Errorf("application message of %d bytes, limit %d", len(m.Body), MaxApplicationBody)
	}
	h, err := mls.Peek(m.Body)
	if err != nil {
		return err
	}
	if !bytes.Equal(h.GroupID, g.id[:]) || h.Epoch != m.Epoch || !kindMatches(m.Kind, h.Kind) {
		return errors.New("header does not match")
	}
	e := g.epoch.Load()
	if m.Epoch+mls.DefaultPastEpochs < e || m.Epoch > e+1 {
		return gossip.ErrIgnore
	}
	return nil
}

func kindMatches(k protocol.GroupKind, mk mls.MessageKind) bool {
	switch k {
	case protocol.GroupApplication:
		return mk == mls.KindApplication
	case protocol.GroupProposal:
		return mk == mls.KindProposal
	case protocol.GroupCommit:
		return mk == mls.KindCommit
	}
	return false
}

// deliver hands a topic's message to the goroutine; when it is behind, the
// message is dropped here and fetched from the log later.
func (g *group) deliver(_ peer.ID, m *protocol.GroupMessage, _ []byte) {
	c := *m
	c.Body = slices.Clone(m.Body)
	c.Seqs = slices.Clone(m.Seqs)
	g.in.put(inbound{m: &c})
}

// subscribe subscribes to the epoch on the first home relay, in place of
// any subscription before; one that fails is tried again after a backoff.
func (g *group) subscribe() {
	if g.mg == nil || !g.mg.Active() || len(g.rec.Homes) == 0 {
		return
	}
	g.sub = nil
	g.subN++
	n, home, epoch, tok, after := g.subN, g.home(0), g.mg.Epoch(), g.token, g.rec.Homes[0].Cursor
	g.async(func(ctx context.Context) func() {
		c, err := g.s.relays.conn(ctx, &home)
		var sub *grouplog.Subscription
		if err == nil {
			sub, err = c.Subscribe(ctx, home.Log, epoch, tok, after)
		}
		return func() {
			if n != g.subN {
				return // the epoch moved on meanwhile
			}
			if err != nil {
				g.s.log.Debug("group: subscribe", "group", g.id.String(), "err", err)
				g.subFail++
				g.schedule(&g.subAt, g.backoff(g.subFail))
				g.schedule(&g.fetchAt, g.backoff(g.fetchFail))
				return
			}
			g.subFail = 0
			g.sub = sub
			if sub.Start > g.heads {
				g.heads = sub.Start
			}
			g.onHead()
		}
	})
}

// onHead looks at the newest entry the subscription announced.
func (g *group) onHead() {
	if g.sub == nil {
		return
	}
	seq, commit := g.sub.Head()
	if seq > g.heads {
		g.heads = seq
	}
	switch {
	case commit:
		g.fetchAt = g.s.clock.Now()
	case g.heads > max(g.rec.Homes[0].Cursor, g.gossipThrough):
		g.schedule(&g.headAt, g.s.opt.FetchGrace)
	}
}

// headDue fetches the heads announced if the topic has not brought them
// in their grace. The cursor moves only with what the log brought (the
// topic's sequence numbers carry no signature: they only spare fetches),
// so what the topic brought is read again by the next fetch, a poll at
// the latest, as copies (their hash).
func (g *group) headDue() {
	if g.heads > max(g.rec.Homes[0].Cursor, g.gossipThrough) {
		g.fetchAt = g.s.clock.Now()
	}
}

// schedule sets *at to now+d unless it is due sooner.
func (g *group) schedule(at *time.Time, d time.Duration) {
	t := g.s.clock.Now().Add(d)
	if at.IsZero() || t.Before(*at) {
		*at = t
	}
}

func (g *group) backoff(n int) time.Duration {
	d := g.s.opt.RetryMin << min(n, 16)
	d = min(d, g.s.opt.RetryMax)
	return d/2 + rand.N(d/2+1)
}

// poll is the time to the next fetch when nothing calls for one sooner:
// Options.Poll, give or take a quarter (so the members of a group do not
// poll their relay at once).
func (g *group) poll() time.Duration {
	d := g.s.opt.Poll
	return d*3/4 + rand.N(d/2+1)
}

// nextDue is the earliest timed work.
func (g *group) nextDue() time.Time {
	var t time.Time
	for _, x := range []time.Time{g.fetchAt, g.headAt, g.subAt, g.retryAt, g.receiptAt, g.joinAt, g.stateAt, g.heldAt} {
		if !x.IsZero() && (t.IsZero() || x.Before(t)) {
			t = x
		}
	}
	return t
}

// home returns the group's home i as the wire has it.
func (g *group) home(i int) protocol.GroupHome {
	h := g.rec.Homes[i]
	return protocol.GroupHome{Relay: h.Relay, Addrs: h.Addrs, Log: h.Log}
}

// step does the work that is due.
func (g *group) step() {
	now := g.s.clock.Now()
	if !g.joinAt.IsZero() && !now.Before(g.joinAt) {
		g.joinAt = time.Time{}
		g.tryJoin()
	}
	if !g.heldAt.IsZero() && !now.Before(g.heldAt) {
		g.heldAt = time.Time{}
		b := g.newBatch()
		b.lazy = true
		g.flush(b)
	}
	if g.mg == nil || g.stuck != "" {
		return
	}
	if !g.stateAt.IsZero() && !now.Before(g.stateAt) {
		g.stateAt = time.Time{}
		g.writeState()
		if len(g.receiptsSent) > 0 {
			b := g.newBatch()
			b.lazy = true
			g.flush(b)
		}
	}
	if !g.subAt.IsZero() && !now.Before(g.subAt) {
		g.subAt = time.Time{}
		g.subscribe()
	}
	if !g.headAt.IsZero() && !now.Before(g.headAt) {
		g.headAt = time.Time{}
		g.headDue()
	}
	if !g.fetchAt.IsZero() && !now.Before(g.fetchAt) && !g.fetching {
		g.fetchAt = time.Time{}
		g.fetch()
	}
	// retryAt only wakes the goroutine when the earliest backoff ends:
	// each append, home, catch-up and Welcome waits out its own, and the
	// rest of the group's work goes on meanwhile.
	if !g.retryAt.IsZero() && !now.Before(g.retryAt) {
		g.retryAt = time.Time{}
	}
	if !g.receiptAt.IsZero() && !now.Before(g.receiptAt) {
		g.receiptAt = time.Time{}
		g.sendReceipts()
	}
	g.sendOut()
	if !g.committing {
		g.commitChanges()
	}
	g.sendWelcomes()
}

// fetch reads the epoch's entries after the cursor from the first home
// relay (the second when the first fails: its commits are not taken).
func (g *group) fetch() {
	if !g.mg.Active() {
		return
	}
	g.fetching = true
	homes := len(g.rec.Homes)
	i := 0
	if g.fetchFail > 0 && homes > 1 && g.fetchFail%2 == 1 {
		i = 1
	}
	home, epoch, tok, after := g.home(i), g.mg.Epoch(), g.token, g.rec.Homes[i].Cursor
	g.async(func(ctx context.Context) func() {
		c, err := g.s.relays.conn(ctx, &home)
		var f grouplog.Fetched
		if err == nil {
			f, err = c.Fetch(ctx, home.Log, epoch, tok, after, 0)
		}
		return func() {
			g.fetching = false
			if g.mg == nil || g.mg.Epoch() != epoch || g.rec.Homes[i].Log != home.Log {
				g.fetchAt = g.s.clock.Now()
				return
			}
			if err != nil {
				var ee *grouplog.EpochError
				switch {
				case errors.As(err, &ee) && ee.Open > epoch && i == 0:
					g.stuck = fmt.Sprintf("the home relay no longer keeps epoch %d", epoch)
					g.s.log.Warn("group: log lost the epoch", "group", g.id.String(), "epoch", epoch)
					return
				case errors.As(err, &ee) && ee.Open < epoch && i > 0:
					// The second home missed commits: it is caught up
					// (the first home is read meanwhile).
					g.homeLags(i, ee.Open)
				}
				if errors.Is(err, protocol.ErrUnknownLog) {
					g.recreate(i)
				}
				g.fetchFail++
				g.schedule(&g.fetchAt, g.backoff(g.fetchFail))
				g.s.log.Debug("group: fetch", "group", g.id.String(), "home", i, "err", err)
				return
			}
			g.fetchFail = 0
			g.s.met.fetched.Add(float64(len(f.Entries)))
			g.s.log.Debug("group: fetched", "group", g.id.String(), "home", i, "epoch", epoch, "after", after, "entries", len(f.Entries), "more", f.More, "open", f.Open)
			b := g.newBatch()
			b.lazy = true
			for _, e := range f.Entries {
				var m protocol.GroupMessage
				if err := m.Unmarshal(e.Entry); err != nil {
					g.s.met.dropped.WithLabelValues(dropMalformed).Inc()
				} else {
					g.receive(b, &m, i, e.Seq)
				}
				if g.rec.Homes[i].Log != home.Log {
					break // a refused commit: the group moved to new logs
				}
				if e.Seq > g.rec.Homes[i].Cursor {
					g.rec.Homes[i].Cursor = e.Seq
					b.soft = true
				}
				if g.mg == nil || g.mg.Epoch() != epoch {
					break // a commit: what follows is the next epoch's, fetched with its token
				}
			}
			g.flush(b)
			if f.More || (g.mg != nil && g.mg.Epoch() != epoch) || f.Open > epoch && len(f.Entries) > 0 {
				g.fetchAt = g.s.clock.Now()
			}
			// Even with the topic and the subscription quiet, the log is
			// read again now and then: what both missed (a push lost
			// with a relay's restart, a commit published while this node
			// was cut off) is found within a poll.
			g.schedule(&g.fetchAt, g.poll())
		}
	})
}

// recreate creates the group's log on home i again (the relay dropped it
// while idle), open at the current epoch, under its ID.
func (g *group) recreate(i int) {
	home, epoch, tok := g.home(i), g.mg.Epoch(), g.token
	g.async(func(ctx context.Context) func() {
		c, err := g.s.relays.conn(ctx, &home)
		if err == nil {
			err = c.Create(ctx, home.Log, epoch, tok)
		}
		if err != nil {
			g.s.log.Debug("group: create the log again", "group", g.id.String(), "err", err)
		}
		return nil
	})
}

// connect keeps some member devices connected, for the topic's mesh.
func (g *group) connect(devices map[peer.ID]bool) {
	var ps []peer.ID
	for p := range devices {
		ps = append(ps, p)
	}
	rand.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
	h := g.s.cfg.Host
	want := g.s.opt.Connect
	g.s.spawn(func() {
		for _, p := range ps {
			if want <= 0 || g.s.ctx.Err() != nil {
				return
			}
			if h.Network().Connectedness(p) == 1 { // network.Connected
				want--
				continue
			}
			ctx, cancel := context.WithTimeout(g.s.ctx, dialTimeout)
			addrs := h.Peerstore().Addrs(p)
			if len(addrs) == 0 && g.s.cfg.FindDevice != nil {
				addrs, _ = g.s.cfg.FindDevice(ctx, p)
			}
			if len(addrs) > 0 {
				if err := h.Connect(ctx, peer.AddrInfo{ID: p, Addrs: addrs}); err == nil {
					want--
				}
			}
			cancel()
		}
	})
}
