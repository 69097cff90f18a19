package mls

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"testing"
	"testing/cryptotest"

	"github.com/sealpost/sealpost/crypto/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files under crypto/testdata")

// TestGoldenTranscript freezes a whole group's life in the post-quantum
// suite from fixed seeds: keys, KeyPackages, the group's creation, a commit
// adding two members and its Welcome, messages, an update proposal and
// its commit, a removal, the epoch authenticators and an exported secret.
// HPKE encapsulation draws from crypto/rand, which the test fixes with
// testing/cryptotest (so a Go release that draws differently inside
// crypto/hpke changes the file: check the diff, then -update).
func TestGoldenTranscript(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 0x5ea1)
	cs := DefaultSuite
	var f golden.File
	f.Text("suite", fmt.Sprintf("0x%04x %v", uint16(cs), cs))
	f.Text("time", fmt.Sprint(t0.Unix()))
	alice, bob, carol := newClient(t, cs, "alice", 1), newClient(t, cs, "bob", 2), newClient(t, cs, "carol", 3)
	for _, c := range []*client{alice, bob, carol} {
		f.Hex(c.name+".signature_key.private", c.key.priv)
		f.Hex(c.name+".signature_key.public", c.key.pub)
	}
	var err error
	if alice.g, err = NewGroup(testConfig, []byte("golden-group-id!"), alice.cred, alice.key, GroupOptions{}, alice.rand); err != nil {
		t.Fatal(err)
	}
	epoch := func() {
		f.Hex(fmt.Sprintf("epoch.%d.authenticator", alice.g.Epoch()), alice.g.EpochAuthenticator())
	}
	epoch()
	bkp, ckp := bob.keyPackage(t), carol.keyPackage(t)
	for _, kp := range []struct {
		name string
		kp   *KeyPackagePrivate
	}{{"bob", bkp}, {"carol", ckp}} {
		b, _ := kp.kp.KeyPackage().MarshalBinary()
		f.Hex(kp.name+".key_package", b)
	}
	commit, err := alice.g.Commit(CommitOptions{Add: []*KeyPackage{bkp.KeyPackage(), ckp.KeyPackage()}}, t0, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	f.Hex("commit.add", commit)
	r := commitAll(t, alice, commit)
	f.Hex("welcome", r.Commit.Welcome)
	for _, c := range []struct {
		c  *client
		kp *KeyPackagePrivate
	}{{bob, bkp}, {carol, ckp}} {
		if c.c.g, err = Join(testConfig, r.Commit.Welcome, []*KeyPackagePrivate{c.kp}, JoinOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	agree(t, alice, bob, carol)
	epoch()
	for i, c := range []*client{alice, bob, carol, alice} {
		msg, err := c.g.Encrypt([]byte(fmt.Sprintf("message %d from %s", i, c.name)), []byte("aad"), c.rand)
		if err != nil {
			t.Fatal(err)
		}
		f.Hex(fmt.Sprintf("message.%d.%s", i, c.name), msg)
		for _, o := range []*client{alice, bob, carol} {
			if o != c {
				if _, err := o.g.Process(msg, t0); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	prop, _, err := bob.g.ProposeUpdate(bob.rand)
	if err != nil {
		t.Fatal(err)
	}
	f.Hex("proposal.update.bob", prop)
	for _, o := range []*client{alice, carol} {
		if _, err := o.g.Process(prop, t0); err != nil {
			t.Fatal(err)
		}
	}
	commit, err = alice.g.Commit(CommitOptions{}, t0, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	f.Hex("commit.update", commit)
	commitAll(t, alice, commit, bob, carol)
	agree(t, alice, bob, carol)
	epoch()
	commit, err = alice.g.Commit(CommitOptions{Remove: []uint32{carol.g.LeafIndex()}}, t0, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	f.Hex("commit.remove.carol", commit)
	commitAll(t, alice, commit, bob)
	agree(t, alice, bob)
	epoch()
	x, _ := alice.g.Export("sealpost topic", []byte("golden"), 32)
	f.Hex("export.sealpost_topic", x)
	for _, c := range []*client{alice, bob} {
		state := stateOf(t, c.g)
		h := sha256.Sum256(state)
		f.Hex(c.name+".state.sha256", h[:])
		// The same state as version 1 wrote it (without tree hashes) and
		// as version 2 did (without the generations whose keys were given
		// up) still loads, and is the same state.
		for _, v := range []string{"v1", "v2"} {
			old, err := os.ReadFile("testdata/state-" + v + "/" + c.name)
			if err != nil {
				t.Fatal(err)
			}
			g, err := UnmarshalGroup(testConfig, old)
			if err != nil {
				t.Fatalf("%s: %s state: %v", c.name, v, err)
			}
			if !bytes.Equal(stateOf(t, g), state) {
				t.Errorf("%s: the %s state loads as another state", c.name, v)
			}
		}
	}
	f.Check(t, "../testdata/mls-pq.golden", *update)
}
