package pqxdh

// This file belongs to the ratchet and sealing work (crypto/ratchet,
// crypto/seal): it lives here only because the derandomized ML-KEM
// encapsulation (initiate with detEncaps) is reachable from this package's
// tests alone.

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding"
	"fmt"
	"testing"

	"github.com/sealpost/sealpost/crypto/internal/golden"
	"github.com/sealpost/sealpost/crypto/ratchet"
	"github.com/sealpost/sealpost/crypto/seal"
)

// transcriptScript is the conversation of the golden transcript: "a3"
// means Alice encrypts her third message, "<b2" that Alice receives Bob's
// second. Deliveries are out of order, across several DH steps, with
// messages of old chains arriving late.
var transcriptScript = []string{
	"a1", "a2", "a3", ">a3", ">a1",
	"b1", "b2", "<b2",
	"a4", "a5", ">a5", ">a2", ">a4",
	"b3", "<b3", "<b1",
	"a6", "a7", ">a7", ">a6",
	"b4", "b5", "b6", "<b6", "<b4", "<b5",
	"a8", ">a8",
	"b7", "b8", "<b8", "<b7",
	"a9", "a10", ">a10", ">a9",
	"b9", "b10", "<b10", "<b9",
}

func transcriptBytes(t *testing.T, m encoding.BinaryMarshaler) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGoldenTranscript regenerates the whole-protocol transcript from fixed
// seeds (keys, bundle, PQXDH with derandomized ML-KEM, 20 ratchet messages
// both ways with reordering, a sealed envelope), checks that every message
// decrypts as scripted, and compares it with
// crypto/testdata/golden-transcript.golden (-update rewrites it).
func TestGoldenTranscript(t *testing.T) {
	alice, bob := newParty(t, 0xa1), newParty(t, 0xb0)
	var f golden.File
	f.Text("time", fmt.Sprint(t0.Unix()))

	// Keys.
	for _, p := range []struct {
		name string
		p    *party
	}{{"alice", alice}, {"bob", bob}} {
		f.Hex(p.name+".identity.private", transcriptBytes(t, p.p.id))
		f.Hex(p.name+".identity.public", transcriptBytes(t, p.p.id.Public()))
		f.Hex(p.name+".device_record", transcriptBytes(t, p.p.device))
	}
	f.Hex("bob.signed_prekey.private", transcriptBytes(t, bob.spk))
	f.Hex("bob.kem_prekey.private", transcriptBytes(t, bob.kem))
	f.Hex("bob.one_time_prekey.private", transcriptBytes(t, bob.otp))

	// Bundle and PQXDH.
	bundle := bob.bundle(true)
	f.Hex("bob.bundle", transcriptBytes(t, bundle))
	ini, err := initiate(alice.id, alice.device, bundle, t0, testRand(0x51), SupportedVersions(), detEncaps)
	if err != nil {
		t.Fatal(err)
	}
	initial := transcriptBytes(t, ini.Message)
	parsed, err := ParseInitialMessage(initial)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Respond(bob.responder(), parsed)
	if err != nil {
		t.Fatal(err)
	}
	if res.Secret != ini.Secret || !bytes.Equal(res.AD, ini.AD) {
		t.Fatal("PQXDH: the two sides disagree")
	}
	f.Hex("pqxdh.initial_message", initial)
	f.Hex("pqxdh.ad", ini.AD)
	f.Hex("pqxdh.secret", ini.Secret[:])
	f.Text("pqxdh.version", fmt.Sprint(ini.Version))

	// Ratchet.
	ra, rb := testRand(0x52), testRand(0x53)
	a, err := ratchet.NewInitiator(ini.Secret, ini.AD, ini.RemoteSignedPrekey, ini.Version, ra)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ratchet.NewResponder(res.Secret, res.AD, res.SignedPrekey, res.Version)
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string][]byte{}
	text := func(name string) string { return "message " + name + " of the golden transcript" }
	var last []byte
	for _, step := range transcriptScript {
		switch step[0] {
		case 'a', 'b':
			s, r := a, ra
			if step[0] == 'b' {
				s, r = b, rb
			}
			msg, err := s.Encrypt(nil, []byte(text(step)), r)
			if err != nil {
				t.Fatalf("%s: %v", step, err)
			}
			sent[step] = msg
			last = msg
			f.Hex("ratchet.send."+step, msg)
		case '>', '<':
			s := b
			if step[0] == '<' {
				s = a
			}
			name := step[1:]
			pt, err := s.Decrypt(nil, sent[name], t0)
			if err != nil || string(pt) != text(name) {
				t.Fatalf("receive %s: %q, %v", name, pt, err)
			}
			if _, err := s.Decrypt(nil, sent[name], t0); err != ratchet.ErrDuplicate {
				t.Fatalf("replay of %s: got %v, want ErrDuplicate", name, err)
			}
			f.Text("ratchet.receive", name)
		}
	}
	if len(sent) != 20 {
		t.Fatalf("%d messages in the script, want 20", len(sent))
	}
	for _, s := range []struct {
		name string
		s    *ratchet.State
	}{{"alice", a}, {"bob", b}} {
		st := transcriptBytes(t, s.s)
		h := sha256.Sum256(st)
		f.Hex("ratchet.state_sha256."+s.name, h[:])
	}

	// A sealed envelope carrying Bob's last message to Alice's mailbox.
	sr := testRand(0x54)
	var mailbox [seal.MailboxIDSize]byte
	sr.Read(mailbox[:])
	var seed [32]byte
	sr.Read(seed[:])
	sealing, err := ecdh.X25519().NewPrivateKey(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	env, err := seal.Seal(nil, mailbox, sealing.PublicKey().Bytes(), bob.id.Public(), bob.device.DeviceID(), last, sr)
	if err != nil {
		t.Fatal(err)
	}
	o, err := seal.Open(env, sealing)
	if err != nil || !bytes.Equal(o.Payload, last) || !o.Sender.Equal(bob.id.Public()) || o.Mailbox != mailbox {
		t.Fatalf("open: %v", err)
	}
	f.Hex("seal.mailbox", mailbox[:])
	f.Hex("seal.sealing_private", seed[:])
	f.Hex("seal.envelope", env)

	f.Check(t, "../testdata/golden-transcript.golden", *update)
}
