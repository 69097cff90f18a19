package pqxdh

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"filippo.io/edwards25519"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/internal/golden"
	"github.com/sealpost/sealpost/crypto/prekey"
	"github.com/sealpost/sealpost/crypto/ratchet"
)

var update = flag.Bool("update", false, "rewrite the golden files under crypto/testdata")

var t0 = time.Unix(1_750_000_000, 0)

func testRand(seed byte) *rand.ChaCha8 {
	var s [32]byte
	s[0] = seed
	s[1] = 'x'
	return rand.NewChaCha8(s)
}

// detEncaps is the derandomized encapsulation of the golden tests: it reads
// ML-KEM's 32 bytes of randomness from rand.
func detEncaps(ek *mlkem.EncapsulationKey768, rand io.Reader) ([]byte, []byte, error) {
	var m [32]byte
	if _, err := io.ReadFull(rand, m[:]); err != nil {
		return nil, nil, err
	}
	return mlkemtest.Encapsulate768(ek, m[:])
}

// party is a device with its identity, device record and prekeys.
type party struct {
	id     *identity.Private
	device *identity.DeviceRecord
	spk    *prekey.SignedPrekeyPrivate
	kem    *prekey.KEMPrekeyPrivate
	otp    *prekey.OneTimePrekeyPrivate
}

func newParty(t testing.TB, seed byte, versions ...uint8) *party {
	t.Helper()
	if len(versions) == 0 {
		versions = SupportedVersions()
	}
	r := testRand(seed)
	id, err := identity.Generate(r)
	if err != nil {
		t.Fatal(err)
	}
	devKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32))
	dev, err := identity.NewDeviceRecord(id, devKey, []byte{0x00, 0x24, 0x08, 0x01, seed}, t0, 1)
	if err != nil {
		t.Fatal(err)
	}
	spk, err := prekey.NewSignedPrekey(id, 11, versions, t0, r)
	if err != nil {
		t.Fatal(err)
	}
	kem, err := prekey.NewKEMPrekey(id, 12, t0, r)
	if err != nil {
		t.Fatal(err)
	}
	otps, err := prekey.NewOneTimePrekeys(id, 500, 1, t0, r)
	if err != nil {
		t.Fatal(err)
	}
	return &party{id: id, device: dev, spk: spk, kem: kem, otp: otps[0]}
}

func (p *party) bundle(withOTP bool) *prekey.Bundle {
	b := &prekey.Bundle{Identity: p.id.Public(), Device: p.device, SignedPrekey: p.spk.Public(), KEMPrekey: p.kem.Public()}
	if withOTP {
		b.OneTime = p.otp.Public()
	}
	return b
}

func (p *party) responder() *Responder {
	return &Responder{Identity: p.id, Device: p.device, SignedPrekey: p.spk, KEMPrekey: p.kem, OneTime: p.otp}
}

// roundTrip encodes and parses msg, as the wire does.
func roundTrip(t testing.TB, msg *InitialMessage) *InitialMessage {
	t.Helper()
	enc, err := msg.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseInitialMessage(enc)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkRatchet starts both ratchets and exchanges a message each way.
func checkRatchet(t *testing.T, ini *Initiated, res *Responded) {
	t.Helper()
	r := testRand(99)
	a, err := ratchet.NewInitiator(ini.Secret, ini.AD, ini.RemoteSignedPrekey, ini.Version, r)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ratchet.NewResponder(res.Secret, res.AD, res.SignedPrekey, res.Version)
	if err != nil {
		t.Fatal(err)
	}
	m1, err := a.Encrypt(nil, []byte("hello bob"), r)
	if err != nil {
		t.Fatal(err)
	}
	p1, err := b.Decrypt(nil, m1, t0)
	if err != nil || string(p1) != "hello bob" {
		t.Fatalf("responder decrypt: %q, %v", p1, err)
	}
	m2, err := b.Encrypt(nil, []byte("hello alice"), r)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := a.Decrypt(nil, m2, t0)
	if err != nil || string(p2) != "hello alice" {
		t.Fatalf("initiator decrypt: %q, %v", p2, err)
	}
}

func TestHandshake(t *testing.T) {
	alice, bob := newParty(t, 1), newParty(t, 2)
	for _, withOTP := range []bool{false, true} {
		t.Run(fmt.Sprintf("one-time=%v", withOTP), func(t *testing.T) {
			ini, err := Initiate(alice.id, alice.device, bob.bundle(withOTP), t0, testRand(3))
			if err != nil {
				t.Fatal(err)
			}
			msg := roundTrip(t, ini.Message)
			res, err := Respond(bob.responder(), msg)
			if err != nil {
				t.Fatal(err)
			}
			if ini.Secret != res.Secret {
				t.Fatal("secrets differ")
			}
			if !bytes.Equal(ini.AD, res.AD) {
				t.Fatal("ADs differ")
			}
			if ini.Version != 1 || res.Version != 1 {
				t.Errorf("versions %d, %d", ini.Version, res.Version)
			}
			if !bytes.Equal(ini.RemoteSignedPrekey, bob.spk.Public().Key()) ||
				!bytes.Equal(res.SignedPrekey.Bytes(), bob.spk.PrivateKey().Bytes()) {
				t.Error("signed prekeys not passed on")
			}
			if res.UsedOneTime != withOTP || (withOTP && res.OneTimeID != 500) || (!withOTP && res.OneTimeID != 0) {
				t.Errorf("one-time: %v %d", res.UsedOneTime, res.OneTimeID)
			}
			if !res.Initiator.Equal(alice.id.Public()) || !res.InitiatorDevice.Equal(alice.device) {
				t.Error("initiator not passed on")
			}
			if res.ReplayHash != ini.Message.ReplayHash() {
				t.Error("replay hashes differ")
			}
			checkRatchet(t, ini, res)
		})
	}
	// Two handshakes give different secrets and replay hashes.
	i1, _ := Initiate(alice.id, alice.device, bob.bundle(false), t0, testRand(4))
	i2, _ := Initiate(alice.id, alice.device, bob.bundle(false), t0, testRand(5))
	if i1.Secret == i2.Secret || i1.Message.ReplayHash() == i2.Message.ReplayHash() {
		t.Error("handshakes repeat")
	}
}

// TestEncapsulationRandomized: the exported Initiate uses randomized
// encapsulation: the same base-key randomness gives different ciphertexts.
func TestEncapsulationRandomized(t *testing.T) {
	alice, bob := newParty(t, 1), newParty(t, 2)
	i1, err := Initiate(alice.id, alice.device, bob.bundle(false), t0, testRand(4))
	if err != nil {
		t.Fatal(err)
	}
	i2, _ := Initiate(alice.id, alice.device, bob.bundle(false), t0, testRand(4))
	if i1.Message.BaseKey != i2.Message.BaseKey {
		t.Fatal("base key not from rand")
	}
	if bytes.Equal(i1.Message.Ciphertext, i2.Message.Ciphertext) {
		t.Error("encapsulation is not randomized")
	}
}

func TestAD(t *testing.T) {
	alice, bob := newParty(t, 1), newParty(t, 2)
	ini, err := Initiate(alice.id, alice.device, bob.bundle(false), t0, testRand(3))
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	want = append(want, 1)
	for _, p := range []*party{alice, bob} {
		id, dh := p.id.UserID(), p.id.Public().DHKey()
		want = append(want, id[:]...)
		want = append(want, dh[:]...)
		dev := p.device.DeviceID()
		want = append(want, byte(len(dev)))
		want = append(want, dev...)
	}
	want = append(want, 1, 1)
	if !bytes.Equal(ini.AD, want) {
		t.Errorf("AD\n got %x\nwant %x", ini.AD, want)
	}
}

func TestInitiateRefusesBadBundle(t *testing.T) {
	alice, bob := newParty(t, 1), newParty(t, 2)
	if _, err := Initiate(alice.id, alice.device, bob.bundle(false), t0.Add(prekey.MaxAge+time.Hour), testRand(1)); !errors.Is(err, prekey.ErrExpired) {
		t.Errorf("expired bundle: %v", err)
	}
	b := bob.bundle(false)
	b.KEMPrekey = nil
	if _, err := Initiate(alice.id, alice.device, b, t0, testRand(1)); !errors.Is(err, prekey.ErrInvalid) {
		t.Errorf("bundle without ML-KEM key: %v", err)
	}
	if _, err := Initiate(alice.id, bob.device, bob.bundle(false), t0, testRand(1)); err == nil {
		t.Error("initiator's device record of another identity accepted")
	}
}

// torsioned returns the base key's u-coordinate with a point of order 8
// added on the Edwards side; priv is the base key's private key.
func torsioned(t *testing.T, priv []byte) []byte {
	t.Helper()
	s, err := new(edwards25519.Scalar).SetBytesWithClamping(priv)
	if err != nil {
		t.Fatal(err)
	}
	p := new(edwards25519.Point).ScalarBaseMult(s)
	t8enc := []byte{0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
		0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05}
	t8, err := new(edwards25519.Point).SetBytes(t8enc)
	if err != nil {
		t.Fatal(err)
	}
	return new(edwards25519.Point).Add(p, t8).BytesMontgomery()
}

// TestBaseKeyRefused: Respond (and CheckBaseKey) refuses base keys that are torsioned,
// non-canonical, of low order or on the twist. The torsioned key gives the
// same DH outputs (X25519 clears the cofactor), so without the check a
// replay with it would pass as a new first message.
func TestBaseKeyRefused(t *testing.T) {
	alice, bob := newParty(t, 1), newParty(t, 2)
	ini, err := Initiate(alice.id, alice.device, bob.bundle(false), t0, testRand(7))
	if err != nil {
		t.Fatal(err)
	}
	basePriv := make([]byte, 32)
	testRand(7).Read(basePriv) // Initiate reads the base key first
	if k, _ := ecdh.X25519().NewPrivateKey(basePriv); !bytes.Equal(k.PublicKey().Bytes(), ini.Message.BaseKey[:]) {
		t.Fatal("base key not reproduced")
	}
	tor := torsioned(t, basePriv)
	spk := bob.spk.PrivateKey()
	pk1, _ := ecdh.X25519().NewPublicKey(ini.Message.BaseKey[:])
	pk2, _ := ecdh.X25519().NewPublicKey(tor)
	s1, _ := spk.ECDH(pk1)
	s2, _ := spk.ECDH(pk2)
	if !bytes.Equal(s1, s2) || bytes.Equal(tor, ini.Message.BaseKey[:]) {
		t.Fatal("torsioned key does not give the same DH output")
	}
	nonCanonical := bytes.Clone(ini.Message.BaseKey[:])
	nonCanonical[31] |= 0x80
	uPlusP := make([]byte, 32) // 2 + p, the non-canonical encoding of u = 2
	copy(uPlusP, []byte{0xef})
	for i := 1; i < 31; i++ {
		uPlusP[i] = 0xff
	}
	uPlusP[31] = 0x7f
	twist := []byte{ // Wycheproof x25519 tcId 34 public key, a point on the twist
		0x0a, 0xb4, 0xe7, 0x63, 0x80, 0xd8, 0x4d, 0xde, 0x4f, 0x68, 0x33, 0xc5, 0x8f, 0x2a, 0x9f, 0xb8,
		0xf8, 0x3b, 0xb0, 0x16, 0x9b, 0x17, 0x2b, 0xe4, 0xb6, 0xe0, 0x59, 0x28, 0x87, 0x74, 0x1a, 0x36}
	lowOrder := []byte{0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a,
		0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00}
	for name, key := range map[string][]byte{
		"torsioned":        tor,
		"top bit set":      nonCanonical,
		"u+p":              uPlusP,
		"twist":            twist,
		"order 8":          lowOrder,
		"zero":             make([]byte, 32),
		"one":              append([]byte{1}, make([]byte, 31)...),
		"p-1 (order 4/2)":  append(append([]byte{0xec}, bytes.Repeat([]byte{0xff}, 30)...), 0x7f),
		"torsioned (copy)": torsioned(t, basePriv),
	} {
		m := roundTrip(t, ini.Message)
		copy(m.BaseKey[:], key)
		if _, err := Respond(bob.responder(), m); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s base key: Respond = %v, want ErrInvalid", name, err)
		}
		if err := CheckBaseKey(key); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s base key: CheckBaseKey = %v, want ErrInvalid", name, err)
		}
	}
	// The genuine message still works.
	if _, err := Respond(bob.responder(), roundTrip(t, ini.Message)); err != nil {
		t.Fatal(err)
	}
	if err := CheckBaseKey(ini.Message.BaseKey[:]); err != nil {
		t.Fatalf("CheckBaseKey of a genuine base key: %v", err)
	}
}

// reSigned returns Eve's bundle made of Bob's X25519 identity key and Bob's
// prekeys re-signed by Eve's Ed25519 key, with a device record of Eve's that
// claims Bob's device ID.
func reSigned(t *testing.T, eve, bob *party) *prekey.Bundle {
	t.Helper()
	eveID, bobDH := eve.id.UserID(), bob.id.Public().DHKey()
	body := append(bytes.Clone(eveID[:]), bobDH[:]...)
	pub := append([]byte{identity.PublicVersion}, body...)
	pub = append(pub, eve.id.Sign(identity.LabelIdentityKey, body)...)
	evePub, err := identity.ParsePublic(pub)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDeviceRecord(eve.id, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0xee}, 32)), bob.device.DeviceID(), t0, 1)
	if err != nil {
		t.Fatal(err)
	}
	resign := func(enc []byte, label string) []byte {
		signed := enc[:len(enc)-identity.SignatureSize]
		return append(bytes.Clone(signed), eve.id.Sign(label, signed)...)
	}
	spkEnc, _ := bob.spk.Public().MarshalBinary()
	spk, err := prekey.ParseSignedPrekey(resign(spkEnc, prekey.LabelSignedPrekey))
	if err != nil {
		t.Fatal(err)
	}
	kemEnc, _ := bob.kem.Public().MarshalBinary()
	kem, err := prekey.ParseKEMPrekey(resign(kemEnc, prekey.LabelKEMPrekey))
	if err != nil {
		t.Fatal(err)
	}
	b := &prekey.Bundle{Identity: evePub, Device: dev, SignedPrekey: spk, KEMPrekey: kem}
	if err := b.Verify(t0); err != nil {
		t.Fatalf("Eve's re-signed bundle does not verify: %v", err)
	}
	return b
}

// TestUnknownKeyShare: Eve publishes Bob's X25519 keys re-signed by her
// identity. Alice starts a session with "Eve"; whatever Eve forwards to Bob,
// Bob never accepts a session as one with Alice that Alice believes is with
// Bob, and Alice's first message does not decrypt at Bob.
func TestUnknownKeyShare(t *testing.T) {
	alice, bob, eve := newParty(t, 1), newParty(t, 2), newParty(t, 3)
	bundle := reSigned(t, eve, bob)
	ini, err := Initiate(alice.id, alice.device, bundle, t0, testRand(8))
	if err != nil {
		t.Fatal(err)
	}
	// Forwarded unchanged: the message names Eve as the recipient.
	if _, err := Respond(bob.responder(), roundTrip(t, ini.Message)); !errors.Is(err, ErrNotForUs) {
		t.Fatalf("forwarded message: Respond = %v, want ErrNotForUs", err)
	}
	// Eve rewrites the recipient: Bob computes a secret, but not Alice's,
	// because the AD and the KDF info name Eve on Alice's side.
	m := roundTrip(t, ini.Message)
	m.Recipient = bob.id.UserID()
	res, err := Respond(bob.responder(), m)
	if err != nil {
		t.Fatal(err)
	}
	if res.Secret == ini.Secret || bytes.Equal(res.AD, ini.AD) {
		t.Fatal("Bob derived Alice's session with Eve")
	}
	r := testRand(9)
	a, err := ratchet.NewInitiator(ini.Secret, ini.AD, ini.RemoteSignedPrekey, ini.Version, r)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ratchet.NewResponder(res.Secret, res.AD, res.SignedPrekey, res.Version)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := a.Encrypt(nil, []byte("for eve"), r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Decrypt(nil, ct, t0); err == nil {
		t.Fatal("Bob decrypted Alice's message meant for Eve")
	}
}

// TestDowngrade runs with a pretend version 2 (same algorithm, different
// version number in the AD and KDF) to show that the highest common version
// is chosen and that anything lower is refused or yields no shared session.
func TestDowngrade(t *testing.T) {
	both := []uint8{1, 2}
	alice, bob := newParty(t, 1, 1, 2), newParty(t, 2, 1, 2)
	ini, err := initiate(alice.id, alice.device, bob.bundle(false), t0, testRand(10), both, encapsulate)
	if err != nil {
		t.Fatal(err)
	}
	if ini.Version != 2 {
		t.Fatalf("chose version %d, want 2", ini.Version)
	}
	res, err := respond(bob.responder(), roundTrip(t, ini.Message), both)
	if err != nil || res.Secret != ini.Secret {
		t.Fatalf("honest v2 handshake: %v", err)
	}

	// The version byte lowered: refused.
	m := roundTrip(t, ini.Message)
	m.Version = 1
	if _, err := respond(bob.responder(), m, both); !errors.Is(err, ErrDowngrade) {
		t.Errorf("version lowered: %v, want ErrDowngrade", err)
	}
	// The version lowered and the initiator's list stripped: accepted by
	// PQXDH, but the secret and AD differ from the initiator's.
	m.Versions = []uint8{1}
	res, err = respond(bob.responder(), m, both)
	if err != nil {
		t.Fatal(err)
	}
	if res.Secret == ini.Secret || bytes.Equal(res.AD, ini.AD) {
		t.Error("stripped version list gives the initiator's session")
	}
	// The list replaced by one whose highest common version is 1: accepted
	// by PQXDH, no shared session either.
	m.Version, m.Versions = 1, []uint8{1, 3}
	res, err = respond(bob.responder(), m, both)
	if err != nil {
		t.Fatal(err)
	}
	if res.Secret == ini.Secret || bytes.Equal(res.AD, ini.AD) {
		t.Error("replaced version list gives the initiator's session")
	}

	// The bundle's version list stripped: its signature fails.
	spkEnc, _ := bob.spk.Public().MarshalBinary()
	// id (4) || created_at (8) || count || versions ...
	stripped := append(bytes.Clone(spkEnc[:12]), 1, 1)
	stripped = append(stripped, spkEnc[15:]...)
	spk, err := prekey.ParseSignedPrekey(stripped)
	if err != nil {
		t.Fatal(err)
	}
	b := bob.bundle(false)
	b.SignedPrekey = spk
	if _, err := initiate(alice.id, alice.device, b, t0, testRand(11), both, encapsulate); !errors.Is(err, prekey.ErrInvalid) {
		t.Errorf("stripped bundle versions: %v", err)
	}

	// No common version.
	only2 := newParty(t, 3, 2)
	if _, err := Initiate(alice.id, alice.device, only2.bundle(false), t0, testRand(12)); !errors.Is(err, ErrNoCommonVersion) {
		t.Errorf("no common version: %v", err)
	}
	// A v1-only responder receiving a v2 message from a {1,2} initiator
	// whose bundle listed {1,2}: the highest common version is 1.
	ini2, _ := initiate(alice.id, alice.device, bob.bundle(false), t0, testRand(13), both, encapsulate)
	if _, err := Respond(bob.responder(), roundTrip(t, ini2.Message)); !errors.Is(err, ErrDowngrade) {
		t.Errorf("v1 code, v2 message: %v", err)
	}
}

func TestRespondChecks(t *testing.T) {
	alice, bob, carol := newParty(t, 1), newParty(t, 2), newParty(t, 3)
	ini, err := Initiate(alice.id, alice.device, bob.bundle(true), t0, testRand(14))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*InitialMessage, *Responder)
		want error
	}{
		{"other device", func(m *InitialMessage, r *Responder) { m.RecipientDevice = []byte("other") }, ErrNotForUs},
		{"other recipient", func(m *InitialMessage, r *Responder) { m.Recipient = carol.id.UserID() }, ErrNotForUs},
		{"signed prekey ID", func(m *InitialMessage, r *Responder) { m.SignedPrekeyID++ }, ErrPrekeys},
		{"one-time ID", func(m *InitialMessage, r *Responder) { m.PrekeyID++ }, ErrPrekeys},
		{"one-time missing", func(m *InitialMessage, r *Responder) { r.OneTime = nil }, ErrPrekeys},
		{"one-time flag cleared", func(m *InitialMessage, r *Responder) { m.OneTime = false }, ErrPrekeys},
		{"initiator device of another identity", func(m *InitialMessage, r *Responder) { m.InitiatorDevice = carol.device }, ErrInvalid},
		{"initiator identity swapped", func(m *InitialMessage, r *Responder) { m.Initiator = carol.id.Public() }, ErrInvalid},
		{"no initiator", func(m *InitialMessage, r *Responder) { m.Initiator = nil }, ErrMalformed},
		{"short ciphertext", func(m *InitialMessage, r *Responder) { m.Ciphertext = m.Ciphertext[:10] }, ErrMalformed},
	} {
		m, r := roundTrip(t, ini.Message), bob.responder()
		tc.mod(m, r)
		if _, err := Respond(r, m); !errors.Is(err, tc.want) {
			t.Errorf("%s: Respond = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestMessageTamper flips one bit in every byte of an encoded initial
// message: it fails to parse, is refused, or gives a different secret.
func TestMessageTamper(t *testing.T) {
	alice, bob := newParty(t, 1), newParty(t, 2)
	ini, err := Initiate(alice.id, alice.device, bob.bundle(true), t0, testRand(15))
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := ini.Message.MarshalBinary()
	for i := range enc {
		c := bytes.Clone(enc)
		c[i] ^= 1 << (i % 8)
		m, err := ParseInitialMessage(c)
		if err != nil {
			continue
		}
		res, err := Respond(bob.responder(), m)
		if err != nil {
			continue
		}
		if res.Secret == ini.Secret && bytes.Equal(res.AD, ini.AD) {
			t.Fatalf("byte %d flipped: same session", i)
		}
	}
}

func TestParseInitialMessage(t *testing.T) {
	alice, bob := newParty(t, 1), newParty(t, 2)
	ini, _ := Initiate(alice.id, alice.device, bob.bundle(true), t0, testRand(16))
	enc, _ := ini.Message.MarshalBinary()
	if len(enc) > MaxInitialMessageSize {
		t.Fatalf("%d bytes > MaxInitialMessageSize", len(enc))
	}
	for i := range len(enc) {
		if _, err := ParseInitialMessage(enc[:i]); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) {
			t.Fatalf("truncated to %d: %v", i, err)
		}
	}
	for name, mod := range map[string]func([]byte) []byte{
		"format 2":      func(b []byte) []byte { b[0] = 2; return b },
		"trailing":      func(b []byte) []byte { return append(b, 0) },
		"version 0":     func(b []byte) []byte { b[1] = 0; return b },
		"no versions":   func(b []byte) []byte { b[2] = 0; return b },
		"unknown flags": func(b []byte) []byte { b[len(b)-CiphertextSize-5] |= 2; return b },
	} {
		if _, err := ParseInitialMessage(mod(bytes.Clone(enc))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	big := make([]byte, MaxInitialMessageSize+1)
	if _, err := ParseInitialMessage(big); !errors.Is(err, ErrMalformed) {
		t.Errorf("oversized: %v", err)
	}
	// The flags byte is where the unknown-flags case assumes it is.
	if enc[len(enc)-CiphertextSize-5] != flagOneTime {
		t.Fatal("flags byte not found")
	}
	if got := binary.BigEndian.Uint32(enc[len(enc)-CiphertextSize-4:]); got != 500 {
		t.Fatalf("prekey ID %d", got)
	}
}

func TestReplayHash(t *testing.T) {
	alice, bob := newParty(t, 1), newParty(t, 2)
	ini, _ := Initiate(alice.id, alice.device, bob.bundle(false), t0, testRand(17))
	h := ini.Message.ReplayHash()
	m := roundTrip(t, ini.Message)
	if m.ReplayHash() != h {
		t.Fatal("replay hash not stable")
	}
	m.Ciphertext[0] ^= 1
	if m.ReplayHash() == h {
		t.Error("replay hash does not cover the ciphertext")
	}
	m = roundTrip(t, ini.Message)
	m.BaseKey[0] ^= 1
	if m.ReplayHash() == h {
		t.Error("replay hash does not cover the base key")
	}
}

// TestGolden regenerates the PQXDH handshake from fixed seeds, with
// derandomized ML-KEM encapsulation, and compares it with the frozen file.
func TestGolden(t *testing.T) {
	alice, bob := newParty(t, 0xa1), newParty(t, 0xb0)
	var f golden.File
	for _, withOTP := range []bool{false, true} {
		name := "no_one_time"
		if withOTP {
			name = "one_time"
		}
		bundle := bob.bundle(withOTP)
		ini, err := initiate(alice.id, alice.device, bundle, t0, testRand(0x33), SupportedVersions(), detEncaps)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := ini.Message.MarshalBinary()
		res, err := Respond(bob.responder(), roundTrip(t, ini.Message))
		if err != nil {
			t.Fatal(err)
		}
		if res.Secret != ini.Secret {
			t.Fatal("secrets differ")
		}
		benc, _ := bundle.MarshalBinary()
		f.Hex(name+".bundle", benc)
		f.Hex(name+".initial_message", msg)
		f.Hex(name+".ad", ini.AD)
		f.Hex(name+".secret", ini.Secret[:])
		rh := ini.Message.ReplayHash()
		f.Hex(name+".replay_hash", rh[:])
	}
	f.Check(t, "../testdata/pqxdh.golden", *update)
}

func FuzzParseInitialMessage(f *testing.F) {
	alice, bob := newParty(f, 1), newParty(f, 2)
	for _, otp := range []bool{false, true} {
		ini, _ := Initiate(alice.id, alice.device, bob.bundle(otp), t0, testRand(1))
		enc, _ := ini.Message.MarshalBinary()
		f.Add(enc)
	}
	f.Add([]byte{1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseInitialMessage(data)
		if err != nil {
			return
		}
		out, err := m.MarshalBinary()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("re-encoding differs: %v", err)
		}
	})
}

// FuzzRespond feeds arbitrary initial messages to a responder that holds
// the keys the seeds name. It must never panic, and any message it accepts
// must be well formed and name the responder.
func FuzzRespond(f *testing.F) {
	alice, bob := newParty(f, 1), newParty(f, 2)
	for _, otp := range []bool{false, true} {
		ini, _ := Initiate(alice.id, alice.device, bob.bundle(otp), t0, testRand(1))
		enc, _ := ini.Message.MarshalBinary()
		f.Add(enc)
	}
	resp := bob.responder()
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseInitialMessage(data)
		if err != nil {
			return
		}
		res, err := Respond(resp, m)
		if err != nil {
			return
		}
		if !m.Recipient.Equal(bob.id.UserID()) || res.Initiator.Verify() != nil || res.InitiatorDevice.Verify() != nil {
			t.Fatal("accepted a message that does not check out")
		}
	})
}

func BenchmarkInitiate(b *testing.B) {
	alice, bob := newParty(b, 1), newParty(b, 2)
	for _, otp := range []bool{false, true} {
		bundle := bob.bundle(otp)
		b.Run(fmt.Sprintf("one-time=%v", otp), func(b *testing.B) {
			r := testRand(3)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Initiate(alice.id, alice.device, bundle, t0, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRespond(b *testing.B) {
	alice, bob := newParty(b, 1), newParty(b, 2)
	for _, otp := range []bool{false, true} {
		ini, _ := Initiate(alice.id, alice.device, bob.bundle(otp), t0, testRand(3))
		resp := bob.responder()
		b.Run(fmt.Sprintf("one-time=%v", otp), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Respond(resp, ini.Message); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseInitialMessage(b *testing.B) {
	alice, bob := newParty(b, 1), newParty(b, 2)
	ini, _ := Initiate(alice.id, alice.device, bob.bundle(true), t0, testRand(3))
	enc, _ := ini.Message.MarshalBinary()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseInitialMessage(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMLKEMEncapsulate(b *testing.B) {
	ek := newParty(b, 2).kem.DecapsulationKey().EncapsulationKey()
	b.ReportAllocs()
	for b.Loop() {
		ek.Encapsulate()
	}
}

func BenchmarkMLKEMDecapsulate(b *testing.B) {
	dk := newParty(b, 2).kem.DecapsulationKey()
	_, ct := dk.EncapsulationKey().Encapsulate()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dk.Decapsulate(ct); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKDF(b *testing.B) {
	ikm := make([]byte, ikmMaxSize)
	ad := make([]byte, 160)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kdf(ikm, ad); err != nil {
			b.Fatal(err)
		}
	}
}
