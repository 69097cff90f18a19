package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/mls"
	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// offlineMembers makes n KeyPackages of members that never come online:
// each a fresh identity with one device, as a node makes them for an
// inviter.
func offlineMembers(t testing.TB, n int) [][]byte {
	t.Helper()
	out := make([][]byte, 0, n)
	for range n {
		b, err := offlineMember(t).KeyPackage().MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// offlineMember makes the KeyPackage of a fresh identity with one device.
func offlineMember(t testing.TB) *mls.KeyPackagePrivate {
	t.Helper()
	now := time.Now()
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, dev, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := crypto.UnmarshalEd25519PrivateKey(dev)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := peer.IDFromPrivateKey(lk)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := identity.NewDeviceRecord(id, dev, []byte(pid), now, 1)
	if err != nil {
		t.Fatal(err)
	}
	recb, err := rec.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	sk, err := mls.NewSignatureKey(mls.DefaultSuite, dev.Seed())
	if err != nil {
		t.Fatal(err)
	}
	kp, err := mls.NewKeyPackageWith(mls.Credential{Type: mls.CredentialBasic, Identity: recb}, sk,
		now.Add(-time.Hour), now.Add(24*time.Hour),
		mls.KeyPackageOptions{Extensions: []mls.ExtensionType{protocol.GroupMetaExtension}}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// queueAdds puts KeyPackages in the admin's store as the group engine
// keeps an invited contact's KeyPackage once it arrived (a membership
// change of kind 2, "add", for the next commit), then wakes the group: the
// engine commits them as it would those of contacts, without the 1:1
// exchange of the invites (members that never answer one cannot be
// invited otherwise).
func queueAdds(t testing.TB, ctx context.Context, admin *Node, group string, kps [][]byte) {
	t.Helper()
	gid, ok := groups.ParseGroupID(group)
	if !ok {
		t.Fatalf("group ID %q", group)
	}
	err := admin.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		for _, kp := range kps {
			data, err := json.Marshal(struct {
				Op         string `json:"op"`
				KeyPackage []byte `json:"key_package"`
			}{"add", kp})
			if err != nil {
				return err
			}
			if _, err := tx.Groups().AddWork(store.GroupWork{Group: gid, Kind: 2, Data: data}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Groups().Show(ctx, group); err != nil { // a turn of the group's loop
		t.Fatal(err)
	}
}

// waitGroup waits until every node is active in group with members
// members, and returns the epoch they reached.
func waitGroup(t testing.TB, ctx context.Context, group string, members int, nodes ...*Node) uint64 {
	t.Helper()
	var epoch uint64
	for _, n := range nodes {
		shown := time.Now()
		for {
			g, err := n.Groups().Show(ctx, group)
			if err == nil && g.State == "active" && len(g.Members) == members {
				epoch = g.Epoch
				break
			}
			if time.Since(shown) > 10*time.Second {
				shown = time.Now()
				t.Logf("%s: epoch %d, %d of %d members", n.Info().UserID, g.Epoch, len(g.Members), members)
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: %+v (%s), %v; want %d members", n.Info().UserID, g.Summary, g.Error, err, members)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return epoch
}

// TestGroupAddsSplit: more KeyPackages wait than one commit can carry in
// a log entry; the admin commits them in several commits that fit, and
// every member ends in the group of all of them. A commit over the entry
// limit was dropped unsent, leaving the group unable to commit again.
//
// The members added have not committed since, so the tree is sparse: a
// commit's path is encrypted to nearly every member, some 1.2 KB each with
// the post-quantum suite. The adds go without a path, and the removal of
// b, whose commit needs one, still fits a log entry. With a path on every
// commit and 256 KiB entries, the adds stopped at about 210 members (a
// commit of one add was over the entry and dropped), and no member of a
// larger group could be removed.
func TestGroupAddsSplit(t *testing.T) {
	nodetest.CheckLeaks(t)
	const extra = 760 // about 2.9 KB each: over 2 MiB together
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	gn := newGroupNet(t, 2)
	a, b := gn.nodes[0], gn.nodes[1]
	befriend(t, ctx, a, b, "b")
	info, err := a.Groups().Create(ctx, "big", []string{gn.relay.Info().Addrs[0]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Groups().Add(ctx, info.ID, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	start := waitGroup(t, ctx, info.ID, 2, a, b)
	queueAdds(t, ctx, a, info.ID, offlineMembers(t, extra))
	end := waitGroup(t, ctx, info.ID, 2+extra, a, b)
	if end < start+2 {
		t.Errorf("epochs %d to %d: the adds went in one commit", start, end)
	}
	// The group goes on: b reads a's next message.
	sendSent(t, ctx, a, info.ID, "after the adds")
	nodetest.WaitFor(t, time.Minute, "b to read the message after the adds", func() bool {
		for _, x := range texts(t, ctx, b, info.ID) {
			if x == "after the adds" {
				return true
			}
		}
		return false
	})
	// A removal has a path to every member.
	if _, err := a.Groups().Remove(ctx, info.ID, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, ctx, info.ID, 1+extra, a)
	nodetest.WaitFor(t, time.Minute, "b to see its removal", func() bool {
		g, err := b.Groups().Show(ctx, info.ID)
		return err == nil && g.State == "left"
	})
}

// TestMeasureGroup1000 reports the time from an admin's Add and Remove in
// a group of 1,000 members to every online member in the new epoch. The
// admin and SEALPOST_MEASURE_ONLINE (default 4) members are full nodes on
// loopback with one home relay, in this process; the other members are
// KeyPackages of devices that never come online (their commits are made
// and relayed, nobody processes them). Online members each fetch the
// commit from the relay and process it, as every member would on its own
// device. Only with SEALPOST_MEASURE=1:
//
//	SEALPOST_MEASURE=1 go test ./node -run TestMeasureGroup1000 -v -timeout 30m
func TestMeasureGroup1000(t *testing.T) {
	if os.Getenv("SEALPOST_MEASURE") == "" {
		t.Skip("set SEALPOST_MEASURE=1 to measure")
	}
	const (
		target = 2 * time.Second
		rounds = 3
	)
	online := 4
	if n, err := fmt.Sscan(os.Getenv("SEALPOST_MEASURE_ONLINE"), &online); n != 1 || err != nil {
		online = 4
	}
	size := 1000
	if n, err := fmt.Sscan(os.Getenv("SEALPOST_MEASURE_SIZE"), &size); n != 1 || err != nil {
		size = 1000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	gn := newGroupNet(t, 1+online)
	a, members := gn.nodes[0], gn.nodes[1:]
	for i, m := range members {
		befriend(t, ctx, a, m, fmt.Sprintf("m%d", i))
	}
	info, err := a.Groups().Create(ctx, "thousand", []string{gn.relay.Info().Addrs[0]})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range online - 1 {
		names = append(names, fmt.Sprintf("m%d", i))
	}
	if _, err := a.Groups().Add(ctx, info.ID, names); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, ctx, info.ID, online, a)
	t0 := time.Now()
	queueAdds(t, ctx, a, info.ID, offlineMembers(t, size-online-1))
	waitGroup(t, ctx, info.ID, size-1, append([]*Node{a}, members[:online-1]...)...)
	t.Logf("group of %d members (%d online) made in %s", size-1, online, time.Since(t0).Round(time.Millisecond))

	stopProfile := nodetest.CPUProfile(t, "SEALPOST_MEASURE_CPUPROFILE")
	defer stopProfile()
	last := members[online-1]
	name := fmt.Sprintf("m%d", online-1)
	var adds, rms []time.Duration
	for r := range rounds {
		start := time.Now()
		if _, err := a.Groups().Add(ctx, info.ID, []string{name}); err != nil {
			t.Fatal(err)
		}
		waitGroup(t, ctx, info.ID, size, append([]*Node{a}, members...)...)
		add := time.Since(start)
		start = time.Now()
		if _, err := a.Groups().Remove(ctx, info.ID, []string{name}); err != nil {
			t.Fatal(err)
		}
		waitGroup(t, ctx, info.ID, size-1, append([]*Node{a}, members[:online-1]...)...)
		rm := time.Since(start)
		nodetest.WaitFor(t, time.Minute, "the removed member to see it", func() bool {
			g, err := last.Groups().Show(ctx, info.ID)
			return err == nil && g.State == "left"
		})
		t.Logf("round %d: add (invite, KeyPackage, commit, Welcome, join) to %d members in the new epoch: %s (target %s, ratio %.2f); remove: %s (ratio %.2f)",
			r, size, add.Round(time.Millisecond), target, float64(add)/float64(target), rm.Round(time.Millisecond), float64(rm)/float64(target))
		adds, rms = append(adds, add), append(rms, rm)
	}
	stopProfile()
	lim := mlsLimits(t, ctx, a, members[0], info.ID)
	addLim := lim.addCommit + max(lim.addProcess, lim.join)
	rmLim := lim.rmCommit + lim.rmProcess
	t.Logf("limit, crypto/mls alone on this group's states (median of %d): add %s (commit %s of %d bytes and a Welcome of %d, then the slower of a member's processing %s and the joiner's Join %s); remove %s (commit %s of %d bytes, processing %s)",
		limitRuns, addLim.Round(time.Millisecond), lim.addCommit.Round(time.Millisecond), lim.addBytes, lim.welcomeBytes,
		lim.addProcess.Round(100*time.Microsecond), lim.join.Round(time.Millisecond),
		rmLim.Round(time.Millisecond), lim.rmCommit.Round(time.Millisecond), lim.rmBytes, lim.rmProcess.Round(100*time.Microsecond))
	madd, mrm := median(adds), median(rms)
	t.Logf("median of %d rounds: add %s (ratio %.2f to the target %s, %.1f to the limit); remove %s (ratio %.2f, %.1f to the limit)",
		rounds, madd.Round(time.Millisecond), float64(madd)/float64(target), target, float64(madd)/float64(addLim),
		mrm.Round(time.Millisecond), float64(mrm)/float64(target), float64(mrm)/float64(rmLim))
}

func median(ds []time.Duration) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// limitRuns is how many times mlsLimits times each operation.
const limitRuns = 3

// groupLimits are what the group's Add and Remove cost in crypto/mls
// alone, on the states of its admin and of one member.
type groupLimits struct {
	addCommit, addProcess, join, rmCommit, rmProcess time.Duration
	addBytes, welcomeBytes, rmBytes                  int
}

// mlsLimits times, on the MLS states admin and member hold of group, the
// admin's commit of one add (without a path, as the engine makes it) and
// of one removal, the member's processing of each, and the joiner's Join
// of the add's Welcome: the work no engine can avoid. Each the median of
// limitRuns.
func mlsLimits(t *testing.T, ctx context.Context, admin, member *Node, group string) groupLimits {
	t.Helper()
	gid, ok := groups.ParseGroupID(group)
	if !ok {
		t.Fatalf("group ID %q", group)
	}
	state := func(n *Node) []byte {
		var b []byte
		err := n.cfg.Store.View(ctx, func(tx *store.Tx) error {
			var err error
			b, err = tx.Groups().State(gid)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cfg := mls.Config{
		ValidateCredential: func(mls.Credential, []byte, *mls.Credential) error { return nil },
		Extensions:         []mls.ExtensionType{protocol.GroupMetaExtension},
	}
	load := func(b []byte) *mls.Group {
		g, err := mls.UnmarshalGroup(cfg, b)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	as, ms := state(admin), state(member)
	var l groupLimits
	var addC, addP, join, rmC, rmP []time.Duration
	for range limitRuns {
		kp := offlineMember(t)
		ag, mg := load(as), load(ms)
		start := time.Now()
		msg, err := ag.Commit(mls.CommitOptions{Add: []*mls.KeyPackage{kp.KeyPackage()}, NoPath: true}, time.Now(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		own, err := ag.MergePendingCommit()
		if err != nil {
			t.Fatal(err)
		}
		addC = append(addC, time.Since(start))
		l.addBytes, l.welcomeBytes = len(msg), len(own.Commit.Welcome)
		start = time.Now()
		if _, err := mg.Process(msg, time.Now()); err != nil {
			t.Fatal(err)
		}
		addP = append(addP, time.Since(start))
		start = time.Now()
		if _, err := mls.Join(cfg, own.Commit.Welcome, []*mls.KeyPackagePrivate{kp}, mls.JoinOptions{}); err != nil {
			t.Fatal(err)
		}
		join = append(join, time.Since(start))

		ag, mg = load(as), load(ms)
		var leaf uint32
		for _, m := range ag.Members() {
			leaf = max(leaf, m.Index) // an offline member's
		}
		start = time.Now()
		msg, err = ag.Commit(mls.CommitOptions{Remove: []uint32{leaf}}, time.Now(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ag.MergePendingCommit(); err != nil {
			t.Fatal(err)
		}
		rmC = append(rmC, time.Since(start))
		l.rmBytes = len(msg)
		start = time.Now()
		if _, err := mg.Process(msg, time.Now()); err != nil {
			t.Fatal(err)
		}
		rmP = append(rmP, time.Since(start))
	}
	l.addCommit, l.addProcess, l.join, l.rmCommit, l.rmProcess = median(addC), median(addP), median(join), median(rmC), median(rmP)
	return l
}
