package protocol

import (
	"crypto/subtle"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/sealpost/sealpost/protocol/internal/pb"
)

// BundlePinSize is the size of a bundle pin.
const BundlePinSize = 16

// BundlePin is the first 16 bytes of a bundle's hash (crypto/prekey
// Bundle.Hash), as an invite carries it. 128 bits are enough because the pin
// is a commitment made by the inviter, who chose the bundle: a third party
// who wants another bundle accepted under the same pin needs a second
// preimage of SHA-256 truncated to 128 bits (about 2^128 work); the
// birthday bound (2^64) matters only to whoever makes both bundles, and
// that is the inviter, who signs them with its own identity key anyway.
type BundlePin [BundlePinSize]byte

// PinOf returns the pin of a bundle hash.
func PinOf(hash []byte) (BundlePin, error) {
	var p BundlePin
	if len(hash) < BundlePinSize {
		return p, fmt.Errorf("%w: bundle hash of %d bytes, need at least %d", ErrMalformed, len(hash), BundlePinSize)
	}
	copy(p[:], hash)
	return p, nil
}

// Matches reports, in constant time, whether hash begins with the pin.
func (p BundlePin) Matches(hash []byte) bool {
	return len(hash) >= BundlePinSize && subtle.ConstantTimeCompare(p[:], hash[:BundlePinSize]) == 1
}

// IsZero reports whether p is all zero (absent).
func (p BundlePin) IsZero() bool { return p == BundlePin{} }

// BundleRequest asks a node for its prekey bundle on BundleProtocol.
type BundleRequest struct {
	// Pin names the bundle version an invite pinned; zero asks for the
	// current bundle.
	Pin BundlePin
}

// Validate checks r (every value is valid: the pin is optional).
func (r *BundleRequest) Validate() error { return nil }

// Marshal returns the canonical encoding of r.
func (r *BundleRequest) Marshal() ([]byte, error) { return encode(nil, r) }

// Unmarshal decodes and validates b into r.
func (r *BundleRequest) Unmarshal(b []byte) error {
	var p pb.BundleRequest
	if err := decode(b, r.limit(), r.kind(), &p); err != nil {
		return err
	}
	var v BundleRequest
	if err := fixed(v.Pin[:], p.Pin, true, "bundle request: pin"); err != nil {
		return err
	}
	*r = v
	return nil
}

func (r *BundleRequest) wire() proto.Message {
	return &pb.BundleRequest{Version: Version, Pin: optional(r.Pin[:])}
}

func (r *BundleRequest) limit() int   { return MaxBundleFrame }
func (r *BundleRequest) kind() string { return "bundle request" }

// BundleResponse answers a BundleRequest. The node serves the bundle version
// a pin names for as long as it keeps that signed prekey's private key, and
// answers CodeExpired after that (the inviter needs to make a new invite).
type BundleResponse struct {
	// Code is CodeOK with a Bundle, or why there is none (CodeExpired,
	// CodeNotFound, CodeRateLimited, CodeInternal, ...).
	Code Code
	// Bundle is the crypto/prekey bundle encoding, with a one-time prekey
	// handed out to this request alone if one is left. Present exactly when
	// Code is CodeOK. The requester verifies it (signatures, age, pin).
	Bundle []byte
}

// Validate checks r's fields.
func (r *BundleResponse) Validate() error {
	if err := r.Code.check(); err != nil {
		return fmt.Errorf("bundle response: %w", err)
	}
	if r.Code != CodeOK {
		if len(r.Bundle) > 0 {
			return fmt.Errorf("%w: bundle response: %s with a bundle", ErrMalformed, r.Code)
		}
		return nil
	}
	return checkBytes(r.Bundle, 1, MaxBundle, "bundle response: bundle")
}

// Marshal returns the canonical encoding of r.
func (r *BundleResponse) Marshal() ([]byte, error) { return encode(nil, r) }

// Unmarshal decodes and validates b into r.
func (r *BundleResponse) Unmarshal(b []byte) error {
	var p pb.BundleResponse
	if err := decode(b, r.limit(), r.kind(), &p); err != nil {
		return err
	}
	v := BundleResponse{Code: Code(p.Code), Bundle: p.Bundle}
	if err := v.Validate(); err != nil {
		return err
	}
	*r = v
	return nil
}

func (r *BundleResponse) wire() proto.Message {
	return &pb.BundleResponse{Version: Version, Code: pb.Code(r.Code), Bundle: r.Bundle}
}

func (r *BundleResponse) limit() int   { return MaxBundleFrame }
func (r *BundleResponse) kind() string { return "bundle response" }
