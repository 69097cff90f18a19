package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"filippo.io/edwards25519"

	"github.com/sealpost/sealpost/crypto/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files under crypto/testdata")

// testRand returns a deterministic random source for seed.
func testRand(seed byte) *rand.ChaCha8 {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

func mustGenerate(t testing.TB, seed byte) *Private {
	t.Helper()
	k, err := Generate(testRand(seed))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestGenerateRoundTrip(t *testing.T) {
	k := mustGenerate(t, 1)
	if err := k.Public().Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	priv, err := k.MarshalBinary()
	if err != nil || len(priv) != PrivateSize {
		t.Fatalf("MarshalBinary: %d bytes, %v", len(priv), err)
	}
	k2, err := ParsePrivate(priv)
	if err != nil {
		t.Fatal(err)
	}
	if !k2.Public().Equal(k.Public()) {
		t.Error("private round trip changed the public key")
	}
	pub, _ := k.Public().MarshalBinary()
	if len(pub) != PublicSize {
		t.Fatalf("public form is %d bytes, want %d", len(pub), PublicSize)
	}
	p2, err := ParsePublic(pub)
	if err != nil {
		t.Fatal(err)
	}
	if !p2.Equal(k.Public()) || p2.Verify() != nil {
		t.Error("public round trip failed")
	}
	var p3 Public
	if err := p3.UnmarshalBinary(pub); err != nil || !p3.Equal(p2) {
		t.Errorf("UnmarshalBinary: %v", err)
	}
	var k3 Private
	if err := k3.UnmarshalBinary(priv); err != nil || !k3.Public().Equal(k.Public()) {
		t.Errorf("Private.UnmarshalBinary: %v", err)
	}
	if mustGenerate(t, 2).Public().Equal(k.Public()) {
		t.Error("different seeds gave equal identities")
	}
}

func TestGenerateShortRandom(t *testing.T) {
	if _, err := Generate(bytes.NewReader(make([]byte, 63))); err == nil {
		t.Error("Generate succeeded with 63 random bytes")
	}
}

func TestParseErrors(t *testing.T) {
	k := mustGenerate(t, 1)
	pub, _ := k.Public().MarshalBinary()
	priv, _ := k.MarshalBinary()
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"public short", pub[:PublicSize-1], ErrMalformed},
		{"public long", append(bytes.Clone(pub), 0), ErrMalformed},
		{"public version", append([]byte{2}, pub[1:]...), ErrVersion},
		{"public empty", nil, ErrMalformed},
	} {
		if _, err := ParsePublic(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"private short", priv[:PrivateSize-1], ErrMalformed},
		{"private version", append([]byte{0}, priv[1:]...), ErrVersion},
	} {
		if _, err := ParsePrivate(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestPublicTamper flips every bit of the public form: the result must not
// verify.
func TestPublicTamper(t *testing.T) {
	pub, _ := mustGenerate(t, 3).Public().MarshalBinary()
	for i := 1; i < len(pub); i++ {
		for bit := range 8 {
			b := bytes.Clone(pub)
			b[i] ^= 1 << bit
			p, err := ParsePublic(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Verify(); !errors.Is(err, ErrInvalid) {
				t.Fatalf("byte %d bit %d flipped: Verify = %v", i, bit, err)
			}
		}
	}
}

// smallOrderPoints returns the encodings of the 8 Edwards points of order
// dividing 8.
func smallOrderPoints(t *testing.T) [][]byte {
	t.Helper()
	// An Edwards point of order 8 (RFC 8032 / "It's 255:19AM" list).
	enc, _ := hex.DecodeString("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
	t8, err := new(edwards25519.Point).SetBytes(enc)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	p := edwards25519.NewIdentityPoint()
	for range 8 {
		out = append(out, p.Bytes())
		p = new(edwards25519.Point).Add(p, t8)
	}
	if !bytes.Equal(p.Bytes(), edwards25519.NewIdentityPoint().Bytes()) {
		t.Fatal("point is not of order 8")
	}
	return out
}

// TestSmallOrderIdentityRefused builds identities whose Ed25519 key is of
// small order. For the identity point, the signature (R = identity, s = 0)
// verifies under crypto/ed25519 for every message; Verify must still refuse.
func TestSmallOrderIdentityRefused(t *testing.T) {
	good := mustGenerate(t, 4).Public()
	identityPoint := edwards25519.NewIdentityPoint().Bytes()
	forged := append(bytes.Clone(identityPoint), make([]byte, 32)...)
	for _, pt := range smallOrderPoints(t) {
		p := &Public{dh: good.dh}
		copy(p.id[:], pt)
		copy(p.sig[:], forged)
		if bytes.Equal(pt, identityPoint) && !ed25519.Verify(pt, labelled(LabelIdentityKey, p.signedBody()), forged) {
			t.Fatal("crypto/ed25519 refuses the identity-point signature; the test no longer shows what it should")
		}
		if err := p.Verify(); !errors.Is(err, ErrInvalid) {
			t.Errorf("small-order key %x: Verify = %v", pt, err)
		}
		if _, err := UserIDFromBytes(pt); !errors.Is(err, ErrInvalid) {
			t.Errorf("small-order key %x: UserIDFromBytes = %v", pt, err)
		}
		var id UserID
		copy(id[:], pt)
		if id.Verify(LabelIdentityKey, p.signedBody(), forged) {
			t.Errorf("small-order key %x: UserID.Verify accepted", pt)
		}
		if _, err := ParseUserID(id.String()); !errors.Is(err, ErrInvalid) {
			t.Errorf("small-order key %x: ParseUserID = %v", pt, err)
		}
	}
}

// TestLowOrderDHKeyRefused: an identity whose X25519 key is of low order is
// refused even when the Ed25519 key really signed it.
func TestLowOrderDHKeyRefused(t *testing.T) {
	k := mustGenerate(t, 5)
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		p := &Public{id: k.UserID()}
		hex.Decode(p.dh[:], []byte(h))
		copy(p.sig[:], k.Sign(LabelIdentityKey, p.signedBody()))
		if err := p.Verify(); !errors.Is(err, ErrInvalid) {
			t.Errorf("X25519 key %s: Verify = %v", h, err)
		}
	}
}

func TestSignLabels(t *testing.T) {
	k := mustGenerate(t, 6)
	body := []byte("body")
	sig := k.Sign("sealpost/v1/test-a", body)
	id := k.UserID()
	if !id.Verify("sealpost/v1/test-a", body, sig) {
		t.Fatal("signature does not verify")
	}
	if id.Verify("sealpost/v1/test-b", body, sig) {
		t.Error("signature verifies under another label")
	}
	// The label is separated from the body: moving a byte across the
	// boundary must not verify.
	if id.Verify("sealpost/v1/test-", append([]byte("a\x00"), body...), sig) {
		t.Error("label boundary is ambiguous")
	}
	if id.Verify("sealpost/v1/test-a", []byte("bodz"), sig) {
		t.Error("signature verifies for another body")
	}
	if !VerifyWith(id.PublicKey(), "sealpost/v1/test-a", body, sig) {
		t.Error("VerifyWith refuses")
	}
	defer func() {
		if recover() == nil {
			t.Error("Sign accepted a label with a zero byte")
		}
	}()
	k.Sign("bad\x00label", body)
}

func TestUserIDText(t *testing.T) {
	id := mustGenerate(t, 7).UserID()
	s := id.String()
	if len(s) != UserIDTextSize || !strings.HasPrefix(s, UserIDPrefix) || s != strings.ToLower(s) {
		t.Fatalf("text form %q", s)
	}
	for _, in := range []string{s, strings.ToUpper(s)} {
		got, err := ParseUserID(in)
		if err != nil || !got.Equal(id) {
			t.Errorf("ParseUserID(%q) = %v, %v", in, got, err)
		}
	}
	txt, _ := id.MarshalText()
	var back UserID
	if err := back.UnmarshalText(txt); err != nil || back != id {
		t.Errorf("text round trip: %v", err)
	}
	// The last character carries one bit; the other four must be zero.
	last := s[len(s)-1]
	alt := strings.IndexByte("abcdefghijklmnopqrstuvwxyz234567", last) ^ 1
	nonCanon := s[:len(s)-1] + string("abcdefghijklmnopqrstuvwxyz234567"[alt])
	for _, bad := range []string{
		"", s[:len(s)-1], s + "a", "xx" + s[2:], nonCanon,
		s[:10] + "1" + s[11:], s[:10] + "=" + s[11:],
	} {
		if _, err := ParseUserID(bad); err == nil {
			t.Errorf("ParseUserID(%q) accepted", bad)
		}
	}
	if id.IsZero() || !(UserID{}).IsZero() {
		t.Error("IsZero")
	}
}

func TestDeviceRecord(t *testing.T) {
	k := mustGenerate(t, 8)
	devKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	devID := []byte("\x00\x24\x08\x01\x12\x20" + strings.Repeat("d", 32))
	at := time.Unix(1_700_000_000, 0)
	r, err := NewDeviceRecord(k, devKey, devID, at, 7)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
	if !r.Identity().Equal(k.UserID()) || !bytes.Equal(r.DeviceID(), devID) || !r.CreatedAt().Equal(at) || r.Seq() != 7 ||
		!bytes.Equal(r.DeviceKey(), devKey.Public().(ed25519.PublicKey)) {
		t.Error("accessors do not return what was signed")
	}
	b, _ := r.MarshalBinary()
	r2, err := ParseDeviceRecord(b)
	if err != nil || !r2.Equal(r) || r2.Verify() != nil {
		t.Fatalf("round trip: %v", err)
	}
	// Every flipped bit after the version byte breaks a signature or the
	// structure.
	for i := 1; i < len(b); i++ {
		for bit := range 8 {
			c := bytes.Clone(b)
			c[i] ^= 1 << bit
			r3, err := ParseDeviceRecord(c)
			if err == nil {
				err = r3.Verify()
			}
			if err == nil {
				t.Fatalf("byte %d bit %d flipped: accepted", i, bit)
			}
		}
	}
	for _, n := range []int{0, len(b) - 1} {
		if _, err := ParseDeviceRecord(b[:n]); !errors.Is(err, ErrMalformed) {
			t.Errorf("truncated to %d: %v", n, err)
		}
	}
	if _, err := ParseDeviceRecord(append(bytes.Clone(b), 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("trailing byte: %v", err)
	}
	if _, err := NewDeviceRecord(k, devKey, nil, at, 1); err == nil {
		t.Error("empty device ID accepted")
	}
	if _, err := NewDeviceRecord(k, devKey, make([]byte, MaxDeviceIDSize+1), at, 1); err == nil {
		t.Error("oversized device ID accepted")
	}
}

// TestDeviceRecordCountersign: a record signed by the identity but
// countersigned by another device key (or re-signed by another identity)
// does not verify.
func TestDeviceRecordCountersign(t *testing.T) {
	k, eve := mustGenerate(t, 10), mustGenerate(t, 11)
	devKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	r, _ := NewDeviceRecord(k, devKey, []byte("dev"), time.Unix(1, 0), 1)
	forged := *r
	copy(forged.devSig[:], SignWith(other, LabelDeviceCountersign, append(r.appendBody(nil), r.idSig[:]...)))
	if err := forged.Verify(); !errors.Is(err, ErrInvalid) {
		t.Errorf("countersignature by another key: %v", err)
	}
	// Eve claims the device: she re-signs the record with her identity,
	// but cannot produce the device's countersignature over it.
	stolen := *r
	stolen.identity = eve.UserID()
	copy(stolen.idSig[:], eve.Sign(LabelDeviceRecord, stolen.appendBody(nil)))
	if err := stolen.Verify(); !errors.Is(err, ErrInvalid) {
		t.Errorf("device claimed by another identity: %v", err)
	}
}

func TestCheckUpdate(t *testing.T) {
	k, eve := mustGenerate(t, 12), mustGenerate(t, 13)
	dev := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	dev2 := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, 32))
	at := time.Unix(1_700_000_000, 0)
	mk := func(id *Private, key ed25519.PrivateKey, devID string, seq uint64) *DeviceRecord {
		r, err := NewDeviceRecord(id, key, []byte(devID), at, seq)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	old := mk(k, dev, "a", 5)
	for _, tc := range []struct {
		name string
		next *DeviceRecord
		want error
	}{
		{"higher seq", mk(k, dev, "a", 6), nil},
		{"higher seq, new device", mk(k, dev2, "b", 9), nil},
		{"same seq", mk(k, dev, "a", 5), ErrStaleRecord},
		{"lower seq", mk(k, dev, "a", 4), ErrStaleRecord},
		{"other identity", mk(eve, dev, "a", 100), ErrIdentityChanged},
	} {
		if err := CheckUpdate(old, tc.next); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestSafetyNumber(t *testing.T) {
	a, b, c := mustGenerate(t, 20).UserID(), mustGenerate(t, 21).UserID(), mustGenerate(t, 22).UserID()
	ab, ba := NewSafetyNumber(a, b), NewSafetyNumber(b, a)
	if ab.Digits() != ba.Digits() {
		t.Fatalf("not order-independent: %s / %s", ab, ba)
	}
	if len(ab.Digits()) != SafetyDigits || strings.Trim(ab.Digits(), "0123456789") != "" {
		t.Fatalf("digits %q", ab.Digits())
	}
	if len(ab.String()) != SafetyDigits+11 {
		t.Errorf("String() = %q", ab.String())
	}
	if !ab.Matches(ba.String()) || !ab.Matches(ba.Digits()) || !ab.Matches(" "+ab.Digits()[:30]+"\n"+ab.Digits()[30:]) {
		t.Error("Matches refuses the same number")
	}
	ac := NewSafetyNumber(a, c)
	if ac.Digits() == ab.Digits() || ab.Matches(ac.Digits()) {
		t.Error("different pairs give the same number")
	}
	if err := ab.CompareQR(ba.QR()); err != nil {
		t.Errorf("CompareQR(other side) = %v", err)
	}
	if err := ba.CompareQR(ab.QR()); err != nil {
		t.Errorf("CompareQR(other side) = %v", err)
	}
	if err := ab.CompareQR(ab.QR()); !errors.Is(err, ErrSafetyMismatch) {
		t.Errorf("CompareQR(own payload) = %v", err)
	}
	if err := ab.CompareQR(NewSafetyNumber(c, a).QR()); !errors.Is(err, ErrSafetyMismatch) {
		t.Errorf("CompareQR(other pair) = %v", err)
	}
	qr := ba.QR()
	qr[0] = 2
	if err := ab.CompareQR(qr); !errors.Is(err, ErrVersion) {
		t.Errorf("version 2: %v", err)
	}
	if err := ab.CompareQR(qr[:10]); !errors.Is(err, ErrMalformed) {
		t.Errorf("short: %v", err)
	}
	for i := 1; i < SafetyQRSize; i++ {
		q := ba.QR()
		q[i] ^= 1
		if ab.CompareQR(q) == nil {
			t.Fatalf("flipped byte %d accepted", i)
		}
	}
}

// TestSafetyDigitsKnown checks the digit extraction on a hash with known
// chunks.
func TestSafetyDigitsKnown(t *testing.T) {
	var h [64]byte
	// 0x0000000001 = 1, 0xffffffffff = 1099511627775 -> 27775, 0x00000186a0 = 100000 -> 0.
	copy(h[0:], []byte{0, 0, 0, 0, 1})
	copy(h[5:], []byte{0xff, 0xff, 0xff, 0xff, 0xff})
	copy(h[10:], []byte{0, 0, 1, 0x86, 0xa0})
	got := safetySide(&h)
	want := "00001" + "27775" + "00000" + "00000" + "00000" + "00000"
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestGolden regenerates the identity golden file from fixed seeds.
func TestGolden(t *testing.T) {
	var f golden.File
	alice, bob := mustGenerate(t, 0xa1), mustGenerate(t, 0xb0)
	for _, p := range []struct {
		name string
		k    *Private
	}{{"alice", alice}, {"bob", bob}} {
		priv, _ := p.k.MarshalBinary()
		pub, _ := p.k.Public().MarshalBinary()
		f.Hex(p.name+".private", priv)
		f.Hex(p.name+".public", pub)
		f.Text(p.name+".user_id", p.k.UserID().String())
		dev := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{p.name[0]}, 32))
		r, err := NewDeviceRecord(p.k, dev, []byte("device-"+p.name), time.Unix(1_750_000_000, 0), 1)
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := r.MarshalBinary()
		f.Hex(p.name+".device_record", rec)
	}
	sn := NewSafetyNumber(alice.UserID(), bob.UserID())
	f.Text("safety_number", sn.String())
	f.Hex("safety_qr.alice", sn.QR())
	f.Hex("safety_qr.bob", NewSafetyNumber(bob.UserID(), alice.UserID()).QR())
	f.Check(t, "../testdata/identity.golden", *update)
}

func FuzzParsePublic(f *testing.F) {
	pub, _ := mustGenerate(f, 1).Public().MarshalBinary()
	f.Add(pub)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePublic(b)
		if err != nil {
			return
		}
		out, _ := p.MarshalBinary()
		if !bytes.Equal(out, b) {
			t.Fatal("re-encoding differs")
		}
		_ = p.Verify()
	})
}

func FuzzParsePrivate(f *testing.F) {
	priv, _ := mustGenerate(f, 1).MarshalBinary()
	f.Add(priv)
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParsePrivate(b)
		if err != nil {
			return
		}
		out, _ := k.MarshalBinary()
		if !bytes.Equal(out, b) {
			t.Fatal("re-encoding differs")
		}
		if err := k.Public().Verify(); err != nil {
			t.Fatalf("parsed private key gives an invalid public key: %v", err)
		}
	})
}

func FuzzParseDeviceRecord(f *testing.F) {
	k := mustGenerate(f, 1)
	r, _ := NewDeviceRecord(k, ed25519.NewKeyFromSeed(make([]byte, 32)), []byte("dev"), time.Unix(5, 0), 1)
	b, _ := r.MarshalBinary()
	f.Add(b)
	f.Add(b[:80])
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseDeviceRecord(b)
		if err != nil {
			return
		}
		out, _ := r.MarshalBinary()
		if !bytes.Equal(out, b) {
			t.Fatal("re-encoding differs")
		}
		_ = r.Verify()
	})
}

func FuzzParseUserID(f *testing.F) {
	f.Add(mustGenerate(f, 1).UserID().String())
	f.Add("sp")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseUserID(s)
		if err != nil {
			return
		}
		if id.String() != strings.ToLower(s) {
			t.Fatalf("%q parsed, prints as %q", s, id.String())
		}
	})
}

func FuzzCompareQR(f *testing.F) {
	a, b := mustGenerate(f, 1).UserID(), mustGenerate(f, 2).UserID()
	sn := NewSafetyNumber(a, b)
	peer := NewSafetyNumber(b, a).QR()
	f.Add(peer)
	f.Add(sn.QR()) // the own code: not the peer's
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, q []byte) {
		err := sn.CompareQR(q)
		switch {
		case bytes.Equal(q, peer):
			if err != nil {
				t.Fatalf("the peer's code refused: %v", err)
			}
		case err == nil:
			t.Fatalf("CompareQR accepted %x, which is not the peer's code", q)
		case !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrSafetyMismatch):
			t.Fatalf("CompareQR(%x): %v, want ErrMalformed, ErrVersion or ErrSafetyMismatch", q, err)
		}
	})
}

func BenchmarkGenerate(b *testing.B) {
	r := testRand(1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Generate(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPublicVerify(b *testing.B) {
	p := mustGenerate(b, 1).Public()
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Verify(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeviceRecordVerify(b *testing.B) {
	r, _ := NewDeviceRecord(mustGenerate(b, 1), ed25519.NewKeyFromSeed(make([]byte, 32)), []byte("dev"), time.Unix(5, 0), 1)
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Verify(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSafetyNumber(b *testing.B) {
	a, c := mustGenerate(b, 1).UserID(), mustGenerate(b, 2).UserID()
	b.ReportAllocs()
	for b.Loop() {
		NewSafetyNumber(a, c)
	}
}

func TestVerifier(t *testing.T) {
	k, eve := mustGenerate(t, 30), mustGenerate(t, 31)
	v, err := k.Public().Verifier()
	if err != nil {
		t.Fatal(err)
	}
	if !v.UserID().Equal(k.UserID()) {
		t.Error("Verifier.UserID")
	}
	sig := k.Sign("sealpost/v1/test", []byte("x"))
	if !v.Verify("sealpost/v1/test", []byte("x"), sig) {
		t.Error("Verifier refuses a good signature")
	}
	if v.Verify("sealpost/v1/test", []byte("x"), sig[:63]) || (Verifier{}).Verify("sealpost/v1/test", []byte("x"), sig) {
		t.Error("short signature or zero Verifier accepted")
	}
	for _, pt := range smallOrderPoints(t) {
		var id UserID
		copy(id[:], pt)
		if _, err := id.Verifier(); !errors.Is(err, ErrInvalid) {
			t.Errorf("Verifier for small-order key %x: %v", pt, err)
		}
	}
	r, _ := NewDeviceRecord(k, ed25519.NewKeyFromSeed(make([]byte, 32)), []byte("d"), time.Unix(1, 0), 1)
	if err := r.VerifyFor(v); err != nil {
		t.Errorf("VerifyFor own identity: %v", err)
	}
	ve, _ := eve.Public().Verifier()
	if err := r.VerifyFor(ve); !errors.Is(err, ErrIdentityChanged) {
		t.Errorf("VerifyFor another identity: %v", err)
	}
}
