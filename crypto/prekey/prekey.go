// Package prekey makes and checks the keys a sealpost device publishes so
// that others can start sessions with it while it is offline: a signed X25519
// prekey (which also lists the protocol versions the device supports), a
// signed last-resort ML-KEM-768 key, and batches of signed one-time prekeys
// (an X25519 key and an ML-KEM-768 key together), assembled with the
// identity and the device record into a Bundle.
//
// Every record carries an ID and a signed created_at; the identity key signs
// each record under its own domain label, so no record (and no key) can be
// passed off as another kind. The byte layouts are in docs/PROTOCOL.md §4.
//
// What the caller must do:
//   - Call Bundle.Verify(now) on every bundle received before using it;
//     ParseBundle checks the structure only. Verify refuses bad signatures,
//     invalid or missing keys, and records older than MaxAge or more than
//     ClockTolerance in the future.
//   - Rotate the signed prekey well within MaxAge (DESIGN.md: weekly) and
//     keep each signed prekey's and last-resort key's private half for
//     MaxAge plus the relay TTL after it was replaced, so that no late first
//     message is undecryptable.
//   - Hand out each one-time prekey once (never in an invite), and delete
//     its private half only when a first message that used it has decrypted.
//   - Pin a bundle from an invite with Hash, which covers everything but the
//     one-time prekey.
//
// The private forms (MarshalBinary of the *Private types) belong in the
// encrypted store only.
package prekey

import (
	"crypto/mlkem"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
)

// Labels of the identity's signatures over prekey records, and of the
// bundle hash.
const (
	LabelSignedPrekey  = "sealpost/v1/signed-prekey"
	LabelKEMPrekey     = "sealpost/v1/kem-prekey"
	LabelOneTimePrekey = "sealpost/v1/one-time-prekey"
	LabelBundleHash    = "sealpost/v1/bundle-hash"
)

// Limits and sizes.
const (
	// MaxAge is the oldest a signed prekey, last-resort key or one-time
	// prekey in a bundle may be.
	MaxAge = 30 * 24 * time.Hour
	// ClockTolerance is how far in the future a created_at may lie
	// (DESIGN.md §7).
	ClockTolerance = 5 * time.Minute
	// MaxVersions bounds the protocol versions a signed prekey lists.
	MaxVersions = 16
	// MaxOneTimeBatch bounds one call of NewOneTimePrekeys.
	MaxOneTimeBatch = 1024

	// X25519KeySize is the size of an X25519 public or private key.
	X25519KeySize = 32
	// KEMKeySize is the size of an ML-KEM-768 encapsulation key.
	KEMKeySize = mlkem.EncapsulationKeySize768
	// KEMSeedSize is the size of an ML-KEM-768 decapsulation key seed.
	KEMSeedSize = mlkem.SeedSize
	// KEMCiphertextSize is the size of an ML-KEM-768 ciphertext.
	KEMCiphertextSize = mlkem.CiphertextSize768

	sigSize    = identity.SignatureSize
	headerSize = 4 + 8 // id || created_at

	// KEMPrekeySize is the size of an encoded last-resort KEM prekey.
	KEMPrekeySize = headerSize + KEMKeySize + sigSize
	// OneTimePrekeySize is the size of an encoded one-time prekey.
	OneTimePrekeySize = headerSize + X25519KeySize + KEMKeySize + sigSize
	// MaxSignedPrekeySize is the size of the largest encoded signed prekey.
	MaxSignedPrekeySize = headerSize + 1 + MaxVersions + X25519KeySize + sigSize
)

var (
	// ErrMalformed is returned (wrapped) when an encoding cannot be parsed.
	ErrMalformed = errors.New("prekey: malformed encoding")
	// ErrVersion is returned (wrapped) for an unknown encoding version.
	ErrVersion = errors.New("prekey: unsupported encoding version")
	// ErrInvalid is returned (wrapped) when a key is refused, missing, or a
	// signature does not verify.
	ErrInvalid = errors.New("prekey: invalid key or signature")
	// ErrExpired is returned (wrapped) when a record is older than MaxAge.
	ErrExpired = errors.New("prekey: record too old")
	// ErrFuture is returned (wrapped) when a record's created_at is more
	// than ClockTolerance ahead of now.
	ErrFuture = errors.New("prekey: record created in the future")
)

// record is the part every prekey record shares.
type record struct {
	id        uint32
	createdAt uint64
	sig       [sigSize]byte
}

func (r *record) appendHeader(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, r.id)
	return binary.BigEndian.AppendUint64(b, r.createdAt)
}

// readHeader reads id || created_at from b, which must hold at least
// headerSize bytes.
func (r *record) readHeader(b []byte) ([]byte, error) {
	r.id = binary.BigEndian.Uint32(b)
	r.createdAt = binary.BigEndian.Uint64(b[4:])
	if r.createdAt > math.MaxInt64 {
		return nil, fmt.Errorf("%w: created_at out of range", ErrMalformed)
	}
	return b[headerSize:], nil
}

// ID returns the record's key ID.
func (r *record) ID() uint32 { return r.id }

// CreatedAt returns the signed creation time.
func (r *record) CreatedAt() time.Time { return time.Unix(int64(r.createdAt), 0) }

// CheckAge returns nil if the record's created_at lies between MaxAge
// before now and ClockTolerance after now, and otherwise an error wrapping
// ErrExpired or ErrFuture. Bundle.Verify applies it to every record.
func (r *record) CheckAge(now time.Time) error { return r.checkTime(now, "prekey") }

// checkTime refuses a created_at older than MaxAge or more than
// ClockTolerance in the future.
func (r *record) checkTime(now time.Time, what string) error {
	t := r.CreatedAt()
	if t.After(now.Add(ClockTolerance)) {
		return fmt.Errorf("%w: %s created at %v, now %v", ErrFuture, what, t.UTC(), now.UTC())
	}
	if now.Sub(t) > MaxAge {
		return fmt.Errorf("%w: %s created at %v, now %v", ErrExpired, what, t.UTC(), now.UTC())
	}
	return nil
}

func newRecord(id uint32, now time.Time) (record, error) {
	if now.Unix() < 0 {
		return record{}, fmt.Errorf("%w: created_at before 1970", ErrMalformed)
	}
	return record{id: id, createdAt: uint64(now.Unix())}, nil
}

// checkVersions requires 1 to MaxVersions versions, each non-zero, in
// strictly increasing order.
func checkVersions(v []uint8) error {
	if len(v) == 0 || len(v) > MaxVersions {
		return fmt.Errorf("%w: %d protocol versions", ErrMalformed, len(v))
	}
	for i, x := range v {
		if x == 0 || (i > 0 && x <= v[i-1]) {
			return fmt.Errorf("%w: protocol versions not strictly increasing from 1", ErrMalformed)
		}
	}
	return nil
}
