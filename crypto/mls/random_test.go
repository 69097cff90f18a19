package mls

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
)

// TestRandomizedGroup drives a group through random adds, removes,
// updates (commits and committed proposals) and messages, delivered out
// of order within an epoch and up to two epochs late. After every commit
// all members agree on the epoch authenticator. Every removed member, and
// a snapshot of every member taken before each of its updates, is shown
// every later message and commit: none may succeed.
//
// MLS_RANDOM_STEPS and MLS_RANDOM_SEEDS make a longer run than the default
// (160 steps, one seed per suite).
func TestRandomizedGroup(t *testing.T) {
	steps, seeds := 160, 1
	if testing.Short() {
		steps = 40
	}
	if v, err := strconv.Atoi(os.Getenv("MLS_RANDOM_STEPS")); err == nil && v > 0 {
		steps = v
	}
	if v, err := strconv.Atoi(os.Getenv("MLS_RANDOM_SEEDS")); err == nil && v > 0 {
		seeds = v
	}
	for _, cs := range []CipherSuite{MLS128DHKEMX25519AES128GCMSHA256Ed25519, DefaultSuite} {
		for seed := range seeds {
			t.Run(fmt.Sprintf("%v/seed=%d", cs, seed), func(t *testing.T) {
				runRandomGroup(t, cs, uint64(7+seed), steps)
			})
		}
	}
}

// inflight is an undelivered application message and its epoch.
type inflight struct {
	msg   []byte
	epoch uint64
}

// outsider is a state that must not read anything sent after a point.
type outsider struct {
	what string
	g    *Group
}

type randomRun struct {
	t         *testing.T
	r         *rand.Rand
	cs        CipherSuite
	members   []*client
	outsiders []outsider
	inflight  []inflight // application messages not yet delivered
	joined    map[*client]uint64
	nextID    int
	commits   int
}

func runRandomGroup(t *testing.T, cs CipherSuite, seed uint64, steps int) {
	rr := &randomRun{t: t, r: rand.New(rand.NewPCG(seed, 1)), cs: cs}
	rr.members = newGroupOf(t, cs, testConfig, "m0", "m1", "m2")
	rr.joined = map[*client]uint64{}
	rr.nextID = 3
	for step := range steps {
		switch op := rr.r.IntN(10); {
		case op < 4:
			rr.message()
		case op < 5 && len(rr.members) < 12:
			rr.add()
		case op < 6 && len(rr.members) > 2:
			rr.remove()
		case op < 7:
			rr.selfUpdate()
		case op < 8 && len(rr.members) > 1:
			rr.proposedUpdate()
		case op < 9:
			rr.deliver()
		default:
			rr.members[rr.r.IntN(len(rr.members))].roundTrip(t)
		}
		if t.Failed() {
			t.Fatalf("failed at step %d", step)
		}
	}
	if rr.commits < steps/10 {
		t.Fatalf("only %d commits in %d steps", rr.commits, steps)
	}
	t.Logf("%d steps, %d commits, %d members at the end, %d outsiders checked", steps, rr.commits, len(rr.members), len(rr.outsiders))
}

func (rr *randomRun) admin() *client { return rr.members[0] }

func (rr *randomRun) message() {
	from := rr.members[rr.r.IntN(len(rr.members))]
	text := fmt.Sprintf("from %s in epoch %d", from.name, from.g.Epoch())
	m, err := from.g.Encrypt([]byte(text), nil, from.rand)
	if err != nil {
		rr.t.Fatal(err)
	}
	rr.inflight = append(rr.inflight, inflight{msg: m, epoch: from.g.Epoch()})
	rr.shownToOutsiders(m)
}

// deliver hands the in-flight messages older than epoch (all if epoch is
// the current one + 1) to every member that was in the group then, in a
// random order.
func (rr *randomRun) deliver() { rr.deliverBefore(rr.admin().g.Epoch() + 1) }

func (rr *randomRun) deliverBefore(epoch uint64) {
	rr.r.Shuffle(len(rr.inflight), func(i, j int) { rr.inflight[i], rr.inflight[j] = rr.inflight[j], rr.inflight[i] })
	var keep []inflight
	for _, f := range rr.inflight {
		if f.epoch >= epoch {
			keep = append(keep, f)
			continue
		}
		for _, c := range rr.members {
			if rr.joined[c] > f.epoch {
				continue
			}
			r, err := c.g.Process(f.msg, t0)
			if err == ErrOwnMessage {
				continue
			}
			if err != nil {
				rr.t.Fatalf("%s: message: %v", c.name, err)
			}
			if !bytes.HasPrefix(r.Data, append([]byte("from "), r.Sender.Credential.Identity...)) {
				rr.t.Fatalf("%s got %q from %s", c.name, r.Data, r.Sender.Credential.Identity)
			}
		}
	}
	rr.inflight = keep
}

// commit delivers a commit to every member, the committer last (as a
// delivery service echo), checks agreement, and leaves some in-flight
// messages to arrive late.
func (rr *randomRun) commit(by *client, msg []byte, others []*client) *Received {
	rr.shownToOutsiders(msg)
	// Messages may arrive up to two epochs late (Config.PastEpochs).
	rr.deliverBefore(by.g.Epoch() - min(by.g.Epoch(), 1))
	if rr.r.IntN(2) == 0 {
		rr.deliver()
	}
	for _, c := range others {
		if _, err := c.g.Process(msg, t0); err != nil {
			rr.t.Fatalf("%s processes %s's commit: %v", c.name, by.name, err)
		}
	}
	r, err := by.g.Process(msg, t0)
	if err != nil || !r.Commit.Own {
		rr.t.Fatalf("%s merges its commit: %v", by.name, err)
	}
	rr.commits++
	agree(rr.t, rr.members...)
	return r
}

func (rr *randomRun) others(c *client) []*client {
	return slices.DeleteFunc(slices.Clone(rr.members), func(o *client) bool { return o == c })
}

func (rr *randomRun) add() {
	n := newClient(rr.t, rr.cs, fmt.Sprintf("m%d", rr.nextID), uint64(1000+rr.nextID))
	rr.nextID++
	kp := n.keyPackage(rr.t)
	a := rr.admin()
	msg, err := a.g.Commit(CommitOptions{Add: []*KeyPackage{kp.KeyPackage()}}, t0, a.rand)
	if err != nil {
		rr.t.Fatal(err)
	}
	r := rr.commit(a, msg, rr.others(a))
	if n.g, err = Join(testConfig, r.Commit.Welcome, []*KeyPackagePrivate{kp}, JoinOptions{}); err != nil {
		rr.t.Fatal(err)
	}
	rr.members = append(rr.members, n)
	rr.joined[n] = n.g.Epoch()
	agree(rr.t, rr.members...)
}

func (rr *randomRun) remove() {
	i := 1 + rr.r.IntN(len(rr.members)-1)
	gone := rr.members[i]
	a := rr.admin()
	msg, err := a.g.Commit(CommitOptions{Remove: []uint32{gone.g.LeafIndex()}}, t0, a.rand)
	if err != nil {
		rr.t.Fatal(err)
	}
	rr.members = slices.Delete(rr.members, i, i+1)
	r, err := gone.g.Process(msg, t0)
	if err != nil || !r.Commit.SelfRemoved {
		rr.t.Fatalf("%s processes its removal: %v", gone.name, err)
	}
	rr.commit(a, msg, rr.others(a))
	rr.outsiders = append(rr.outsiders, outsider{what: gone.name + " after its removal", g: gone.g})
}

// snapshot keeps a copy of c's state before an update.
func (rr *randomRun) snapshot(c *client) outsider {
	g, err := UnmarshalGroup(testConfig, stateOf(rr.t, c.g))
	if err != nil {
		rr.t.Fatal(err)
	}
	return outsider{what: fmt.Sprintf("%s before its update in epoch %d", c.name, c.g.Epoch()), g: g}
}

func (rr *randomRun) selfUpdate() {
	c := rr.members[rr.r.IntN(len(rr.members))]
	old := rr.snapshot(c)
	msg, err := c.g.Commit(CommitOptions{}, t0, c.rand)
	if err != nil {
		rr.t.Fatal(err)
	}
	rr.commit(c, msg, rr.others(c))
	rr.outsiders = append(rr.outsiders, old)
}

func (rr *randomRun) proposedUpdate() {
	a := rr.admin()
	c := rr.members[1+rr.r.IntN(len(rr.members)-1)]
	old := rr.snapshot(c)
	prop, _, err := c.g.ProposeUpdate(c.rand)
	if err != nil {
		rr.t.Fatal(err)
	}
	for _, o := range rr.others(c) {
		if _, err := o.g.Process(prop, t0); err != nil {
			rr.t.Fatalf("%s: proposal: %v", o.name, err)
		}
	}
	msg, err := a.g.Commit(CommitOptions{NoPath: false}, t0, a.rand)
	if err != nil {
		rr.t.Fatal(err)
	}
	r := rr.commit(a, msg, rr.others(a))
	if len(r.Commit.Updated) != 1 {
		rr.t.Fatalf("update of %s not committed", c.name)
	}
	// The snapshot holds the leaf key the update replaced: the commit's
	// path secrets are not encrypted to it.
	if _, err := old.g.Process(msg, t0); err == nil {
		rr.t.Fatalf("%s processed the commit of its update", old.what)
	}
	rr.outsiders = append(rr.outsiders, old)
}

// shownToOutsiders checks that no outsider can process msg.
func (rr *randomRun) shownToOutsiders(msg []byte) {
	for _, o := range rr.outsiders {
		if r, err := o.g.Process(msg, t0); err == nil {
			rr.t.Fatalf("%s processed a later message (kind %d)", o.what, r.Kind)
		}
	}
}
