package pqxdh

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/prekey"
)

// MessageFormat is the first byte of an encoded InitialMessage.
const MessageFormat = 1

// Sizes of the initial message.
const (
	// BaseKeySize is the size of the initiator's ephemeral X25519 key.
	BaseKeySize = 32
	// CiphertextSize is the size of the ML-KEM-768 ciphertext.
	CiphertextSize = prekey.KEMCiphertextSize
	// ReplayHashSize is the size of InitialMessage.ReplayHash.
	ReplayHashSize = sha256.Size

	// MaxInitialMessageSize is the size of the largest encoded initial
	// message.
	MaxInitialMessageSize = 1 + 1 + 1 + prekey.MaxVersions + identity.PublicSize +
		identity.MaxDeviceRecordSize + 32 + 1 + identity.MaxDeviceIDSize +
		BaseKeySize + 4 + 1 + 4 + CiphertextSize
)

// Flag bits of an initial message.
const flagOneTime = 0x01

// InitialMessage is what the initiator sends, next to the first ratchet
// message, so that the responder can compute the same secret. Its fields
// are sender claims until Respond has checked them.
type InitialMessage struct {
	// Version is the protocol version the initiator chose.
	Version uint8
	// Versions are the versions the initiator supports, increasing; the
	// responder uses them to detect a downgrade.
	Versions []uint8
	// Initiator and InitiatorDevice identify the sender.
	Initiator       *identity.Public
	InitiatorDevice *identity.DeviceRecord
	// Recipient and RecipientDevice name the identity and device the
	// initiator meant to reach; Respond refuses a message not meant for it.
	Recipient       identity.UserID
	RecipientDevice []byte
	// BaseKey is the initiator's ephemeral X25519 public key.
	BaseKey [BaseKeySize]byte
	// SignedPrekeyID names the responder's signed prekey that was used.
	SignedPrekeyID uint32
	// OneTime reports whether a one-time prekey was used. If so, PrekeyID
	// is its ID and both its X25519 and ML-KEM keys were used (the
	// responder consumes it); if not, PrekeyID is the ID of the last-resort
	// ML-KEM key.
	OneTime  bool
	PrekeyID uint32
	// Ciphertext is the ML-KEM-768 ciphertext.
	Ciphertext []byte
}

// LabelReplay labels the replay hash of an initial message.
const LabelReplay = "sealpost/v1/pqxdh-replay"

// ReplayHash returns SHA-256(LabelReplay || 0x00 || base key || KEM
// ciphertext): a stable name for this first message that a responder
// remembers (for the signed prekey's lifetime) to refuse a replay that used
// no one-time prekey. It can be computed before Respond.
func (m *InitialMessage) ReplayHash() [ReplayHashSize]byte {
	h := sha256.New()
	h.Write([]byte(LabelReplay))
	h.Write([]byte{0})
	h.Write(m.BaseKey[:])
	h.Write(m.Ciphertext)
	var out [ReplayHashSize]byte
	h.Sum(out[:0])
	return out
}

// AppendBinary appends the encoding:
//
//	format (1) = 1 || version (1) || len8(versions) || versions ||
//	initiator identity (129) || initiator device record ||
//	recipient Ed25519 key (32) || len8(recipient device ID) || recipient device ID ||
//	base key (32) || signed prekey ID (4) || flags (1) || prekey ID (4) ||
//	ML-KEM-768 ciphertext (1088)
//
// flags bit 0 is set when a one-time prekey was used; the other bits are 0.
func (m *InitialMessage) AppendBinary(b []byte) []byte {
	b = append(b, MessageFormat, m.Version, byte(len(m.Versions)))
	b = append(b, m.Versions...)
	b = m.Initiator.AppendBinary(b)
	b = m.InitiatorDevice.AppendBinary(b)
	b = append(b, m.Recipient[:]...)
	b = append(b, byte(len(m.RecipientDevice)))
	b = append(b, m.RecipientDevice...)
	b = append(b, m.BaseKey[:]...)
	b = binary.BigEndian.AppendUint32(b, m.SignedPrekeyID)
	var flags byte
	if m.OneTime {
		flags |= flagOneTime
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint32(b, m.PrekeyID)
	return append(b, m.Ciphertext...)
}

// MarshalBinary returns the encoding. It fails if a field is out of range.
func (m *InitialMessage) MarshalBinary() ([]byte, error) {
	if m.Initiator == nil || m.InitiatorDevice == nil {
		return nil, fmt.Errorf("%w: initial message without initiator", ErrMalformed)
	}
	if err := checkVersionList(m.Versions); err != nil {
		return nil, err
	}
	if len(m.RecipientDevice) == 0 || len(m.RecipientDevice) > identity.MaxDeviceIDSize {
		return nil, fmt.Errorf("%w: recipient device ID of %d bytes", ErrMalformed, len(m.RecipientDevice))
	}
	if len(m.Ciphertext) != CiphertextSize {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes", ErrMalformed, len(m.Ciphertext))
	}
	return m.AppendBinary(make([]byte, 0, MaxInitialMessageSize)), nil
}

// ParseInitialMessage parses the encoding. It checks the structure only;
// Respond checks the rest.
func ParseInitialMessage(data []byte) (*InitialMessage, error) {
	if len(data) > MaxInitialMessageSize {
		return nil, fmt.Errorf("%w: initial message of %d bytes, at most %d", ErrMalformed, len(data), MaxInitialMessageSize)
	}
	r := reader{b: data}
	format := r.byte()
	if r.err == nil && format != MessageFormat {
		return nil, fmt.Errorf("%w: initial message format %d", ErrVersion, format)
	}
	m := &InitialMessage{Version: r.byte()}
	m.Versions = slices.Clone(r.bytes(int(r.byte())))
	if r.err != nil {
		return nil, r.err
	}
	if err := checkVersionList(m.Versions); err != nil {
		return nil, err
	}
	if m.Version == 0 {
		return nil, fmt.Errorf("%w: version 0", ErrMalformed)
	}
	pub := r.bytes(identity.PublicSize)
	if r.err != nil {
		return nil, r.err
	}
	var err error
	if m.Initiator, err = identity.ParsePublic(pub); err != nil {
		return nil, fmt.Errorf("%w: initiator identity: %w", ErrMalformed, err)
	}
	if m.InitiatorDevice, r.b, err = identity.ReadDeviceRecord(r.b); err != nil {
		return nil, fmt.Errorf("%w: initiator device record: %w", ErrMalformed, err)
	}
	copy(m.Recipient[:], r.bytes(len(m.Recipient)))
	n := int(r.byte())
	if r.err == nil && (n == 0 || n > identity.MaxDeviceIDSize) {
		return nil, fmt.Errorf("%w: recipient device ID of %d bytes", ErrMalformed, n)
	}
	m.RecipientDevice = bytes.Clone(r.bytes(n))
	copy(m.BaseKey[:], r.bytes(BaseKeySize))
	m.SignedPrekeyID = r.uint32()
	flags := r.byte()
	m.PrekeyID = r.uint32()
	m.Ciphertext = bytes.Clone(r.bytes(CiphertextSize))
	if r.err != nil {
		return nil, r.err
	}
	if flags&^flagOneTime != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, flags)
	}
	m.OneTime = flags&flagOneTime != 0
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after initial message", ErrMalformed, len(r.b))
	}
	return m, nil
}

// reader reads fixed-size fields; after the first short read every read
// returns zero values and err is set.
type reader struct {
	b   []byte
	err error
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = fmt.Errorf("%w: initial message too short", ErrMalformed)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) byte() byte {
	if b := r.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) uint32() uint32 {
	if b := r.bytes(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}
