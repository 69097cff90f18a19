package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/grouprelay"
	"github.com/sealpost/sealpost/node/groups"
)

// BenchmarkGroupCatchUp: a member is offline while another sends 1,000
// messages to their group (every one stored on the home relay); started
// again, it catches up from the relay. Each round reports the time from its
// start (New returned) until it holds all of them, in catch_up_ms, and its
// ratio to the target of 2 s (target_ratio):
//
//	go test ./node -run '^$' -bench BenchmarkGroupCatchUp -benchtime 5x
func BenchmarkGroupCatchUp(b *testing.B) {
	const (
		count  = 1000
		target = 2 * time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	_, a, m, group := offlinePair(b, ctx, grouprelay.DefaultResources())
	held := func() int {
		ms, err := m.node.Groups().Messages(ctx, group, 0)
		if err != nil {
			return -1
		}
		return len(ms)
	}
	want := 0
	var total time.Duration
	b.ResetTimer()
	for round := range b.N {
		b.StopTimer()
		m.stop()
		var last string
		for i := range count {
			s, err := a.Groups().Send(ctx, group, fmt.Sprintf("round %d message %d", round, i))
			if err != nil {
				b.Fatal(err)
			}
			last = s.ID
		}
		id, _ := groups.ParseMessageID(last)
		if _, err := a.Groups().WaitState(ctx, id, groups.StateSent); err != nil {
			b.Fatal(err)
		}
		want += count
		b.StartTimer()
		m.start()
		t0 := time.Now()
		for held() < want {
			if time.Since(t0) > 2*time.Minute {
				dumpGroupMetrics(b, m.node)
				g, err := m.node.Groups().Show(ctx, group)
				b.Fatalf("round %d: the member holds %d messages of %d after %s (group %+v, error %q, %v)", round, held(), want, time.Since(t0), g.Summary, g.Error, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		total += time.Since(t0)
	}
	avg := total / time.Duration(b.N)
	b.ReportMetric(float64(avg.Microseconds())/1e3, "catch_up_ms")
	b.ReportMetric(float64(avg)/float64(target), "target_ratio")
}

// dumpGroupMetrics logs a node's group and group relay metrics.
func dumpGroupMetrics(t testing.TB, n *Node) {
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "sealpost_group") && !strings.HasPrefix(mf.GetName(), "sealpost_relay_group") {
			continue
		}
		for _, m := range mf.GetMetric() {
			t.Logf("%s %v %v %v", mf.GetName(), m.GetLabel(), m.GetCounter().GetValue(), m.GetGauge().GetValue())
		}
	}
}
