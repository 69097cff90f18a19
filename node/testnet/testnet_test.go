package testnet

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"testing"
	"time"
)

func runScenario(t *testing.T, o Options) *Report {
	t.Helper()
	o.Dir = t.TempDir()
	if testing.Verbose() {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("report: %s", b)
	if !rep.OK() || rep.Sent != len(newPlan(mustDefaults(t, o)).msgs) {
		t.Errorf("sent %d delivered %d lost %d duplicated %d send errors %d stray %d", rep.Sent, rep.Delivered, rep.Lost, rep.Duplicated, rep.SendErrors, rep.Stray)
	}
	return rep
}

func mustDefaults(t *testing.T, o Options) Options {
	o, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestSmall(t *testing.T) {
	runScenario(t, Options{Nodes: 10, Relays: 2, Messages: 200, Offline: 0.3, Duration: 2 * time.Second, Drain: time.Minute})
}
