// Package identity holds a sealpost user's long-term keys and what is built
// directly on them: the user ID, signatures with domain labels, device
// records and safety numbers.
//
// An identity is an Ed25519 key pair (it signs everything else) plus a
// separately generated X25519 key pair for PQXDH, whose public key the
// Ed25519 key signs. Private is kept by its owner (MarshalBinary gives the
// store form); Public is what peers see (MarshalBinary gives the wire form).
// The byte layouts and labels are in docs/PROTOCOL.md §1–3 and §8.
//
// What the caller must do:
//   - Call Verify on every Public and DeviceRecord received from a peer
//     before using it: ParsePublic and ParseDeviceRecord check the structure
//     only.
//   - Pin a contact to its UserID; treat a different UserID for a known
//     contact, device or mailbox as an identity change (DESIGN.md §4), and a
//     DeviceRecord for which CheckUpdate returns nil as an update.
//   - Check that a DeviceRecord's DeviceID is the libp2p peer ID of its
//     DeviceKey; this package treats device IDs as opaque bytes.
//   - Sign only with labels listed in docs/PROTOCOL.md §1, one label per
//     kind of signed encoding.
//
// Values are immutable after construction and safe for concurrent reads.
package identity

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"github.com/sealpost/sealpost/crypto/internal/ecc"
)

// Version bytes that start each encoding.
const (
	PublicVersion  = 1
	PrivateVersion = 1
)

// Sizes of the encodings.
const (
	// PublicSize is the size of the wire form of a Public:
	// version || Ed25519 public || X25519 public || signature.
	PublicSize = 1 + ed25519.PublicKeySize + ecc.X25519KeySize + ed25519.SignatureSize
	// PrivateSize is the size of the store form of a Private:
	// version || Ed25519 seed || X25519 private key.
	PrivateSize = 1 + ed25519.SeedSize + ecc.X25519PrivateSize
	// SignatureSize is the size of every signature.
	SignatureSize = ed25519.SignatureSize
)

// LabelIdentityKey is the domain label of the Ed25519 signature over the
// X25519 identity key.
const LabelIdentityKey = "sealpost/v1/identity-key"

var (
	// ErrMalformed is returned (wrapped) when an encoding cannot be parsed.
	ErrMalformed = errors.New("identity: malformed encoding")
	// ErrVersion is returned (wrapped) for an unknown encoding version.
	ErrVersion = errors.New("identity: unsupported encoding version")
	// ErrInvalid is returned (wrapped) when a key is refused or a signature
	// does not verify.
	ErrInvalid = errors.New("identity: invalid key or signature")
)

// Private is a user's identity key material. It is not safe to share; its
// MarshalBinary form belongs in the encrypted store only.
type Private struct {
	sign ed25519.PrivateKey
	dh   *ecdh.PrivateKey
	pub  *Public
}

// Public is the public half of an identity: the Ed25519 key (the UserID),
// the X25519 identity key, and the Ed25519 signature over the X25519 key.
type Public struct {
	id  UserID
	dh  DHKey
	sig [SignatureSize]byte
}

// Generate creates a new identity from 64 bytes of rand: an Ed25519 seed and
// then an X25519 private key, drawn separately.
func Generate(rand io.Reader) (*Private, error) {
	var seeds [ed25519.SeedSize + ecc.X25519PrivateSize]byte
	if _, err := io.ReadFull(rand, seeds[:]); err != nil {
		return nil, fmt.Errorf("identity: read random: %w", err)
	}
	k, err := newPrivate(seeds[:ed25519.SeedSize], seeds[ed25519.SeedSize:])
	clear(seeds[:])
	return k, err
}

func newPrivate(seed, dhPriv []byte) (*Private, error) {
	dh, err := ecdh.X25519().NewPrivateKey(dhPriv)
	if err != nil {
		return nil, fmt.Errorf("%w: X25519 private key: %v", ErrMalformed, err)
	}
	k := &Private{sign: ed25519.NewKeyFromSeed(seed), dh: dh}
	p := &Public{}
	copy(p.id[:], k.sign[ed25519.SeedSize:])
	copy(p.dh[:], dh.PublicKey().Bytes())
	// A public key that fails the checks (probability ~2^-250) would make
	// an identity nobody accepts; refuse it here rather than later.
	if err := ecc.CheckX25519Public(p.dh[:]); err != nil {
		return nil, fmt.Errorf("%w: generated X25519 key: %v", ErrInvalid, err)
	}
	copy(p.sig[:], k.Sign(LabelIdentityKey, p.signedBody()))
	k.pub = p
	return k, nil
}

// signedBody is what the identity-key signature covers after the label:
// Ed25519 public key || X25519 public key.
func (p *Public) signedBody() []byte {
	b := make([]byte, 0, len(p.id)+len(p.dh))
	b = append(b, p.id[:]...)
	return append(b, p.dh[:]...)
}

// Public returns the public half of k.
func (k *Private) Public() *Public { return k.pub }

// UserID returns k's user ID (its Ed25519 public key).
func (k *Private) UserID() UserID { return k.pub.id }

// DH computes the X25519 shared secret between k's identity X25519 key and
// a peer's public key, refusing invalid keys and an all-zero result.
func (k *Private) DH(peer []byte) ([]byte, error) {
	return ecc.X25519(k.dh, peer)
}

// MarshalBinary returns the store form of k:
// version (1) || Ed25519 seed (32) || X25519 private key (32).
func (k *Private) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, PrivateSize)
	b = append(b, PrivateVersion)
	b = append(b, k.sign.Seed()...)
	return append(b, k.dh.Bytes()...), nil
}

// ParsePrivate parses the store form produced by MarshalBinary.
func ParsePrivate(b []byte) (*Private, error) {
	if len(b) != PrivateSize {
		return nil, fmt.Errorf("%w: private identity is %d bytes, want %d", ErrMalformed, len(b), PrivateSize)
	}
	if b[0] != PrivateVersion {
		return nil, fmt.Errorf("%w: private identity version %d", ErrVersion, b[0])
	}
	return newPrivate(b[1:1+ed25519.SeedSize], b[1+ed25519.SeedSize:])
}

// UnmarshalBinary is ParsePrivate into k.
func (k *Private) UnmarshalBinary(b []byte) error {
	p, err := ParsePrivate(b)
	if err != nil {
		return err
	}
	*k = *p
	return nil
}

// UserID returns the identity's user ID (its Ed25519 public key).
func (p *Public) UserID() UserID { return p.id }

// DHKey returns the identity's X25519 public key.
func (p *Public) DHKey() DHKey { return p.dh }

// Verify checks p: the Ed25519 key passes the point checks (canonical, not
// of small order), the X25519 key passes the public-key checks (canonical,
// not of low order), and the signature over the X25519 key verifies.
func (p *Public) Verify() error {
	_, err := p.Verifier()
	return err
}

// Verifier runs Verify and returns a Verifier for further signatures by p.
func (p *Public) Verifier() (Verifier, error) {
	v, err := p.id.Verifier()
	if err != nil {
		return Verifier{}, fmt.Errorf("identity key: %w", err)
	}
	if err := ecc.CheckX25519Public(p.dh[:]); err != nil {
		return Verifier{}, fmt.Errorf("%w: X25519 identity key: %w", ErrInvalid, err)
	}
	if !v.Verify(LabelIdentityKey, p.signedBody(), p.sig[:]) {
		return Verifier{}, fmt.Errorf("%w: X25519 identity key signature", ErrInvalid)
	}
	return v, nil
}

// Equal reports whether p and q are the same identity (all of the public
// form), in constant time.
func (p *Public) Equal(q *Public) bool {
	a, b := p.AppendBinary(nil), q.AppendBinary(nil)
	return subtle.ConstantTimeCompare(a, b) == 1
}

// AppendBinary appends the wire form of p:
// version (1) || Ed25519 public (32) || X25519 public (32) || signature (64).
func (p *Public) AppendBinary(b []byte) []byte {
	b = append(b, PublicVersion)
	b = append(b, p.id[:]...)
	b = append(b, p.dh[:]...)
	return append(b, p.sig[:]...)
}

// MarshalBinary returns the wire form of p.
func (p *Public) MarshalBinary() ([]byte, error) {
	return p.AppendBinary(make([]byte, 0, PublicSize)), nil
}

// ParsePublic parses the wire form. It checks the structure only: call
// Verify before trusting the result.
func ParsePublic(b []byte) (*Public, error) {
	if len(b) != PublicSize {
		return nil, fmt.Errorf("%w: public identity is %d bytes, want %d", ErrMalformed, len(b), PublicSize)
	}
	if b[0] != PublicVersion {
		return nil, fmt.Errorf("%w: public identity version %d", ErrVersion, b[0])
	}
	p := &Public{}
	b = b[1:]
	b = b[copy(p.id[:], b):]
	b = b[copy(p.dh[:], b):]
	copy(p.sig[:], b)
	return p, nil
}

// UnmarshalBinary is ParsePublic into p.
func (p *Public) UnmarshalBinary(b []byte) error {
	q, err := ParsePublic(b)
	if err != nil {
		return err
	}
	*p = *q
	return nil
}
