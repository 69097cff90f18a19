package relay_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/sealpost/sealpost/crypto/seal"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
)

const measureEnv = "SEALPOST_RELAY_MEASURE_CHILD"

// measureChild is the child side of TestMeasureMillion: a relay on the
// store named by the environment (opened as node/home opens a relay's
// store: badgerstore's default options), idle; it prints its RssAnon after
// SEALPOST_MEASURE_IDLE (default 30 s), without forcing a GC.
func measureChild() bool {
	dir := os.Getenv(measureEnv)
	if dir == "" {
		return false
	}
	idle := 30 * time.Second
	if d, err := time.ParseDuration(os.Getenv("SEALPOST_MEASURE_IDLE")); err == nil {
		idle = d
	}
	before := nodetest.RssAnonKB()
	start := time.Now()
	st, err := badgerstore.Open(context.Background(), dir, badgerstore.Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	srv, err := relay.New(relay.Config{Host: h, Store: st})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	opened := time.Since(start)
	stats := srv.Stats()
	time.Sleep(idle)
	fmt.Printf("result %d %d %d %d %s\n", stats.Envelopes, stats.EnvelopeBytes, before, nodetest.RssAnonKB(), opened)
	srv.Close()
	h.Close()
	st.Close()
	return true
}

// TestMeasureMillion fills a relay store with 1,000,000 envelopes of 1 KiB
// (1000 mailboxes of 1000), then starts a relay on it in a fresh process
// and reports that process's RssAnon once the relay has been idle for
// SEALPOST_MEASURE_IDLE (default 30 s). Only with SEALPOST_MEASURE=1; the
// store is kept in SEALPOST_MEASURE_DIR if set (and reused if it is
// full). It asserts nothing about the figure:
//
//	SEALPOST_MEASURE=1 go test ./node/relay -run TestMeasureMillion -v -timeout 30m
func TestMeasureMillion(t *testing.T) {
	if os.Getenv("SEALPOST_MEASURE") == "" {
		t.Skip("set SEALPOST_MEASURE=1 to measure")
	}
	const mailboxes, per = 1000, 1000
	dir := os.Getenv("SEALPOST_MEASURE_DIR")
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "store")
	}
	st, err := badgerstore.Open(context.Background(), dir, badgerstore.Options{})
	if err != nil {
		if st, err = badgerstore.Create(context.Background(), dir, badgerstore.ModeUnencrypted, badgerstore.Options{GCInterval: -1}); err != nil {
			t.Fatal(err)
		}
	}
	var have uint64
	st.View(context.Background(), func(tx *store.Tx) error {
		tot, err := tx.Relay().Totals()
		have = tot.Envelopes
		return err
	})
	if have < mailboxes*per {
		start := time.Now()
		env := make([]byte, 1024)
		rand.Read(env)
		env[0] = seal.Version
		until := time.Now().Add(14 * 24 * time.Hour)
		for range mailboxes {
			var id protocol.MailboxID
			rand.Read(id[:])
			copy(env[1:], id[:])
			tok := protocol.TokenHash{1}
			for batch := 0; batch < per; batch += 500 {
				err := st.Update(context.Background(), func(tx *store.Tx) error {
					r := tx.Relay()
					if batch == 0 {
						if err := r.CreateMailbox(store.RelayMailbox{ID: id, OwnerKey: [32]byte{1}, CreatedAt: time.Now()}); err != nil {
							return err
						}
						if _, _, err := r.PutToken(id, store.RelayToken{Hash: tok, MaxCount: per, MaxBytes: 1 << 30}); err != nil {
							return err
						}
					}
					for range 500 {
						if _, err := r.AddEnvelope(store.RelayEnvelope{Mailbox: id, Token: tok, StoredUntil: until, Envelope: env}, nil); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		t.Logf("filled %d envelopes in %s", mailboxes*per, time.Since(start).Round(time.Second))
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	var du int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			du += fi.Size()
		}
		return nil
	})

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), measureEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var n, bytes, before, after int64
	var opened string
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "result "); ok {
			fmt.Sscanf(rest, "%d %d %d %d %s", &n, &bytes, &before, &after, &opened)
		}
	}
	if n == 0 {
		t.Fatalf("child: %s", out)
	}
	t.Logf("relay with %d envelopes (%d MiB of envelopes, %d MiB on disk), opened in %s, idle: RssAnon %d KiB (%.1f MiB; %d KiB before opening)",
		n, bytes>>20, du>>20, opened, after, float64(after)/1024, before)
}
