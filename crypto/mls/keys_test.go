package mls

import (
	"bytes"
	"errors"
	"testing"
)

// TestKeys: the keys of a state that read messages, applied to the state
// written before them, make that state the one that read them (their
// keys used, the next message readable); keys of another epoch are
// refused and change nothing.
func TestKeys(t *testing.T) {
	c := newGroupOf(t, MLS128DHKEMX25519AES128GCMSHA256Ed25519, testConfig, "alice", "bob", "carol")
	alice, bob, carol := c[0], c[1], c[2]
	var msgs [][]byte
	for i := range 3 {
		m, err := alice.g.Encrypt([]byte{byte(i)}, nil, alice.rand)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	written := stateOf(t, bob.g)
	for _, m := range msgs[:2] {
		if _, err := bob.g.Process(m, t0); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := bob.g.MarshalKeys()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) >= len(written)/4 {
		t.Errorf("keys of %d bytes for a state of %d", len(keys), len(written))
	}
	back, err := UnmarshalGroup(testConfig, written)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.ApplyKeys(keys); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs[:2] {
		if _, err := back.Process(m, t0); !errors.Is(err, ErrDuplicate) {
			t.Errorf("a message read before the keys were taken: %v, want ErrDuplicate", err)
		}
	}
	r, err := back.Process(msgs[2], t0)
	if err != nil || !bytes.Equal(r.Data, []byte{2}) {
		t.Fatalf("the next message: %+v, %v", r, err)
	}
	if b := stateOf(t, back); !bytes.Equal(b, stateOf(t, bob.g)) {
		// bob has not read msgs[2]: read it, then both are the same.
		if _, err := bob.g.Process(msgs[2], t0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(stateOf(t, back), stateOf(t, bob.g)) {
			t.Error("the state with the keys applied is not the state they came from")
		}
	}

	// A commit: the keys of the epoch before no longer fit.
	msg, err := carol.g.Commit(CommitOptions{}, t0, carol.rand)
	if err != nil {
		t.Fatal(err)
	}
	commitAll(t, carol, msg, alice, bob)
	before := stateOf(t, bob.g)
	if err := bob.g.ApplyKeys(keys); !errors.Is(err, ErrInvalidState) {
		t.Errorf("keys of the epoch before: %v, want ErrInvalidState", err)
	}
	if !bytes.Equal(stateOf(t, bob.g), before) {
		t.Error("keys refused changed the state")
	}
	for _, bad := range [][]byte{nil, {0}, {2}, keys[:len(keys)-1], append(bytes.Clone(keys), 0)} {
		if err := back.ApplyKeys(bad); !errors.Is(err, ErrInvalidState) {
			t.Errorf("ApplyKeys(%x): %v, want ErrInvalidState", bad, err)
		}
	}
}

// TestKeysOwnMessages: the keys of a state that encrypted messages,
// applied to the state written before them, carry its sender ratchet on:
// the next message it encrypts takes the generation after theirs, and
// every member reads it. The state written before, alone, would encrypt
// with a generation used already (read as a duplicate).
func TestKeysOwnMessages(t *testing.T) {
	c := newGroupOf(t, MLS128DHKEMX25519AES128GCMSHA256Ed25519, testConfig, "alice", "bob", "carol")
	alice, bob := c[0], c[1]
	// alice has sent before the state is written: its ratchet is derived.
	m0, err := alice.g.Encrypt([]byte{0}, nil, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	written := stateOf(t, alice.g)
	var msgs [][]byte
	for i := 1; i <= 3; i++ {
		m, err := alice.g.Encrypt([]byte{byte(i)}, nil, alice.rand)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	keys, err := alice.g.MarshalKeys()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalGroup(testConfig, written)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.ApplyKeys(keys); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stateOf(t, back), stateOf(t, alice.g)) {
		t.Error("the state with the keys applied is not the state that encrypted")
	}
	leaf := back.st.priv.leaf
	if got, want := back.st.secretTree.ratchets[leaf][applicationRatchet].next, uint32(4); got != want {
		t.Errorf("sender ratchet at generation %d after the keys, want %d", got, want)
	}
	next, err := back.Encrypt([]byte{4}, nil, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range append(append([][]byte{m0}, msgs...), next) {
		r, err := bob.g.Process(m, t0)
		if err != nil || !bytes.Equal(r.Data, []byte{byte(i)}) {
			t.Fatalf("bob reads message %d: %+v, %v", i, r, err)
		}
	}

	// Without the keys, the state written before encrypts with the
	// generation of a message sent: bob has read it already.
	stale, err := UnmarshalGroup(testConfig, written)
	if err != nil {
		t.Fatal(err)
	}
	again, err := stale.Encrypt([]byte{5}, nil, alice.rand)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.g.Process(again, t0); !errors.Is(err, ErrDuplicate) {
		t.Errorf("a message of the state without its keys: %v, want ErrDuplicate (its generation used)", err)
	}
}
