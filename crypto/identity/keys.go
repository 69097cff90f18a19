package identity

import (
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"strings"

	"github.com/sealpost/sealpost/crypto/internal/ecc"
)

// UserID is a user's identity: the full 32-byte Ed25519 public key. Its text
// form is "sp" followed by the key in lowercase base32 (RFC 4648 alphabet)
// without padding: 54 characters.
type UserID [ed25519.PublicKeySize]byte

// UserIDPrefix starts the text form of every UserID.
const UserIDPrefix = "sp"

// UserIDTextSize is the length of a UserID's text form.
const UserIDTextSize = 54

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// UserIDFromBytes returns the UserID of a 32-byte Ed25519 public key after
// the point checks (canonical, not of small order).
func UserIDFromBytes(b []byte) (UserID, error) {
	var id UserID
	if err := ecc.CheckEd25519Public(b); err != nil {
		return id, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	copy(id[:], b)
	return id, nil
}

// ParseUserID parses the text form. Upper- and lowercase are accepted; the
// encoding must otherwise be exact (one text form per key) and the key must
// pass the point checks.
func ParseUserID(s string) (UserID, error) {
	var id UserID
	if len(s) != UserIDTextSize {
		return id, fmt.Errorf("%w: user ID is %d characters, want %d", ErrMalformed, len(s), UserIDTextSize)
	}
	s = strings.ToLower(s)
	if !strings.HasPrefix(s, UserIDPrefix) {
		return id, fmt.Errorf("%w: user ID does not start with %q", ErrMalformed, UserIDPrefix)
	}
	body := strings.ToUpper(s[len(UserIDPrefix):])
	var buf [33]byte // DecodedLen(52) = 32, with room to detect excess
	n, err := b32.Decode(buf[:], []byte(body))
	if err != nil || n != len(id) {
		return id, fmt.Errorf("%w: user ID is not base32", ErrMalformed)
	}
	// base32 ignores the unused low bits of the last character; require
	// them to be zero so each key has one text form.
	if b32.EncodeToString(buf[:n]) != body {
		return id, fmt.Errorf("%w: user ID is not in canonical base32", ErrMalformed)
	}
	return UserIDFromBytes(buf[:n])
}

// String returns the text form.
func (id UserID) String() string {
	return UserIDPrefix + strings.ToLower(b32.EncodeToString(id[:]))
}

// MarshalText returns the text form.
func (id UserID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses the text form with ParseUserID.
func (id *UserID) UnmarshalText(b []byte) error {
	v, err := ParseUserID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// Equal reports whether id and other are the same key, in constant time.
func (id UserID) Equal(other UserID) bool {
	return subtle.ConstantTimeCompare(id[:], other[:]) == 1
}

// IsZero reports whether id is the zero value (not a key).
func (id UserID) IsZero() bool { return id == UserID{} }

// PublicKey returns the Ed25519 public key.
func (id UserID) PublicKey() ed25519.PublicKey {
	k := make(ed25519.PublicKey, len(id))
	copy(k, id[:])
	return k
}

// Verify reports whether sig is a signature by id over label || 0x00 ||
// body, and id passes the point checks.
func (id UserID) Verify(label string, body, sig []byte) bool {
	return ecc.VerifyEd25519(id[:], labelled(label, body), sig)
}

// DHKey is an identity's X25519 public key.
type DHKey [ecc.X25519KeySize]byte

// Equal reports whether k and other are the same key, in constant time.
func (k DHKey) Equal(other DHKey) bool {
	return subtle.ConstantTimeCompare(k[:], other[:]) == 1
}

// String returns the key in lowercase base32 without padding.
func (k DHKey) String() string { return strings.ToLower(b32.EncodeToString(k[:])) }
