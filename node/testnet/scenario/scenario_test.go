// Package scenario_test runs small testnet scenarios, one per fault, in
// go test: real libp2p hosts on 127.0.0.1 with badger stores, and the
// same code as `sealpost testnet run`. Each must end with every message
// shown exactly once by its recipient. TESTNET_SCALE runs a large network
// as well (see TestScale).
package scenario_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/testnet"
)

// run runs o and fails the test unless every message was delivered once.
func run(t *testing.T, o testnet.Options) *testnet.Report {
	t.Helper()
	o.Dir = t.TempDir()
	if o.Duration == 0 {
		o.Duration = 2 * time.Second
	}
	if o.Drain == 0 {
		o.Drain = time.Minute
	}
	if v := os.Getenv("TESTNET_LOG"); v != "" {
		level := slog.LevelInfo
		if v == "debug" {
			level = slog.LevelDebug
		}
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := testnet.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := json.MarshalIndent(rep, "", "  "); err == nil {
		t.Logf("report: %s", b)
	}
	if rep.Sent != o.Messages || !rep.OK() {
		t.Errorf("sent %d of %d, delivered %d, lost %d, duplicated %d, send errors %d, stray %d",
			rep.Sent, o.Messages, rep.Delivered, rep.Lost, rep.Duplicated, rep.SendErrors, rep.Stray)
	}
	return rep
}

// faultNoted reports whether the report's fault log has a line with s.
func faultNoted(rep *testnet.Report, s string) bool {
	return slices.ContainsFunc(rep.Faults, func(f string) bool { return strings.Contains(f, s) })
}

// TestCI is the scenario of the continuous integration: 10 nodes, 2
// relays, 200 messages, 30% offline, a relay killed and restarted.
func TestCI(t *testing.T) {
	rep := run(t, testnet.Options{Nodes: 10, Relays: 2, Messages: 200, Offline: 0.3, Seed: 1,
		Chaos: []string{testnet.KillRelay}})
	if !faultNoted(rep, "killed") || !faultNoted(rep, "restarted") {
		t.Errorf("faults %q: want a relay killed and restarted", rep.Faults)
	}
	if rep.Latency.ViaRelay.Count == 0 || rep.RelayStoredBytes == 0 {
		t.Errorf("%d messages to offline nodes, relays stored %d bytes: want some of each",
			rep.Latency.ViaRelay.Count, rep.RelayStoredBytes)
	}
	// Every node publishes its address record when it starts, and a
	// sender whose direct dial of an offline recipient fails looks the
	// recipient up.
	if rep.DHTPublishes < int64(rep.Nodes) || rep.DHTLookups == 0 {
		t.Errorf("%d address record publications, %d lookups: want at least %d and 1",
			rep.DHTPublishes, rep.DHTLookups, rep.Nodes)
	}
}

func TestRestartNodes(t *testing.T) {
	rep := run(t, testnet.Options{Nodes: 10, Relays: 2, Messages: 200, Offline: 0.3, Seed: 2,
		Chaos: []string{testnet.RestartNodes}})
	if faultNoted(rep, "0 of them with messages queued") || !faultNoted(rep, "with messages queued") {
		t.Errorf("faults %q: want nodes restarted with messages queued", rep.Faults)
	}
}

func TestPartition(t *testing.T) {
	rep := run(t, testnet.Options{Nodes: 10, Relays: 2, Messages: 200, Seed: 3,
		Chaos: []string{testnet.Partition}})
	if !faultNoted(rep, "partition: two halves") || !faultNoted(rep, "partition healed") {
		t.Errorf("faults %q: want a partition and its healing", rep.Faults)
	}
}

func TestDrop(t *testing.T) {
	rep := run(t, testnet.Options{Nodes: 10, Relays: 2, Messages: 200, Offline: 0.2, Seed: 4,
		Chaos: []string{testnet.Drop}})
	if rep.StreamsReset == 0 {
		t.Error("no stream was reset")
	}
}

func TestClockSkew(t *testing.T) {
	rep := run(t, testnet.Options{Nodes: 10, Relays: 2, Messages: 200, Offline: 0.3, Seed: 5,
		Chaos: []string{testnet.ClockSkew}})
	if !faultNoted(rep, "runs a clock") {
		t.Errorf("faults %q: want skewed clocks", rep.Faults)
	}
}

// TestScale runs the network TESTNET_SCALE describes, as
// NODES,RELAYS,MESSAGES,OFFLINE[,CHAOS...] (for example
// 100,4,2000,0.3), and logs its report. It is skipped without it.
func TestScale(t *testing.T) {
	spec := os.Getenv("TESTNET_SCALE")
	if spec == "" {
		t.Skip("set TESTNET_SCALE=NODES,RELAYS,MESSAGES,OFFLINE[,FAULT...] to run a large network")
	}
	f := strings.Split(spec, ",")
	if len(f) < 4 {
		t.Fatalf("TESTNET_SCALE=%q: want NODES,RELAYS,MESSAGES,OFFLINE[,FAULT...]", spec)
	}
	var o testnet.Options
	var err error
	for k, p := range []*int{&o.Nodes, &o.Relays, &o.Messages} {
		if *p, err = strconv.Atoi(f[k]); err != nil {
			t.Fatal(err)
		}
	}
	if o.Offline, err = strconv.ParseFloat(f[3], 64); err != nil {
		t.Fatal(err)
	}
	o.Chaos = f[4:]
	o.Duration, o.Drain = 10*time.Second, 3*time.Minute
	rep := run(t, o)
	fmt.Printf("scale %s: %.1f s, cpu %.1f s, peak %d MiB, %d goroutines\n", spec,
		rep.Seconds.Total, rep.CPUTimeSeconds, rep.PeakMemoryBytes>>20, rep.PeakGoroutines)
}

// TestGroupsChaos runs groups through a relay killed and both admins of
// every group committing at once: every member ends with every group
// message once, and no group forks.
func TestGroupsChaos(t *testing.T) {
	seed := int64(6)
	if s := os.Getenv("TESTNET_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	rep := run(t, testnet.Options{Nodes: 10, Relays: 2, Messages: 40, Offline: 0.2, Seed: seed,
		Groups: 3, GroupSize: 5, GroupMessages: 60,
		Chaos: []string{testnet.KillRelay, testnet.AdminRace}})
	g := rep.Groups
	if g == nil {
		t.Fatal("no group report")
	}
	if g.Sent+g.Skipped != 60 || g.Lost != 0 || g.Duplicated != 0 || g.Forks != 0 {
		t.Errorf("groups: sent %d (skipped %d) of 60, lost %d %q, duplicated %d, forks %d",
			g.Sent, g.Skipped, g.Lost, g.LostMessages, g.Duplicated, g.Forks)
	}
}
