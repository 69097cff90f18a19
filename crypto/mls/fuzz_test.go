package mls

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// fuzzFixture is a three-member group and messages of every kind from it,
// made once per fuzz target.
type fuzzFixture struct {
	bob      []byte // bob's state, to process inputs with
	joinerKP *KeyPackagePrivate
	carolKP  *KeyPackagePrivate
	welcome  []byte
	info     []byte
	messages [][]byte
	tree     []byte
}

func newFuzzFixture(t testing.TB) *fuzzFixture {
	cs := newGroupOf(t, MLS128DHKEMX25519AES128GCMSHA256Ed25519, testConfig, "alice", "bob")
	alice, bob := cs[0], cs[1]
	f := &fuzzFixture{bob: stateOf(t, bob.g)}
	app, _ := alice.g.Encrypt([]byte("hello"), []byte("aad"), alice.rand)
	prop, _, _ := alice.g.ProposeUpdate(alice.rand)
	alice.g.cfg.PublicHandshake = true
	pubProp, _, _ := alice.g.ProposeRemove(bob.g.LeafIndex(), alice.rand)
	carol := newClient(t, DefaultSuite, "carol", 9)
	f.carolKP = carol.keyPackage(t)
	ckp := newClient(t, MLS128DHKEMX25519AES128GCMSHA256Ed25519, "carol", 9).keyPackage(t)
	commit, err := alice.g.Commit(CommitOptions{Add: []*KeyPackage{ckp.KeyPackage()}}, t0, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	f.messages = [][]byte{app, prop, pubProp, commit}
	r, err := alice.g.Process(commit, t0)
	if err != nil {
		t.Fatal(err)
	}
	f.welcome, f.joinerKP = r.Commit.Welcome, ckp
	f.info, _ = alice.g.GroupInfo(true, true)
	f.tree = alice.g.RatchetTree()
	kp, _ := f.carolKP.KeyPackage().MarshalBinary()
	f.messages = append(f.messages, f.welcome, f.info, kp)
	return f
}

func FuzzParseMessage(f *testing.F) {
	fx := newFuzzFixture(f)
	for _, m := range fx.messages {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, perr := Peek(b)
		m, err := parseMessage(b)
		if err != nil {
			if perr == nil {
				t.Fatalf("Peek accepted what does not parse: %+v", h)
			}
			return
		}
		out, err := encode(m.encode)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("message does not re-encode to its bytes (%v)", err)
		}
	})
}

func FuzzParseKeyPackage(f *testing.F) {
	fx := newFuzzFixture(f)
	kp, _ := fx.carolKP.KeyPackage().MarshalBinary()
	f.Add(kp)
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseKeyPackage(b)
		if err != nil {
			return
		}
		if out, _ := k.MarshalBinary(); !bytes.Equal(out, b) {
			t.Fatal("key package does not re-encode to its bytes")
		}
	})
}

func FuzzParseTree(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.tree)
	s, _ := lookupSuite(MLS128DHKEMX25519AES128GCMSHA256Ed25519)
	f.Fuzz(func(t *testing.T, b []byte) {
		tree, err := parseTree(b)
		if err != nil {
			return
		}
		if !bytes.Equal(tree.bytes(), b) {
			t.Fatal("tree does not re-encode to its bytes")
		}
		tree.rootHash(s)
		_ = s.validateTree(tree, []byte("g"), nil, acceptAll, 0)
	})
}

func FuzzUnmarshalGroup(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.bob)
	for _, v := range []string{"v1", "v2"} {
		old, err := os.ReadFile("testdata/state-" + v + "/bob")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(old)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := UnmarshalGroup(testConfig, b)
		if err != nil {
			return
		}
		out, err := g.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := UnmarshalGroup(testConfig, out); err != nil {
			t.Fatalf("re-marshalled state does not decode: %v", err)
		}
	})
}

func FuzzUnmarshalKeyPackagePrivate(f *testing.F) {
	fx := newFuzzFixture(f)
	b, _ := fx.carolKP.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := UnmarshalKeyPackagePrivate(b)
		if err != nil {
			return
		}
		if out, _ := p.MarshalBinary(); !bytes.Equal(out, b) {
			t.Fatal("key package private does not re-encode to its bytes")
		}
	})
}

// FuzzProcess feeds Bob's group arbitrary messages: it never panics, and a
// message it refuses leaves its state as it was.
func FuzzProcess(f *testing.F) {
	fx := newFuzzFixture(f)
	for _, m := range fx.messages {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := UnmarshalGroup(testConfig, fx.bob)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.Process(b, t0); err != nil {
			if after := stateOf(t, g); !bytes.Equal(after, fx.bob) {
				t.Fatalf("refused message (%v) changed the state", err)
			}
		}
	})
}

func FuzzJoin(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.welcome)
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := Join(testConfig, b, []*KeyPackagePrivate{fx.joinerKP}, JoinOptions{})
		if err == nil && g.Epoch() == 0 {
			t.Fatal("joined epoch 0")
		}
	})
}

func FuzzJoinExternal(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.info)
	dave := newClient(f, MLS128DHKEMX25519AES128GCMSHA256Ed25519, "dave", 12)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, err := JoinExternal(testConfig, b, dave.cred, dave.key, ExternalJoinOptions{}, dave.rand)
		if err != nil && errors.Is(err, ErrNotMember) {
			t.Fatal(err)
		}
	})
}

func FuzzApplyKeys(f *testing.F) {
	fx := newFuzzFixture(f)
	g, err := UnmarshalGroup(testConfig, fx.bob)
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range fx.messages {
		if hd, err := Peek(m); err == nil && hd.Kind == KindApplication {
			_, _ = g.Process(m, t0)
		}
	}
	keys, err := g.MarshalKeys()
	if err != nil {
		f.Fatal(err)
	}
	// bob's own messages move its sender ratchet (the keys of a sender).
	if _, err := g.Encrypt([]byte("own"), nil, bytes.NewReader(make([]byte, 64))); err != nil {
		f.Fatal(err)
	}
	own, err := g.MarshalKeys()
	if err != nil {
		f.Fatal(err)
	}
	for _, k := range [][]byte{keys, own} {
		if g, _ := UnmarshalGroup(testConfig, fx.bob); g == nil || g.ApplyKeys(k) != nil {
			f.Fatal("the seed's keys do not apply")
		}
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := UnmarshalGroup(testConfig, fx.bob)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.ApplyKeys(b); err != nil {
			if !errors.Is(err, ErrInvalidState) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("ApplyKeys: %v, want ErrInvalidState", err)
			}
			return
		}
		out, err := g.MarshalKeys()
		if err != nil {
			t.Fatal(err)
		}
		if err := g.ApplyKeys(out); err != nil {
			t.Fatalf("keys re-marshalled do not apply: %v", err)
		}
		st, err := g.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := UnmarshalGroup(testConfig, st); err != nil {
			t.Fatalf("state with the keys applied does not decode: %v", err)
		}
	})
}
