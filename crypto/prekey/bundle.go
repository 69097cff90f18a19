package prekey

import (
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
)

// BundleVersion starts the encoding of a bundle.
const BundleVersion = 1

// HashSize is the size of a bundle hash.
const HashSize = sha256.Size

// MaxBundleSize is the size of the largest encoded bundle.
const MaxBundleSize = 1 + identity.PublicSize + identity.MaxDeviceRecordSize +
	MaxSignedPrekeySize + KEMPrekeySize + 1 + OneTimePrekeySize

// Bundle is what a device publishes so that others can start a session with
// it: its identity, its device record, its signed prekey (with the protocol
// versions it supports), its last-resort ML-KEM key, and, when served by the
// device or a relay, one one-time prekey. Invites carry no one-time prekey.
type Bundle struct {
	Identity     *identity.Public
	Device       *identity.DeviceRecord
	SignedPrekey *SignedPrekey
	KEMPrekey    *KEMPrekey
	OneTime      *OneTimePrekey // optional
}

// Versions returns the protocol versions the bundle's owner supports, from
// its signed prekey.
func (b *Bundle) Versions() []uint8 {
	if b.SignedPrekey == nil {
		return nil
	}
	return b.SignedPrekey.Versions()
}

// Verify checks everything a bundle holds, as of now:
//   - the identity: Ed25519 key canonical and not of small order, X25519
//     identity key valid, its signature;
//   - the device record: signed by this identity and countersigned by the
//     device key;
//   - the signed prekey, the last-resort ML-KEM-768 key and the one-time
//     prekey if present: every key valid (ML-KEM keys with every
//     coefficient reduced), every signature by this identity under the
//     record's own label, so no key passes for another kind;
//   - each record's created_at no older than MaxAge and no more than
//     ClockTolerance in the future.
//
// A bundle without a signed prekey or without a valid ML-KEM key is refused
// (no fallback to X3DH).
func (b *Bundle) Verify(now time.Time) error {
	switch {
	case b.Identity == nil:
		return fmt.Errorf("%w: bundle has no identity", ErrInvalid)
	case b.Device == nil:
		return fmt.Errorf("%w: bundle has no device record", ErrInvalid)
	case b.SignedPrekey == nil:
		return fmt.Errorf("%w: bundle has no signed prekey", ErrInvalid)
	case b.KEMPrekey == nil:
		return fmt.Errorf("%w: bundle has no ML-KEM key", ErrInvalid)
	}
	v, err := b.Identity.Verifier()
	if err != nil {
		return fmt.Errorf("%w: bundle identity: %w", ErrInvalid, err)
	}
	if err := b.Device.VerifyFor(v); err != nil {
		return fmt.Errorf("%w: bundle device record: %w", ErrInvalid, err)
	}
	if err := b.SignedPrekey.Verify(v); err != nil {
		return err
	}
	if err := b.SignedPrekey.checkTime(now, "signed prekey"); err != nil {
		return err
	}
	if err := b.KEMPrekey.Verify(v); err != nil {
		return err
	}
	if err := b.KEMPrekey.checkTime(now, "last-resort KEM prekey"); err != nil {
		return err
	}
	if b.OneTime != nil {
		if err := b.OneTime.Verify(v); err != nil {
			return err
		}
		if err := b.OneTime.checkTime(now, "one-time prekey"); err != nil {
			return err
		}
	}
	return nil
}

// AppendBinary appends the encoding:
//
//	version (1) || identity public form (129) || device record ||
//	signed prekey || last-resort KEM prekey (1260) ||
//	one-time flag (1: 0 or 1) || [one-time prekey (1292)]
//
// All fields must be set except OneTime.
func (b *Bundle) AppendBinary(out []byte) []byte {
	out = append(out, BundleVersion)
	out = b.Identity.AppendBinary(out)
	out = b.Device.AppendBinary(out)
	out = b.SignedPrekey.AppendBinary(out)
	out = b.KEMPrekey.AppendBinary(out)
	if b.OneTime == nil {
		return append(out, 0)
	}
	out = append(out, 1)
	return b.OneTime.AppendBinary(out)
}

// MarshalBinary returns the encoding. It fails if a required field is nil.
func (b *Bundle) MarshalBinary() ([]byte, error) {
	if b.Identity == nil || b.Device == nil || b.SignedPrekey == nil || b.KEMPrekey == nil {
		return nil, fmt.Errorf("%w: incomplete bundle", ErrInvalid)
	}
	return b.AppendBinary(make([]byte, 0, MaxBundleSize)), nil
}

// Hash returns the commitment an invite pins: SHA-256 over LabelBundleHash
// || 0x00 || the encoding of the bundle without its one-time prekey (one-time
// flag 0). It covers the identity (both keys and the signature), the device
// record, the signed prekey with its versions, ID, created_at and signature,
// and the last-resort KEM prekey with its ID, created_at and signature; a
// bundle matches a pinned hash only if all of these are byte-for-byte the
// same. Hash panics if a required field is nil.
func (b *Bundle) Hash() [HashSize]byte {
	c := *b
	c.OneTime = nil
	h := sha256.New()
	h.Write([]byte(LabelBundleHash))
	h.Write([]byte{0})
	h.Write(c.AppendBinary(make([]byte, 0, MaxBundleSize)))
	var out [HashSize]byte
	h.Sum(out[:0])
	return out
}

// ParseBundle parses the encoding. It checks the structure only: call
// Verify before using the bundle.
func ParseBundle(data []byte) (*Bundle, error) {
	if len(data) > MaxBundleSize {
		return nil, fmt.Errorf("%w: bundle of %d bytes, at most %d", ErrMalformed, len(data), MaxBundleSize)
	}
	if len(data) < 1+identity.PublicSize {
		return nil, fmt.Errorf("%w: bundle too short", ErrMalformed)
	}
	if data[0] != BundleVersion {
		return nil, fmt.Errorf("%w: bundle version %d", ErrVersion, data[0])
	}
	b := &Bundle{}
	var err error
	p := data[1:]
	if b.Identity, err = identity.ParsePublic(p[:identity.PublicSize]); err != nil {
		return nil, fmt.Errorf("%w: bundle identity: %w", ErrMalformed, err)
	}
	p = p[identity.PublicSize:]
	if b.Device, p, err = identity.ReadDeviceRecord(p); err != nil {
		return nil, fmt.Errorf("%w: bundle device record: %w", ErrMalformed, err)
	}
	if b.SignedPrekey, p, err = readSignedPrekey(p); err != nil {
		return nil, err
	}
	if b.KEMPrekey, p, err = readKEMPrekey(p); err != nil {
		return nil, err
	}
	if len(p) < 1 {
		return nil, fmt.Errorf("%w: bundle too short", ErrMalformed)
	}
	flag := p[0]
	p = p[1:]
	switch flag {
	case 0:
	case 1:
		if b.OneTime, p, err = readOneTimePrekey(p); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: one-time flag %d", ErrMalformed, flag)
	}
	if err := noTrailing(p, "bundle"); err != nil {
		return nil, err
	}
	return b, nil
}
