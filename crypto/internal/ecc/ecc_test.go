package ecc

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"filippo.io/edwards25519"
)

const vectorDir = "../../testdata/wycheproof"

func readJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type x25519Vectors struct {
	TestGroups []struct {
		Tests []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			Flags   []string `json:"flags"`
			Public  string   `json:"public"`
			Private string   `json:"private"`
			Shared  string   `json:"shared"`
			Result  string   `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// refusedFlags are the Wycheproof flags whose cases sealpost's public-key
// check must refuse.
var refusedFlags = []string{"LowOrderPublic", "ZeroSharedSecret", "NonCanonicalPublic", "SmallPublicKey"}

func TestWycheproofX25519(t *testing.T) {
	var v x25519Vectors
	readJSON(t, "x25519_test.json", &v)
	var refused, accepted int
	for _, g := range v.TestGroups {
		for _, tc := range g.Tests {
			pub := unhex(t, tc.Public)
			priv, err := ecdh.X25519().NewPrivateKey(unhex(t, tc.Private))
			if err != nil {
				t.Fatalf("tc %d: private key: %v", tc.TcID, err)
			}
			mustRefuse := slices.ContainsFunc(tc.Flags, func(f string) bool { return slices.Contains(refusedFlags, f) })
			checkErr := CheckX25519Public(pub)
			secret, dhErr := X25519(priv, pub)
			switch {
			case mustRefuse:
				refused++
				if !errors.Is(checkErr, ErrInvalidPublicKey) {
					t.Errorf("tc %d (%s, %v): CheckX25519Public = %v, want ErrInvalidPublicKey", tc.TcID, tc.Comment, tc.Flags, checkErr)
				}
				if !errors.Is(dhErr, ErrInvalidPublicKey) || secret != nil {
					t.Errorf("tc %d (%s): X25519 = %x, %v, want refusal", tc.TcID, tc.Comment, secret, dhErr)
				}
			case tc.Result == "valid" || tc.Result == "acceptable":
				accepted++
				if checkErr != nil {
					t.Errorf("tc %d (%s, %v): CheckX25519Public = %v, want nil", tc.TcID, tc.Comment, tc.Flags, checkErr)
				}
				if dhErr != nil {
					t.Errorf("tc %d (%s): X25519: %v", tc.TcID, tc.Comment, dhErr)
				} else if got := hex.EncodeToString(secret); got != tc.Shared {
					t.Errorf("tc %d (%s): shared = %s, want %s", tc.TcID, tc.Comment, got, tc.Shared)
				}
			default:
				t.Errorf("tc %d: unexpected result %q with flags %v", tc.TcID, tc.Result, tc.Flags)
			}
		}
	}
	// Guard against a vector file that silently lost its cases.
	if refused < 30 || accepted < 450 {
		t.Errorf("refused %d, accepted %d cases: vector file looks wrong", refused, accepted)
	}
}

// TestLowOrderList checks that every entry of the low-order list is indeed a
// point whose X25519 output is all zero for any scalar, in both its canonical
// and (where it exists below 2^256) its non-canonical encoding.
func TestLowOrderList(t *testing.T) {
	priv, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	for _, lo := range x25519LowOrder {
		pk, err := ecdh.X25519().NewPublicKey(lo[:])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := priv.ECDH(pk); err == nil {
			t.Errorf("%x: crypto/ecdh gives a non-zero secret; not a low-order point", lo)
		}
		if err := CheckX25519Public(lo[:]); !errors.Is(err, ErrInvalidPublicKey) {
			t.Errorf("%x: CheckX25519Public = %v", lo, err)
		}
		// u + p, and the same with the top bit set.
		nc := addP(lo)
		if nc != nil {
			if err := CheckX25519Public(nc); !errors.Is(err, ErrInvalidPublicKey) {
				t.Errorf("%x: CheckX25519Public = %v", nc, err)
			}
		}
		hb := lo
		hb[31] |= 0x80
		if err := CheckX25519Public(hb[:]); !errors.Is(err, ErrInvalidPublicKey) {
			t.Errorf("%x: CheckX25519Public = %v", hb, err)
		}
	}
}

// addP returns u + p as 32 little-endian bytes, or nil if it needs 33.
func addP(u [32]byte) []byte {
	p := mustHex32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	out := make([]byte, 32)
	var carry uint16
	for i := range 32 {
		s := uint16(u[i]) + uint16(p[i]) + carry
		out[i] = byte(s)
		carry = s >> 8
	}
	if carry != 0 {
		return nil
	}
	return out
}

func TestCheckX25519PublicLength(t *testing.T) {
	for _, n := range []int{0, 1, 31, 33, 64} {
		if err := CheckX25519Public(make([]byte, n)); !errors.Is(err, errLength) {
			t.Errorf("len %d: %v, want wrong length", n, err)
		}
	}
}

func TestCanonicalBoundary(t *testing.T) {
	p := mustHex32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	pm1 := p
	pm1[0]--
	pm2 := p
	pm2[0] -= 2
	if canonicalFieldElement(p[:]) {
		t.Error("p accepted as canonical")
	}
	if !canonicalFieldElement(pm1[:]) || !canonicalFieldElement(pm2[:]) {
		t.Error("p-1 or p-2 refused as non-canonical")
	}
	top := bytes.Repeat([]byte{0xff}, 32)
	top[31] = 0x7f
	if canonicalFieldElement(top) {
		t.Error("2^255-1 accepted as canonical")
	}
	mid := bytes.Clone(top)
	mid[15] = 0xfe
	if !canonicalFieldElement(mid) {
		t.Error("a value below p with top byte 0x7f refused")
	}
}

func newX25519(t testing.TB, seed byte) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{seed}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// torsioned returns pub's Montgomery u-coordinate after adding a point of
// order 8 on the Edwards side.
func torsioned(t *testing.T, pub []byte) []byte {
	t.Helper()
	p, err := montgomeryToEdwards(pub)
	if err != nil {
		t.Fatal(err)
	}
	// An Edwards point of order 8 (the Montgomery u of order-8 points maps to it).
	t8, err := montgomeryToEdwards(x25519LowOrder[2][:])
	if err != nil {
		t.Fatal(err)
	}
	var c edwards25519.Point
	if c.MultByCofactor(t8).Equal(edwards25519.NewIdentityPoint()) != 1 {
		t.Fatal("torsion point is not of small order")
	}
	return new(edwards25519.Point).Add(p, t8).BytesMontgomery()
}

func TestCheckX25519BaseKey(t *testing.T) {
	alice, bob := newX25519(t, 1), newX25519(t, 2)
	pub := alice.PublicKey().Bytes()
	if err := CheckX25519BaseKey(pub); err != nil {
		t.Fatalf("honest key refused: %v", err)
	}
	bad := torsioned(t, pub)
	if bytes.Equal(bad, pub) {
		t.Fatal("torsioned key equals the key")
	}
	// The torsioned key passes the ordinary check and gives the same shared
	// secret: that is why base keys need the stricter check.
	if err := CheckX25519Public(bad); err != nil {
		t.Fatalf("CheckX25519Public(torsioned) = %v", err)
	}
	s1, err1 := X25519(bob, pub)
	s2, err2 := X25519(bob, bad)
	if err1 != nil || err2 != nil || !bytes.Equal(s1, s2) {
		t.Fatalf("secrets differ: %x %v / %x %v", s1, err1, s2, err2)
	}
	if err := CheckX25519BaseKey(bad); !errors.Is(err, errTorsion) {
		t.Errorf("CheckX25519BaseKey(torsioned) = %v, want torsion error", err)
	}
	// Each of the 7 non-trivial torsion components.
	p, _ := montgomeryToEdwards(pub)
	t8, _ := montgomeryToEdwards(x25519LowOrder[2][:])
	acc := new(edwards25519.Point).Set(p)
	for i := 1; i < 8; i++ {
		acc.Add(acc, t8)
		u := acc.BytesMontgomery()
		if err := CheckX25519BaseKey(u); !errors.Is(err, ErrInvalidPublicKey) {
			t.Errorf("torsion component %d: CheckX25519BaseKey = %v", i, err)
		}
	}
}

func TestCheckX25519BaseKeyTwist(t *testing.T) {
	var v x25519Vectors
	readJSON(t, "x25519_test.json", &v)
	var twists int
	for _, g := range v.TestGroups {
		for _, tc := range g.Tests {
			if !slices.Contains(tc.Flags, "Twist") {
				continue
			}
			pub := unhex(t, tc.Public)
			if err := CheckX25519BaseKey(pub); !errors.Is(err, ErrInvalidPublicKey) {
				t.Errorf("tc %d: twist point accepted as base key", tc.TcID)
			}
			twists++
		}
	}
	if twists == 0 {
		t.Fatal("no twist cases")
	}
}

func TestCheckX25519BaseKeyNonCanonical(t *testing.T) {
	// A valid curve point whose u+p fits in 255 bits... u must be < 19; none
	// of those small u are prime-order points, so use the canonical refusal
	// with the top bit set instead.
	pub := newX25519(t, 3).PublicKey().Bytes()
	hb := bytes.Clone(pub)
	hb[31] |= 0x80
	if err := CheckX25519BaseKey(hb); !errors.Is(err, errNonCanonical) {
		t.Errorf("top bit set: %v, want non-canonical", err)
	}
	for u := byte(2); u < 19; u++ {
		var k [32]byte
		k[0] = u
		nc := addP(k)
		if err := CheckX25519BaseKey(nc); !errors.Is(err, errNonCanonical) {
			t.Errorf("u=%d+p: %v, want non-canonical", u, err)
		}
	}
}

type ed25519Vectors struct {
	TestGroups []struct {
		PublicKey struct {
			PK string `json:"pk"`
		} `json:"publicKey"`
		Tests []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			Flags   []string `json:"flags"`
			Msg     string   `json:"msg"`
			Sig     string   `json:"sig"`
			Result  string   `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

func TestWycheproofEd25519(t *testing.T) {
	var v ed25519Vectors
	readJSON(t, "ed25519_test.json", &v)
	var invalid, valid int
	for _, g := range v.TestGroups {
		pk := unhex(t, g.PublicKey.PK)
		for _, tc := range g.Tests {
			got := VerifyEd25519(pk, unhex(t, tc.Msg), unhex(t, tc.Sig))
			switch tc.Result {
			case "valid":
				valid++
				if !got {
					t.Errorf("tc %d (%s): valid signature refused", tc.TcID, tc.Comment)
				}
			case "invalid":
				invalid++
				if got {
					t.Errorf("tc %d (%s, %v): invalid signature accepted", tc.TcID, tc.Comment, tc.Flags)
				}
			default:
				t.Errorf("tc %d: unexpected result %q", tc.TcID, tc.Result)
			}
		}
	}
	if invalid < 50 || valid < 50 {
		t.Errorf("valid %d, invalid %d: vector file looks wrong", valid, invalid)
	}
}

// smallOrderEd25519 returns encodings of the eight points of order dividing
// 8, and non-canonical encodings of some of them.
func smallOrderEd25519(t *testing.T) [][]byte {
	t.Helper()
	t8, err := montgomeryToEdwards(x25519LowOrder[2][:])
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	acc := edwards25519.NewIdentityPoint()
	for range 8 {
		out = append(out, acc.Bytes())
		acc = new(edwards25519.Point).Add(acc, t8)
	}
	return out
}

func TestCheckEd25519PublicSmallOrder(t *testing.T) {
	pts := smallOrderEd25519(t)
	identity := edwards25519.NewIdentityPoint().Bytes()
	if !slices.ContainsFunc(pts, func(b []byte) bool { return bytes.Equal(b, identity) }) {
		t.Fatal("identity point missing")
	}
	seen := map[string]bool{}
	for _, p := range pts {
		seen[string(p)] = true
		if err := CheckEd25519Public(p); !errors.Is(err, errSmallOrder) {
			t.Errorf("%x: CheckEd25519Public = %v, want small order", p, err)
		}
		// crypto/ed25519 accepts a signature by the identity point: (R=identity, s=0).
		sig := append(bytes.Clone(identity), make([]byte, 32)...)
		if bytes.Equal(p, identity) {
			if !ed25519.Verify(ed25519.PublicKey(p), []byte("any message"), sig) {
				t.Fatal("crypto/ed25519 no longer accepts the identity point; update the comment")
			}
			if VerifyEd25519(p, []byte("any message"), sig) {
				t.Error("VerifyEd25519 accepted a signature by the identity point")
			}
		}
	}
	if len(seen) != 8 {
		t.Errorf("%d distinct small-order points, want 8", len(seen))
	}
	// Identity with the sign bit set (x = 0, "negative zero"): non-canonical.
	negZero := bytes.Clone(identity)
	negZero[31] |= 0x80
	if err := CheckEd25519Public(negZero); !errors.Is(err, ErrInvalidPublicKey) {
		t.Errorf("negative zero identity accepted: %v", err)
	}
	// y = p+1 encodes the identity non-canonically.
	var yp1 [32]byte
	copy(yp1[:], addP(mustHex32("0100000000000000000000000000000000000000000000000000000000000000")))
	if err := CheckEd25519Public(yp1[:]); !errors.Is(err, ErrInvalidPublicKey) {
		t.Errorf("non-canonical identity accepted: %v", err)
	}
}

func TestCheckEd25519PublicNonCanonical(t *testing.T) {
	// A point whose y < 19 is on the curve gives a non-canonical encoding
	// y + p; find one that is not of small order.
	var found bool
	for y := byte(2); y < 19; y++ {
		var enc [32]byte
		enc[0] = y
		p, err := new(edwards25519.Point).SetBytes(enc[:])
		if err != nil {
			continue
		}
		var c edwards25519.Point
		if c.MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
			continue
		}
		found = true
		if err := CheckEd25519Public(enc[:]); err != nil {
			t.Errorf("y=%d canonical refused: %v", y, err)
		}
		nc := addP(enc)
		if _, err := new(edwards25519.Point).SetBytes(nc); err != nil {
			t.Fatalf("edwards25519 refuses y=%d+p: %v", y, err)
		}
		if err := CheckEd25519Public(nc); !errors.Is(err, errNonCanonical) {
			t.Errorf("y=%d+p: %v, want non-canonical", y, err)
		}
	}
	if !found {
		t.Fatal("no small-y point found")
	}
}

func TestCheckEd25519PublicHonest(t *testing.T) {
	for i := range 16 {
		pub := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i)}, 32)).Public().(ed25519.PublicKey)
		if err := CheckEd25519Public(pub); err != nil {
			t.Errorf("honest key %d refused: %v", i, err)
		}
	}
	for _, n := range []int{0, 31, 33} {
		if err := CheckEd25519Public(make([]byte, n)); !errors.Is(err, errLength) {
			t.Errorf("len %d: %v", n, err)
		}
		if VerifyEd25519(make([]byte, n), nil, make([]byte, 64)) {
			t.Errorf("len %d key verified", n)
		}
	}
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	sig := ed25519.Sign(priv, []byte("m"))
	pub := priv.Public().(ed25519.PublicKey)
	if !VerifyEd25519(pub, []byte("m"), sig) {
		t.Error("honest signature refused")
	}
	if VerifyEd25519(pub, []byte("m"), sig[:63]) {
		t.Error("short signature accepted")
	}
}

func FuzzCheckX25519(f *testing.F) {
	f.Add(bytes.Repeat([]byte{9}, 32))
	for _, lo := range x25519LowOrder {
		f.Add(lo[:])
	}
	f.Add([]byte{1, 2, 3})
	priv, _ := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	f.Add(priv.PublicKey().Bytes())
	f.Fuzz(func(t *testing.T, pub []byte) {
		errPub := CheckX25519Public(pub)
		errBase := CheckX25519BaseKey(pub)
		if errPub != nil && errBase == nil {
			t.Fatal("base key check accepted a key the public check refused")
		}
		s, err := X25519(priv, pub)
		if (err == nil) != (errPub == nil) {
			t.Fatalf("X25519 err %v, check err %v", err, errPub)
		}
		if err == nil && bytes.Equal(s, make([]byte, 32)) {
			t.Fatal("all-zero secret")
		}
		_ = CheckEd25519Public(pub)
	})
}

func BenchmarkX25519(b *testing.B) {
	priv := newX25519(b, 1)
	pub := newX25519(b, 2).PublicKey().Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := X25519(priv, pub); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckX25519Public(b *testing.B) {
	pub := newX25519(b, 2).PublicKey().Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckX25519Public(pub); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckX25519BaseKey(b *testing.B) {
	pub := newX25519(b, 2).PublicKey().Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckX25519BaseKey(pub); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckEd25519Public(b *testing.B) {
	pub := ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckEd25519Public(pub); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyEd25519(b *testing.B) {
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	pub := priv.Public().(ed25519.PublicKey)
	msg := []byte("sealpost benchmark message")
	sig := ed25519.Sign(priv, msg)
	b.ReportAllocs()
	for b.Loop() {
		if !VerifyEd25519(pub, msg, sig) {
			b.Fatal("refused")
		}
	}
}
