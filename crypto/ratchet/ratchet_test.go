package ratchet

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testRand returns a deterministic random source.
func testRand(seed byte) *mrand.ChaCha8 {
	var s [32]byte
	s[0] = seed
	return mrand.NewChaCha8(s)
}

type pair struct {
	alice, bob *State
	rand       *mrand.ChaCha8
}

func newPair(t testing.TB) *pair {
	t.Helper()
	r := testRand(1)
	var secret [32]byte
	r.Read(secret[:])
	var seed [32]byte
	r.Read(seed[:])
	spk, err := ecdh.X25519().NewPrivateKey(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	ad := []byte("sealpost test associated data: alice -> bob")
	alice, err := NewInitiator(secret, ad, spk.PublicKey().Bytes(), Version, r)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := NewResponder(secret, ad, spk, Version)
	if err != nil {
		t.Fatal(err)
	}
	return &pair{alice: alice, bob: bob, rand: r}
}

func (p *pair) encrypt(t testing.TB, s *State, text string) []byte {
	t.Helper()
	msg, err := s.Encrypt(nil, []byte(text), p.rand)
	if err != nil {
		t.Fatalf("encrypt %q: %v", text, err)
	}
	return msg
}

func mustDecrypt(t testing.TB, s *State, msg []byte, want string) {
	t.Helper()
	got, err := s.Decrypt(nil, msg, t0)
	if err != nil {
		t.Fatalf("decrypt %q: %v", want, err)
	}
	if string(got) != want {
		t.Fatalf("decrypt: got %q, want %q", got, want)
	}
}

func marshal(t testing.TB, s *State) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func clone(t testing.TB, s *State) *State {
	t.Helper()
	var c State
	if err := c.UnmarshalBinary(marshal(t, s)); err != nil {
		t.Fatal(err)
	}
	return &c
}

// expectFail decrypts msg, expects wantErr and no plaintext, and checks that
// the state did not change.
func expectFail(t testing.TB, s *State, msg []byte, wantErr error) {
	t.Helper()
	before := marshal(t, s)
	got, err := s.Decrypt(nil, msg, t0)
	if !errors.Is(err, wantErr) {
		t.Fatalf("decrypt: got error %v, want %v", err, wantErr)
	}
	if got != nil {
		t.Fatalf("decrypt returned plaintext %q with error %v", got, err)
	}
	if after := marshal(t, s); !bytes.Equal(before, after) {
		t.Fatalf("state changed by a failed decrypt (%v)", err)
	}
}

func TestConversation(t *testing.T) {
	p := newPair(t)
	if p.bob.CanSend() {
		t.Fatal("responder can send before receiving")
	}
	if _, err := p.bob.Encrypt(nil, []byte("x"), p.rand); !errors.Is(err, ErrCannotSend) {
		t.Fatalf("responder encrypt before receiving: got %v, want ErrCannotSend", err)
	}
	for round := range 5 {
		for i := range round + 1 {
			text := fmt.Sprintf("alice %d.%d", round, i)
			mustDecrypt(t, p.bob, p.encrypt(t, p.alice, text), text)
		}
		for i := range 2 {
			text := fmt.Sprintf("bob %d.%d", round, i)
			mustDecrypt(t, p.alice, p.encrypt(t, p.bob, text), text)
		}
	}
	if len(p.alice.skipped)+len(p.bob.skipped) != 0 {
		t.Fatal("in-order conversation stored skipped keys")
	}
}

func TestMessageLayout(t *testing.T) {
	p := newPair(t)
	pt := bytes.Repeat([]byte{'x'}, 256)
	prefix := []byte("prefix")
	msg, err := p.alice.Encrypt(prefix, pt, p.rand)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(msg, prefix) {
		t.Fatal("Encrypt did not append to dst")
	}
	msg = msg[len(prefix):]
	if len(msg) != len(pt)+Overhead || Overhead != 97 {
		t.Fatalf("message length %d, overhead %d; want %d and 97", len(msg), Overhead, len(pt)+Overhead)
	}
	if msg[0] != Version {
		t.Fatalf("version byte %d, want %d", msg[0], Version)
	}
	out, err := p.bob.Decrypt([]byte("out:"), msg, t0)
	if err != nil || !bytes.Equal(out, append([]byte("out:"), pt...)) {
		t.Fatalf("Decrypt did not append the plaintext to dst: %q, %v", out, err)
	}
}

func TestTooLarge(t *testing.T) {
	p := newPair(t)
	if _, err := p.alice.Encrypt(nil, make([]byte, MaxPlaintextSize+1), p.rand); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	msg, err := p.alice.Encrypt(nil, make([]byte, MaxPlaintextSize), p.rand)
	if err != nil || len(msg) != MaxMessageSize {
		t.Fatalf("largest message: %d bytes, %v", len(msg), err)
	}
	mustDecrypt(t, p.bob, msg, string(make([]byte, MaxPlaintextSize)))
	expectFail(t, p.bob, make([]byte, MaxMessageSize+1), ErrDecrypt)
	expectFail(t, p.bob, msg[:Overhead-1], ErrDecrypt)
}

// tamperAll flips every bit of msg in turn and checks each gives ErrDecrypt
// with the state unchanged; then the genuine message decrypts.
func tamperAll(t *testing.T, s *State, msg []byte, want string) {
	t.Helper()
	before := marshal(t, s)
	bad := bytes.Clone(msg)
	for i := range bad {
		for bit := range 8 {
			bad[i] ^= 1 << bit
			got, err := s.Decrypt(nil, bad, t0)
			if !errors.Is(err, ErrDecrypt) || got != nil {
				t.Fatalf("byte %d bit %d flipped: got %q, %v; want ErrDecrypt", i, bit, got, err)
			}
			bad[i] ^= 1 << bit
		}
	}
	if after := marshal(t, s); !bytes.Equal(before, after) {
		t.Fatal("state changed by tampered messages")
	}
	mustDecrypt(t, s, msg, want)
}

func TestTamperedMessage(t *testing.T) {
	p := newPair(t)
	// First message: a DH step for Bob.
	tamperAll(t, p.bob, p.encrypt(t, p.alice, "first"), "first")
	// In order, same chain.
	tamperAll(t, p.bob, p.encrypt(t, p.alice, "second"), "second")
	// Ahead in the chain (skips one key) and then the skipped one.
	m3 := p.encrypt(t, p.alice, "third")
	tamperAll(t, p.bob, p.encrypt(t, p.alice, "fourth"), "fourth")
	tamperAll(t, p.bob, m3, "third")
	// A DH step for Alice, with a late message of the old chain afterwards.
	m5 := p.encrypt(t, p.alice, "fifth")
	tamperAll(t, p.alice, p.encrypt(t, p.bob, "reply"), "reply")
	tamperAll(t, p.bob, p.encrypt(t, p.alice, "sixth"), "sixth")
	tamperAll(t, p.bob, m5, "fifth")
}

func TestTamperedAD(t *testing.T) {
	p := newPair(t)
	msg := p.encrypt(t, p.alice, "hello")
	for i := range len(p.bob.ad) * 8 {
		b := clone(t, p.bob)
		b.ad[i/8] ^= 1 << (i % 8)
		expectFail(t, b, msg, ErrDecrypt)
	}
	mustDecrypt(t, p.bob, msg, "hello")
	// The same, for a message in a running chain.
	msg = p.encrypt(t, p.alice, "again")
	b := clone(t, p.bob)
	b.ad = append(b.ad, 0)
	expectFail(t, b, msg, ErrDecrypt)
	mustDecrypt(t, p.bob, msg, "again")
}

func TestReplay(t *testing.T) {
	p := newPair(t)
	m1 := p.encrypt(t, p.alice, "one")
	m2 := p.encrypt(t, p.alice, "two")
	m3 := p.encrypt(t, p.alice, "three")
	mustDecrypt(t, p.bob, m1, "one")
	expectFail(t, p.bob, m1, ErrDuplicate) // in order, current chain
	mustDecrypt(t, p.bob, m3, "three")
	mustDecrypt(t, p.bob, m2, "two")
	expectFail(t, p.bob, m2, ErrDuplicate) // skipped key used
	expectFail(t, p.bob, m3, ErrDuplicate)
	// After DH steps on both sides, the messages belong to an old chain.
	mustDecrypt(t, p.alice, p.encrypt(t, p.bob, "reply"), "reply")
	mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "four"), "four")
	for _, m := range [][]byte{m1, m2, m3} {
		expectFail(t, p.bob, m, ErrDuplicate)
	}
}

func TestMaxSkip(t *testing.T) {
	t.Run("same chain", func(t *testing.T) {
		p := newPair(t)
		mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "start"), "start")
		var msgs [][]byte
		for i := range MaxSkip + 2 {
			msgs = append(msgs, p.encrypt(t, p.alice, fmt.Sprint(i)))
		}
		// msgs[MaxSkip+1] would skip MaxSkip+1 keys.
		expectFail(t, p.bob, msgs[MaxSkip+1], ErrTooFarAhead)
		if cap(p.bob.stage) != 0 {
			t.Fatal("keys were derived before the MaxSkip check")
		}
		// msgs[MaxSkip] skips exactly MaxSkip keys.
		mustDecrypt(t, p.bob, msgs[MaxSkip], fmt.Sprint(MaxSkip))
		if len(p.bob.skipped) != MaxSkip {
			t.Fatalf("%d skipped keys, want %d", len(p.bob.skipped), MaxSkip)
		}
		mustDecrypt(t, p.bob, msgs[0], "0")
	})
	t.Run("new chain", func(t *testing.T) {
		p := newPair(t)
		var msgs [][]byte
		for i := range MaxSkip + 2 {
			msgs = append(msgs, p.encrypt(t, p.alice, fmt.Sprint(i)))
		}
		expectFail(t, p.bob, msgs[MaxSkip+1], ErrTooFarAhead)
		if cap(p.bob.stage) != 0 {
			t.Fatal("keys were derived before the MaxSkip check")
		}
		mustDecrypt(t, p.bob, msgs[MaxSkip], fmt.Sprint(MaxSkip))
	})
}

func TestMaxSkipPreviousChain(t *testing.T) {
	p := newPair(t)
	mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "start"), "start")
	// Alice sends MaxSkip+2 more in her first chain; Bob receives none.
	for i := range MaxSkip + 2 {
		p.encrypt(t, p.alice, fmt.Sprint(i))
	}
	// Bob replies (he can: he received "start"); Alice's next message is
	// a new chain with pn = MaxSkip+3, so Bob would skip MaxSkip+2 keys
	// of the old chain.
	mustDecrypt(t, p.alice, p.encrypt(t, p.bob, "reply"), "reply")
	next := p.encrypt(t, p.alice, "next")
	expectFail(t, p.bob, next, ErrTooFarAhead)
	if cap(p.bob.stage) != 0 {
		t.Fatal("keys were derived before the MaxSkip check")
	}
}

func TestOutOfOrderAcrossDHSteps(t *testing.T) {
	p := newPair(t)
	shuffle := mrand.New(mrand.NewPCG(7, 7))
	type sent struct {
		msg  []byte
		text string
	}
	var toBob, toAlice []sent
	deliver := func(s *State, queue *[]sent, k int) {
		// Deliver k random messages of the queue.
		for range k {
			if len(*queue) == 0 {
				return
			}
			i := shuffle.IntN(len(*queue))
			m := (*queue)[i]
			*queue = append((*queue)[:i], (*queue)[i+1:]...)
			mustDecrypt(t, s, m.msg, m.text)
		}
	}
	// Bob must receive one message before he can reply.
	first := p.encrypt(t, p.alice, "a-first")
	mustDecrypt(t, p.bob, first, "a-first")
	for round := range 12 {
		for i := range 4 {
			text := fmt.Sprintf("a%d.%d", round, i)
			toBob = append(toBob, sent{p.encrypt(t, p.alice, text), text})
		}
		deliver(p.bob, &toBob, 3)
		for i := range 3 {
			text := fmt.Sprintf("b%d.%d", round, i)
			toAlice = append(toAlice, sent{p.encrypt(t, p.bob, text), text})
		}
		deliver(p.alice, &toAlice, 2)
	}
	deliver(p.bob, &toBob, len(toBob))
	deliver(p.alice, &toAlice, len(toAlice))
	if len(p.alice.skipped)+len(p.bob.skipped) != 0 {
		t.Fatalf("skipped keys left after every message arrived: %d, %d", len(p.alice.skipped), len(p.bob.skipped))
	}
}

func TestSkippedKeyBound(t *testing.T) {
	p := newPair(t)
	var lost [][]byte
	// Each round: Alice sends 600 messages, Bob receives only the last,
	// storing 599 skipped keys; then a reply starts a new chain.
	mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "start"), "start")
	for round := range 5 {
		var last []byte
		for i := range 600 {
			last = p.encrypt(t, p.alice, fmt.Sprint(round, i))
			if i == 0 {
				lost = append(lost, last)
			}
		}
		mustDecrypt(t, p.bob, last, fmt.Sprint(round, 599))
		mustDecrypt(t, p.alice, p.encrypt(t, p.bob, "reply"), "reply")
		if len(p.bob.skipped) > MaxSkippedKeys {
			t.Fatalf("%d skipped keys stored, bound %d", len(p.bob.skipped), MaxSkippedKeys)
		}
	}
	if len(p.bob.skipped) != MaxSkippedKeys {
		t.Fatalf("%d skipped keys, want %d", len(p.bob.skipped), MaxSkippedKeys)
	}
	// The oldest were dropped: the first round's first message is gone, the
	// last round's is still there.
	expectFail(t, p.bob, lost[0], ErrDuplicate)
	mustDecrypt(t, p.bob, lost[4], "4 0")
}

func TestOldChainBound(t *testing.T) {
	p := newPair(t)
	mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "start"), "start")
	var late [][]byte
	for round := range MaxOldChains + 2 {
		late = append(late, p.encrypt(t, p.alice, fmt.Sprint("late ", round)))
		mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "x"), "x")
		mustDecrypt(t, p.alice, p.encrypt(t, p.bob, "y"), "y")
		mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "z"), "z") // Bob's DH step
	}
	if len(p.bob.oldChains) != MaxOldChains {
		t.Fatalf("%d old chains kept, want %d", len(p.bob.oldChains), MaxOldChains)
	}
	// The first chains are forgotten with their skipped keys: their late
	// messages can no longer be authenticated at all.
	expectFail(t, p.bob, late[0], ErrDecrypt)
	expectFail(t, p.bob, late[1], ErrDecrypt)
	mustDecrypt(t, p.bob, late[len(late)-1], fmt.Sprint("late ", len(late)-1))
}

func TestSkippedKeyAge(t *testing.T) {
	p := newPair(t)
	m1 := p.encrypt(t, p.alice, "one")
	m2 := p.encrypt(t, p.alice, "two")
	m3 := p.encrypt(t, p.alice, "three")
	m4 := p.encrypt(t, p.alice, "four")
	mustDecrypt(t, p.bob, m3, "three") // skips m1, m2 at t0
	if len(p.bob.skipped) != 2 {
		t.Fatalf("%d skipped keys, want 2", len(p.bob.skipped))
	}
	// Just inside the age bound, a decrypt keeps them.
	if _, err := p.bob.Decrypt(nil, m2, t0.Add(MaxSkippedAge)); err != nil {
		t.Fatal(err)
	}
	if len(p.bob.skipped) != 1 {
		t.Fatalf("%d skipped keys, want 1", len(p.bob.skipped))
	}
	// Past it, the next successful decrypt evicts m1's key.
	if _, err := p.bob.Decrypt(nil, m4, t0.Add(MaxSkippedAge+time.Second)); err != nil {
		t.Fatal(err)
	}
	if len(p.bob.skipped) != 0 {
		t.Fatalf("%d skipped keys after their age, want 0", len(p.bob.skipped))
	}
	expectFail(t, p.bob, m1, ErrDuplicate)
}

func TestDowngradeRefused(t *testing.T) {
	p := newPair(t)
	msg := p.encrypt(t, p.alice, "v1")
	// A session whose minimum was raised (a future version 2 session)
	// refuses version 1 messages before any other work.
	b := clone(t, p.bob)
	b.version, b.minVersion = 2, 2
	before := marshal(t, b)
	if _, err := b.Decrypt(nil, msg, t0); !errors.Is(err, ErrVersion) {
		t.Fatalf("got %v, want ErrVersion", err)
	}
	if !bytes.Equal(before, marshal(t, b)) {
		t.Fatal("state changed")
	}
	// Unknown versions are not messages this package can authenticate.
	for _, v := range []byte{0, 2, 255} {
		bad := bytes.Clone(msg)
		bad[0] = v
		expectFail(t, p.bob, bad, ErrDecrypt)
	}
	mustDecrypt(t, p.bob, msg, "v1")
	// Sessions of unknown versions are refused.
	if _, err := NewResponder([32]byte{}, nil, p.bob.dhsKey, 2); !errors.Is(err, ErrVersion) {
		t.Fatalf("NewResponder version 2: got %v, want ErrVersion", err)
	}
}

func TestBadRemoteRatchetKey(t *testing.T) {
	for _, key := range [][]byte{nil, make([]byte, 31), make([]byte, 32), bytes.Repeat([]byte{0xff}, 32)} {
		if _, err := NewInitiator([32]byte{}, nil, key, Version, testRand(1)); err == nil {
			t.Errorf("NewInitiator accepted ratchet key %x", key)
		}
	}
}

func TestForwardSecrecy(t *testing.T) {
	p := newPair(t)
	var yesterday [][]byte
	for i := range 3 {
		m := p.encrypt(t, p.alice, fmt.Sprint("y", i))
		yesterday = append(yesterday, m)
		mustDecrypt(t, p.bob, m, fmt.Sprint("y", i))
		r := p.encrypt(t, p.bob, fmt.Sprint("r", i))
		yesterday = append(yesterday, r)
		mustDecrypt(t, p.alice, r, fmt.Sprint("r", i))
	}
	// Today's states, stolen.
	bob, alice := clone(t, p.bob), clone(t, p.alice)
	for i, m := range yesterday {
		s := bob
		if i%2 == 1 {
			s = alice
		}
		if pt, err := s.Decrypt(nil, m, t0); err == nil || pt != nil {
			t.Fatalf("a copy of today's state decrypted yesterday's message %d", i)
		}
	}
}

func TestPostCompromiseSecurity(t *testing.T) {
	p := newPair(t)
	mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "hello"), "hello")
	mustDecrypt(t, p.alice, p.encrypt(t, p.bob, "hi"), "hi")

	// The attacker copies both states and then sees every message.
	stolenAlice, stolenBob := clone(t, p.alice), clone(t, p.bob)

	// One round trip: each side sends with a fresh ratchet key that the
	// copies do not have.
	m := p.encrypt(t, p.alice, "round trip 1")
	mustDecrypt(t, p.bob, m, "round trip 1")
	stolenBob.Decrypt(nil, m, t0) // the attacker follows along
	r := p.encrypt(t, p.bob, "round trip 2")
	mustDecrypt(t, p.alice, r, "round trip 2")
	stolenAlice.Decrypt(nil, r, t0)

	// Tomorrow's messages, both ways.
	for i := range 3 {
		a := p.encrypt(t, p.alice, fmt.Sprint("tomorrow a", i))
		b := p.encrypt(t, p.bob, fmt.Sprint("tomorrow b", i))
		if pt, err := stolenBob.Decrypt(nil, a, t0); err == nil || pt != nil {
			t.Fatalf("the stolen copy decrypted tomorrow's message a%d", i)
		}
		if pt, err := stolenAlice.Decrypt(nil, b, t0); err == nil || pt != nil {
			t.Fatalf("the stolen copy decrypted tomorrow's message b%d", i)
		}
		mustDecrypt(t, p.bob, a, fmt.Sprint("tomorrow a", i))
		mustDecrypt(t, p.alice, b, fmt.Sprint("tomorrow b", i))
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	p := newPair(t)
	check := func(s *State) {
		t.Helper()
		b := marshal(t, s)
		var c State
		if err := c.UnmarshalBinary(b); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		if b2 := marshal(t, &c); !bytes.Equal(b, b2) {
			t.Fatal("marshal(unmarshal(b)) != b")
		}
		// Trailing bytes and truncation are refused.
		if err := c.UnmarshalBinary(append(b, 0)); !errors.Is(err, ErrInvalidState) {
			t.Fatalf("trailing byte: got %v", err)
		}
		if err := c.UnmarshalBinary(b[:len(b)-1]); !errors.Is(err, ErrInvalidState) {
			t.Fatalf("truncated: got %v", err)
		}
	}
	check(p.alice)
	check(p.bob)
	// Continue the conversation through marshalled states only, with
	// skipped keys and old chains in them.
	m1 := p.encrypt(t, p.alice, "1")
	m2 := p.encrypt(t, p.alice, "2")
	mustDecrypt(t, p.bob, m2, "2")
	check(p.bob)
	p.bob = clone(t, p.bob)
	p.alice = clone(t, p.alice)
	mustDecrypt(t, p.alice, p.encrypt(t, p.bob, "3"), "3")
	check(p.alice)
	p.alice = clone(t, p.alice)
	mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "4"), "4")
	check(p.bob)
	p.bob = clone(t, p.bob)
	mustDecrypt(t, p.bob, m1, "1")
	if len(p.bob.oldChains) != 1 {
		t.Fatalf("%d old chains, want 1", len(p.bob.oldChains))
	}
	check(p.bob)
}

func TestUnmarshalRefusesInconsistent(t *testing.T) {
	p := newPair(t)
	good := marshal(t, p.alice)
	cases := map[string]func(b []byte){
		"format":        func(b []byte) { b[0] = 2 },
		"version":       func(b []byte) { b[1] = 2 },
		"min version":   func(b []byte) { b[2] = 0 },
		"unknown flag":  func(b []byte) { b[3] |= 0x80 },
		"no remote key": func(b []byte) { b[3] &^= flagRemoteKey },
		"ad length":     func(b []byte) { b[stateFixedSize] = 0xff },
		"old chains":    func(b []byte) { b[len(b)-3] = MaxOldChains + 1 },
		"skipped count": func(b []byte) { b[len(b)-1] = 1 },
	}
	for name, mutate := range cases {
		b := bytes.Clone(good)
		mutate(b)
		var s State
		if err := s.UnmarshalBinary(b); !errors.Is(err, ErrInvalidState) {
			t.Errorf("%s: got %v, want ErrInvalidState", name, err)
		}
	}
}

func TestAllocsPerMessage(t *testing.T) {
	p := newPair(t)
	mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "warm up"), "warm up")
	pt := make([]byte, 256)
	msg := make([]byte, 0, 256+Overhead)
	out := make([]byte, 0, 256)
	var err error
	allocs := testing.AllocsPerRun(100, func() {
		msg, err = p.alice.Encrypt(msg[:0], pt, p.rand)
		if err != nil {
			t.Fatal(err)
		}
		out, err = p.bob.Decrypt(out[:0], msg, t0)
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("allocations per message (encrypt + decrypt): %.1f", allocs)
	if allocs >= 10 {
		t.Fatalf("%.1f allocations per message, want fewer than 10", allocs)
	}
}

// TestSentNonce: each message of a chain has its own nonce, and a state
// restored from before a message encrypts the next one under that
// message's key again (the rollback the node guards against), which
// SentNonce shows.
func TestSentNonce(t *testing.T) {
	p := newPair(t)
	alice := p.alice
	before := marshal(t, alice)
	seen := map[[12]byte]bool{}
	var first [12]byte
	for i := range 3 {
		p.encrypt(t, alice, "m")
		n := alice.SentNonce()
		if seen[n] {
			t.Fatalf("message %d: a nonce used before", i)
		}
		seen[n] = true
		if i == 0 {
			first = n
		}
	}
	var restored State
	if err := restored.UnmarshalBinary(before); err != nil {
		t.Fatal(err)
	}
	p.encrypt(t, &restored, "other")
	if restored.SentNonce() != first {
		t.Fatal("a restored state's next message does not reuse the first message's key and nonce")
	}
}
