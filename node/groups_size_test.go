package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
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
	now := time.Now()
	out := make([][]byte, 0, n)
	for range n {
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
		b, err := kp.KeyPackage().MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
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

	last := members[online-1]
	name := fmt.Sprintf("m%d", online-1)
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
	}
}
