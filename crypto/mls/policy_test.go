package mls

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"
)

// extAdmins is an application's own GroupContext extension in these tests:
// the identities allowed to add and remove members, one per line.
const extAdmins ExtensionType = 0xF0A0

// adminPolicy lets only the identities of extAdmins add, remove or change
// the extensions; anyone may update its own leaf or remove itself.
func adminPolicy(g **Group) func(p ProposalCheck) error {
	return func(p ProposalCheck) error {
		isAdmin := false
		for _, e := range (*g).Extensions() {
			if e.Type == extAdmins {
				isAdmin = slices.ContainsFunc(bytes.Split(e.Data, []byte("\n")), func(a []byte) bool { return bytes.Equal(a, p.Sender.Credential.Identity) })
			}
		}
		switch {
		case p.SenderExternal:
			return errors.New("no external senders")
		case p.Type == ProposalUpdate:
			return nil
		case p.Type == ProposalRemove && p.Member.Index == p.Sender.Index && !p.ByValue:
			return nil
		case isAdmin:
			return nil
		}
		return errors.New("not an admin")
	}
}

// policyClient is a client whose Config knows extAdmins and applies
// adminPolicy to its own group.
func policyClient(t *testing.T, name string, seed uint64) (*client, Config) {
	c := newClient(t, MLS128MLKEM768X25519AES128GCMSHA256Ed25519, name, seed)
	cfg := testConfig
	cfg.Extensions = []ExtensionType{extAdmins}
	cfg.ValidateProposal = adminPolicy(&c.g)
	return c, cfg
}

func (c *client) keyPackageWith(t *testing.T, exts []ExtensionType) *KeyPackagePrivate {
	t.Helper()
	kp, err := NewKeyPackageWith(c.cred, c.key, t0.Add(-time.Hour), t0.Add(30*24*time.Hour), KeyPackageOptions{Extensions: exts}, c.rand)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func TestApplicationExtension(t *testing.T) {
	alice, acfg := policyClient(t, "alice", 1)
	bob, bcfg := policyClient(t, "bob", 2)
	admins := []Extension{{Type: extAdmins, Data: []byte("alice")}}

	// Without the type in Config.Extensions the group cannot be made.
	if _, err := NewGroup(testConfig, []byte("group-with-admins"), alice.cred, alice.key, GroupOptions{Extensions: admins}, alice.rand); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("NewGroup with an unknown extension: %v, want ErrUnsupported", err)
	}
	var err error
	if alice.g, err = NewGroup(acfg, []byte("group-with-admins"), alice.cred, alice.key, GroupOptions{Extensions: admins}, alice.rand); err != nil {
		t.Fatal(err)
	}

	// A KeyPackage that does not list the extension cannot be added.
	if _, err := alice.g.Commit(CommitOptions{Add: []*KeyPackage{bob.keyPackage(t).KeyPackage()}}, t0, alice.rand); !errors.Is(err, ErrInvalid) {
		t.Fatalf("adding a client without the extension: %v, want ErrInvalid", err)
	}
	kp := bob.keyPackageWith(t, []ExtensionType{extAdmins})
	commit, err := alice.g.Commit(CommitOptions{Add: []*KeyPackage{kp.KeyPackage()}}, t0, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	own := commitAll(t, alice, commit)
	// A joiner whose Config does not know the extension refuses the group.
	if _, err := Join(testConfig, own.Commit.Welcome, []*KeyPackagePrivate{kp}, JoinOptions{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Join without the extension: %v, want ErrUnsupported", err)
	}
	if bob.g, err = Join(bcfg, own.Commit.Welcome, []*KeyPackagePrivate{kp}, JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := bob.g.Extensions(); len(got) != 1 || string(got[0].Data) != "alice" {
		t.Fatalf("bob sees extensions %v", got)
	}
	agree(t, alice, bob)

	// The admin changes the extension; both follow.
	commit, err = alice.g.Commit(CommitOptions{SetExtensions: true, Extensions: []Extension{{Type: extAdmins, Data: []byte("alice\nbob")}}}, t0, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	commitAll(t, alice, commit, bob)
	agree(t, alice, bob)
	if got := bob.g.Extensions(); string(got[0].Data) != "alice\nbob" {
		t.Fatalf("bob sees admins %q", got[0].Data)
	}
	bob.roundTrip(t)
}

func TestValidateProposal(t *testing.T) {
	alice, acfg := policyClient(t, "alice", 1)
	bob, bcfg := policyClient(t, "bob", 2)
	carol, ccfg := policyClient(t, "carol", 3)
	dave, _ := policyClient(t, "dave", 4)
	exts := []ExtensionType{extAdmins}
	var err error
	if alice.g, err = NewGroup(acfg, []byte("group-with-policy"), alice.cred, alice.key,
		GroupOptions{Extensions: []Extension{{Type: extAdmins, Data: []byte("alice")}}}, alice.rand); err != nil {
		t.Fatal(err)
	}
	kb, kc := bob.keyPackageWith(t, exts), carol.keyPackageWith(t, exts)
	commit, err := alice.g.Commit(CommitOptions{Add: []*KeyPackage{kb.KeyPackage(), kc.KeyPackage()}}, t0, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	own := commitAll(t, alice, commit)
	if bob.g, err = Join(bcfg, own.Commit.Welcome, []*KeyPackagePrivate{kb}, JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	if carol.g, err = Join(ccfg, own.Commit.Welcome, []*KeyPackagePrivate{kc}, JoinOptions{}); err != nil {
		t.Fatal(err)
	}

	unchanged := func(c *client, before []byte) {
		t.Helper()
		after, err := c.g.MarshalBinary()
		if err != nil || !bytes.Equal(before, after) {
			t.Fatalf("%s: a refused message changed the group (%v)", c.name, err)
		}
	}

	// Bob, no admin, proposes to add dave: refused by the others.
	bobState, _ := bob.g.MarshalBinary()
	prop, _, err := bob.g.ProposeAdd(dave.keyPackageWith(t, exts).KeyPackage(), bob.rand)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{alice, carol} {
		before, _ := c.g.MarshalBinary()
		if _, err := c.g.Process(prop, t0); !errors.Is(err, ErrRefused) {
			t.Fatalf("%s processes a non-admin's add: %v, want ErrRefused", c.name, err)
		}
		unchanged(c, before)
	}

	// Bob commits carol's removal by value: refused, nothing changes.
	bob2, err := UnmarshalGroup(bcfg, bobState)
	if err != nil {
		t.Fatal(err)
	}
	bob.g = bob2
	commit, err = bob.g.Commit(CommitOptions{Remove: []uint32{carol.g.LeafIndex()}}, t0, bob.rand)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{alice, carol} {
		before, _ := c.g.MarshalBinary()
		if _, err := c.g.Process(commit, t0); !errors.Is(err, ErrRefused) {
			t.Fatalf("%s processes a non-admin's removal: %v, want ErrRefused", c.name, err)
		}
		unchanged(c, before)
	}
	bob.g.DiscardPendingCommit()

	// Carol proposes her own removal (leaving); bob, no admin, may commit
	// it by reference, and everyone follows.
	leave, _, err := carol.g.ProposeRemove(carol.g.LeafIndex(), carol.rand)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{alice, bob} {
		if _, err := c.g.Process(leave, t0); err != nil {
			t.Fatalf("%s processes carol's leave: %v", c.name, err)
		}
	}
	// Bob's own pending update too: an empty commit with a path.
	commit, err = bob.g.Commit(CommitOptions{}, t0, bob.rand)
	if err != nil {
		t.Fatal(err)
	}
	r := commitAll(t, bob, commit, alice)
	if len(r.Commit.Removed) != 1 || string(r.Commit.Removed[0].Credential.Identity) != "carol" {
		t.Fatalf("commit removed %v, want carol", r.Commit.Removed)
	}
	if r, err := carol.g.Process(commit, t0); err != nil || !r.Commit.SelfRemoved {
		t.Fatalf("carol processes her removal: %v", err)
	}
	agree(t, alice, bob)
	sendAll(t, alice, "after", bob)
}

func TestPeek(t *testing.T) {
	alice, acfg := policyClient(t, "alice", 1)
	var err error
	if alice.g, err = NewGroup(acfg, []byte("group-to-peek-at"), alice.cred, alice.key,
		GroupOptions{Extensions: []Extension{{Type: extAdmins, Data: []byte("alice")}}}, alice.rand); err != nil {
		t.Fatal(err)
	}
	app, err := alice.g.Encrypt([]byte("hi"), nil, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	commit, err := alice.g.Commit(CommitOptions{}, t0, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		msg  []byte
		kind MessageKind
	}{{app, KindApplication}, {commit, KindCommit}} {
		h, err := Peek(c.msg)
		if err != nil || h.Kind != c.kind || h.Epoch != 0 || string(h.GroupID) != "group-to-peek-at" {
			t.Errorf("Peek: %+v, %v; want kind %d", h, err, c.kind)
		}
	}
	kp := alice.keyPackage(t)
	b, _ := kp.KeyPackage().MarshalBinary()
	if _, err := Peek(b); !errors.Is(err, ErrMalformed) {
		t.Errorf("Peek of a KeyPackage: %v", err)
	}
	if _, err := Peek(app[:len(app)/2]); err == nil {
		t.Error("Peek of half a message succeeded")
	}
}
