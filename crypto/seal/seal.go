// Package seal wraps a message for a relay mailbox (sealed sender): the
// relay sees only the mailbox ID and a padded size; the sender's identity,
// device and message are encrypted to the mailbox's own X25519 sealing key
// with a fresh ephemeral key per envelope.
//
// Envelope (docs/PROTOCOL.md §7):
//
//	version (1) || mailbox ID (32) || ephemeral X25519 public key (32) ||
//	ChaCha20-Poly1305(contents padded with zeros) (n + 16)
//
// The whole envelope is exactly one of the bucket sizes 512 B, 2 KiB, 8 KiB,
// 32 KiB or 64 KiB; larger contents are refused. The key is HKDF-SHA256 over
// the X25519 shared secret with an info that binds the version, the mailbox
// ID and both public keys; the AEAD's associated data is the version and
// mailbox ID.
//
// What the caller must do: the sender identity that Open returns is only a
// claim (anyone who knows a mailbox's sealing key can seal to it, naming
// anyone). Accept it only if it equals the identity bound in the AD of the
// session that decrypts the payload (ratchet.State.AD), or, for the first
// message of a session, the identity that PQXDH authenticates. Open checks
// the sender identity's structure only, not its signature.
package seal

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/internal/ecc"
)

// Version is the envelope version this package writes and reads.
const Version = 1

// Sizes (docs/PROTOCOL.md §7).
const (
	// MailboxIDSize is the size of a mailbox ID.
	MailboxIDSize = 32
	// HeaderSize is the clear part a relay reads: version and mailbox ID.
	HeaderSize = 1 + MailboxIDSize
	// ephemeralOffset is where the ephemeral public key starts.
	ephemeralOffset = HeaderSize
	// ciphertextOffset is where the AEAD ciphertext starts.
	ciphertextOffset = ephemeralOffset + ecc.X25519KeySize
	// Overhead is the envelope's size minus the size of its padded contents.
	Overhead = ciphertextOffset + chacha20poly1305.Overhead
	// MaxEnvelopeSize is the largest bucket.
	MaxEnvelopeSize = 64 << 10
	// MaxDeviceIDSize bounds the sender's device ID (a length byte).
	MaxDeviceIDSize = 255
	// contentsFixed is the size of the contents' length fields.
	contentsFixed = 2 + 1 + 4
)

// Buckets are the envelope sizes, smallest first.
var Buckets = [...]int{512, 2 << 10, 8 << 10, 32 << 10, 64 << 10}

// label is the HKDF info prefix.
const label = "sealpost/v1/seal"

var (
	// ErrOpen is the one error Open returns, whatever failed: size,
	// version, ephemeral key, authentication or contents.
	ErrOpen = errors.New("seal: cannot open envelope")
	// ErrTooLarge means the contents do not fit the largest bucket.
	ErrTooLarge = errors.New("seal: contents exceed the largest envelope")
	// ErrMalformed is returned by PeekMailbox for bytes that are not an
	// envelope of a known version and a bucket size.
	ErrMalformed = errors.New("seal: malformed envelope")
)

// Opened is the content of an opened envelope.
type Opened struct {
	// Mailbox is the ID of the mailbox the envelope was sealed to.
	Mailbox [MailboxIDSize]byte
	// Sender is the sender's claimed identity, parsed but not verified:
	// see the package documentation.
	Sender *identity.Public
	// Device is the sender's claimed device ID.
	Device []byte
	// Payload is the sealed message (a ratchet message, opaque here).
	Payload []byte
}

// bucketFor returns the smallest bucket that holds n bytes, or 0.
func bucketFor(n int) int {
	for _, b := range Buckets {
		if n <= b {
			return b
		}
	}
	return 0
}

func isBucket(n int) bool {
	for _, b := range Buckets {
		if n == b {
			return true
		}
	}
	return false
}

// EnvelopeSize returns the size of the envelope that Seal produces for a
// payload of n bytes with a device ID of d bytes, or 0 if it does not fit.
func EnvelopeSize(payload, device int) int {
	if payload < 0 || payload > MaxEnvelopeSize || device < 0 || device > MaxDeviceIDSize {
		return 0
	}
	return bucketFor(Overhead + contentsFixed + identity.PublicSize + device + payload)
}

// key derives the AEAD key: HKDF-SHA256(ikm = shared, salt = none,
// info = label || header || ephemeral public || sealing public, 32).
func key(shared, header, ephemeral, sealing []byte) ([]byte, error) {
	info := make([]byte, 0, len(label)+HeaderSize+2*ecc.X25519KeySize)
	info = append(info, label...)
	info = append(info, header...)
	info = append(info, ephemeral...)
	info = append(info, sealing...)
	return hkdf.Key(sha256.New, shared, nil, string(info), chacha20poly1305.KeySize)
}

// Seal seals payload from sender (and its device) to the mailbox whose
// X25519 sealing public key is sealingKey, and appends the envelope to dst.
// rand supplies the ephemeral key. dst must not overlap payload.
func Seal(dst []byte, mailbox [MailboxIDSize]byte, sealingKey []byte, sender *identity.Public, device, payload []byte, rand io.Reader) ([]byte, error) {
	if sender == nil {
		return nil, errors.New("seal: no sender identity")
	}
	if len(device) > MaxDeviceIDSize {
		return nil, fmt.Errorf("seal: device ID of %d bytes exceeds %d", len(device), MaxDeviceIDSize)
	}
	size := EnvelopeSize(len(payload), len(device))
	if size == 0 {
		return nil, ErrTooLarge
	}
	if err := ecc.CheckX25519Public(sealingKey); err != nil {
		return nil, fmt.Errorf("seal: sealing key: %w", err)
	}
	var seed [32]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("seal: read random: %w", err)
	}
	eph, err := ecdh.X25519().NewPrivateKey(seed[:])
	clear(seed[:])
	if err != nil {
		return nil, fmt.Errorf("seal: ephemeral key: %w", err)
	}
	shared, err := ecc.X25519(eph, sealingKey)
	if err != nil {
		return nil, fmt.Errorf("seal: sealing key: %w", err)
	}

	ret, env := sliceForAppend(dst, size)
	env[0] = Version
	copy(env[1:HeaderSize], mailbox[:])
	copy(env[ephemeralOffset:ciphertextOffset], eph.PublicKey().Bytes())
	k, err := key(shared, env[:HeaderSize], env[ephemeralOffset:ciphertextOffset], sealingKey)
	clear(shared)
	if err != nil {
		return nil, err
	}

	// The contents are written in place and encrypted in place.
	pt := env[ciphertextOffset : size-chacha20poly1305.Overhead]
	c := sender.AppendBinary(binary.BigEndian.AppendUint16(pt[:0], identity.PublicSize))
	c = append(c, byte(len(device)))
	c = append(c, device...)
	c = binary.BigEndian.AppendUint32(c, uint32(len(payload)))
	c = append(c, payload...)
	clear(pt[len(c):])

	aead, err := chacha20poly1305.New(k)
	clear(k)
	if err != nil {
		return nil, err
	}
	var nonce [chacha20poly1305.NonceSize]byte
	aead.Seal(pt[:0], nonce[:], pt, env[:HeaderSize])
	return ret, nil
}

// Open opens an envelope with the mailbox's sealing private key. Every
// failure returns ErrOpen. The returned slices do not alias envelope.
func Open(envelope []byte, sealingKey *ecdh.PrivateKey) (*Opened, error) {
	if !isBucket(len(envelope)) || envelope[0] != Version || sealingKey == nil {
		return nil, ErrOpen
	}
	eph := envelope[ephemeralOffset:ciphertextOffset]
	shared, err := ecc.X25519(sealingKey, eph)
	if err != nil {
		return nil, ErrOpen
	}
	k, err := key(shared, envelope[:HeaderSize], eph, sealingKey.PublicKey().Bytes())
	clear(shared)
	if err != nil {
		return nil, ErrOpen
	}
	aead, err := chacha20poly1305.New(k)
	clear(k)
	if err != nil {
		return nil, ErrOpen
	}
	var nonce [chacha20poly1305.NonceSize]byte
	pt, err := aead.Open(nil, nonce[:], envelope[ciphertextOffset:], envelope[:HeaderSize])
	if err != nil {
		return nil, ErrOpen
	}
	o, ok := parseContents(pt)
	if !ok {
		return nil, ErrOpen
	}
	copy(o.Mailbox[:], envelope[1:HeaderSize])
	return o, nil
}

// parseContents parses the decrypted contents and checks the padding.
func parseContents(pt []byte) (*Opened, bool) {
	if len(pt) < contentsFixed {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(pt))
	pt = pt[2:]
	if n > len(pt) {
		return nil, false
	}
	sender, err := identity.ParsePublic(pt[:n])
	if err != nil {
		return nil, false
	}
	pt = pt[n:]
	if len(pt) < 1 {
		return nil, false
	}
	d := int(pt[0])
	pt = pt[1:]
	if d+4 > len(pt) {
		return nil, false
	}
	device := pt[:d:d]
	pt = pt[d:]
	p := binary.BigEndian.Uint32(pt)
	pt = pt[4:]
	if uint64(p) > uint64(len(pt)) {
		return nil, false
	}
	payload := pt[:p:p]
	for _, b := range pt[p:] {
		if b != 0 {
			return nil, false
		}
	}
	return &Opened{Sender: sender, Device: device, Payload: payload}, true
}

// PeekMailbox returns the mailbox ID of an envelope without decrypting it,
// for relays. It checks the version and the size only.
func PeekMailbox(envelope []byte) ([MailboxIDSize]byte, error) {
	var id [MailboxIDSize]byte
	if !isBucket(len(envelope)) || envelope[0] != Version {
		return id, ErrMalformed
	}
	copy(id[:], envelope[1:HeaderSize])
	return id, nil
}

// sliceForAppend extends in by n bytes, as in golang.org/x/crypto.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	tail = head[len(in):]
	return
}
