package ratchet

import (
	"bytes"
	"testing"
)

// fuzzSetup returns states at several points of a conversation and the
// genuine messages exchanged, some of them not yet delivered.
func fuzzSetup(t testing.TB) (states [][]byte, msgs [][]byte) {
	p := newPair(t)
	keep := func(s *State) { states = append(states, marshal(t, s)) }
	keep(p.alice)
	keep(p.bob)
	m1 := p.encrypt(t, p.alice, "one")
	m2 := p.encrypt(t, p.alice, "two")
	m3 := p.encrypt(t, p.alice, "three")
	msgs = append(msgs, m1, m2, m3)
	mustDecrypt(t, p.bob, m2, "two") // m1 skipped
	keep(p.bob)
	r1 := p.encrypt(t, p.bob, "reply")
	msgs = append(msgs, r1)
	mustDecrypt(t, p.alice, r1, "reply")
	keep(p.alice)
	m4 := p.encrypt(t, p.alice, "four")
	msgs = append(msgs, m4)
	mustDecrypt(t, p.bob, m4, "four") // old chain with m1 and m3 skipped
	keep(p.bob)
	return states, msgs
}

func FuzzUnmarshalBinary(f *testing.F) {
	states, msgs := fuzzSetup(f)
	for _, s := range states {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Add([]byte{stateFormat})
	f.Fuzz(func(t *testing.T, data []byte) {
		var s State
		if err := s.UnmarshalBinary(data); err != nil {
			return
		}
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("marshal(unmarshal(b)) != b:\n%x\n%x", b, data)
		}
		// A parsed state is safe to use.
		for _, m := range msgs {
			s.Decrypt(nil, m, t0)
		}
		if s.CanSend() {
			s.Encrypt(nil, []byte("x"), testRand(2))
		}
	})
}

func FuzzDecrypt(f *testing.F) {
	states, msgs := fuzzSetup(f)
	for i, m := range msgs {
		f.Add(uint8(i), m)
		f.Add(uint8(i+1), m)
		f.Add(uint8(i), m[:len(m)-1])
	}
	f.Fuzz(func(t *testing.T, which uint8, msg []byte) {
		before := states[int(which)%len(states)]
		var s State
		if err := s.UnmarshalBinary(before); err != nil {
			t.Fatal(err)
		}
		pt, err := s.Decrypt(nil, msg, t0)
		if err != nil {
			if pt != nil {
				t.Fatal("plaintext returned with an error")
			}
			if after := marshal(t, &s); !bytes.Equal(before, after) {
				t.Fatalf("state changed by a failed decrypt (%v)", err)
			}
			return
		}
		for _, m := range msgs {
			if bytes.Equal(m, msg) {
				return
			}
		}
		t.Fatalf("a message that was never sent decrypted to %q", pt)
	})
}
