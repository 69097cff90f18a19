package testnet

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/store"
)

// Bounds of the steps of a run.
const (
	// startParallel members start at once; wireParallel contacts are
	// made at once; sendParallel Send calls run at once.
	startParallel = 16
	wireParallel  = 32
	sendParallel  = 32
	// wireTimeout bounds making one contact (invite, bundle fetch, first
	// message delivered); sendTimeout one Send call.
	wireTimeout = 2 * time.Minute
	sendTimeout = 30 * time.Second
	// drainPoll is how often the drain looks at the counts.
	drainPoll = 100 * time.Millisecond
	// quietPoll is how often, once everything is shown, the drain asks
	// the nodes whether their outboxes are empty.
	quietPoll = time.Second
)

func (nw *cluster) run(ctx context.Context) (*Report, error) {
	o, p := nw.o, nw.plan
	nw.start = time.Now()
	rep := &Report{
		Nodes: o.Nodes, Relays: o.Relays, Messages: len(p.msgs),
		Offline: o.Offline, Chaos: append([]string{}, o.Chaos...), Seed: o.Seed,
	}
	stop := nw.progress()
	defer stop()
	mark := nw.start
	cpuMark, _ := usage()
	// lap returns the wall and CPU seconds since the last lap.
	lap := func() (wall, cpu float64) {
		now := time.Now()
		c, _ := usage()
		wall, cpu = now.Sub(mark).Seconds(), (c - cpuMark).Seconds()
		mark, cpuMark = now, c
		return wall, cpu
	}

	nw.phase.Store(PhaseStart)
	if err := nw.up(ctx); err != nil {
		return nil, err
	}
	for i, d := range p.skew {
		if d != 0 {
			nw.note("%s runs a clock %v off", nw.nodes[i].name, d)
		}
	}
	rep.Seconds.Start, rep.CPUSeconds.Start = lap()

	nw.phase.Store(PhaseWire)
	if err := nw.wire(ctx); err != nil {
		return nil, err
	}
	if len(p.groups) > 0 {
		if err := nw.setupGroups(ctx); err != nil {
			return nil, err
		}
		nw.note("%d groups of up to %d members set up", len(p.groups), o.GroupSize)
	}
	var down []*member
	for i, off := range p.offline {
		if off {
			down = append(down, nw.nodes[i])
		}
	}
	if err := forEach(down, startParallel, func(m *member) error { return m.stop() }); err != nil {
		return nil, fmt.Errorf("testnet: take nodes offline: %w", err)
	}
	if len(down) > 0 {
		nw.note("%d nodes offline", len(down))
	}
	rep.Seconds.Wire, rep.CPUSeconds.Wire = lap()

	nw.phase.Store(PhaseSend)
	var groupSends sync.WaitGroup
	groupSends.Go(func() { nw.sendGroups(ctx) })
	sendErrs, err := nw.send(ctx)
	groupSends.Wait()
	if err != nil {
		return nil, err
	}
	rep.SendErrors = sendErrs
	rep.Seconds.Send, rep.CPUSeconds.Send = lap()

	nw.phase.Store(PhaseHeal)
	if err := nw.heal(ctx, down); err != nil {
		return nil, err
	}
	nw.phase.Store(PhaseDrain)
	nw.drain(ctx)
	rep.Seconds.Drain, rep.CPUSeconds.Drain = lap()

	nw.phase.Store(PhaseCheck)
	if err := nw.check(ctx, rep); err != nil {
		return nil, err
	}
	if nw.groups != nil {
		rep.Groups = &GroupReport{}
		nw.checkGroups(ctx, rep.Groups)
	}
	rep.Latency.Direct, rep.Latency.ViaRelay = nw.ledger.latencies()
	rep.StreamsReset = nw.drop.resets.Load()
	nw.faultMu.Lock()
	rep.Faults = append([]string{}, nw.faults...)
	nw.faultMu.Unlock()
	stop() // the last sample is this goroutine's alone
	nw.sample()
	rep.PeakGoroutines = nw.peakG
	rep.RelayStoredBytes = nw.relayBytes
	for _, m := range nw.members() {
		c := m.dhtTotals()
		rep.DHTLookups += c.lookups
		rep.DHTPublishes += c.publishes
	}
	rep.Seconds.Total = time.Since(nw.start).Seconds()
	return rep, nil
}

// up provisions and starts every member: the relays one by one, then the
// nodes, each with the relays the plan gives it.
func (nw *cluster) up(ctx context.Context) error {
	if err := forEach(nw.members(), startParallel, func(m *member) error {
		if err := m.provision(ctx); err != nil {
			return fmt.Errorf("testnet: provision %s: %w", m.name, err)
		}
		nw.cut.set(m.peer, m.side)
		return nil
	}); err != nil {
		return err
	}
	for _, r := range nw.relays { // one by one: each bootstraps from those before it
		if err := r.start(ctx); err != nil {
			return fmt.Errorf("testnet: start %w", err)
		}
	}
	if err := forEach(nw.nodes, startParallel, func(m *member) error {
		if err := m.start(ctx); err != nil {
			return fmt.Errorf("testnet: start %w", err)
		}
		return nil
	}); err != nil {
		return err
	}
	return forEach(nw.nodes, startParallel, func(m *member) error {
		return nw.addRelays(ctx, m)
	})
}

// progress calls Options.Progress every ProgressEvery and samples the
// goroutine count, until the returned function is first called.
func (nw *cluster) progress() func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			nw.sample()
			if nw.o.Progress == nil {
				continue
			}
			sent, shown := nw.ledger.counts()
			up := 0
			ms := nw.members()
			for _, m := range ms {
				if m.isUp() {
					up++
				}
			}
			nw.o.Progress(Progress{
				Phase: nw.phase.Load(), Elapsed: time.Since(nw.start),
				Sent: sent, Shown: shown, Messages: len(nw.plan.msgs),
				Up: up, Members: len(ms),
				Groups: len(nw.plan.groups), GroupMessages: len(nw.plan.gmsgs),
			}.withGroups(nw.groups))
		}
	})
	return sync.OnceFunc(func() {
		close(done)
		wg.Wait()
	})
}

// addRelays makes node m receive through the relays the plan gives it, as
// `sealpost relays add` does.
func (nw *cluster) addRelays(ctx context.Context, m *member) error {
	ctx, cancel := context.WithTimeout(ctx, wireTimeout)
	defer cancel()
	for _, j := range nw.plan.nodeRelays[m.index] {
		r := nw.relays[j]
		if _, err := m.node().Messaging().AddRelay(ctx, r.relayAddr()); err != nil {
			return fmt.Errorf("testnet: %s: relays add %s: %w", m.name, r.name, err)
		}
	}
	return nil
}

// wire makes the contacts of the plan as users do: the responder makes an
// invite, the initiator adds it and sends a first message, which makes
// the responder's contact; its delivery receipt confirms the session.
func (nw *cluster) wire(ctx context.Context) error {
	return forEach(nw.plan.edges, wireParallel, func(e [2]int) error {
		if err := nw.link(ctx, nw.nodes[e[0]], nw.nodes[e[1]]); err != nil {
			return fmt.Errorf("testnet: contact %s -> %s: %w", nw.nodes[e[0]].name, nw.nodes[e[1]].name, err)
		}
		return nil
	})
}

func (nw *cluster) link(ctx context.Context, a, b *member) error {
	ctx, cancel := context.WithTimeout(ctx, wireTimeout)
	defer cancel()
	am, bm := a.node().Messaging(), b.node().Messaging()
	inv, err := bm.Invite(ctx)
	if err != nil {
		return err
	}
	if _, err := am.AddContact(ctx, inv.Link, b.name); err != nil {
		return err
	}
	r, err := am.Send(ctx, b.uid, "hello from "+a.name)
	if err != nil {
		return err
	}
	id, err := messaging.ParseMessageID(r.ID)
	if err != nil {
		return err
	}
	_, err = am.WaitState(ctx, id, messaging.StateDelivered)
	return err
}

// send sends the plan's messages, spread over Options.Duration, and
// applies the fault steps between them. It returns the number of failed
// Send calls.
func (nw *cluster) send(ctx context.Context) (int, error) {
	p := nw.plan
	steps := p.steps
	sem := make(chan struct{}, sendParallel)
	var (
		wg   sync.WaitGroup
		errs atomic.Int64
	)
	if slices.Contains(nw.o.Chaos, Drop) {
		nw.drop.on.Store(true)
		nw.note("drop on: each read or write on a message stream resets it with probability %.0f%%", 100*dropRate)
	}
	start := time.Now()
	m := len(p.msgs)
	for i, pm := range p.msgs {
		for len(steps) > 0 && steps[0].at <= i {
			wg.Wait() // a fault step sees every earlier Send returned
			if err := nw.apply(ctx, steps[0]); err != nil {
				return 0, err
			}
			steps = steps[1:]
		}
		due := start.Add(time.Duration(int64(nw.o.Duration) * int64(i) / int64(m)))
		if err := sleepUntil(ctx, due); err != nil {
			return 0, err
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if !nw.sendOne(ctx, i, pm) {
				errs.Add(1)
			}
		})
	}
	wg.Wait()
	for _, s := range steps {
		if err := nw.apply(ctx, s); err != nil {
			return 0, err
		}
	}
	if err := sleepUntil(ctx, start.Add(nw.o.Duration)); err != nil {
		return 0, err
	}
	return int(errs.Load()), nil
}

func (nw *cluster) sendOne(ctx context.Context, i int, pm planned) bool {
	from, to := nw.nodes[pm.from], nw.nodes[pm.to]
	n := from.node()
	if n == nil {
		nw.log.Error("sender down", "member", from.name, "message", i)
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	nw.ledger.sending(i, !to.isUp())
	r, err := n.Messaging().Send(ctx, to.uid, messageText(i, from.name, to.name))
	if err != nil {
		nw.log.Error("send", "from", from.name, "to", to.name, "message", i, "err", err)
		return false
	}
	nw.ledger.sendDone(i, r.ID)
	return true
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// apply carries out one fault step.
func (nw *cluster) apply(ctx context.Context, s step) error {
	switch s.what {
	case stepPartition:
		nw.cut.setActive(true)
		cut := 0
		for _, m := range nw.members() {
			if n := m.node(); n != nil {
				cut += disconnect(n, func(p peer.ID) bool { return nw.cut.blocked(m.side, p) })
			}
		}
		nw.note("partition: two halves, %d connections cut", cut)
	case stepHeal:
		nw.cut.setActive(false)
		nw.note("partition healed")
	case stepKill:
		r := nw.relays[nw.plan.killRelay]
		if err := r.kill(); err != nil {
			return fmt.Errorf("testnet: kill %s: %w", r.name, err)
		}
		nw.note("%s killed", r.name)
	case stepRevive:
		r := nw.relays[nw.plan.killRelay]
		if err := r.start(ctx); err != nil {
			return fmt.Errorf("testnet: restart %w", err)
		}
		nw.note("%s restarted", r.name)
	case stepRestart:
		var queued atomic.Int64
		var ms []*member
		for _, i := range nw.plan.restart {
			ms = append(ms, nw.nodes[i])
		}
		err := forEach(ms, startParallel, func(m *member) error {
			if n := m.node(); n != nil {
				if st, err := n.Status(ctx); err == nil && st.Outbox > 0 {
					queued.Add(1)
				}
			}
			if err := m.stop(); err != nil {
				return err
			}
			return m.start(ctx)
		})
		if err != nil {
			return fmt.Errorf("testnet: restart nodes: %w", err)
		}
		nw.note("%d nodes restarted, %d of them with messages queued", len(ms), queued.Load())
	}
	return nil
}

// heal ends every fault: drop off, partition healed, the killed relay
// back, the offline nodes back.
func (nw *cluster) heal(ctx context.Context, down []*member) error {
	if nw.drop.on.Swap(false) {
		nw.note("drop off")
	}
	if nw.cut.setActive(false) {
		nw.note("partition healed")
	}
	if k := nw.plan.killRelay; k >= 0 && !nw.relays[k].isUp() {
		if err := nw.apply(ctx, step{what: stepRevive}); err != nil {
			return err
		}
	}
	if err := forEach(down, startParallel, func(m *member) error { return m.start(ctx) }); err != nil {
		return fmt.Errorf("testnet: bring nodes back: %w", err)
	}
	if len(down) > 0 {
		nw.note("%d offline nodes back", len(down))
	}
	return nil
}

// drain waits, at most Options.Drain, until every sent message has been
// shown and every node's outbox is empty (no retry or receipt pending, so
// no late copy can still arrive).
func (nw *cluster) drain(ctx context.Context) {
	deadline := time.Now().Add(nw.o.Drain)
	var lastQuiet time.Time
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if nw.ledger.allShown() && time.Since(lastQuiet) >= quietPoll {
			lastQuiet = time.Now()
			if nw.quiet(ctx) && nw.groupsDelivered(ctx) {
				return
			}
		}
		sleepUntil(ctx, time.Now().Add(drainPoll))
	}
	nw.log.Warn("drain: bound reached", "bound", nw.o.Drain)
}

// quiet reports whether every node's outbox is empty.
func (nw *cluster) quiet(ctx context.Context) bool {
	for _, m := range nw.nodes {
		n := m.node()
		if n == nil {
			return false
		}
		st, err := n.Status(ctx)
		if err != nil || st.Outbox > 0 {
			return false
		}
	}
	return true
}

// check reads every node's whole inbox and counts what the recipients
// show: delivered, duplicated, lost.
func (nw *cluster) check(ctx context.Context, rep *Report) error {
	recs := nw.ledger.snapshot()
	count := make([]int, len(recs))
	var mu sync.Mutex
	stray := 0
	err := forEach(nw.nodes, startParallel, func(m *member) error {
		n := m.node()
		if n == nil {
			return fmt.Errorf("testnet: %s is down at the check", m.name)
		}
		msgs, _, err := n.Messaging().Inbox(ctx, 0, 0)
		if err != nil {
			return fmt.Errorf("testnet: inbox of %s: %w", m.name, err)
		}
		mu.Lock()
		defer mu.Unlock()
		for k := range msgs {
			i, ok := match(recs, m, &msgs[k])
			if !ok {
				stray++
			} else if i >= 0 {
				count[i]++
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, r := range recs {
		if !r.sent {
			continue
		}
		rep.Sent++
		c := max(count[i], r.shown) // r.shown: a copy seen earlier counts even if gone now
		switch {
		case c == 0:
			rep.Lost++
			if len(rep.LostMessages) < maxListed {
				rep.LostMessages = append(rep.LostMessages, nw.describe(ctx, i, r))
			}
		case c > 1:
			rep.Duplicated++
			rep.Delivered++
		default:
			rep.Delivered++
		}
	}
	rep.Stray = stray + nw.ledger.strays()
	return nil
}

// describe says what the sender knows of a lost message.
func (nw *cluster) describe(ctx context.Context, i int, r record) string {
	from, to := nw.nodes[r.from], nw.nodes[r.to]
	state := "unknown"
	if n := from.node(); n != nil {
		if msgs, err := n.Messaging().Messages(ctx, to.uid, 0); err == nil {
			for _, m := range msgs {
				if m.ID == r.id {
					state = m.State
					if m.Reason != "" {
						state += " (" + m.Reason + ")"
					}
				}
			}
		}
	}
	if st := from.store(); st != nil {
		if id, err := messaging.ParseMessageID(r.id); err == nil {
			st.View(ctx, func(tx *store.Tx) error {
				e, err := tx.Outbox().Get(id)
				if err != nil {
					state += "; not in the outbox"
					return nil
				}
				state += fmt.Sprintf("; outbox: %d attempts, next in %v, last error %q",
					e.Attempts, time.Until(e.NextAttempt).Round(time.Millisecond), e.LastError)
				return nil
			})
		}
	}
	return fmt.Sprintf("%d %s -> %s: recipient offline when sent: %v; sender's state: %s", i, from.name, to.name, r.offline, state)
}
