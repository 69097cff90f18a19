package badgerstore

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/store"
)

const (
	measureEnv     = "SEALPOST_STORE_MEASURE_CHILD"
	measurePassEnv = "SEALPOST_STORE_MEASURE_PASSPHRASE"
)

// rssAnon returns this process's RssAnon line from /proc/self/status.
func rssAnon() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "RssAnon:") {
			return strings.TrimSpace(strings.TrimPrefix(sc.Text(), "RssAnon:"))
		}
	}
	return "?"
}

// measureChild opens the store named by the environment, reads every
// message, and reports the open time and the resident anonymous memory.
func measureChild(dir string) {
	runtime.GC()
	debug.FreeOSMemory()
	before := rssAnon()
	start := time.Now()
	s, err := Open(context.Background(), dir, Options{Passphrase: []byte(os.Getenv(measurePassEnv))})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	opened := time.Since(start)
	n := 0
	err = s.View(context.Background(), func(tx *store.Tx) error {
		ms, err := tx.Messages().Since(0, 0)
		n = len(ms)
		return err
	})
	if err != nil {
		fmt.Println("read:", err)
		os.Exit(2)
	}
	runtime.GC()
	debug.FreeOSMemory()
	fmt.Printf("open %v, %d messages read, RssAnon %s before open, %s holding the store\n", opened, n, before, rssAnon())
	s.Close()
}

// TestMeasureOpen writes 10,000 messages with 1 KiB bodies into an
// encrypted store, then opens it in a fresh process and reports the open
// time and RssAnon; once with the key in a file, once with a passphrase
// (default Argon2id parameters: the open time includes the derivation,
// and RssAnon shows whether its 64 MiB were released). Only with
// SEALPOST_STORE_MEASURE=1; it asserts nothing about the figures.
func TestMeasureOpen(t *testing.T) {
	if os.Getenv("SEALPOST_STORE_MEASURE") == "" {
		t.Skip("set SEALPOST_STORE_MEASURE=1 to measure")
	}
	for _, mode := range []Mode{ModeKeyFile, ModePassphrase} {
		t.Run(mode.String(), func(t *testing.T) { measureOpen(t, mode) })
	}
}

func measureOpen(t *testing.T, mode Mode) {
	dir := t.TempDir()
	pass := ""
	if mode == ModePassphrase {
		pass = "measure"
	}
	s, err := Create(context.Background(), dir, mode, Options{Passphrase: []byte(pass)})
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 1024)
	for i := 0; i < 10000; i += 100 {
		err := s.Update(context.Background(), func(tx *store.Tx) error {
			for j := i; j < i+100; j++ {
				var id [16]byte
				binary.BigEndian.PutUint64(id[:], uint64(j+1))
				m := store.Message{ID: id, Peer: [32]byte{byte(j % 20)}, State: store.MessageReceived, Body: body}
				if err := tx.Messages().Put(&m); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), measureEnv+"="+dir, measurePassEnv+"="+pass)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v: %s", err, out)
		}
		t.Logf("%s", strings.TrimSpace(string(out)))
	}
}
