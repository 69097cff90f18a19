package testnet

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sealpost/sealpost/node/messaging"
)

// labMsg is one message of the run.
type labMsg struct {
	pair     int
	from, to *labMember
	sent     bool
	shown    int
}

// text is the body of message i of pair k from a to b: the lab finds it
// in histories by it.
func labText(k, i int, from, to *labMember) string {
	return fmt.Sprintf("lab pair %d message %d from %s to %s", k, i, from.name, to.name)
}

// link makes a and b contacts by b's invite and sends the first message
// each way; the first (a to b) is the pair's first message.
func (l *lab) link(ctx context.Context, k int, a, b *labMember, t0 time.Time, p *LabPair) error {
	rctx, cancel := context.WithTimeout(ctx, labFirstWait)
	defer cancel()
	inv, err := b.client().Invite(rctx)
	if err != nil {
		return fmt.Errorf("testnet: %s: invite: %w", b.name, err)
	}
	if _, err := a.client().AddContact(rctx, inv.Link, b.name); err != nil {
		return fmt.Errorf("testnet: %s: contact add %s's invite: %w", a.name, b.name, err)
	}
	first := labText(k, 0, a, b)
	if !l.sendText(rctx, k, a, b, first) {
		return fmt.Errorf("testnet: %s: the first message to %s was not accepted", a.name, b.name)
	}
	// The first message is B's contact request, accepted by the invite:
	// B names A after A's card.
	at, how := l.waitShown(rctx, b, first)
	if at.IsZero() {
		l.note("pair %d (%s): the first message did not arrive within %v", k, p.NAT, labFirstWait)
		return nil
	}
	p.FirstMs = float64(at.Sub(t0).Microseconds()) / 1000
	p.First = classify(how, a, b)
	l.linked.Add(1)
	l.sendText(rctx, k, b, a, labText(k, 1, b, a))
	return nil
}

// classify names the path of a message that arrived via how.
func classify(how string, a, b *labMember) string {
	switch how {
	case messaging.ViaDirect:
		if a.kind != NATNone && b.kind != NATNone {
			return PathHolePunched
		}
		return PathDirect
	case messaging.ViaRelayed:
		return PathRelayed
	case messaging.ViaMailbox:
		return PathMailbox
	}
	return PathNone
}

// waitShown waits until m's history shows text and returns when m
// committed it and how it arrived.
func (l *lab) waitShown(ctx context.Context, m *labMember, text string) (time.Time, string) {
	for ctx.Err() == nil {
		var at time.Time
		cursor := uint64(0)
		for {
			page, err := m.client().Inbox(ctx, cursor, 500)
			if err != nil {
				break
			}
			for _, msg := range page.Messages {
				if msg.Text == text {
					at = msg.ReceivedAt
				}
			}
			if len(page.Messages) == 0 || page.Cursor == cursor {
				break
			}
			cursor = page.Cursor
		}
		if !at.IsZero() {
			// The event may trail the commit a little.
			for range 40 {
				m.mu.Lock()
				how := m.via[text]
				m.mu.Unlock()
				if how != "" {
					return at, how
				}
				time.Sleep(50 * time.Millisecond)
			}
			return at, ""
		}
		select {
		case <-ctx.Done():
		case <-time.After(labPoll / 2):
		}
	}
	return time.Time{}, ""
}

// sendText sends one message of pair k and records it.
func (l *lab) sendText(ctx context.Context, k int, from, to *labMember, text string) bool {
	msg := &labMsg{pair: k, from: from, to: to}
	l.mu.Lock()
	l.ledger[text] = msg
	l.mu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := from.client().Send(sctx, to.name, text)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.sendErr++
		fmt.Fprintf(l.o.Log, "%s: send to %s: %v\n", from.name, to.name, err)
		return false
	}
	msg.sent = true
	l.sentN.Add(1)
	return true
}

// watchDirect polls a's connections until a direct (not relayed) one to
// b appears, and records when.
func (l *lab) watchDirect(ctx context.Context, a, b *labMember, t0 time.Time, p *LabPair) {
	b.mu.Lock()
	bid := b.peerID
	b.mu.Unlock()
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		peers, err := a.client().Peers(rctx)
		cancel()
		if err == nil {
			for _, pi := range peers {
				if pi.PeerID == bid && !pi.Limited {
					p.Direct = true
					p.DirectMs = float64(time.Since(t0).Microseconds()) / 1000
					return
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(labPoll):
		}
	}
}

// send runs the message phase with its faults and returns the function
// that heals what is still broken.
func (l *lab) send(ctx context.Context) (func() error, error) {
	o := l.o
	type sendStep struct {
		at   time.Duration
		k, i int
		fwd  bool
	}
	var steps []sendStep
	for k := range o.Pairs {
		for i := range o.Messages {
			at := time.Duration(l.rnd.Int64N(int64(o.Duration) + 1))
			steps = append(steps, sendStep{at: at, k: k, i: i + 2, fwd: i%2 == 0})
		}
	}
	slices.SortFunc(steps, func(a, b sendStep) int { return int(a.at - b.at) })

	type fault struct {
		at time.Duration
		do func() error
	}
	var faults []fault
	var offline []*labMember
	var down sync.Map // *labMember -> true while stopped
	if slices.Contains(o.Faults, LabOffline) {
		for k := range o.Pairs {
			if k%4 == 3 || (o.Pairs < 4 && k == 0) {
				offline = append(offline, l.nodes[2*k+1])
			}
		}
		faults = append(faults, fault{o.Duration / 4, func() error {
			for _, m := range offline {
				down.Store(m, true)
			}
			forEach(offline, procParallel, func(m *labMember) error { m.stop(); return nil })
			l.note("offline: %s stopped", names(offline))
			return nil
		}}, fault{3 * o.Duration / 4, func() error {
			err := forEach(offline, procParallel, func(m *labMember) error { return m.startDaemon(ctx, l.net) })
			for _, m := range offline {
				down.Delete(m)
			}
			l.note("offline: %s back", names(offline))
			return err
		}})
	}
	if slices.Contains(o.Faults, LabFlushNAT) {
		var nated []*labMember
		for i, m := range l.nodes {
			if m.kind != NATNone && (i%3 == 0) {
				nated = append(nated, m)
			}
		}
		faults = append(faults, fault{o.Duration / 2, func() error {
			for _, m := range nated {
				var i int
				fmt.Sscanf(m.name, "node-%d", &i)
				if err := l.net.flushNAT(ctx, i); err != nil {
					return err
				}
			}
			l.note("flush-nat: the routers of %s forgot their mappings", names(nated))
			return nil
		}})
	}
	relayDown := false
	if slices.Contains(o.Faults, LabKillRelay) {
		r := l.relays[0]
		faults = append(faults, fault{o.Duration / 3, func() error {
			r.kill()
			relayDown = true
			l.note("kill-relay: %s killed (SIGKILL)", r.name)
			return nil
		}}, fault{2 * o.Duration / 3, func() error {
			if err := r.startDaemon(ctx, l.net); err != nil {
				return err
			}
			relayDown = false
			l.note("kill-relay: %s started again", r.name)
			return nil
		}})
	}
	slices.SortFunc(faults, func(a, b fault) int { return int(a.at - b.at) })

	start := time.Now()
	var sends sync.WaitGroup
	sem := make(chan struct{}, 8)
	fi := 0
	for _, s := range steps {
		for fi < len(faults) && faults[fi].at <= s.at {
			sends.Wait()
			if err := sleepUntil(ctx, start.Add(faults[fi].at)); err != nil {
				return nil, err
			}
			if err := faults[fi].do(); err != nil {
				return nil, err
			}
			fi++
		}
		if err := sleepUntil(ctx, start.Add(s.at)); err != nil {
			return nil, err
		}
		a, b := l.nodes[2*s.k], l.nodes[2*s.k+1]
		from, to := a, b
		if !s.fwd {
			from, to = b, a
		}
		if _, off := down.Load(from); off {
			from, to = to, from // an offline node sends nothing: its contact does
		}
		text := labText(s.k, s.i, from, to)
		sem <- struct{}{}
		sends.Go(func() {
			defer func() { <-sem }()
			l.sendText(ctx, s.k, from, to, text)
		})
	}
	sends.Wait()
	for ; fi < len(faults); fi++ {
		if err := sleepUntil(ctx, start.Add(faults[fi].at)); err != nil {
			return nil, err
		}
		if err := faults[fi].do(); err != nil {
			return nil, err
		}
	}
	if err := sleepUntil(ctx, start.Add(o.Duration)); err != nil {
		return nil, err
	}
	return func() error {
		// Whatever is still down comes back.
		var back []*labMember
		down.Range(func(k, _ any) bool { back = append(back, k.(*labMember)); return true })
		if relayDown {
			back = append(back, l.relays[0])
		}
		return forEach(back, procParallel, func(m *labMember) error { return m.startDaemon(ctx, l.net) })
	}, nil
}

func names(ms []*labMember) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.name)
	}
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

// shown reads every node's history and counts, per message of the ledger,
// how often its recipient shows it.
func (l *lab) shown(ctx context.Context) (map[string]int, error) {
	counts := map[string]int{}
	var mu sync.Mutex
	err := forEach(l.nodes, procParallel, func(m *labMember) error {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := m.client().AllInbox(rctx, 0, func(msg messaging.Message) error {
			if !strings.HasSuffix(msg.Text, " to "+m.name) || msg.Outgoing {
				return nil
			}
			mu.Lock()
			counts[msg.Text]++
			mu.Unlock()
			return nil
		})
		if err != nil {
			return fmt.Errorf("testnet: %s: inbox: %w", m.name, err)
		}
		return nil
	})
	return counts, err
}

// drain waits, at most Options.Drain, until every sent message is shown.
func (l *lab) drain(ctx context.Context) {
	deadline := time.Now().Add(l.o.Drain)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		counts, err := l.shown(ctx)
		if err == nil {
			l.mu.Lock()
			missing, shown := 0, 0
			for text, msg := range l.ledger {
				if msg.sent && counts[text] == 0 {
					missing++
				} else if msg.sent {
					shown++
				}
			}
			l.mu.Unlock()
			l.shownN.Store(int32(shown))
			if missing == 0 {
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// check fills the report from the nodes' histories.
func (l *lab) check(ctx context.Context, rep *LabReport, pairs []LabPair) error {
	counts, err := l.shown(ctx)
	if err != nil {
		return err
	}
	l.mu.Lock()
	for text, msg := range l.ledger {
		p := &pairs[msg.pair]
		if !msg.sent {
			continue
		}
		p.Sent++
		rep.Sent++
		switch n := counts[text]; {
		case n == 0:
			p.Lost++
			rep.Lost++
			l.events = append(l.events, "lost: "+text)
		case n > 1:
			p.Duplicated++
			rep.Duplicated++
			p.Delivered++
			rep.Delivered++
		default:
			p.Delivered++
			rep.Delivered++
		}
	}
	rep.SendErrors = l.sendErr
	l.mu.Unlock()
	var first, upgrade []time.Duration
	for _, p := range pairs {
		switch p.First {
		case PathDirect:
			rep.Direct++
		case PathHolePunched:
			rep.HolePunched++
		case PathRelayed:
			rep.Relayed++
		case PathMailbox:
			rep.ViaMailbox++
		default:
			rep.NotArrived++
		}
		if p.First != PathNone {
			first = append(first, time.Duration(p.FirstMs*float64(time.Millisecond)))
		}
		if p.Direct {
			rep.Upgraded++
			upgrade = append(upgrade, time.Duration(p.DirectMs*float64(time.Millisecond)))
		}
	}
	rep.FirstMessageMs = percentiles(first)
	rep.UpgradeMs = percentiles(upgrade)
	rep.List = pairs
	return nil
}
