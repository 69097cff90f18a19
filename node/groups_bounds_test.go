package node

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/grouprelay"
	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/store"
)

// restartable is a personal node whose store outlives it, so that it can
// be closed and started again as the same device.
type restartable struct {
	t    testing.TB
	st   store.Store
	mod  func(*Config)
	node *Node
}

func newRestartable(t testing.TB, mod func(*Config)) *restartable {
	t.Helper()
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	if err := Provision(context.Background(), st, "member", nil); err != nil {
		t.Fatal(err)
	}
	r := &restartable{t: t, st: st, mod: mod}
	r.start()
	return r
}

func (r *restartable) start() {
	r.t.Helper()
	r.node = newTestNode(r.t, func(c *Config) {
		if r.mod != nil {
			r.mod(c)
		}
		c.Store = r.st
	})
}

func (r *restartable) stop() {
	r.t.Helper()
	if err := r.node.Close(); err != nil {
		r.t.Fatal(err)
	}
}

// offlinePair is a relay, an admin a and a member m of group, m's store
// kept across restarts.
func offlinePair(t testing.TB, ctx context.Context, res grouprelay.Resources) (r, a *Node, m *restartable, group string) {
	t.Helper()
	r = newTestNode(t, func(c *Config) {
		c.RelayService = true
		c.GroupRelay = res
	})
	boot := []string{r.Info().Addrs[0]}
	a = newTestNode(t, func(c *Config) { c.Bootstrap = boot })
	m = newRestartable(t, func(c *Config) { c.Bootstrap = boot })
	inv, err := m.node.Messaging().Invite(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Messaging().AddContact(ctx, inv.Link, "m"); err != nil {
		t.Fatal(err)
	}
	info, err := a.Groups().Create(ctx, "pair", boot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Groups().Add(ctx, info.ID, []string{"m"}); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		g, err := m.node.Groups().Show(ctx, info.ID)
		if err == nil && g.State == "active" && len(g.Members) == 2 {
			return r, a, m, info.ID
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the member did not join: %v", ctx.Err())
	return
}

// TestGroupSendOrder: a burst of messages the home relay partly refuses
// (over its append rate) is read whole, once each, by a member that was
// offline and reads it from the log in the log's order. The messages
// refused at first were retried after many later ones had gone in: with
// their first ciphertexts, further behind their sender's newest than the
// skipped keys a reader keeps, the member could not decrypt them.
func TestGroupSendOrder(t *testing.T) {
	nodetest.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res := grouprelay.DefaultResources()
	res.AppendBurst, res.AppendRate = 100, 100
	r, a, m, group := offlinePair(t, ctx, res)
	m.stop()

	const count = 400
	var want []string
	var ids []string
	for i := range count {
		text := fmt.Sprintf("burst %d", i)
		s, err := a.Groups().Send(ctx, group, text)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, text)
		ids = append(ids, s.ID)
	}
	for _, s := range ids {
		id, _ := groups.ParseMessageID(s)
		if _, err := a.Groups().WaitState(ctx, id, groups.StateSent); err != nil {
			t.Fatalf("message %s not sent: %v", s, err)
		}
	}
	if n := counter(t, a, "sealpost_groups_sent_total"); n < count {
		t.Fatalf("%v sent", n)
	}
	m.start()
	var got []string
	deadline := time.Now().Add(2 * time.Minute)
	for got = texts(t, ctx, m.node, group); len(got) < count; got = texts(t, ctx, m.node, group) {
		if time.Now().After(deadline) {
			dumpGroupMetrics(t, m.node)
			dumpGroupMetrics(t, r)
			t.Fatalf("the member read %d messages of %d from the log", len(got), count)
		}
		time.Sleep(10 * time.Millisecond)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the member holds %d messages, want the %d sent once each", len(got), count)
	}
}
