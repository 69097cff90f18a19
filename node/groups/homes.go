package groups

import (
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/node/grouplog"
	"github.com/sealpost/sealpost/protocol"
)

// HomeFailsShown is how many failed rounds of appends in a row to one home
// relay make a member show it (Group.Relays[].Error, the group.relay
// event, sealpost_groups_homes_failing): with the backoff of Options
// (500 ms doubling to 1 min, with jitter) one to two minutes of a relay
// that answers appends with an error (internal: its store fails), or
// does not answer.
const HomeFailsShown = 8

// homeFail is what a group knows of the failures of its appends to one
// home. A failed append backs the whole home off, not only the entry: no
// append to it starts before at (the backoff of Options, doubling with
// each failed round), and while it fails one append at a time goes, so
// that a broken relay is not sent every entry of the queue every round.
// The appends failed at once (those in flight together) count as one
// round. The first append it takes ends it all.
type homeFail struct {
	fails int       // failed rounds in a row
	at    time.Time // no append starts before
	since time.Time // the first failure of the run
	shown string    // the error shown once fails reached HomeFailsShown
}

// homeFail returns home i's record.
func (g *group) homeFail(i int) *homeFail {
	for len(g.homeFails) <= i {
		g.homeFails = append(g.homeFails, &homeFail{})
	}
	return g.homeFails[i]
}

// failCode names an append's failure in metrics: the relay's wire code, or
// unreachable (no stream, a reset, no answer).
func failCode(err error) string {
	switch c := protocol.CodeOf(err); {
	case c != protocol.CodeInternal || errors.Is(err, protocol.ErrInternal):
		return c.String()
	case errors.Is(err, grouplog.ErrBadRelay):
		return "bad_relay"
	}
	return "unreachable"
}

// homeFailed counts an append to home i that failed with err (not an
// answer of a home that works: see appended).
func (g *group) homeFailed(i int, err error) {
	h := g.homeFail(i)
	now := g.s.clock.Now()
	code := failCode(err)
	g.s.met.appendFails.WithLabelValues(code).Inc()
	if h.at.After(now) {
		return // in flight with the failure that began the backoff
	}
	h.fails++
	if h.fails == 1 {
		h.since = now
	}
	h.at = now.Add(g.backoff(h.fails))
	g.schedule(&g.retryAt, h.at.Sub(now))
	if h.fails < HomeFailsShown || h.shown != "" {
		g.s.log.Debug("group: append failed", "group", g.id.String(), "home", i, "fails", h.fails, "code", code, "err", err)
		return
	}
	h.shown = fmt.Sprintf("appends failing since %s (%d tries): %v", h.since.UTC().Format(time.RFC3339), h.fails, err)
	g.s.met.homesFailing.Inc()
	relay := relayName(g.rec.Homes[i].Relay)
	g.s.log.Warn("group: a home relay keeps failing appends", "group", g.id.String(), "relay", relay, "home", i, "fails", h.fails, "since", h.since, "code", code, "err", err)
	g.s.publish(EventRelay, RelayEvent{Group: g.rec.Name, GroupID: g.id.String(), Relay: relay, Error: h.shown})
}

// homeOK ends home i's failures: it took an append (or answered one as a
// home that works). Entries that wait out their own backoff for it go at
// once.
func (g *group) homeOK(i int) {
	h := g.homeFail(i)
	if h.fails == 0 {
		return
	}
	if h.shown != "" {
		g.s.met.homesFailing.Dec()
		relay := relayName(g.rec.Homes[i].Relay)
		g.s.log.Info("group: a home relay takes appends again", "group", g.id.String(), "relay", relay, "home", i, "since", h.since)
		g.s.publish(EventRelay, RelayEvent{Group: g.rec.Name, GroupID: g.id.String(), Relay: relay})
	}
	*h = homeFail{}
	for _, it := range g.out {
		if i < len(it.tries) {
			it.tries[i] = time.Time{}
		}
	}
	g.poke()
}

// homesOK forgets the failures of every home (the group's goroutine ends),
// so that the gauge counts only running groups.
func (g *group) homesOK() {
	for _, h := range g.homeFails {
		if h.shown != "" {
			g.s.met.homesFailing.Dec()
		}
		*h = homeFail{}
	}
}
