package identity

import (
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Safety number constants (docs/PROTOCOL.md §8).
const (
	// LabelSafetyNumber starts the hash chain of each side's fingerprint.
	LabelSafetyNumber = "sealpost/v1/safety-number"
	// SafetyIterations is the number of SHA-512 iterations after the first
	// hash (Signal uses the same count).
	SafetyIterations = 5200
	// SafetyDigits is the number of digits of a safety number.
	SafetyDigits = 60
	// SafetyQRVersion starts the QR payload.
	SafetyQRVersion = 1
	// SafetyQRSize is the size of the QR payload:
	// version || scanner-side fingerprint || other-side fingerprint.
	SafetyQRSize = 1 + 2*safetyFingerprintSize

	safetyFingerprintSize = 32
	safetySideDigits      = SafetyDigits / 2
)

// ErrSafetyMismatch is returned when a scanned safety-number payload does
// not match: the two users do not see the same pair of identities.
var ErrSafetyMismatch = errors.New("identity: safety numbers do not match")

// SafetyNumber is the comparison value of a pair of identities, as seen by
// the local one. The 60 digits are the same on both sides (each side's 30
// digits, sorted); the QR payload names the local side first, and
// CompareQR expects the other device's payload.
type SafetyNumber struct {
	local, remote [safetyFingerprintSize]byte
	digits        string
}

// NewSafetyNumber computes the safety number of local (this user) and
// remote (the contact).
func NewSafetyNumber(local, remote UserID) *SafetyNumber {
	lh, rh := safetyHash(local), safetyHash(remote)
	ld, rd := safetySide(&lh), safetySide(&rh)
	s := &SafetyNumber{digits: ld + rd}
	if rd < ld {
		s.digits = rd + ld
	}
	copy(s.local[:], lh[:])
	copy(s.remote[:], rh[:])
	return s
}

// safetyHash is h_5200 where h_0 = SHA-512(label || 0x00 || key) and
// h_{i+1} = SHA-512(h_i || key).
func safetyHash(id UserID) [sha512.Size]byte {
	var buf [sha512.Size + len(id)]byte
	h := sha512.Sum512(labelled(LabelSafetyNumber, id[:]))
	copy(buf[sha512.Size:], id[:])
	for range SafetyIterations {
		copy(buf[:], h[:])
		h = sha512.Sum512(buf[:])
	}
	return h
}

// safetySide turns the first 30 bytes of a hash into 30 digits: six 5-byte
// big-endian integers, each reduced mod 100000 and written as 5 digits.
func safetySide(h *[sha512.Size]byte) string {
	var sb strings.Builder
	sb.Grow(safetySideDigits)
	var chunk [8]byte
	for i := range 6 {
		copy(chunk[3:], h[5*i:5*i+5])
		fmt.Fprintf(&sb, "%05d", binary.BigEndian.Uint64(chunk[:])%100000)
	}
	return sb.String()
}

// Digits returns the 60 digits without separators.
func (s *SafetyNumber) Digits() string { return s.digits }

// String returns the 60 digits in 12 groups of 5 separated by spaces.
func (s *SafetyNumber) String() string {
	var sb strings.Builder
	for i := 0; i < SafetyDigits; i += 5 {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(s.digits[i : i+5])
	}
	return sb.String()
}

// Matches reports whether text, with spaces, tabs and newlines removed, is
// this safety number. The comparison is constant time.
func (s *SafetyNumber) Matches(text string) bool {
	t := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, text)
	return subtle.ConstantTimeCompare([]byte(t), []byte(s.digits)) == 1
}

// QR returns the payload to show as a QR code:
// version (1) || local fingerprint (32) || remote fingerprint (32), where a
// fingerprint is the first 32 bytes of that side's hash.
func (s *SafetyNumber) QR() []byte {
	b := make([]byte, 0, SafetyQRSize)
	b = append(b, SafetyQRVersion)
	b = append(b, s.local[:]...)
	return append(b, s.remote[:]...)
}

// CompareQR checks a payload scanned from the contact's device: its first
// fingerprint must be our remote one and its second our local one. It
// returns nil on a match, ErrSafetyMismatch on a mismatch, and an error
// wrapping ErrMalformed or ErrVersion for a payload it cannot read.
func (s *SafetyNumber) CompareQR(scanned []byte) error {
	if len(scanned) != SafetyQRSize {
		return fmt.Errorf("%w: safety-number payload of %d bytes, want %d", ErrMalformed, len(scanned), SafetyQRSize)
	}
	if scanned[0] != SafetyQRVersion {
		return fmt.Errorf("%w: safety-number payload version %d", ErrVersion, scanned[0])
	}
	want := make([]byte, 0, 2*safetyFingerprintSize)
	want = append(want, s.remote[:]...)
	want = append(want, s.local[:]...)
	if subtle.ConstantTimeCompare(scanned[1:], want) != 1 {
		return ErrSafetyMismatch
	}
	return nil
}
