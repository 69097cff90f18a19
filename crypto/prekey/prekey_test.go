package prekey

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files under crypto/testdata")

// t0 is the fixed creation time of test records.
var t0 = time.Unix(1_750_000_000, 0)

func testRand(seed byte) *rand.ChaCha8 {
	var s [32]byte
	s[0] = seed
	s[1] = 'p'
	return rand.NewChaCha8(s)
}

// owner is a device with its identity and private prekeys.
type owner struct {
	id     *identity.Private
	device *identity.DeviceRecord
	spk    *SignedPrekeyPrivate
	kem    *KEMPrekeyPrivate
	otps   []*OneTimePrekeyPrivate
}

func newOwner(t testing.TB, seed byte) *owner {
	t.Helper()
	r := testRand(seed)
	id, err := identity.Generate(r)
	if err != nil {
		t.Fatal(err)
	}
	devKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32))
	dev, err := identity.NewDeviceRecord(id, devKey, []byte{0, 0x24, seed}, t0, 1)
	if err != nil {
		t.Fatal(err)
	}
	spk, err := NewSignedPrekey(id, 7, []uint8{1}, t0, r)
	if err != nil {
		t.Fatal(err)
	}
	kem, err := NewKEMPrekey(id, 8, t0, r)
	if err != nil {
		t.Fatal(err)
	}
	otps, err := NewOneTimePrekeys(id, 100, 3, t0, r)
	if err != nil {
		t.Fatal(err)
	}
	return &owner{id: id, device: dev, spk: spk, kem: kem, otps: otps}
}

func (o *owner) bundle(withOTP bool) *Bundle {
	b := &Bundle{Identity: o.id.Public(), Device: o.device, SignedPrekey: o.spk.Public(), KEMPrekey: o.kem.Public()}
	if withOTP {
		b.OneTime = o.otps[0].Public()
	}
	return b
}

func TestBundleRoundTrip(t *testing.T) {
	o := newOwner(t, 1)
	for _, withOTP := range []bool{false, true} {
		b := o.bundle(withOTP)
		if err := b.Verify(t0); err != nil {
			t.Fatalf("otp %v: Verify: %v", withOTP, err)
		}
		enc, err := b.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(enc) > MaxBundleSize {
			t.Errorf("bundle of %d bytes exceeds MaxBundleSize %d", len(enc), MaxBundleSize)
		}
		b2, err := ParseBundle(enc)
		if err != nil {
			t.Fatalf("otp %v: ParseBundle: %v", withOTP, err)
		}
		if err := b2.Verify(t0); err != nil {
			t.Fatalf("otp %v: Verify after parse: %v", withOTP, err)
		}
		enc2, _ := b2.MarshalBinary()
		if !bytes.Equal(enc, enc2) {
			t.Errorf("otp %v: re-encoding differs", withOTP)
		}
		if (b2.OneTime != nil) != withOTP {
			t.Errorf("otp %v: one-time prekey presence changed", withOTP)
		}
		if got := b2.Versions(); !bytes.Equal(got, []byte{1}) {
			t.Errorf("Versions() = %v", got)
		}
	}
}

func TestMaxBundleSize(t *testing.T) {
	// A bundle with the largest device ID and the most versions is exactly
	// MaxBundleSize bytes.
	r := testRand(9)
	id, _ := identity.Generate(r)
	dev, err := identity.NewDeviceRecord(id, ed25519.NewKeyFromSeed(make([]byte, 32)), make([]byte, identity.MaxDeviceIDSize), t0, 1)
	if err != nil {
		t.Fatal(err)
	}
	var versions []uint8
	for v := range MaxVersions {
		versions = append(versions, uint8(v+1))
	}
	spk, err := NewSignedPrekey(id, 1, versions, t0, r)
	if err != nil {
		t.Fatal(err)
	}
	kem, _ := NewKEMPrekey(id, 1, t0, r)
	otp, _ := NewOneTimePrekeys(id, 1, 1, t0, r)
	b := &Bundle{Identity: id.Public(), Device: dev, SignedPrekey: spk.Public(), KEMPrekey: kem.Public(), OneTime: otp[0].Public()}
	enc, _ := b.MarshalBinary()
	if len(enc) != MaxBundleSize {
		t.Errorf("largest bundle is %d bytes, MaxBundleSize %d", len(enc), MaxBundleSize)
	}
	if _, err := ParseBundle(enc); err != nil {
		t.Errorf("largest bundle refused: %v", err)
	}
	if _, err := ParseBundle(append(enc, 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("oversized bundle: %v", err)
	}
}

func TestPrivateRoundTrip(t *testing.T) {
	o := newOwner(t, 2)
	spkB, _ := o.spk.MarshalBinary()
	spk, err := ParseSignedPrekeyPrivate(spkB)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(spk.PrivateKey().Bytes(), o.spk.PrivateKey().Bytes()) {
		t.Error("signed prekey private key changed")
	}
	kemB, _ := o.kem.MarshalBinary()
	if len(kemB) != KEMPrekeyPrivateSize {
		t.Errorf("KEM private form is %d bytes", len(kemB))
	}
	kem, err := ParseKEMPrekeyPrivate(kemB)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kem.DecapsulationKey().Bytes(), o.kem.DecapsulationKey().Bytes()) {
		t.Error("KEM private key changed")
	}
	otpB, _ := o.otps[1].MarshalBinary()
	if len(otpB) != OneTimePrekeyPrivateSize {
		t.Errorf("one-time private form is %d bytes", len(otpB))
	}
	otp, err := ParseOneTimePrekeyPrivate(otpB)
	if err != nil {
		t.Fatal(err)
	}
	if otp.Public().ID() != 101 || !bytes.Equal(otp.PrivateKey().Bytes(), o.otps[1].PrivateKey().Bytes()) {
		t.Error("one-time prekey changed")
	}
	// A private key that does not match its public record is refused.
	bad := bytes.Clone(spkB)
	bad[1] ^= 0x40
	if _, err := ParseSignedPrekeyPrivate(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("mismatched signed prekey: %v", err)
	}
	bad = bytes.Clone(kemB)
	bad[1] ^= 1
	if _, err := ParseKEMPrekeyPrivate(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("mismatched KEM prekey: %v", err)
	}
	for _, off := range []int{1, 1 + X25519KeySize} {
		bad = bytes.Clone(otpB)
		bad[off] ^= 0x40
		if _, err := ParseOneTimePrekeyPrivate(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("mismatched one-time prekey (byte %d): %v", off, err)
		}
	}
	for name, parse := range map[string]func([]byte) error{
		"spk": func(b []byte) error { _, err := ParseSignedPrekeyPrivate(b); return err },
		"kem": func(b []byte) error { _, err := ParseKEMPrekeyPrivate(b); return err },
		"otp": func(b []byte) error { _, err := ParseOneTimePrekeyPrivate(b); return err },
	} {
		src := map[string][]byte{"spk": spkB, "kem": kemB, "otp": otpB}[name]
		v := bytes.Clone(src)
		v[0] = 2
		if err := parse(v); !errors.Is(err, ErrVersion) {
			t.Errorf("%s version 2: %v", name, err)
		}
		if err := parse(src[:len(src)-1]); err == nil {
			t.Errorf("%s truncated: accepted", name)
		}
	}
}

func TestBundleAge(t *testing.T) {
	o := newOwner(t, 3)
	b := o.bundle(true)
	for _, tc := range []struct {
		name string
		now  time.Time
		want error
	}{
		{"now", t0, nil},
		{"max age", t0.Add(MaxAge), nil},
		{"max age + 1s", t0.Add(MaxAge + time.Second), ErrExpired},
		{"a year later", t0.Add(365 * 24 * time.Hour), ErrExpired},
		{"created 5 min ahead", t0.Add(-ClockTolerance), nil},
		{"created 5 min 1s ahead", t0.Add(-ClockTolerance - time.Second), ErrFuture},
		{"created a day ahead", t0.Add(-24 * time.Hour), ErrFuture},
	} {
		if err := b.Verify(tc.now); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
	}
	// Each record is checked on its own: an old one-time prekey or KEM key
	// in an otherwise fresh bundle is refused.
	r := testRand(30)
	late := t0.Add(MaxAge)
	spk, _ := NewSignedPrekey(o.id, 9, []uint8{1}, late, r)
	kem, _ := NewKEMPrekey(o.id, 9, late, r)
	fresh := &Bundle{Identity: o.id.Public(), Device: o.device, SignedPrekey: spk.Public(), KEMPrekey: kem.Public()}
	now := t0.Add(MaxAge + time.Hour)
	if err := fresh.Verify(now); err != nil {
		t.Fatalf("fresh bundle: %v", err)
	}
	withOld := *fresh
	withOld.OneTime = o.otps[0].Public()
	if err := withOld.Verify(now); !errors.Is(err, ErrExpired) {
		t.Errorf("old one-time prekey: %v", err)
	}
	oldKEM := *fresh
	oldKEM.KEMPrekey = o.kem.Public()
	if err := oldKEM.Verify(now); !errors.Is(err, ErrExpired) {
		t.Errorf("old KEM prekey: %v", err)
	}
	oldSPK := *fresh
	oldSPK.SignedPrekey = o.spk.Public()
	if err := oldSPK.Verify(now); !errors.Is(err, ErrExpired) {
		t.Errorf("old signed prekey: %v", err)
	}
	if err := o.spk.Public().CheckAge(now); !errors.Is(err, ErrExpired) {
		t.Errorf("CheckAge: %v", err)
	}
}

func TestBundleMissing(t *testing.T) {
	o := newOwner(t, 4)
	for name, mod := range map[string]func(*Bundle){
		"identity":      func(b *Bundle) { b.Identity = nil },
		"device":        func(b *Bundle) { b.Device = nil },
		"signed prekey": func(b *Bundle) { b.SignedPrekey = nil },
		"ML-KEM key":    func(b *Bundle) { b.KEMPrekey = nil },
	} {
		b := o.bundle(true)
		mod(b)
		if err := b.Verify(t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("no %s: Verify = %v", name, err)
		}
		if _, err := b.MarshalBinary(); err == nil {
			t.Errorf("no %s: MarshalBinary succeeded", name)
		}
	}
}

// TestBundleTamper flips one bit in every byte of an encoded bundle: the
// result must fail to parse or to verify.
func TestBundleTamper(t *testing.T) {
	enc, _ := newOwner(t, 5).bundle(true).MarshalBinary()
	for i := range enc {
		c := bytes.Clone(enc)
		c[i] ^= 1 << (i % 8)
		b, err := ParseBundle(c)
		if err == nil {
			err = b.Verify(t0)
		}
		if err == nil {
			t.Fatalf("bit %d of byte %d flipped: bundle accepted", i%8, i)
		}
	}
}

// TestBundleForeignRecords: records signed by another identity, or a device
// record of another identity, are refused.
func TestBundleForeignRecords(t *testing.T) {
	o, eve := newOwner(t, 6), newOwner(t, 7)
	for name, mod := range map[string]func(*Bundle){
		"device":        func(b *Bundle) { b.Device = eve.device },
		"signed prekey": func(b *Bundle) { b.SignedPrekey = eve.spk.Public() },
		"KEM prekey":    func(b *Bundle) { b.KEMPrekey = eve.kem.Public() },
		"one-time":      func(b *Bundle) { b.OneTime = eve.otps[0].Public() },
	} {
		b := o.bundle(true)
		mod(b)
		if err := b.Verify(t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s of another identity: %v", name, err)
		}
	}
}

// TestBundleKeysSwapped: keys of one kind never pass for another. The labels
// separate the signatures: even records the owner signed under one label are
// refused in another slot, and swapping the encoded records does not parse.
func TestBundleKeysSwapped(t *testing.T) {
	o := newOwner(t, 8)
	b := o.bundle(true)
	v, err := o.id.Public().Verifier()
	if err != nil {
		t.Fatal(err)
	}

	// The signed prekey's body signed under the KEM or one-time label.
	for _, label := range []string{LabelKEMPrekey, LabelOneTimePrekey} {
		spk := *o.spk.Public()
		copy(spk.sig[:], o.id.Sign(label, spk.appendBody(nil)))
		if err := spk.Verify(v); !errors.Is(err, ErrInvalid) {
			t.Errorf("signed prekey signed as %s: %v", label, err)
		}
	}
	// The KEM key's body signed under the signed-prekey or one-time label.
	for _, label := range []string{LabelSignedPrekey, LabelOneTimePrekey} {
		kem := *o.kem.Public()
		copy(kem.sig[:], o.id.Sign(label, kem.appendBody(nil)))
		if err := kem.Verify(v); !errors.Is(err, ErrInvalid) {
			t.Errorf("KEM prekey signed as %s: %v", label, err)
		}
	}
	// A one-time prekey whose X25519 key is the signed prekey and whose
	// ML-KEM key is the last-resort key, with the signature of a real
	// one-time prekey.
	otp := *o.otps[0].Public()
	copy(otp.dh[:], o.spk.Public().key[:])
	otp.kem = newKEMKey(o.kem.Public().Key())
	if err := otp.Verify(v); !errors.Is(err, ErrInvalid) {
		t.Errorf("one-time prekey made of the other keys: %v", err)
	}
	// The one-time prekey's halves from two different one-time prekeys.
	mixed := *o.otps[0].Public()
	mixed.kem = newKEMKey(o.otps[1].Public().KEMKey())
	if err := mixed.Verify(v); !errors.Is(err, ErrInvalid) {
		t.Errorf("one-time prekey halves mixed: %v", err)
	}

	// Swap the encoded signed prekey and KEM prekey in the bundle bytes.
	enc, _ := b.MarshalBinary()
	idLen := 1 + identity.PublicSize
	dev, _ := b.Device.MarshalBinary()
	spk, _ := b.SignedPrekey.MarshalBinary()
	kem, _ := b.KEMPrekey.MarshalBinary()
	start := idLen + len(dev)
	if !bytes.Equal(enc[start:start+len(spk)], spk) {
		t.Fatal("layout assumption wrong")
	}
	swapped := append(bytes.Clone(enc[:start]), kem...)
	swapped = append(swapped, spk...)
	swapped = append(swapped, enc[start+len(spk)+len(kem):]...)
	if p, err := ParseBundle(swapped); err == nil {
		if err := p.Verify(t0); err == nil {
			t.Error("bundle with swapped records accepted")
		}
	}
}

type mlkemVectors struct {
	TestGroups []struct {
		Tests []struct {
			TcID    int    `json:"tcId"`
			Comment string `json:"comment"`
			EK      string `json:"ek"`
			Result  string `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// TestWycheproofMLKEMKeys puts every malformed ML-KEM-768 encapsulation key
// of the Wycheproof file into a bundle, properly signed by the owner, as the
// last-resort key and as a one-time prekey's KEM key: every one is refused.
func TestWycheproofMLKEMKeys(t *testing.T) {
	raw, err := os.ReadFile("../testdata/wycheproof/mlkem_768_encaps_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var v mlkemVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	o := newOwner(t, 10)
	var invalid, valid int
	for _, g := range v.TestGroups {
		for _, tc := range g.Tests {
			ek, err := hex.DecodeString(tc.EK)
			if err != nil {
				t.Fatal(err)
			}
			kem := &KEMPrekey{record: record{id: 8, createdAt: uint64(t0.Unix())}, key: kemKey{raw: ek}}
			copy(kem.sig[:], o.id.Sign(LabelKEMPrekey, kem.appendBody(nil)))
			otp := &OneTimePrekey{record: record{id: 9, createdAt: uint64(t0.Unix())}, kem: kemKey{raw: ek}}
			copy(otp.dh[:], o.otps[0].Public().dh[:])
			copy(otp.sig[:], o.id.Sign(LabelOneTimePrekey, otp.appendBody(nil)))
			asKEM := o.bundle(false)
			asKEM.KEMPrekey = kem
			asOTP := o.bundle(false)
			asOTP.OneTime = otp
			for name, b := range map[string]*Bundle{"last-resort": asKEM, "one-time": asOTP} {
				direct := b.Verify(t0)
				enc, _ := b.MarshalBinary()
				parsed, err := ParseBundle(enc)
				if err == nil {
					err = parsed.Verify(t0)
				}
				switch tc.Result {
				case "invalid":
					if !errors.Is(direct, ErrInvalid) {
						t.Errorf("tc %d (%s) as %s key: Verify = %v", tc.TcID, tc.Comment, name, direct)
					}
					if err == nil {
						t.Errorf("tc %d (%s) as %s key: encoded bundle accepted", tc.TcID, tc.Comment, name)
					}
				case "valid":
					if direct != nil || err != nil {
						t.Errorf("tc %d as %s key: valid key refused: %v / %v", tc.TcID, name, direct, err)
					}
				}
			}
			if tc.Result == "invalid" {
				invalid++
			} else {
				valid++
			}
		}
	}
	if invalid < 100 || valid < 100 {
		t.Errorf("%d invalid, %d valid keys: vector file looks wrong", invalid, valid)
	}
}

func TestBundleHash(t *testing.T) {
	o := newOwner(t, 11)
	with, without := o.bundle(true), o.bundle(false)
	h := without.Hash()
	if with.Hash() != h {
		t.Error("hash depends on the one-time prekey")
	}
	other := o.bundle(true)
	other.OneTime = o.otps[2].Public()
	if other.Hash() != h {
		t.Error("hash depends on which one-time prekey")
	}
	r := testRand(40)
	spk2, _ := NewSignedPrekey(o.id, 7, []uint8{1}, t0, r)
	spkV, _ := NewSignedPrekey(o.id, 7, []uint8{1, 2}, t0, r)
	kem2, _ := NewKEMPrekey(o.id, 8, t0, r)
	dev2, _ := identity.NewDeviceRecord(o.id, ed25519.NewKeyFromSeed(make([]byte, 32)), []byte("x"), t0, 2)
	for name, mod := range map[string]func(*Bundle){
		"signed prekey": func(b *Bundle) { b.SignedPrekey = spk2.Public() },
		"versions":      func(b *Bundle) { b.SignedPrekey = spkV.Public() },
		"KEM prekey":    func(b *Bundle) { b.KEMPrekey = kem2.Public() },
		"device":        func(b *Bundle) { b.Device = dev2 },
		"identity":      func(b *Bundle) { b.Identity = newOwner(t, 12).id.Public() },
	} {
		b := o.bundle(false)
		mod(b)
		if b.Hash() == h {
			t.Errorf("hash does not cover the %s", name)
		}
	}
}

func TestNewOneTimePrekeysLimits(t *testing.T) {
	id, _ := identity.Generate(testRand(13))
	for _, tc := range []struct {
		first uint32
		n     int
	}{{1, 0}, {1, MaxOneTimeBatch + 1}, {^uint32(0), 2}} {
		if _, err := NewOneTimePrekeys(id, tc.first, tc.n, t0, testRand(1)); err == nil {
			t.Errorf("first %d n %d: accepted", tc.first, tc.n)
		}
	}
	ks, err := NewOneTimePrekeys(id, ^uint32(0)-1, 2, t0, testRand(1))
	if err != nil || ks[1].Public().ID() != ^uint32(0) {
		t.Errorf("last IDs: %v", err)
	}
}

func TestSignedPrekeyVersions(t *testing.T) {
	id, _ := identity.Generate(testRand(14))
	for _, v := range [][]uint8{nil, {0}, {2, 1}, {1, 1}, make([]uint8, MaxVersions+1)} {
		if _, err := NewSignedPrekey(id, 1, v, t0, testRand(1)); !errors.Is(err, ErrMalformed) {
			t.Errorf("versions %v: %v", v, err)
		}
	}
	spk, _ := NewSignedPrekey(id, 1, []uint8{1, 3}, t0, testRand(1))
	enc, _ := spk.Public().MarshalBinary()
	// versions count byte at offset 12, versions at 13, 14.
	for _, mod := range []func([]byte){
		func(b []byte) { b[12] = 0 },
		func(b []byte) { b[12] = MaxVersions + 1 },
		func(b []byte) { b[13], b[14] = 3, 1 },
		func(b []byte) { b[13] = 0 },
	} {
		c := bytes.Clone(enc)
		mod(c)
		if _, err := ParseSignedPrekey(c); !errors.Is(err, ErrMalformed) {
			t.Errorf("%x: %v", c[12:15], err)
		}
	}
}

func TestGolden(t *testing.T) {
	o := newOwner(t, 0xb0)
	var f golden.File
	hexOf := func(name string, m interface{ MarshalBinary() ([]byte, error) }) {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		f.Hex(name, b)
	}
	hexOf("signed_prekey.private", o.spk)
	hexOf("signed_prekey.public", o.spk.Public())
	hexOf("kem_prekey.private", o.kem)
	hexOf("kem_prekey.public", o.kem.Public())
	for i, k := range o.otps {
		hexOf("one_time_prekey."+string(rune('0'+i))+".private", k)
		hexOf("one_time_prekey."+string(rune('0'+i))+".public", k.Public())
	}
	hexOf("bundle.invite", o.bundle(false))
	hexOf("bundle.with_one_time", o.bundle(true))
	h := o.bundle(true).Hash()
	f.Hex("bundle.hash", h[:])
	f.Check(t, "../testdata/prekey.golden", *update)
}

func FuzzParseBundle(f *testing.F) {
	o := newOwner(f, 1)
	for _, withOTP := range []bool{false, true} {
		b, _ := o.bundle(withOTP).MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBundle(data)
		if err != nil {
			return
		}
		out, err := b.MarshalBinary()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("re-encoding differs: %v", err)
		}
		_ = b.Verify(t0)
		_ = b.Hash()
	})
}

func FuzzParseRecords(f *testing.F) {
	o := newOwner(f, 2)
	for _, m := range []interface{ MarshalBinary() ([]byte, error) }{o.spk.Public(), o.kem.Public(), o.otps[0].Public()} {
		b, _ := m.MarshalBinary()
		f.Add(b)
	}
	v, _ := o.id.Public().Verifier()
	f.Fuzz(func(t *testing.T, data []byte) {
		if p, err := ParseSignedPrekey(data); err == nil {
			out, _ := p.MarshalBinary()
			if !bytes.Equal(out, data) {
				t.Fatal("signed prekey re-encoding differs")
			}
			_ = p.Verify(v)
		}
		if p, err := ParseKEMPrekey(data); err == nil {
			out, _ := p.MarshalBinary()
			if !bytes.Equal(out, data) {
				t.Fatal("KEM prekey re-encoding differs")
			}
			_ = p.Verify(v)
		}
		if p, err := ParseOneTimePrekey(data); err == nil {
			out, _ := p.MarshalBinary()
			if !bytes.Equal(out, data) {
				t.Fatal("one-time prekey re-encoding differs")
			}
			_ = p.Verify(v)
		}
	})
}

func FuzzParsePrivate(f *testing.F) {
	o := newOwner(f, 3)
	for _, m := range []interface{ MarshalBinary() ([]byte, error) }{o.spk, o.kem, o.otps[0]} {
		b, _ := m.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if k, err := ParseSignedPrekeyPrivate(data); err == nil {
			out, _ := k.MarshalBinary()
			if !bytes.Equal(out, data) {
				t.Fatal("signed prekey re-encoding differs")
			}
		}
		if k, err := ParseKEMPrekeyPrivate(data); err == nil {
			out, _ := k.MarshalBinary()
			if !bytes.Equal(out, data) {
				t.Fatal("KEM prekey re-encoding differs")
			}
		}
		if k, err := ParseOneTimePrekeyPrivate(data); err == nil {
			out, _ := k.MarshalBinary()
			if !bytes.Equal(out, data) {
				t.Fatal("one-time prekey re-encoding differs")
			}
		}
	})
}

func BenchmarkBundleVerify(b *testing.B) {
	bundle := newOwner(b, 1).bundle(true)
	b.ReportAllocs()
	for b.Loop() {
		if err := bundle.Verify(t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseBundle(b *testing.B) {
	enc, _ := newOwner(b, 1).bundle(true).MarshalBinary()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseBundle(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewOneTimePrekeys100(b *testing.B) {
	id, _ := identity.Generate(testRand(1))
	r := testRand(2)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewOneTimePrekeys(id, 1, 100, t0, r); err != nil {
			b.Fatal(err)
		}
	}
}
