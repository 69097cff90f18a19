package protocol

import (
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MessageID identifies a message: 16 random bytes chosen by its sender.
type MessageID [16]byte

// MailboxID names a relay mailbox: 32 random bytes.
type MailboxID [32]byte

// InviteSecret is the random secret of one invite (16 bytes). Whoever
// presents it in a first message was given the invite.
type InviteSecret [16]byte

// SealingKey is the X25519 public key a mailbox's envelopes are sealed to.
type SealingKey [32]byte

// NewMessageID reads a message ID from rand (the node's random source).
func NewMessageID(rand io.Reader) (MessageID, error) {
	var id MessageID
	err := readRandom(rand, id[:], "message ID")
	return id, err
}

// NewInviteSecret reads an invite secret from rand.
func NewInviteSecret(rand io.Reader) (InviteSecret, error) {
	var s InviteSecret
	err := readRandom(rand, s[:], "invite secret")
	return s, err
}

// readRandom fills b from rand, refusing all zeros (which would read as
// absent and means a broken source).
func readRandom(rand io.Reader, b []byte, what string) error {
	if _, err := io.ReadFull(rand, b); err != nil {
		return fmt.Errorf("protocol: new %s: %w", what, err)
	}
	if allZero(b) {
		return fmt.Errorf("protocol: new %s: random source gave zeros", what)
	}
	return nil
}

// IsZero reports whether id is all zero (absent).
func (id MessageID) IsZero() bool { return id == MessageID{} }

// String returns id in lowercase hex.
func (id MessageID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is all zero (absent).
func (id MailboxID) IsZero() bool { return id == MailboxID{} }

// String returns id in lowercase hex.
func (id MailboxID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether s is all zero (absent).
func (s InviteSecret) IsZero() bool { return s == InviteSecret{} }

// IsZero reports whether k is all zero (absent).
func (k SealingKey) IsZero() bool { return k == SealingKey{} }

// ed25519PeerIDPrefix precedes a 32-byte Ed25519 key in its libp2p peer ID:
// the identity multihash (code 0x00, length 0x24) of the protobuf-encoded
// libp2p PublicKey{Type: Ed25519 (1), Data: key} (08 01 12 20).
const ed25519PeerIDPrefix = "\x00\x24\x08\x01\x12\x20"

// PeerIDFromEd25519 returns the libp2p peer ID bytes of an Ed25519 public
// key: 00 24 08 01 12 20 || key (38 bytes), what libp2p's
// peer.IDFromPublicKey gives.
func PeerIDFromEd25519(key ed25519.PublicKey) ([]byte, error) {
	if len(key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: Ed25519 key of %d bytes", ErrMalformed, len(key))
	}
	id := make([]byte, 0, len(ed25519PeerIDPrefix)+ed25519.PublicKeySize)
	id = append(id, ed25519PeerIDPrefix...)
	return append(id, key...), nil
}

// Ed25519FromPeerID returns the Ed25519 key inlined in a peer ID, and false
// when id is not the peer ID of an Ed25519 key.
func Ed25519FromPeerID(id []byte) (ed25519.PublicKey, bool) {
	key, ok := strings.CutPrefix(string(id), ed25519PeerIDPrefix)
	if !ok || len(key) != ed25519.PublicKeySize {
		return nil, false
	}
	return ed25519.PublicKey(key), true
}

// checkPeerID checks that b is a libp2p peer ID: a multihash, either the
// identity hash of an inlined public key (at most 42 bytes) or a SHA-256.
func checkPeerID(b []byte, what string) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: %s missing", ErrMalformed, what)
	}
	if len(b) > MaxPeerID {
		return fmt.Errorf("%w: %s of %d bytes, limit %d", ErrTooLarge, what, len(b), MaxPeerID)
	}
	code, n := uvarint(b)
	if n <= 0 {
		return fmt.Errorf("%w: %s is not a multihash", ErrMalformed, what)
	}
	size, m := uvarint(b[n:])
	if m <= 0 || size != uint64(len(b)-n-m) {
		return fmt.Errorf("%w: %s is not a multihash", ErrMalformed, what)
	}
	switch {
	case code == 0x00 && size >= 1 && size <= maxInlineKey:
	case code == 0x12 && size == 32:
	default:
		return fmt.Errorf("%w: %s: multihash code %#x with %d bytes is not a peer ID", ErrMalformed, what, code, size)
	}
	return nil
}

// uvarint decodes a minimally encoded uvarint; n <= 0 if b does not start
// with one.
func uvarint(b []byte) (uint64, int) {
	v, n := binary.Uvarint(b)
	if n <= 0 || n != uvarintLen(v) {
		return 0, -1
	}
	return v, n
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// checkBytes checks an opaque field: present (unless min is 0) and at most
// max bytes.
func checkBytes(b []byte, min, max int, what string) error {
	switch {
	case len(b) == 0 && min > 0:
		return fmt.Errorf("%w: %s missing", ErrMalformed, what)
	case len(b) > max:
		return fmt.Errorf("%w: %s of %d bytes, limit %d", ErrTooLarge, what, len(b), max)
	case len(b) < min:
		return fmt.Errorf("%w: %s of %d bytes, at least %d", ErrMalformed, what, len(b), min)
	}
	return nil
}

// checkAddrs checks a list of binary multiaddrs: at most max of them, each
// present and at most MaxAddr bytes. The multiaddrs are not parsed here (that
// needs the multiaddr protocol table); node drops those it cannot parse.
func checkAddrs(addrs [][]byte, min, max int, what string) error {
	if len(addrs) > max {
		return fmt.Errorf("%w: %d %s, limit %d", ErrTooLarge, len(addrs), what, max)
	}
	if len(addrs) < min {
		return fmt.Errorf("%w: %s missing", ErrMalformed, what)
	}
	for i, a := range addrs {
		if err := checkBytes(a, 1, MaxAddr, fmt.Sprintf("%s[%d]", what, i)); err != nil {
			return err
		}
	}
	return nil
}

// fixed copies b into a fixed-size array field; b must be empty (absent,
// allowed only when optional) or exactly len(dst) bytes, and not all zero.
func fixed(dst []byte, b []byte, optional bool, what string) error {
	switch {
	case len(b) == 0 && optional:
		return nil
	case len(b) == 0:
		return fmt.Errorf("%w: %s missing", ErrMalformed, what)
	case len(b) != len(dst):
		return fmt.Errorf("%w: %s of %d bytes, want %d", ErrMalformed, what, len(b), len(dst))
	case allZero(b):
		return fmt.Errorf("%w: %s is all zero", ErrMalformed, what)
	}
	copy(dst, b)
	return nil
}

// optional returns b[:] or nil when b is all zero: how an absent fixed-size
// field goes on the wire.
func optional(b []byte) []byte {
	if allZero(b) {
		return nil
	}
	return b
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// checkRequired refuses an all-zero fixed-size field.
func checkRequired(b []byte, what string) error {
	if allZero(b) {
		return fmt.Errorf("%w: %s missing", ErrMalformed, what)
	}
	return nil
}

// checkName checks a display name: at most max bytes of UTF-8, no control
// characters, no bidirectional formatting characters (which could make a
// name display as another), no white space at either end. Empty is allowed
// (no name).
func checkName(s string, max int, what string) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s of %d bytes, limit %d", ErrTooLarge, what, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrMalformed, what)
	}
	for _, r := range s {
		if unicode.IsControl(r) || isBidiControl(r) {
			return fmt.Errorf("%w: %s holds control character %U", ErrMalformed, what, r)
		}
	}
	if strings.TrimSpace(s) != s {
		return fmt.Errorf("%w: %s begins or ends with white space", ErrMalformed, what)
	}
	return nil
}

// isBidiControl reports the explicit bidirectional formatting characters
// (Unicode UAX #9): embeddings, overrides, isolates and marks.
func isBidiControl(r rune) bool {
	switch {
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return true
	case r == 0x200E || r == 0x200F || r == 0x061C:
		return true
	}
	return false
}

// checkTime checks a time on the wire, in Unix milliseconds.
func checkTime(ms int64, what string) error {
	if ms <= 0 {
		return fmt.Errorf("%w: %s missing", ErrMalformed, what)
	}
	if ms > MaxUnixMilli {
		return fmt.Errorf("%w: %s %d after the largest time %d", ErrMalformed, what, ms, int64(MaxUnixMilli))
	}
	return nil
}

// timeFromWire converts a wire time, keeping out-of-range values out of
// range for checkTime.
func timeFromWire(ms uint64) int64 {
	if ms > MaxUnixMilli {
		return MaxUnixMilli + 1
	}
	return int64(ms)
}
