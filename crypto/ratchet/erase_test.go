package ratchet

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// TestResponderForgetsSignedPrekey: once the responder's first Decrypt
// succeeded, its state holds nothing of the signed prekey's private key,
// so a stored session does not outlive the prekey's retention.
func TestResponderForgetsSignedPrekey(t *testing.T) {
	p := newPair(t)
	spk := bytes.Clone(p.bob.dhsPriv[:])
	if !bytes.Contains(marshal(t, p.bob), spk) {
		t.Fatal("test broken: a new responder's state does not hold the signed prekey")
	}
	mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "first"), "first")
	if bytes.Contains(marshal(t, p.bob), spk) {
		t.Fatal("the responder's state still holds the signed prekey's private key after its first message")
	}
	// It still works both ways.
	mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "second"), "second")
	mustDecrypt(t, p.alice, p.encrypt(t, p.bob, "reply"), "reply")
	mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "third"), "third")
}

// TestRatchetKeyForgottenOnReceipt: a ratchet private key is erased as
// soon as the peer's next ratchet key arrives, on both sides, not kept
// until the next Encrypt.
func TestRatchetKeyForgottenOnReceipt(t *testing.T) {
	p := newPair(t)
	for round := range 3 {
		old := bytes.Clone(p.alice.dhsPriv[:])
		mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "a"), "a")
		mustDecrypt(t, p.alice, p.encrypt(t, p.bob, "b"), "b")
		if bytes.Contains(marshal(t, p.alice), old) {
			t.Fatalf("round %d: the initiator's state holds the ratchet key the responder moved past", round)
		}
		old = bytes.Clone(p.bob.dhsPriv[:])
		mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "c"), "c")
		if bytes.Contains(marshal(t, p.bob), old) {
			t.Fatalf("round %d: the responder's state holds the ratchet key the initiator moved past", round)
		}
	}
}

// TestSecondNewKeyRefused: a state that received a new ratchet key and has
// not sent since holds no ratchet key to receive another one with; a
// message under the next header key with yet another key (which no honest
// peer sends) fails like any forgery and changes nothing.
func TestSecondNewKeyRefused(t *testing.T) {
	p := newPair(t)
	spk := p.bob.dhsPub // the signed prekey, Bob's first ratchet key
	mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "first"), "first")
	// A hostile Alice ratchets again without having heard from Bob: a
	// second sending step against the same key of Bob's.
	evil := clone(t, p.alice)
	evil.flags |= flagSendPending
	evil.dhr = spk
	msg := p.encrypt(t, evil, "again")
	expectFail(t, p.bob, msg, ErrDecrypt)
	mustDecrypt(t, p.bob, p.encrypt(t, p.alice, "second"), "second")
}

// TestLegacyPendingState: a responder state stored by the version that
// kept the signed prekey until its next Encrypt (testdata) still decrypts
// and answers, and erases the key at its next Decrypt.
func TestLegacyPendingState(t *testing.T) {
	f, err := os.Open("testdata/legacy-pending.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v := map[string][]byte{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, h, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		if v[name], err = hex.DecodeString(h); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	var alice, bob State
	if err := alice.UnmarshalBinary(v["alice"]); err != nil {
		t.Fatal(err)
	}
	if err := bob.UnmarshalBinary(v["bob"]); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(v["bob"], v["spk_private"]) {
		t.Fatal("test broken: the stored state does not hold the signed prekey")
	}
	mustDecrypt(t, &bob, v["message"], "second")
	if bytes.Contains(marshal(t, &bob), v["spk_private"]) {
		t.Fatal("the stored responder state still holds the signed prekey's private key after a Decrypt")
	}
	r := testRand(7)
	reply, err := bob.Encrypt(nil, []byte("reply"), r)
	if err != nil {
		t.Fatal(err)
	}
	mustDecrypt(t, &alice, reply, "reply")
}
