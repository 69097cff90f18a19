package identity

import (
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sealpost/sealpost/crypto/internal/ecc"
)

// Device record constants.
const (
	DeviceRecordVersion = 1
	// MaxDeviceIDSize bounds a device ID (a libp2p peer ID is 34 to 38
	// bytes for the key types sealpost uses).
	MaxDeviceIDSize = 64
	// LabelDeviceRecord labels the identity's signature over a device record.
	LabelDeviceRecord = "sealpost/v1/device-record"
	// LabelDeviceCountersign labels the device key's countersignature.
	LabelDeviceCountersign = "sealpost/v1/device-countersign"

	deviceBodyFixed = 1 + 32 + 32 + 1 + 8 + 8
	// MaxDeviceRecordSize is the largest encoded device record.
	MaxDeviceRecordSize = deviceBodyFixed + MaxDeviceIDSize + 2*SignatureSize
)

var (
	// ErrIdentityChanged is returned by CheckUpdate when a record names a
	// different identity than the one pinned.
	ErrIdentityChanged = errors.New("identity: identity key changed")
	// ErrStaleRecord is returned by CheckUpdate when a record's sequence
	// number is not higher than the one already held.
	ErrStaleRecord = errors.New("identity: device record is not newer")
)

// DeviceRecord binds a device (a node with its own libp2p key) to an
// identity. The identity signs it; the device's Ed25519 key countersigns it.
type DeviceRecord struct {
	identity  UserID
	deviceKey [ed25519.PublicKeySize]byte
	deviceID  []byte
	createdAt uint64
	seq       uint64
	idSig     [SignatureSize]byte
	devSig    [SignatureSize]byte
}

// NewDeviceRecord creates and signs a device record for the device whose
// libp2p key is deviceKey and whose peer ID bytes are deviceID. seq must be
// higher than the sequence number of every record the identity published
// before (sequence numbers count per identity).
func NewDeviceRecord(id *Private, deviceKey ed25519.PrivateKey, deviceID []byte, createdAt time.Time, seq uint64) (*DeviceRecord, error) {
	if len(deviceID) == 0 || len(deviceID) > MaxDeviceIDSize {
		return nil, fmt.Errorf("%w: device ID of %d bytes", ErrMalformed, len(deviceID))
	}
	if len(deviceKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: device key of %d bytes", ErrMalformed, len(deviceKey))
	}
	if createdAt.Unix() < 0 {
		return nil, fmt.Errorf("%w: created-at before 1970", ErrMalformed)
	}
	r := &DeviceRecord{
		identity:  id.UserID(),
		deviceID:  append([]byte(nil), deviceID...),
		createdAt: uint64(createdAt.Unix()),
		seq:       seq,
	}
	copy(r.deviceKey[:], deviceKey.Public().(ed25519.PublicKey))
	body := r.appendBody(nil)
	copy(r.idSig[:], id.Sign(LabelDeviceRecord, body))
	copy(r.devSig[:], SignWith(deviceKey, LabelDeviceCountersign, append(body, r.idSig[:]...)))
	return r, nil
}

// appendBody appends the signed part of the record:
// version || identity key || device key || len8(device ID) || device ID ||
// created_at || sequence.
func (r *DeviceRecord) appendBody(b []byte) []byte {
	b = append(b, DeviceRecordVersion)
	b = append(b, r.identity[:]...)
	b = append(b, r.deviceKey[:]...)
	b = append(b, byte(len(r.deviceID)))
	b = append(b, r.deviceID...)
	b = binary.BigEndian.AppendUint64(b, r.createdAt)
	return binary.BigEndian.AppendUint64(b, r.seq)
}

// Identity returns the identity that signed the record.
func (r *DeviceRecord) Identity() UserID { return r.identity }

// DeviceKey returns the device's Ed25519 (libp2p) public key.
func (r *DeviceRecord) DeviceKey() ed25519.PublicKey {
	return append(ed25519.PublicKey(nil), r.deviceKey[:]...)
}

// DeviceID returns a copy of the device ID (libp2p peer ID bytes).
func (r *DeviceRecord) DeviceID() []byte { return append([]byte(nil), r.deviceID...) }

// CreatedAt returns the creation time the identity signed (a sender claim).
func (r *DeviceRecord) CreatedAt() time.Time { return time.Unix(int64(r.createdAt), 0) }

// Seq returns the record's sequence number.
func (r *DeviceRecord) Seq() uint64 { return r.seq }

// Verify checks both keys (canonical, not of small order) and both
// signatures. It does not check that DeviceID belongs to DeviceKey: that
// needs libp2p, and is the caller's job.
func (r *DeviceRecord) Verify() error {
	v, err := r.identity.Verifier()
	if err != nil {
		return fmt.Errorf("device record: %w", err)
	}
	return r.VerifyFor(v)
}

// VerifyFor is Verify for a record that must belong to the identity whose
// Verifier is v: it refuses a record of another identity with
// ErrIdentityChanged, and does not repeat the identity key's point checks.
func (r *DeviceRecord) VerifyFor(v Verifier) error {
	if !v.UserID().Equal(r.identity) {
		return ErrIdentityChanged
	}
	if err := ecc.CheckEd25519Public(r.deviceKey[:]); err != nil {
		return fmt.Errorf("%w: device key: %w", ErrInvalid, err)
	}
	body := r.appendBody(make([]byte, 0, deviceBodyFixed+len(r.deviceID)+SignatureSize))
	if !v.Verify(LabelDeviceRecord, body, r.idSig[:]) {
		return fmt.Errorf("%w: device record identity signature", ErrInvalid)
	}
	if !ed25519.Verify(r.deviceKey[:], labelled(LabelDeviceCountersign, append(body, r.idSig[:]...)), r.devSig[:]) {
		return fmt.Errorf("%w: device record countersignature", ErrInvalid)
	}
	return nil
}

// CheckUpdate decides whether next, received while old is held, replaces
// old. Both must have been verified. It returns nil if next is signed by the
// same identity with a higher sequence number (an update, whatever its
// device), ErrIdentityChanged if the identity differs, and ErrStaleRecord if
// the sequence number is not higher (a replay or a rollback).
func CheckUpdate(old, next *DeviceRecord) error {
	if !old.identity.Equal(next.identity) {
		return ErrIdentityChanged
	}
	if next.seq <= old.seq {
		return ErrStaleRecord
	}
	return nil
}

// Equal reports whether r and s encode to the same bytes, in constant time.
func (r *DeviceRecord) Equal(s *DeviceRecord) bool {
	return subtle.ConstantTimeCompare(r.AppendBinary(nil), s.AppendBinary(nil)) == 1
}

// AppendBinary appends the wire form: the signed body, the identity
// signature (64) and the device countersignature (64).
func (r *DeviceRecord) AppendBinary(b []byte) []byte {
	b = r.appendBody(b)
	b = append(b, r.idSig[:]...)
	return append(b, r.devSig[:]...)
}

// MarshalBinary returns the wire form.
func (r *DeviceRecord) MarshalBinary() ([]byte, error) {
	return r.AppendBinary(make([]byte, 0, deviceBodyFixed+len(r.deviceID)+2*SignatureSize)), nil
}

// ParseDeviceRecord parses the wire form. It checks the structure only:
// call Verify before trusting the result.
func ParseDeviceRecord(b []byte) (*DeviceRecord, error) {
	r, rest, err := ReadDeviceRecord(b)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after device record", ErrMalformed, len(rest))
	}
	return r, nil
}

// ReadDeviceRecord parses a device record at the start of b and returns the
// bytes after it, for encodings that embed a record.
func ReadDeviceRecord(b []byte) (*DeviceRecord, []byte, error) {
	if len(b) < deviceBodyFixed+2*SignatureSize {
		return nil, nil, fmt.Errorf("%w: device record too short", ErrMalformed)
	}
	if b[0] != DeviceRecordVersion {
		return nil, nil, fmt.Errorf("%w: device record version %d", ErrVersion, b[0])
	}
	r := &DeviceRecord{}
	p := b[1:]
	p = p[copy(r.identity[:], p):]
	p = p[copy(r.deviceKey[:], p):]
	n := int(p[0])
	p = p[1:]
	if n == 0 || n > MaxDeviceIDSize {
		return nil, nil, fmt.Errorf("%w: device ID of %d bytes", ErrMalformed, n)
	}
	if len(p) < n+16+2*SignatureSize {
		return nil, nil, fmt.Errorf("%w: device record too short", ErrMalformed)
	}
	r.deviceID = append([]byte(nil), p[:n]...)
	p = p[n:]
	r.createdAt = binary.BigEndian.Uint64(p)
	r.seq = binary.BigEndian.Uint64(p[8:])
	if r.createdAt > math.MaxInt64 {
		return nil, nil, fmt.Errorf("%w: created-at out of range", ErrMalformed)
	}
	p = p[16:]
	p = p[copy(r.idSig[:], p):]
	p = p[copy(r.devSig[:], p):]
	return r, p, nil
}

// UnmarshalBinary is ParseDeviceRecord into r.
func (r *DeviceRecord) UnmarshalBinary(b []byte) error {
	v, err := ParseDeviceRecord(b)
	if err != nil {
		return err
	}
	*r = *v
	return nil
}
