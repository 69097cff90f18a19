package mls

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Unix(1_750_000_000, 0)

func testRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0], s[1], s[2] = byte(seed), byte(seed>>8), 'm'
	return rand.NewChaCha8(s)
}

// testValidator accepts basic credentials whose identity is not empty.
func testValidator(c Credential, _ []byte, _ *Credential) error {
	if c.Type != CredentialBasic || len(c.Identity) == 0 {
		return errors.New("test: refused credential")
	}
	return nil
}

var testConfig = Config{ValidateCredential: testValidator}

// client is a test participant.
type client struct {
	name string
	key  *SignatureKey
	cred Credential
	rand *rand.ChaCha8
	g    *Group
}

func newClient(t testing.TB, cs CipherSuite, name string, seed uint64) *client {
	t.Helper()
	r := testRand(seed)
	key, err := GenerateSignatureKey(cs, r)
	if err != nil {
		t.Fatal(err)
	}
	return &client{name: name, key: key, cred: Credential{Type: CredentialBasic, Identity: []byte(name)}, rand: r}
}

func (c *client) keyPackage(t testing.TB) *KeyPackagePrivate {
	t.Helper()
	kp, err := NewKeyPackage(c.cred, c.key, t0.Add(-time.Hour), t0.Add(30*24*time.Hour), c.rand)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// roundTrip marshals and unmarshals the client's group, as a store would.
func (c *client) roundTrip(t testing.TB) {
	t.Helper()
	b, err := c.g.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	g, err := UnmarshalGroup(c.g.cfg, b)
	if err != nil {
		t.Fatalf("%s: unmarshal: %v", c.name, err)
	}
	b2, err := g.MarshalBinary()
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("%s: state does not survive a round trip (%v)", c.name, err)
	}
	c.g = g
}

// commitAll delivers a commit from c to the others and merges it at c.
func commitAll(t testing.TB, c *client, msg []byte, others ...*client) *Received {
	t.Helper()
	var own *Received
	for _, o := range append([]*client{c}, others...) {
		r, err := o.g.Process(msg, t0)
		if err != nil {
			t.Fatalf("%s processes %s's commit: %v", o.name, c.name, err)
		}
		if o == c {
			if !r.Commit.Own {
				t.Fatalf("%s: own commit not recognized", c.name)
			}
			own = r
		}
	}
	return own
}

func agree(t testing.TB, cs ...*client) {
	t.Helper()
	for _, c := range cs[1:] {
		if c.g.Epoch() != cs[0].g.Epoch() || !bytes.Equal(c.g.EpochAuthenticator(), cs[0].g.EpochAuthenticator()) {
			t.Fatalf("%s (epoch %d) and %s (epoch %d) disagree on the epoch authenticator", cs[0].name, cs[0].g.Epoch(), c.name, c.g.Epoch())
		}
	}
	for _, c := range cs {
		checkTreeHashes(t, c.name, c.g)
	}
}

// checkTreeHashes checks every tree hash a member has cached against the
// tree hashes computed afresh, and that the tree's size hint holds.
func checkTreeHashes(t testing.TB, name string, g *Group) {
	t.Helper()
	tree := g.st.tree
	fresh := tree.clone()
	clear(fresh.hashes)
	fresh.rootHash(g.suite)
	for x, h := range tree.hashes {
		if h != nil && !bytes.Equal(h, fresh.hashes[x]) {
			t.Fatalf("%s: cached tree hash of node %d is stale", name, x)
		}
	}
	if !bytes.Equal(fresh.rootHash(g.suite), g.st.ctx.treeHash) {
		t.Fatalf("%s: tree hash differs from the group context's", name)
	}
	if n, hint := len(tree.bytes()), tree.sizeHint(); n > hint {
		t.Fatalf("%s: tree of %d bytes, size hint %d", name, n, hint)
	}
}

func sendAll(t testing.TB, from *client, text string, to ...*client) {
	t.Helper()
	msg, err := from.g.Encrypt([]byte(text), []byte("aad"), from.rand)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range to {
		r, err := o.g.Process(msg, t0)
		if err != nil {
			t.Fatalf("%s decrypts %s's message: %v", o.name, from.name, err)
		}
		if r.Kind != KindApplication || string(r.Data) != text || string(r.Sender.Credential.Identity) != from.name {
			t.Fatalf("%s got %q from %q", o.name, r.Data, r.Sender.Credential.Identity)
		}
	}
}

var testSuites = []CipherSuite{
	MLS128DHKEMX25519AES128GCMSHA256Ed25519,
	MLS128DHKEMP256AES128GCMSHA256P256,
	MLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519,
	MLS256DHKEMP521AES256GCMSHA512P521,
	MLS256DHKEMP384AES256GCMSHA384P384,
	MLS128MLKEM768X25519AES128GCMSHA256Ed25519,
}

func TestGroupLifecycle(t *testing.T) {
	for _, cs := range testSuites {
		t.Run(cs.String(), func(t *testing.T) {
			alice, bob, carol := newClient(t, cs, "alice", 1), newClient(t, cs, "bob", 2), newClient(t, cs, "carol", 3)
			var err error
			if alice.g, err = NewGroup(testConfig, []byte("group-id-0123456"), alice.cred, alice.key, GroupOptions{}, alice.rand); err != nil {
				t.Fatal(err)
			}
			alice.roundTrip(t)
			bkp, ckp := bob.keyPackage(t), carol.keyPackage(t)
			msg, err := alice.g.Commit(CommitOptions{Add: []*KeyPackage{bkp.KeyPackage(), ckp.KeyPackage()}}, t0, alice.rand)
			if err != nil {
				t.Fatal(err)
			}
			alice.roundTrip(t) // the pending commit survives a restart
			next, err := alice.g.ExportPending("next", nil, 32)
			if err != nil {
				t.Fatal(err)
			}
			r := commitAll(t, alice, msg)
			if now, _ := alice.g.Export("next", nil, 32); !bytes.Equal(now, next) {
				t.Fatal("ExportPending differs from Export after the merge")
			}
			if r.Commit.Welcome == nil || len(r.Commit.Added) != 2 {
				t.Fatalf("commit info %+v", r.Commit)
			}
			for _, c := range []struct {
				c  *client
				kp *KeyPackagePrivate
			}{{bob, bkp}, {carol, ckp}} {
				b, _ := c.kp.MarshalBinary()
				kp, err := UnmarshalKeyPackagePrivate(b)
				if err != nil {
					t.Fatal(err)
				}
				if c.c.g, err = Join(testConfig, r.Commit.Welcome, []*KeyPackagePrivate{kp}, JoinOptions{}); err != nil {
					t.Fatalf("%s joins: %v", c.c.name, err)
				}
			}
			agree(t, alice, bob, carol)
			sendAll(t, alice, "hello", bob, carol)
			sendAll(t, bob, "hi", alice, carol)
			bob.roundTrip(t)
			sendAll(t, carol, "hey", alice, bob)

			// Bob proposes an update; Alice commits it by reference.
			prop, _, err := bob.g.ProposeUpdate(bob.rand)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []*client{alice, carol} {
				if r, err := c.g.Process(prop, t0); err != nil || r.Kind != KindProposal {
					t.Fatalf("%s: proposal: %v", c.name, err)
				}
			}
			if _, err := bob.g.Process(prop, t0); !errors.Is(err, ErrOwnMessage) {
				t.Fatalf("bob processes his own proposal: %v", err)
			}
			msg, err = alice.g.Commit(CommitOptions{}, t0, alice.rand)
			if err != nil {
				t.Fatal(err)
			}
			r = commitAll(t, alice, msg, bob, carol)
			if len(r.Commit.Updated) != 1 {
				t.Fatalf("update not committed: %+v", r.Commit)
			}
			agree(t, alice, bob, carol)
			sendAll(t, bob, "updated", alice, carol)

			// Carol commits an empty commit (self-update).
			msg, err = carol.g.Commit(CommitOptions{}, t0, carol.rand)
			if err != nil {
				t.Fatal(err)
			}
			commitAll(t, carol, msg, alice, bob)
			agree(t, alice, bob, carol)

			// Alice removes Carol; Carol cannot read what follows.
			msg, err = alice.g.Commit(CommitOptions{Remove: []uint32{carol.g.LeafIndex()}}, t0, alice.rand)
			if err != nil {
				t.Fatal(err)
			}
			commitAll(t, alice, msg, bob)
			r, err = carol.g.Process(msg, t0)
			if err != nil || !r.Commit.SelfRemoved || carol.g.Active() {
				t.Fatalf("carol processes her removal: %+v, %v", r, err)
			}
			agree(t, alice, bob)
			after, err := alice.g.Encrypt([]byte("secret"), nil, alice.rand)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := carol.g.Process(after, t0); err == nil {
				t.Fatal("removed member decrypted a message of the next epoch")
			}
			if _, err := carol.g.Encrypt([]byte("x"), nil, carol.rand); !errors.Is(err, ErrNotMember) {
				t.Fatalf("removed member encrypts: %v", err)
			}
			if r, err := bob.g.Process(after, t0); err != nil || string(r.Data) != "secret" {
				t.Fatalf("bob: %v", err)
			}
			for _, c := range []*client{alice, bob, carol} {
				c.roundTrip(t)
			}
			x1, _ := alice.g.Export("topic", []byte("ctx"), 32)
			x2, _ := bob.g.Export("topic", []byte("ctx"), 32)
			if !bytes.Equal(x1, x2) {
				t.Fatal("exported secrets differ")
			}
		})
	}
}

func TestExternalJoin(t *testing.T) {
	cs := DefaultSuite
	alice, bob, dave := newClient(t, cs, "alice", 1), newClient(t, cs, "bob", 2), newClient(t, cs, "dave", 4)
	var err error
	if alice.g, err = NewGroup(testConfig, []byte("group-ext"), alice.cred, alice.key, GroupOptions{}, alice.rand); err != nil {
		t.Fatal(err)
	}
	bkp := bob.keyPackage(t)
	msg, _ := alice.g.Commit(CommitOptions{Add: []*KeyPackage{bkp.KeyPackage()}}, t0, alice.rand)
	r := commitAll(t, alice, msg)
	if bob.g, err = Join(testConfig, r.Commit.Welcome, []*KeyPackagePrivate{bkp}, JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	gi, err := alice.g.GroupInfo(true, true)
	if err != nil {
		t.Fatal(err)
	}
	var commit []byte
	if dave.g, commit, err = JoinExternal(testConfig, gi, dave.cred, dave.key, ExternalJoinOptions{}, dave.rand); err != nil {
		t.Fatal(err)
	}
	if dave.g.Active() {
		t.Fatal("external joiner active before its commit is confirmed")
	}
	dave.roundTrip(t)
	commitAll(t, dave, commit, alice, bob)
	agree(t, alice, bob, dave)
	sendAll(t, dave, "i'm in", alice, bob)
	sendAll(t, alice, "welcome dave", bob, dave)
}

func TestConcurrentCommits(t *testing.T) {
	cs := MLS128DHKEMX25519AES128GCMSHA256Ed25519
	alice, bob := newClient(t, cs, "alice", 1), newClient(t, cs, "bob", 2)
	var err error
	alice.g, _ = NewGroup(testConfig, []byte("group-race"), alice.cred, alice.key, GroupOptions{}, alice.rand)
	bkp := bob.keyPackage(t)
	msg, _ := alice.g.Commit(CommitOptions{Add: []*KeyPackage{bkp.KeyPackage()}}, t0, alice.rand)
	r := commitAll(t, alice, msg)
	bob.g, err = Join(testConfig, r.Commit.Welcome, []*KeyPackagePrivate{bkp}, JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Both commit; the delivery service orders Bob's first.
	am, _ := alice.g.Commit(CommitOptions{}, t0, alice.rand)
	bm, _ := bob.g.Commit(CommitOptions{}, t0, bob.rand)
	commitAll(t, bob, bm, alice)
	if _, err := bob.g.Process(am, t0); !errors.Is(err, ErrEpochGone) {
		t.Fatalf("losing commit: %v", err)
	}
	agree(t, alice, bob)
	sendAll(t, alice, "after the race", bob)
}
