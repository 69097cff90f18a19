package testnet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/groups"
)

// Groups in a run (Options.Groups): each group has an admin and a second
// admin, both online, and members drawn from the nodes (offline ones
// too, who catch up from the group's home relay when they are back). The
// admin adds the members it needs as contacts during the wiring. The group
// messages go out during the send phase, spread over Options.Duration,
// while the faults run; AdminRace makes the two admins of every group
// commit at once, twice.

// AdminRace makes the two admins of each group commit in the same epoch
// (an update each) at two fifths and four fifths of the send phase: one
// commit wins, the other is refused and made again.
const AdminRace = "admin-race"

// Limits of the group options.
const (
	MaxGroups        = 256
	MaxGroupMessages = 100_000
	adminRaceAt      = 0.4
	adminRaceAgain   = 0.8
	// groupJoinBase and groupJoinPerMember bound the wait for every
	// member to join a group (groupJoinTimeout).
	groupJoinBase      = 2 * time.Minute
	groupJoinPerMember = 2 * time.Second
	// groupParallel groups are set up at once.
	groupParallel = 8
)

// Group engine options of every node: retries sooner than a user's node.
var testGroups = groups.Options{
	RetryMin: 100 * time.Millisecond,
	RetryMax: 2 * time.Second,
}

// groupJoinTimeout bounds the wait for every member of a group of size
// members to join it: each joins on its own after the admin's commits, so
// the wait grows with the group (100 members took more than two minutes
// on a loaded machine).
func groupJoinTimeout(members int) time.Duration {
	return groupJoinBase + time.Duration(members)*groupJoinPerMember
}

// groupPlan is one group of the scenario.
type groupPlan struct {
	admin, second int
	members       []int // the admin first
}

type gplanned struct{ group, from int }

// planGroups draws the groups and their messages from the seed (a source
// of their own, so the rest of the scenario is the same with and without
// groups). Members that are no contact of the admin become one.
func planGroups(o Options, p *plan) {
	if o.Groups == 0 {
		return
	}
	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0x6709b5))
	var online []int
	for i, off := range p.offline {
		if !off && !slices.Contains(p.restart, i) {
			online = append(online, i)
		}
	}
	linked := map[[2]int]bool{}
	for _, e := range p.edges {
		linked[[2]int{min(e[0], e[1]), max(e[0], e[1])}] = true
	}
	size := min(o.GroupSize, o.Nodes)
	for range o.Groups {
		perm := rng.Perm(len(online))
		g := groupPlan{admin: online[perm[0]], second: -1}
		if len(perm) > 1 {
			g.second = online[perm[1]]
		}
		g.members = []int{g.admin}
		if g.second >= 0 {
			g.members = append(g.members, g.second)
		}
		for _, i := range rng.Perm(o.Nodes) {
			if len(g.members) >= size {
				break
			}
			if !slices.Contains(g.members, i) {
				g.members = append(g.members, i)
			}
		}
		for _, m := range g.members[1:] {
			k := [2]int{min(g.admin, m), max(g.admin, m)}
			if !linked[k] {
				linked[k] = true
				p.edges = append(p.edges, [2]int{g.admin, m})
			}
		}
		p.groups = append(p.groups, g)
	}
	for i := range o.GroupMessages {
		gi := i % len(p.groups)
		var senders []int
		for _, m := range p.groups[gi].members {
			if !p.offline[m] {
				senders = append(senders, m)
			}
		}
		p.gmsgs = append(p.gmsgs, gplanned{gi, senders[rng.IntN(len(senders))]})
	}
}

// groupRecord is what the harness knows of one group message.
type groupRecord struct {
	sent  bool
	id    string
	start time.Time
	// to are the members it was sent to (the group's, but the sender).
	to []int
}

// groupRun is the groups of a run as they go.
type groupRun struct {
	ids  []string // group IDs, by plan index
	mu   sync.Mutex
	recs []groupRecord
	errs atomic.Int64
	// skipped counts messages not sent because their sender was
	// restarting.
	skipped atomic.Int64
	// ready counts the groups set up; sent the messages sent.
	ready, sent atomic.Int64
}

func newGroupRun(p *plan) *groupRun {
	if len(p.groups) == 0 {
		return nil
	}
	return &groupRun{ids: make([]string, len(p.groups)), recs: make([]groupRecord, len(p.gmsgs))}
}

// withGroups adds the groups' counts to a progress sample.
func (s Progress) withGroups(gr *groupRun) Progress {
	if gr != nil {
		s.GroupsReady, s.GroupSent = int(gr.ready.Load()), int(gr.sent.Load())
	}
	return s
}

// setupGroups creates the groups, adds their members and promotes the
// second admins, and waits until every member has joined.
func (nw *cluster) setupGroups(ctx context.Context) error {
	p, gr := nw.plan, nw.groups
	idx := make([]int, len(p.groups))
	for i := range idx {
		idx[i] = i
	}
	return forEach(idx, groupParallel, func(gi int) error {
		g := p.groups[gi]
		admin := nw.nodes[g.admin]
		ctx, cancel := context.WithTimeout(ctx, groupJoinTimeout(len(g.members)))
		defer cancel()
		home := nw.relays[p.nodeRelays[g.admin][0]]
		info, err := admin.node().Groups().Create(ctx, fmt.Sprintf("group-%d", gi), []string{home.relayAddr()})
		if err != nil {
			return fmt.Errorf("testnet: group-%d: create: %w", gi, err)
		}
		gr.ids[gi] = info.ID
		var uids []string
		for _, m := range g.members[1:] {
			uids = append(uids, nw.nodes[m].uid)
		}
		if len(uids) > 0 {
			if _, err := admin.node().Groups().Add(ctx, info.ID, uids); err != nil {
				return fmt.Errorf("testnet: group-%d: add: %w", gi, err)
			}
		}
		for _, m := range g.members {
			if err := waitGroup(ctx, nw.nodes[m], info.ID, func(x groups.Group) bool {
				return x.State == "active" && len(x.Members) == len(g.members)
			}); err != nil {
				return fmt.Errorf("testnet: group-%d: %s did not join: %w", gi, nw.nodes[m].name, err)
			}
		}
		if g.second >= 0 {
			if _, err := admin.node().Groups().Promote(ctx, info.ID, []string{nw.nodes[g.second].uid}); err != nil {
				return fmt.Errorf("testnet: group-%d: promote: %w", gi, err)
			}
			if err := waitGroup(ctx, nw.nodes[g.second], info.ID, func(x groups.Group) bool { return x.Admin }); err != nil {
				return fmt.Errorf("testnet: group-%d: promotion: %w", gi, err)
			}
		}
		gr.ready.Add(1)
		return nil
	})
}

// waitGroup waits, as long as ctx lets it, until m's view of group id
// satisfies ok.
func waitGroup(ctx context.Context, m *member, id string, ok func(groups.Group) bool) error {
	for {
		if n := m.node(); n != nil {
			if g, err := n.Groups().Show(ctx, id); err == nil && ok(g) {
				return nil
			}
		}
		if err := sleepUntil(ctx, time.Now().Add(50*time.Millisecond)); err != nil {
			return err
		}
	}
}

// sendGroups sends the group messages spread over the send phase, and
// races the admins (AdminRace); it returns when all were sent.
func (nw *cluster) sendGroups(ctx context.Context) {
	p, gr := nw.plan, nw.groups
	if gr == nil {
		return
	}
	start := time.Now()
	races := []float64{}
	if slices.Contains(nw.o.Chaos, AdminRace) {
		races = []float64{adminRaceAt, adminRaceAgain}
	}
	sem := make(chan struct{}, sendParallel)
	var wg sync.WaitGroup
	m := len(p.gmsgs)
	for i, pm := range p.gmsgs {
		at := float64(i) / float64(max(m, 1))
		for len(races) > 0 && races[0] <= at {
			nw.raceAdmins(ctx)
			races = races[1:]
		}
		due := start.Add(time.Duration(int64(nw.o.Duration) * int64(i) / int64(max(m, 1))))
		if sleepUntil(ctx, due) != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			nw.sendGroupOne(ctx, i, pm)
		})
	}
	for range races {
		nw.raceAdmins(ctx)
	}
	wg.Wait()
}

func (nw *cluster) sendGroupOne(ctx context.Context, i int, pm gplanned) {
	gr := nw.groups
	g := nw.plan.groups[pm.group]
	from := nw.nodes[pm.from]
	n := from.node()
	if n == nil {
		gr.skipped.Add(1) // restarting (RestartNodes)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	start := time.Now()
	r, err := n.Groups().Send(ctx, gr.ids[pm.group], groupText(i, pm.group, from.name))
	if err != nil {
		if !from.isUp() || errors.Is(err, groups.ErrClosed) {
			gr.skipped.Add(1)
			return
		}
		nw.log.Error("group send", "from", from.name, "group", pm.group, "err", err)
		gr.errs.Add(1)
		return
	}
	var to []int
	for _, x := range g.members {
		if x != pm.from {
			to = append(to, x)
		}
	}
	gr.mu.Lock()
	gr.recs[i] = groupRecord{sent: true, id: r.ID, start: start, to: to}
	gr.mu.Unlock()
	gr.sent.Add(1)
}

func groupText(i, group int, from string) string {
	return fmt.Sprintf("group message %d to group-%d from %s", i, group, from)
}

// raceAdmins makes both admins of every group commit an update at once.
func (nw *cluster) raceAdmins(ctx context.Context) {
	var wg sync.WaitGroup
	for gi, g := range nw.plan.groups {
		if g.second < 0 {
			continue
		}
		for _, a := range []int{g.admin, g.second} {
			n := nw.nodes[a].node()
			if n == nil {
				continue
			}
			wg.Go(func() {
				if _, err := n.Groups().Update(ctx, nw.groups.ids[gi]); err != nil {
					nw.log.Warn("admin race", "group", gi, "err", err)
				}
			})
		}
	}
	wg.Wait()
	nw.note("admin race: both admins of %d groups committed at once", len(nw.plan.groups))
}

// groupsDelivered reports whether every member of every group holds every
// group message sent to it.
func (nw *cluster) groupsDelivered(ctx context.Context) bool {
	if nw.groups == nil {
		return true
	}
	rep := &GroupReport{}
	nw.checkGroups(ctx, rep)
	return rep.Lost == 0 && rep.Unreadable == 0 && rep.DeliveredState == rep.Sent
}

// GroupReport is the groups' part of a Report.
type GroupReport struct {
	Groups  int `json:"groups"`
	Members int `json:"members"`
	// Sent counts group messages Send accepted; Expected the deliveries
	// they call for (one per member but the sender); Delivered those a
	// member's store shows; Lost those it does not; Duplicated messages a
	// member shows more than once; DeliveredState those whose sender
	// shows every member's receipt.
	Sent           int `json:"sent"`
	SendErrors     int `json:"send_errors"`
	Skipped        int `json:"skipped"`
	Expected       int `json:"expected"`
	Delivered      int `json:"delivered"`
	Lost           int `json:"lost"`
	Duplicated     int `json:"duplicated"`
	DeliveredState int `json:"delivered_state"`
	// DeliveredPerMember is each member's count of group messages it
	// holds, by node name.
	DeliveredPerMember map[string]int `json:"delivered_per_member"`
	// CommitsAccepted and CommitsRefused count the admins' commits: a
	// refused one (another won its epoch) is made again.
	CommitsAccepted int `json:"commits_accepted"`
	CommitsRefused  int `json:"commits_refused"`
	// Forks counts groups in which two members of one epoch hold different
	// group states (epoch authenticators); Behind the members not at their
	// group's newest epoch at the check.
	Forks  int `json:"forks"`
	Behind int `json:"behind"`
	// Dropped counts the group messages the members dropped, by reason
	// (sealpost_groups_dropped_total; nodes restarted count from their
	// restart).
	Dropped map[string]int `json:"dropped"`
	// Unreadable counts members whose group could not be read at the check.
	Unreadable int `json:"unreadable"`
	// Latency from Send to a member's commit, milliseconds.
	Latency Percentiles `json:"latency_ms"`
	// LostMessages lists the first deliveries lost.
	LostMessages []string `json:"lost_messages,omitempty"`
}

// checkGroups counts what the members of the groups hold.
func (nw *cluster) checkGroups(ctx context.Context, rep *GroupReport) {
	p, gr := nw.plan, nw.groups
	gr.mu.Lock()
	recs := slices.Clone(gr.recs)
	gr.mu.Unlock()
	rep.Groups = len(p.groups)
	rep.SendErrors = int(gr.errs.Load())
	rep.Skipped = int(gr.skipped.Load())
	rep.DeliveredPerMember = map[string]int{}
	byID := map[string]int{}
	for i, r := range recs {
		if r.sent {
			rep.Sent++
			rep.Expected += len(r.to)
			byID[r.id] = i
		}
	}
	type view struct {
		epoch uint64
		auth  string
	}
	var lat []time.Duration
	held := make([]map[int]int, len(recs)) // per message: member -> copies
	for i := range held {
		held[i] = map[int]int{}
	}
	for gi, g := range p.groups {
		rep.Members += len(g.members)
		var views []view
		for _, mi := range g.members {
			m := nw.nodes[mi]
			n := m.node()
			if n == nil {
				rep.Unreadable++
				continue
			}
			gs, err := n.Groups().Show(ctx, gr.ids[gi])
			if err != nil {
				rep.Unreadable++
				continue
			}
			views = append(views, view{gs.Epoch, gs.Authenticator})
			ms, err := n.Groups().Messages(ctx, gr.ids[gi], 0)
			if err != nil {
				rep.Unreadable++
				continue
			}
			texts := map[string]int{}
			for _, msg := range ms {
				texts[msg.Text]++
				i, ok := byID[msg.ID]
				if !ok {
					continue
				}
				if msg.Outgoing {
					if msg.State == groups.StateDelivered {
						rep.DeliveredState++
					}
					continue
				}
				if held[i][mi] == 0 {
					rep.DeliveredPerMember[m.name]++
					lat = append(lat, max(0, msg.ReceivedAt.Add(-m.skew).Sub(recs[i].start)))
				}
				held[i][mi]++
			}
			for text, c := range texts {
				if c > 1 && strings.HasPrefix(text, "group message ") {
					rep.Duplicated += c - 1
				}
			}
		}
		newest := uint64(0)
		for _, v := range views {
			newest = max(newest, v.epoch)
		}
		auth := map[uint64]string{}
		forked := false
		for _, v := range views {
			if v.epoch < newest {
				rep.Behind++
			}
			if a, ok := auth[v.epoch]; ok && a != v.auth {
				forked = true
			}
			auth[v.epoch] = v.auth
		}
		if forked {
			rep.Forks++
		}
	}
	for i, r := range recs {
		if !r.sent {
			continue
		}
		for _, mi := range r.to {
			if held[i][mi] > 0 {
				rep.Delivered++
				continue
			}
			rep.Lost++
			if len(rep.LostMessages) < maxListed {
				rep.LostMessages = append(rep.LostMessages, nw.describeGroup(ctx, i, mi))
			}
		}
	}
	rep.Dropped = map[string]int{}
	for _, m := range nw.nodes {
		if n := m.node(); n != nil {
			c := counterBy(n, "sealpost_groups_commits_total", "outcome")
			rep.CommitsAccepted += c["accepted"]
			rep.CommitsRefused += c["refused"]
			for k, v := range counterBy(n, "sealpost_groups_dropped_total", "reason") {
				rep.Dropped[k] += v
			}
		}
	}
	rep.Latency = percentiles(lat)
}

// counterBy reads a node's counter vector name, summed by the values of
// its label.
func counterBy(n *node.Node, name, label string) map[string]int {
	out := map[string]int{}
	mfs, err := n.Registry().Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					out[l.GetValue()] += int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return out
}

// describeGroup says what the sender and the member know of group message
// i that member mi lacks.
func (nw *cluster) describeGroup(ctx context.Context, i, mi int) string {
	pm := nw.plan.gmsgs[i]
	gid := nw.groups.ids[pm.group]
	from, to := nw.nodes[pm.from], nw.nodes[mi]
	out := fmt.Sprintf("%d group-%d %s -> %s", i, pm.group, from.name, to.name)
	if n := from.node(); n != nil {
		if ms, err := n.Groups().Messages(ctx, gid, 0); err == nil {
			for _, m := range ms {
				if m.ID == nw.groups.recs[i].id {
					out += fmt.Sprintf("; sender: %s", m.State)
				}
			}
		}
		if g, err := n.Groups().Show(ctx, gid); err == nil {
			out += fmt.Sprintf(", epoch %d", g.Epoch)
		}
	}
	if n := to.node(); n != nil {
		if g, err := n.Groups().Show(ctx, gid); err == nil {
			out += fmt.Sprintf("; member: %s, epoch %d %s", g.State, g.Epoch, g.Error)
		}
	}
	return out
}
