package testnet

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Fault names for Options.Chaos.
const (
	// KillRelay drops one relay without closing it a third of the way
	// into the send phase and starts it again from its store two thirds of
	// the way in.
	KillRelay = "kill-relay"
	// RestartNodes restarts some nodes halfway through the send phase,
	// chosen among those that just sent to an offline contact, so they go
	// down with messages queued.
	RestartNodes = "restart-nodes"
	// Partition cuts the network in two halves (nodes and relays) a fifth
	// of the way into the send phase and heals it at three fifths: no
	// connection crosses the cut meanwhile.
	Partition = "partition"
	// Drop resets message streams at random during the send phase (message
	// loss on links): each read or write resets its stream with
	// probability dropRate.
	Drop = "drop"
	// ClockSkew runs some nodes with clocks minSkew to maxSkew off, either
	// way, for the whole run.
	ClockSkew = "clock-skew"
)

// Faults lists the fault names in the order a run applies them.
var Faults = []string{KillRelay, RestartNodes, Partition, Drop, ClockSkew, AdminRace}

// ParseChaos splits comma-separated fault names (as --chaos takes them,
// possibly repeated) into a sorted list without repeats, or returns an
// error naming the unknown one.
func ParseChaos(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		for _, f := range strings.Split(a, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			if !slices.Contains(Faults, f) {
				return nil, fmt.Errorf("%w: unknown fault %q (want %s)", ErrBadOptions, f, strings.Join(Faults, ", "))
			}
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// Fractions of the send phase at which faults start and end.
const (
	partitionAt   = 0.2
	partitionHeal = 0.6
	killAt        = 1.0 / 3
	reviveAt      = 2.0 / 3
	restartAt     = 0.5
)

// Sizes of the faults.
const (
	// restartFraction of the online nodes restart (at least one).
	restartFraction = 0.1
	// skewFraction of the nodes run a skewed clock (at least one), off by
	// between minSkew and maxSkew, either way.
	skewFraction = 0.2
	// The skews stay within the 5 minutes of clock tolerance that records
	// with times allow (prekey.ClockTolerance, addrrecord.ClockTolerance):
	// a node more than that ahead makes prekeys that others refuse as
	// created in the future.
	minSkew = 2 * time.Minute
	maxSkew = 4*time.Minute + 30*time.Second
)

// plan is a scenario: everything a run does that the seed decides.
type plan struct {
	// edges are the contact pairs: node [0] adds the invite of node [1].
	edges    [][2]int
	contacts [][]int // per node, sorted
	offline  []bool  // per node
	skew     []time.Duration
	// side is each node's half of a partition; relaySide each relay's.
	side, relaySide []int
	// relays each node receives through (indices into the relays).
	nodeRelays [][]int
	msgs       []planned
	// killRelay is the relay KillRelay drops (-1: none).
	killRelay int
	// restart are the nodes RestartNodes restarts.
	restart []int
	// steps are the faults in the order of the send phase.
	steps []step
	// groups and their messages (groups.go).
	groups []groupPlan
	gmsgs  []gplanned
}

// planned is one message of the scenario.
type planned struct{ from, to int }

// step is a fault action before message number at.
type step struct {
	at   int
	what string
}

// Fault actions of steps.
const (
	stepPartition = "partition"
	stepHeal      = "heal partition"
	stepKill      = "kill relay"
	stepRevive    = "restart relay"
	stepRestart   = "restart nodes"
)

// newPlan draws the scenario of o (defaults filled) from its seed.
func newPlan(o Options) *plan {
	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0x5ea1905f))
	n := o.Nodes
	p := &plan{
		contacts:   make([][]int, n),
		offline:    make([]bool, n),
		skew:       make([]time.Duration, n),
		side:       make([]int, n),
		relaySide:  make([]int, o.Relays),
		nodeRelays: make([][]int, n),
		killRelay:  -1,
	}

	// Contacts: each node adds about half of its contacts by invite, so
	// the average node has o.Contacts.
	linked := map[[2]int]bool{}
	per := max(1, o.Contacts/2)
	for a := range n {
		for range per {
			for range 8 { // a few draws; a small network may run out of peers
				b := rng.IntN(n)
				k := [2]int{min(a, b), max(a, b)}
				if b == a || linked[k] {
					continue
				}
				linked[k] = true
				p.edges = append(p.edges, [2]int{a, b})
				p.contacts[a] = append(p.contacts[a], b)
				p.contacts[b] = append(p.contacts[b], a)
				break
			}
		}
	}
	for i := range p.contacts {
		slices.Sort(p.contacts[i])
	}

	// Relays: each node picks up to two.
	for i := range n {
		if o.Relays == 0 {
			break
		}
		r := rng.Perm(o.Relays)
		p.nodeRelays[i] = r[:min(2, o.Relays)]
		slices.Sort(p.nodeRelays[i])
	}

	perm := rng.Perm(n)
	off := int(o.Offline * float64(n))
	for _, i := range perm[:off] {
		p.offline[i] = true
	}
	var online []int
	for i := range n {
		if !p.offline[i] {
			online = append(online, i)
		}
	}

	for i := range n {
		p.side[i] = rng.IntN(2)
	}
	for j := range o.Relays {
		p.relaySide[j] = j % 2
	}
	if slices.Contains(o.Chaos, ClockSkew) {
		k := max(1, int(skewFraction*float64(n)))
		for _, i := range rng.Perm(n)[:k] {
			d := minSkew + time.Duration(rng.Int64N(int64(maxSkew-minSkew)))
			if rng.IntN(2) == 0 {
				d = -d
			}
			p.skew[i] = d.Round(time.Second)
		}
	}
	if slices.Contains(o.Chaos, KillRelay) && o.Relays > 0 {
		p.killRelay = rng.IntN(o.Relays)
	}
	if slices.Contains(o.Chaos, RestartNodes) && len(online) > 1 {
		// Prefer online nodes with an offline contact: they are made to
		// send to it right before the restart.
		cand := slices.Clone(online)
		rng.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
		slices.SortStableFunc(cand, func(a, b int) int {
			return boolInt(!hasOffline(p, a)) - boolInt(!hasOffline(p, b))
		})
		k := max(1, int(restartFraction*float64(len(online))))
		p.restart = slices.Clone(cand[:min(k, len(cand)-1)])
		slices.Sort(p.restart)
	}

	// Messages: a random online sender, a random contact of it.
	m := o.Messages
	var senders []int
	for _, i := range online {
		if len(p.contacts[i]) > 0 {
			senders = append(senders, i)
		}
	}
	restartIdx := int(restartAt * float64(m))
	for i := range m {
		if len(senders) == 0 {
			break
		}
		if j := i - (restartIdx - len(p.restart)); j >= 0 && i < restartIdx && len(p.contacts[p.restart[j]]) > 0 {
			// Right before the restart: each restarting node sends, to an
			// offline contact if it has one.
			a := p.restart[j]
			b := p.contacts[a][rng.IntN(len(p.contacts[a]))]
			for _, c := range p.contacts[a] {
				if p.offline[c] {
					b = c
					break
				}
			}
			p.msgs = append(p.msgs, planned{a, b})
			continue
		}
		a := senders[rng.IntN(len(senders))]
		p.msgs = append(p.msgs, planned{a, p.contacts[a][rng.IntN(len(p.contacts[a]))]})
	}

	at := func(f float64) int { return int(f * float64(m)) }
	if slices.Contains(o.Chaos, Partition) {
		p.steps = append(p.steps, step{at(partitionAt), stepPartition}, step{at(partitionHeal), stepHeal})
	}
	if p.killRelay >= 0 {
		p.steps = append(p.steps, step{at(killAt), stepKill}, step{at(reviveAt), stepRevive})
	}
	if len(p.restart) > 0 {
		p.steps = append(p.steps, step{restartIdx, stepRestart})
	}
	slices.SortStableFunc(p.steps, func(a, b step) int { return a.at - b.at })
	planGroups(o, p)
	return p
}

func hasOffline(p *plan, a int) bool {
	return slices.ContainsFunc(p.contacts[a], func(c int) bool { return p.offline[c] })
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
