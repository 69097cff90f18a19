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
