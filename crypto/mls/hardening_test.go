package mls

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// newGroupOf makes a group of the named clients, created by the first,
// with everyone joined.
func newGroupOf(t testing.TB, cs CipherSuite, cfg Config, names ...string) []*client {
	t.Helper()
	cs0 := make([]*client, len(names))
	for i, n := range names {
		cs0[i] = newClient(t, cs, n, uint64(100+i))
	}
	c := cs0[0]
	var err error
	if c.g, err = NewGroup(cfg, []byte("group:"+names[0]), c.cred, c.key, GroupOptions{}, c.rand); err != nil {
		t.Fatal(err)
	}
	if len(names) == 1 {
		return cs0
	}
	var kps []*KeyPackage
	var privs []*KeyPackagePrivate
	for _, o := range cs0[1:] {
		p := o.keyPackage(t)
		privs = append(privs, p)
		kps = append(kps, p.KeyPackage())
	}
	msg, err := c.g.Commit(CommitOptions{Add: kps}, t0, c.rand)
	if err != nil {
		t.Fatal(err)
	}
	r := commitAll(t, c, msg)
	for i, o := range cs0[1:] {
		if o.g, err = Join(cfg, r.Commit.Welcome, privs[i:i+1], JoinOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	agree(t, cs0...)
	return cs0
}

func stateOf(t testing.TB, g *Group) []byte {
	t.Helper()
	b, err := g.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mustFail processes msg at c, expects an error wrapping want (or any
// error when want is nil), and checks the state did not change.
func mustFail(t testing.TB, c *client, msg []byte, want error) error {
	t.Helper()
	before := stateOf(t, c.g)
	_, err := c.g.Process(msg, t0)
	if err == nil {
		t.Fatalf("%s processed a message it should refuse", c.name)
	}
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("%s: %v, want %v", c.name, err, want)
	}
	if !bytes.Equal(before, stateOf(t, c.g)) {
		t.Fatalf("%s: state changed by a failed Process (%v)", c.name, err)
	}
	return err
}

// TestTamper flips bytes of every kind of message: nothing tampered is
// accepted, authentication failures are the one ErrAuth, and the state
// never changes.
func TestTamper(t *testing.T) {
	cs := newGroupOf(t, MLS128DHKEMX25519AES128GCMSHA256Ed25519, testConfig, "alice", "bob")
	alice, bob := cs[0], cs[1]
	app, _ := alice.g.Encrypt([]byte("a message to tamper with"), []byte("aad"), alice.rand)
	prop, _, err := alice.g.ProposeUpdate(alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	alice.g.cfg.PublicHandshake = true
	pubProp, _, err := alice.g.ProposeRemove(bob.g.LeafIndex(), alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	alice.g.cfg.PublicHandshake = false
	commit, err := alice.g.Commit(CommitOptions{}, t0, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	for name, msg := range map[string][]byte{"application": app, "proposal": prop, "public proposal": pubProp, "commit": commit} {
		auth := 0
		for i := range msg {
			if len(msg) > 600 && i%7 != 0 && i > 40 {
				continue // sample long messages
			}
			bad := bytes.Clone(msg)
			bad[i] ^= 0x10
			if err := mustFail(t, bob, bad, nil); errors.Is(err, ErrAuth) {
				auth++
			}
		}
		if auth == 0 {
			t.Errorf("%s: no tampered byte reported as ErrAuth", name)
		}
		if err := mustFail(t, bob, msg[:len(msg)-1], nil); errors.Is(err, ErrAuth) == false && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: truncated: %v", name, err)
		}
	}
	// The untampered messages still work afterwards.
	if _, err := bob.g.Process(app, t0); err != nil {
		t.Fatal(err)
	}
}

func TestGenerationWindow(t *testing.T) {
	cfg := testConfig
	cfg.MaxGenerationGap = 50
	cfg.OutOfOrderWindow = 10
	cs := newGroupOf(t, MLS128DHKEMX25519AES128GCMSHA256Ed25519, cfg, "alice", "bob")
	alice, bob := cs[0], cs[1]
	var msgs [][]byte
	for range 70 {
		m, err := alice.g.Encrypt([]byte("m"), nil, alice.rand)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	mustFail(t, bob, msgs[51], ErrGeneration) // 51 ahead of generation 0
	if _, err := bob.g.Process(msgs[30], t0); err != nil {
		t.Fatal(err)
	}
	mustFail(t, bob, msgs[30], ErrDuplicate) // replay
	if _, err := bob.g.Process(msgs[25], t0); err != nil {
		t.Fatalf("late message inside the window: %v", err)
	}
	mustFail(t, bob, msgs[25], ErrDuplicate) // used, not given up
	mustFail(t, bob, msgs[5], ErrEvicted)    // outside the window of 10: never kept
	mustFail(t, bob, msgs[19], ErrEvicted)
	// Keeping skipped keys: 69 would skip 38 generations, more than the
	// window holds; 31 skips none.
	if _, err := bob.g.ProcessWith(msgs[69], t0, ProcessOptions{KeepSkipped: true}); !errors.Is(err, ErrWouldEvict) {
		t.Fatalf("a message skipping past the window with KeepSkipped: %v", err)
	}
	if _, err := bob.g.ProcessWith(msgs[31], t0, ProcessOptions{KeepSkipped: true}); err != nil {
		t.Fatal(err)
	}
	// 20 to 29 are kept but for 25; 38 would skip 6 more: 15 over 10.
	mustFail(t, bob, msgs[31], ErrDuplicate)
	if _, err := bob.g.ProcessWith(msgs[38], t0, ProcessOptions{KeepSkipped: true}); !errors.Is(err, ErrWouldEvict) {
		t.Fatalf("a message evicting kept keys with KeepSkipped: %v", err)
	}
	if _, err := bob.g.Process(msgs[38], t0); err != nil {
		t.Fatal(err)
	}
	// Kept were 20-24, 26-29, 32-37: the lowest five are given up.
	mustFail(t, bob, msgs[24], ErrEvicted)
	if _, err := bob.g.Process(msgs[26], t0); err != nil {
		t.Fatalf("a key the window still holds: %v", err)
	}
	if _, err := bob.g.Process(msgs[69], t0); err != nil {
		t.Fatal(err)
	}
	bob.roundTrip(t)
	if _, err := bob.g.Process(msgs[68], t0); err != nil {
		t.Fatalf("skipped key lost in a state round trip: %v", err)
	}
	mustFail(t, bob, msgs[68], ErrDuplicate)
	mustFail(t, bob, msgs[40], ErrEvicted) // given up, and still said after the round trip
	mustFail(t, bob, msgs[69], ErrDuplicate)
}

func TestEpochs(t *testing.T) {
	cs := newGroupOf(t, MLS128DHKEMX25519AES128GCMSHA256Ed25519, testConfig, "alice", "bob")
	alice, bob := cs[0], cs[1]
	var late [][]byte
	var commits [][]byte
	for range 4 {
		m, _ := alice.g.Encrypt([]byte("late"), nil, alice.rand)
		late = append(late, m)
		c, err := alice.g.Commit(CommitOptions{}, t0, alice.rand)
		if err != nil {
			t.Fatal(err)
		}
		commitAll(t, alice, c)
		commits = append(commits, c)
	}
	// Bob is behind: the second commit is ahead of him.
	mustFail(t, bob, commits[1], ErrEpochAhead)
	mustFail(t, bob, late[1], ErrEpochAhead)
	for _, c := range commits {
		if _, err := bob.g.Process(c, t0); err != nil {
			t.Fatal(err)
		}
	}
	agree(t, alice, bob)
	// Two past epochs are kept (the default).
	mustFail(t, bob, late[0], ErrEpochGone)
	mustFail(t, bob, late[1], ErrEpochGone)
	for _, m := range late[2:] {
		if r, err := bob.g.Process(m, t0); err != nil || string(r.Data) != "late" {
			t.Fatalf("late message of a kept epoch: %v", err)
		}
	}
	mustFail(t, bob, commits[3], ErrEpochGone)
	mustFail(t, alice, late[3], ErrOwnMessage)
}

func TestCredentialAndLifetime(t *testing.T) {
	cs := MLS128DHKEMX25519AES128GCMSHA256Ed25519
	alice, mallory := newClient(t, cs, "alice", 1), newClient(t, cs, "mallory", 2)
	cfg := testConfig
	cfg.ValidateCredential = func(c Credential, key []byte, prev *Credential) error {
		if string(c.Identity) == "mallory" {
			return errors.New("not a contact")
		}
		return nil
	}
	var err error
	if alice.g, err = NewGroup(cfg, []byte("g"), alice.cred, alice.key, GroupOptions{}, alice.rand); err != nil {
		t.Fatal(err)
	}
	kp := mallory.keyPackage(t).KeyPackage()
	if _, err := alice.g.Commit(CommitOptions{Add: []*KeyPackage{kp}}, t0, alice.rand); !errors.Is(err, ErrCredential) {
		t.Fatalf("adding a refused credential: %v", err)
	}
	mallory.cred.Identity = []byte("mallory2")
	old, err := NewKeyPackage(mallory.cred, mallory.key, t0.Add(-48*time.Hour), t0.Add(-time.Hour), mallory.rand)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.g.Commit(CommitOptions{Add: []*KeyPackage{old.KeyPackage()}}, t0, alice.rand); !errors.Is(err, ErrExpired) {
		t.Fatalf("adding an expired key package: %v", err)
	}
	long, _ := NewKeyPackage(mallory.cred, mallory.key, t0, t0.Add(365*24*time.Hour), mallory.rand)
	if _, err := alice.g.Commit(CommitOptions{Add: []*KeyPackage{long.KeyPackage()}}, t0, alice.rand); !errors.Is(err, ErrInvalid) {
		t.Fatalf("adding a key package with a year-long lifetime: %v", err)
	}
	if _, ok := alice.g.PendingCommit(); ok {
		t.Fatal("failed commits left a pending commit")
	}
}

func TestReInit(t *testing.T) {
	cs := newGroupOf(t, MLS128DHKEMX25519AES128GCMSHA256Ed25519, testConfig, "alice", "bob")
	alice, bob := cs[0], cs[1]
	next := DefaultSuite
	msg, err := alice.g.Commit(CommitOptions{ReInit: &ReInitParams{GroupID: []byte("group-2"), CipherSuite: next}}, t0, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	r := commitAll(t, alice, msg, bob)
	if !r.Commit.ReInit || alice.g.Active() || bob.g.Active() {
		t.Fatal("reinit did not close the group")
	}
	if _, err := bob.g.Encrypt([]byte("x"), nil, bob.rand); !errors.Is(err, ErrNotMember) {
		t.Fatalf("sending after reinit: %v", err)
	}
	alice.roundTrip(t)
	bob.roundTrip(t)
	akey, _ := GenerateSignatureKey(next, alice.rand)
	bkey, _ := GenerateSignatureKey(next, bob.rand)
	bkp, err := NewKeyPackage(bob.cred, bkey, t0, t0.Add(time.Hour), bob.rand)
	if err != nil {
		t.Fatal(err)
	}
	ng, err := alice.g.ReInitGroup(alice.cred, akey, []*KeyPackage{bkp.KeyPackage()}, t0, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	r, err = ng.MergePendingCommit()
	if err != nil || r.Commit.Welcome == nil {
		t.Fatalf("merge: %v", err)
	}
	if _, err := Join(testConfig, r.Commit.Welcome, []*KeyPackagePrivate{bkp}, JoinOptions{}); err == nil {
		t.Fatal("joined a reinitialized group without the old group")
	}
	nb, err := Join(testConfig, r.Commit.Welcome, []*KeyPackagePrivate{bkp}, JoinOptions{ReInitFrom: bob.g})
	if err != nil {
		t.Fatal(err)
	}
	if ng.Epoch() != 1 || !bytes.Equal(ng.EpochAuthenticator(), nb.EpochAuthenticator()) || ng.CipherSuite() != next {
		t.Fatal("new group members disagree")
	}
}

func TestExternalPSKAndExtensions(t *testing.T) {
	psk := map[string][]byte{"shared": bytes.Repeat([]byte{7}, 32)}
	cfg := testConfig
	cfg.ExternalPSK = func(id []byte) ([]byte, bool) { v, ok := psk[string(id)]; return v, ok }
	cs := newGroupOf(t, DefaultSuite, cfg, "alice", "bob", "carol")
	alice, bob, carol := cs[0], cs[1], cs[2]
	prop, _, err := bob.g.ProposeExternalPSK([]byte("shared"), bob.rand)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{alice, carol} {
		if _, err := c.g.Process(prop, t0); err != nil {
			t.Fatal(err)
		}
	}
	rc := mustEncode(func(w *writer) {
		encodeU16s(w, nil)
		encodeU16s(w, nil)
		encodeU16s(w, []uint16{uint16(CredentialBasic)})
	})
	msg, err := alice.g.Commit(CommitOptions{SetExtensions: true, Extensions: []Extension{{Type: extRequiredCapabilities, Data: rc}}}, t0, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	commitAll(t, alice, msg, bob, carol)
	agree(t, alice, bob, carol)
	// Dave, who does not have the PSK, cannot join by a commit using it.
	delete(psk, "shared")
	if _, _, err := carol.g.ProposeExternalPSK([]byte("shared"), carol.rand); !errors.Is(err, ErrPSK) {
		t.Fatalf("proposing an unknown PSK: %v", err)
	}
}

// TestStateTreeHashes checks that a stored state carries its tree hashes,
// so loading it hashes nothing, and that stored hashes that do not match
// the group context are refused.
func TestStateTreeHashes(t *testing.T) {
	cs := newGroupOf(t, DefaultSuite, testConfig, "alice", "bob", "carol")
	alice := cs[0]
	g, err := UnmarshalGroup(testConfig, stateOf(t, alice.g))
	if err != nil {
		t.Fatal(err)
	}
	for x, h := range g.st.tree.hashes {
		if len(h) != g.suite.nh {
			t.Fatalf("node %d: no stored tree hash", x)
		}
	}
	checkTreeHashes(t, "alice", g)

	r := root(g.st.tree.size())
	g.st.tree.hashes[r] = bytes.Clone(g.st.tree.hashes[r])
	g.st.tree.hashes[r][0] ^= 1
	if _, err := UnmarshalGroup(testConfig, stateOf(t, g)); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("state with a wrong root tree hash: %v", err)
	}
	g.st.tree.hashes[r][0] ^= 1
	g.st.tree.hashes[r] = g.st.tree.hashes[r][:len(g.st.tree.hashes[r])-1]
	if _, err := UnmarshalGroup(testConfig, stateOf(t, g)); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("state with a short tree hash: %v", err)
	}
}
