// Package ecc checks the public keys sealpost receives and performs the
// Diffie-Hellman and signature operations that must only ever run on checked
// keys.
//
// Every X25519 public key that arrives from a peer goes through
// CheckX25519Public (or X25519, which calls it): the key must be 32 bytes, a
// canonical encoding (u < 2^255-19, so the top bit is clear) and not one of
// the points of order dividing 8. X25519 also refuses an all-zero shared
// secret. PQXDH base keys additionally go through CheckX25519BaseKey, which
// refuses points on the twist and points with a torsion component, so that a
// base key has exactly one accepted encoding (as libsignal does); replay
// detection that remembers base keys depends on that.
//
// Every Ed25519 public key that is used as an identity or device key goes
// through CheckEd25519Public: canonical encoding, a point on the curve, not of
// small order (crypto/ed25519.Verify accepts the identity point, and a
// small-order key makes signatures that verify for many messages).
// VerifyEd25519 checks the key and then the signature.
//
// The checks handle public data only and are not constant time.
package ecc

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/hex"
	"errors"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Sizes of keys, signatures and shared secrets.
const (
	X25519KeySize     = 32 // public key
	X25519PrivateSize = 32
	X25519SecretSize  = 32
	Ed25519KeySize    = ed25519.PublicKeySize
	Ed25519SigSize    = ed25519.SignatureSize
)

// ErrInvalidPublicKey is the error every check returns (wrapped with the
// reason) when a public key is refused. Match it with errors.Is.
var ErrInvalidPublicKey = errors.New("ecc: invalid public key")

// keyError is a refusal with its reason; it unwraps to ErrInvalidPublicKey.
type keyError string

func (e keyError) Error() string { return "ecc: invalid public key: " + string(e) }
func (e keyError) Unwrap() error { return ErrInvalidPublicKey }

const (
	errLength       = keyError("wrong length")
	errNonCanonical = keyError("non-canonical encoding")
	errLowOrder     = keyError("low-order point")
	errZeroSecret   = keyError("all-zero shared secret")
	errNotOnCurve   = keyError("not a point on the curve")
	errTorsion      = keyError("point has a torsion component")
	errSmallOrder   = keyError("small-order point")
)

// x25519LowOrder holds the canonical encodings (little-endian u) of the
// points of order dividing 8 on Curve25519 and its twist: 0, 1, the two
// points of order 8, and p-1. The non-canonical encodings of these points
// (u+p) are refused by the canonical check before this list is consulted.
var x25519LowOrder = [...][X25519KeySize]byte{
	mustHex32("0000000000000000000000000000000000000000000000000000000000000000"),
	mustHex32("0100000000000000000000000000000000000000000000000000000000000000"),
	mustHex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
	mustHex32("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
	mustHex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
}

func mustHex32(s string) [32]byte {
	var out [32]byte
	if n, err := hex.Decode(out[:], []byte(s)); err != nil || n != 32 {
		panic("ecc: bad constant " + s)
	}
	return out
}

// canonicalFieldElement reports whether b (32 bytes, little-endian) encodes
// an integer below p = 2^255-19.
func canonicalFieldElement(b []byte) bool {
	if b[31]&0x80 != 0 {
		return false
	}
	// Below 2^255 it is non-canonical only if it is in [p, 2^255): the low
	// byte at least 0xed and all middle bytes 0xff, top byte 0x7f.
	if b[31] != 0x7f {
		return true
	}
	for i := 30; i >= 1; i-- {
		if b[i] != 0xff {
			return true
		}
	}
	return b[0] < 0xed
}

// CheckX25519Public returns nil if pub is an acceptable X25519 public key:
// 32 bytes, canonical (u < 2^255-19) and not a point of order dividing 8.
// Otherwise it returns an error wrapping ErrInvalidPublicKey.
func CheckX25519Public(pub []byte) error {
	if len(pub) != X25519KeySize {
		return errLength
	}
	if !canonicalFieldElement(pub) {
		return errNonCanonical
	}
	for i := range x25519LowOrder {
		if subtle.ConstantTimeCompare(pub, x25519LowOrder[i][:]) == 1 {
			return errLowOrder
		}
	}
	return nil
}

// X25519 computes the X25519 shared secret of priv and the peer's public key
// pub after CheckX25519Public, and refuses an all-zero result. The returned
// slice is 32 bytes and owned by the caller.
func X25519(priv *ecdh.PrivateKey, pub []byte) ([]byte, error) {
	if err := CheckX25519Public(pub); err != nil {
		return nil, err
	}
	pk, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, errLength
	}
	secret, err := priv.ECDH(pk)
	if err != nil {
		// crypto/ecdh refuses an all-zero output itself.
		return nil, errZeroSecret
	}
	var zero [X25519SecretSize]byte
	if subtle.ConstantTimeCompare(secret, zero[:]) == 1 {
		return nil, errZeroSecret
	}
	return secret, nil
}

// CheckX25519BaseKey applies CheckX25519Public and then refuses keys that
// are not on Curve25519 itself (twist points) or that have a torsion
// component, that is, keys not in the prime-order subgroup. Honestly
// generated keys (clamped scalar times the base point) always pass. Because
// X25519 clears the cofactor, a torsion component does not change any shared
// secret; refusing it leaves exactly one accepted encoding per base key, so
// a first message cannot be replayed with a modified base key.
func CheckX25519BaseKey(pub []byte) error {
	if err := CheckX25519Public(pub); err != nil {
		return err
	}
	p, err := montgomeryToEdwards(pub)
	if err != nil {
		return err
	}
	if !primeOrder(p) {
		return errTorsion
	}
	return nil
}

// montgomeryToEdwards maps the Montgomery u-coordinate to the Edwards point
// with y = (u-1)/(u+1) and a non-negative x (the sign does not matter to the
// subgroup checks). It fails for points on the twist. u = -1 (no y) is a
// low-order point, refused before this is called.
func montgomeryToEdwards(u []byte) (*edwards25519.Point, error) {
	var fu, num, den, y field.Element
	if _, err := fu.SetBytes(u); err != nil {
		return nil, errLength
	}
	one := new(field.Element).One()
	num.Subtract(&fu, one)
	den.Add(&fu, one)
	den.Invert(&den)
	y.Multiply(&num, &den)
	p, err := new(edwards25519.Point).SetBytes(y.Bytes())
	if err != nil {
		return nil, errNotOnCurve
	}
	return p, nil
}

// lMinusOne is the scalar l-1, where l is the order of the prime-order
// subgroup.
var lMinusOne = func() *edwards25519.Scalar {
	// l - 1 = 2^252 + 27742317777372353535851937790883648492, little-endian.
	b := mustHex32("ecd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(b[:])
	if err != nil {
		panic("ecc: bad constant l-1")
	}
	return s
}()

// primeOrder reports whether [l]P is the identity, i.e. [l-1]P == -P.
func primeOrder(p *edwards25519.Point) bool {
	var q, neg edwards25519.Point
	q.VarTimeDoubleScalarBaseMult(lMinusOne, p, edwards25519.NewScalar())
	neg.Negate(p)
	return q.Equal(&neg) == 1
}

// CheckEd25519Public returns nil if pub is an acceptable Ed25519 public key:
// 32 bytes, the canonical encoding of a point on the curve, and not of small
// order (the identity point and the other points of order dividing 8 are
// refused). Otherwise it returns an error wrapping ErrInvalidPublicKey.
func CheckEd25519Public(pub []byte) error {
	if len(pub) != Ed25519KeySize {
		return errLength
	}
	p, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return errNotOnCurve
	}
	if subtle.ConstantTimeCompare(p.Bytes(), pub) != 1 {
		return errNonCanonical
	}
	var c edwards25519.Point
	if c.MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return errSmallOrder
	}
	return nil
}

// VerifyEd25519 reports whether sig is a valid signature of msg by pub and
// pub passes CheckEd25519Public. It never panics on malformed input.
func VerifyEd25519(pub, msg, sig []byte) bool {
	if len(sig) != Ed25519SigSize || CheckEd25519Public(pub) != nil {
		return false
	}
	return ed25519.Verify(ed25519.PublicKey(pub), msg, sig)
}
