package identity

import (
	"crypto/ed25519"
	"fmt"
	"strings"

	"github.com/sealpost/sealpost/crypto/internal/ecc"
)

// labelled returns label || 0x00 || body, the message every sealpost
// signature covers. It panics if label is empty or holds a zero byte: labels
// are constants of the protocol, never peer input.
func labelled(label string, body []byte) []byte {
	if label == "" || strings.IndexByte(label, 0) >= 0 {
		panic("identity: invalid signature label " + label)
	}
	m := make([]byte, 0, len(label)+1+len(body))
	m = append(m, label...)
	m = append(m, 0)
	return append(m, body...)
}

// Sign signs label || 0x00 || body with k's Ed25519 key. label must be one
// of the labels of docs/PROTOCOL.md §1 (one per kind of signed encoding);
// Sign panics if it is empty or contains a zero byte.
func (k *Private) Sign(label string, body []byte) []byte {
	return ed25519.Sign(k.sign, labelled(label, body))
}

// SignWith signs label || 0x00 || body with an Ed25519 key other than an
// identity key (a device key); label rules as for Private.Sign.
func SignWith(key ed25519.PrivateKey, label string, body []byte) []byte {
	return ed25519.Sign(key, labelled(label, body))
}

// VerifyWith reports whether sig is a signature by pub over label || 0x00 ||
// body, and pub passes the point checks (canonical, not of small order).
func VerifyWith(pub ed25519.PublicKey, label string, body, sig []byte) bool {
	return ecc.VerifyEd25519(pub, labelled(label, body), sig)
}

// Verifier checks signatures by one Ed25519 key that has passed the point
// checks once, so that checking several signatures by the same identity
// does not repeat them. The zero Verifier accepts nothing.
type Verifier struct {
	key ed25519.PublicKey
}

// Verifier returns a Verifier for id after the point checks (canonical, not
// of small order).
func (id UserID) Verifier() (Verifier, error) {
	if err := ecc.CheckEd25519Public(id[:]); err != nil {
		return Verifier{}, fmt.Errorf("%w: Ed25519 key: %w", ErrInvalid, err)
	}
	return Verifier{key: id.PublicKey()}, nil
}

// UserID returns the key v checks signatures for (zero for the zero
// Verifier).
func (v Verifier) UserID() UserID {
	var id UserID
	copy(id[:], v.key)
	return id
}

// Verify reports whether sig is a signature by v's key over label || 0x00 ||
// body.
func (v Verifier) Verify(label string, body, sig []byte) bool {
	if len(v.key) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(v.key, labelled(label, body), sig)
}
