package seal

import (
	"bytes"
	"crypto/ecdh"
	"encoding/binary"
	"errors"
	mrand "math/rand/v2"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/sealpost/sealpost/crypto/identity"
)

type fixture struct {
	rand    *mrand.ChaCha8
	sender  *identity.Private
	sealing *ecdh.PrivateKey
	mailbox [MailboxIDSize]byte
	device  []byte
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	r := mrand.NewChaCha8([32]byte{1})
	sender, err := identity.Generate(r)
	if err != nil {
		t.Fatal(err)
	}
	var seed [32]byte
	r.Read(seed[:])
	sealing, err := ecdh.X25519().NewPrivateKey(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{rand: r, sender: sender, sealing: sealing, device: []byte("device peer ID bytes, 38 bytes long..")}
	r.Read(f.mailbox[:])
	return f
}

func (f *fixture) seal(t testing.TB, payload []byte) []byte {
	t.Helper()
	env, err := Seal(nil, f.mailbox, f.sealing.PublicKey().Bytes(), f.sender.Public(), f.device, payload, f.rand)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestRoundTripAndBuckets(t *testing.T) {
	f := newFixture(t)
	fixed := Overhead + contentsFixed + identity.PublicSize + len(f.device)
	for _, tc := range []struct{ payload, size int }{
		{0, 512},
		{512 - fixed, 512},
		{512 - fixed + 1, 2048},
		{2048 - fixed, 2048},
		{8192 - fixed, 8192},
		{8192 - fixed + 1, 32768},
		{65536 - fixed, 65536},
	} {
		payload := bytes.Repeat([]byte{0xa5}, tc.payload)
		env := f.seal(t, payload)
		if len(env) != tc.size {
			t.Errorf("payload %d: envelope %d bytes, want %d", tc.payload, len(env), tc.size)
		}
		if got := EnvelopeSize(tc.payload, len(f.device)); got != tc.size {
			t.Errorf("EnvelopeSize(%d) = %d, want %d", tc.payload, got, tc.size)
		}
		id, err := PeekMailbox(env)
		if err != nil || id != f.mailbox {
			t.Fatalf("PeekMailbox: %x, %v", id, err)
		}
		o, err := Open(env, f.sealing)
		if err != nil {
			t.Fatalf("payload %d: %v", tc.payload, err)
		}
		if o.Mailbox != f.mailbox || !o.Sender.Equal(f.sender.Public()) || !bytes.Equal(o.Device, f.device) || !bytes.Equal(o.Payload, payload) {
			t.Fatalf("payload %d: opened contents differ", tc.payload)
		}
	}
}

func TestTooLarge(t *testing.T) {
	f := newFixture(t)
	fixed := Overhead + contentsFixed + identity.PublicSize + len(f.device)
	_, err := Seal(nil, f.mailbox, f.sealing.PublicKey().Bytes(), f.sender.Public(), f.device, make([]byte, MaxEnvelopeSize-fixed+1), f.rand)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	_, err = Seal(nil, f.mailbox, f.sealing.PublicKey().Bytes(), f.sender.Public(), make([]byte, 256), nil, f.rand)
	if err == nil {
		t.Fatal("a 256-byte device ID was accepted")
	}
}

func TestAppendsToDst(t *testing.T) {
	f := newFixture(t)
	env, err := Seal([]byte("prefix"), f.mailbox, f.sealing.PublicKey().Bytes(), f.sender.Public(), f.device, []byte("hi"), f.rand)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(env, []byte("prefix")) || len(env) != len("prefix")+512 {
		t.Fatal("Seal did not append to dst")
	}
	if _, err := Open(env[len("prefix"):], f.sealing); err != nil {
		t.Fatal(err)
	}
}

func TestEveryBitFlipRefused(t *testing.T) {
	f := newFixture(t)
	env := f.seal(t, []byte("a ratchet message"))
	bad := bytes.Clone(env)
	for i := range bad {
		for bit := range 8 {
			bad[i] ^= 1 << bit
			if o, err := Open(bad, f.sealing); !errors.Is(err, ErrOpen) || o != nil {
				t.Fatalf("byte %d bit %d flipped: got %v, want ErrOpen", i, bit, err)
			}
			bad[i] ^= 1 << bit
		}
	}
	if _, err := Open(env, f.sealing); err != nil {
		t.Fatal(err)
	}
}

func TestWrongKeyAndSizes(t *testing.T) {
	f := newFixture(t)
	env := f.seal(t, []byte("x"))
	other, _ := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{9}, 32))
	for name, tc := range map[string]struct {
		env []byte
		key *ecdh.PrivateKey
	}{
		"wrong key":   {env, other},
		"nil key":     {env, nil},
		"truncated":   {env[:len(env)-1], f.sealing},
		"extended":    {append(bytes.Clone(env), 0), f.sealing},
		"empty":       {nil, f.sealing},
		"header only": {env[:HeaderSize], f.sealing},
	} {
		if _, err := Open(tc.env, tc.key); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: got %v, want ErrOpen", name, err)
		}
	}
	for _, b := range [][]byte{nil, env[:511], append(bytes.Clone(env), 0)} {
		if _, err := PeekMailbox(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("PeekMailbox of %d bytes: got %v", len(b), err)
		}
	}
	bad := bytes.Clone(env)
	bad[0] = 2
	if _, err := PeekMailbox(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("PeekMailbox of version 2: got %v", err)
	}
}

// forge builds an envelope as an attacker would: with a chosen ephemeral
// public key and the AEAD key derived from a chosen shared secret.
func forge(t *testing.T, f *fixture, eph, shared, contents []byte) []byte {
	t.Helper()
	env := make([]byte, 512)
	env[0] = Version
	copy(env[1:], f.mailbox[:])
	copy(env[ephemeralOffset:], eph)
	k, err := key(shared, env[:HeaderSize], eph, f.sealing.PublicKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	pt := make([]byte, 512-Overhead)
	copy(pt, contents)
	aead, _ := chacha20poly1305.New(k)
	aead.Seal(env[ciphertextOffset:ciphertextOffset], make([]byte, 12), pt, env[:HeaderSize])
	return env
}

func validContents(f *fixture, payload []byte) []byte {
	c := binary.BigEndian.AppendUint16(nil, identity.PublicSize)
	c = f.sender.Public().AppendBinary(c)
	c = append(c, byte(len(f.device)))
	c = append(c, f.device...)
	c = binary.BigEndian.AppendUint32(c, uint32(len(payload)))
	return append(c, payload...)
}

func TestLowOrderEphemeralRefused(t *testing.T) {
	f := newFixture(t)
	// With a low-order ephemeral key the shared secret is all zero, which
	// an attacker knows without the sealing key.
	zero := make([]byte, 32)
	for _, eph := range [][]byte{
		make([]byte, 32),                       // 0
		append([]byte{1}, make([]byte, 31)...), // 1
	} {
		env := forge(t, f, eph, zero, validContents(f, []byte("forged")))
		if _, err := Open(env, f.sealing); !errors.Is(err, ErrOpen) {
			t.Fatalf("ephemeral key %x: got %v, want ErrOpen", eph, err)
		}
	}
	if _, err := Seal(nil, f.mailbox, zero, f.sender.Public(), f.device, nil, f.rand); err == nil {
		t.Fatal("Seal accepted an all-zero sealing key")
	}
}

func TestContentsChecked(t *testing.T) {
	f := newFixture(t)
	var seed [32]byte
	seed[0] = 5
	eph, _ := ecdh.X25519().NewPrivateKey(seed[:])
	shared, err := eph.ECDH(f.sealing.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	good := validContents(f, []byte("payload"))
	if _, err := Open(forge(t, f, eph.PublicKey().Bytes(), shared, good), f.sealing); err != nil {
		t.Fatalf("hand-built envelope refused: %v", err)
	}
	cases := map[string][]byte{
		"nonzero padding":  append(bytes.Clone(good), 0, 1),
		"payload too long": func() []byte { c := bytes.Clone(good); c[len(c)-len("payload")-3] = 0xff; return c }(),
		"identity length":  func() []byte { c := bytes.Clone(good); c[1]--; return c }(),
		"identity version": func() []byte { c := bytes.Clone(good); c[2] = 9; return c }(),
		"all padding":      nil,
		"payload overflows": func() []byte {
			c := bytes.Clone(good[:2+identity.PublicSize])
			return append(c, 0, 0xff, 0xff, 0xff, 0xff)
		}(),
		"identity too long": func() []byte { c := bytes.Clone(good); c[0] = 0xff; return c }(),
	}
	for name, c := range cases {
		if _, err := Open(forge(t, f, eph.PublicKey().Bytes(), shared, c), f.sealing); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: got %v, want ErrOpen", name, err)
		}
	}
}
