package relay_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
)

const crashEnv = "SEALPOST_RELAY_CRASH_CHILD"

func crashResources() relay.Resources {
	res := relay.DefaultResources()
	res.DepositRate, res.DepositBurst = 1e6, 1e6
	res.TokenMaxCount = 1 << 20
	res.MailboxMaxCount = 1 << 20
	return res
}

// crashChild is the child side of TestCrashKeepsReceipted: a relay on the
// store and key in the directory named by the environment, until killed.
func crashChild() bool {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		return false
	}
	fail := func(err error) bool {
		fmt.Println("error:", err)
		os.Exit(2)
		return true
	}
	kb, err := os.ReadFile(filepath.Join(dir, "key"))
	if err != nil {
		return fail(err)
	}
	key, err := crypto.UnmarshalPrivateKey(kb)
	if err != nil {
		return fail(err)
	}
	st, err := badgerstore.Open(context.Background(), filepath.Join(dir, "store"), badgerstore.Options{GCInterval: -1})
	if err != nil {
		return fail(err)
	}
	h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		return fail(err)
	}
	if _, err := relay.New(relay.Config{Host: h, Store: st, Resources: crashResources()}); err != nil {
		return fail(err)
	}
	fmt.Println("addr", h.Addrs()[0].String())
	select {}
}

// TestCrashKeepsReceipted: a relay process SIGKILLed while it answers
// pipelined deposits keeps every envelope it issued a receipt for; a relay
// started again on its store serves them all, and its counts agree with
// what is stored.
func TestCrashKeepsReceipted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	st, err := badgerstore.Create(context.Background(), filepath.Join(dir, "store"), badgerstore.ModeUnencrypted, badgerstore.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := crypto.MarshalPrivateKey(key)
	if err := os.WriteFile(filepath.Join(dir, "key"), kb, 0o600); err != nil {
		t.Fatal(err)
	}
	relayID, _ := peer.IDFromPrivateKey(key)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
		}
		cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "addr ") {
		t.Fatalf("child: %q", sc.Text())
	}
	addr, err := ma.NewMultiaddr(strings.TrimPrefix(sc.Text(), "addr "))
	if err != nil {
		t.Fatal(err)
	}
	c := dialAddr(t, peer.AddrInfo{ID: relayID, Addrs: []ma.Multiaddr{addr}})
	m := c.create()
	tok := c.token(m, 0, 0)

	// Three streams deposit, pipelined; receipts are collected until 3000,
	// then the relay is killed.
	const target = 3000
	var mu sync.Mutex
	receipted := map[[32]byte]bool{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			str, err := c.h.NewStream(context.Background(), relayID, libp2pproto.ID(protocol.RelayProtocol))
			if err != nil {
				t.Error(err)
				return
			}
			defer str.Reset()
			fr := protocol.NewFrameReader(str, protocol.MaxRelayFrame)
			var hello protocol.RelayResponse
			if err := fr.Read(&hello); err != nil {
				t.Error(err)
				return
			}
			hashes := map[uint64][32]byte{}
			var hmu sync.Mutex
			go func() {
				for i := uint64(1); ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					env := envelope(m.id, 512, w<<20|int(i))
					hmu.Lock()
					hashes[i] = protocol.EnvelopeHash(env)
					hmu.Unlock()
					req := &protocol.RelayRequest{ID: i, Op: protocol.RelayDeposit, Mailbox: m.id, Token: tok, Envelope: env}
					if err := req.Validate(); err != nil {
						t.Error(err)
						return
					}
					if protocol.WriteFrame(str, req) != nil {
						return
					}
				}
			}()
			for {
				var resp protocol.RelayResponse
				if err := fr.Read(&resp); err != nil {
					return
				}
				if resp.Code != protocol.CodeOK {
					t.Errorf("deposit: %s", resp.Code)
					return
				}
				hmu.Lock()
				h := hashes[resp.ID]
				hmu.Unlock()
				r := protocol.Receipt{Relay: []byte(relayID), Mailbox: m.id, Envelope: h, StoredUntil: resp.StoredUntil, Signature: resp.Signature}
				if err := r.Verify(); err != nil {
					t.Errorf("receipt: %v", err)
					return
				}
				mu.Lock()
				receipted[h] = true
				n := len(receipted)
				mu.Unlock()
				if n == target && !killed {
					cmd.Process.Signal(syscall.SIGKILL)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	cmd.Process.Signal(syscall.SIGKILL)
	killed = true
	cmd.Wait()
	if len(receipted) < target {
		t.Fatalf("only %d receipts before the streams ended", len(receipted))
	}

	// Reopen the store: every receipted envelope is there.
	st, err = badgerstore.Open(context.Background(), filepath.Join(dir, "store"), badgerstore.Options{GCInterval: -1})
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	defer st.Close()
	stored := map[[32]byte]bool{}
	var mbRec store.RelayMailbox
	err = st.View(context.Background(), func(tx *store.Tx) error {
		var err error
		if mbRec, err = tx.Relay().Mailbox(m.id); err != nil {
			return err
		}
		return tx.Relay().Envelopes(m.id, 0, 0, func(e store.RelayEnvelope) error {
			stored[protocol.EnvelopeHash(e.Envelope)] = true
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	missing := 0
	for h := range receipted {
		if !stored[h] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d receipted envelopes lost", missing, len(receipted))
	}
	if mbRec.Count != uint64(len(stored)) {
		t.Errorf("mailbox counts %d envelopes, %d stored", mbRec.Count, len(stored))
	}
	t.Logf("%d receipts, %d envelopes stored after SIGKILL", len(receipted), len(stored))

	// A relay on the reopened store serves them.
	h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	srv, err := relay.New(relay.Config{Host: h, Store: st, Resources: crashResources()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if got := srv.Stats().Envelopes; got != uint64(len(stored)) {
		t.Errorf("restarted relay counts %d envelopes, %d stored", got, len(stored))
	}
	o := dialAddr(t, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	served := 0
	for after := uint64(0); ; {
		resp := o.call(&protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.id, After: after, Limit: protocol.MaxFetchLimit}, m.key)
		if resp.Code != protocol.CodeOK {
			t.Fatalf("fetch: %s", resp.Code)
		}
		served += len(o.pushed)
		o.pushed = nil
		if !resp.More {
			break
		}
		after = resp.Seq
	}
	if served != len(stored) {
		t.Errorf("restarted relay served %d of %d", served, len(stored))
	}
}
