package relay_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store/badgerstore"
	"github.com/sealpost/sealpost/store/storetest"
)

// TestDiskFull fills the disk under a relay's store: deposits are
// answered disk_full (not internal, not store_full, which is the relay's
// quota), the owner still fetches what is stored, and once room returns
// deposits are taken again, by themselves.
func TestDiskFull(t *testing.T) {
	fs := storetest.Tmpfs(t, 160<<20)
	r := newRelayAt(t, testResources(), filepath.Join(fs, "store"), badgerstore.Options{GCInterval: -1, MemTableSize: 1 << 20})
	c := r.dial(t)
	m := c.create()
	tok := c.token(m, 0, 0)
	env := envelope(m.id, 512, 1)
	c.checkReceipt(c.deposit(m.id, tok, env), m.id, env)

	filler := filepath.Join(fs, "filler")
	storetest.FillDisk(t, filler)
	for i := range 3 {
		if resp := c.deposit(m.id, tok, envelope(m.id, 512, 2+i)); resp.Code != protocol.CodeDiskFull {
			t.Fatalf("deposit on a full disk: %s, want disk_full", resp.Code)
		}
	}
	if resp := c.call(&protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.id}, m.key); resp.Code != protocol.CodeOK || resp.Count != 1 {
		t.Fatalf("fetch on a full disk: %s, %d stored, want ok and 1", resp.Code, resp.Count)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		env := envelope(m.id, 512, 9)
		resp := c.deposit(m.id, tok, env)
		if resp.Code == protocol.CodeOK {
			c.checkReceipt(resp, m.id, env)
			break
		}
		if resp.Code != protocol.CodeDiskFull || time.Now().After(deadline) {
			t.Fatalf("deposit after room returned: %s", resp.Code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
