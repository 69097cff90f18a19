package prekey

import (
	"crypto/mlkem"
	"fmt"
	"slices"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/internal/ecc"
)

// SignedPrekey is a device's medium-term X25519 prekey, signed by the
// identity together with the protocol versions the device supports.
type SignedPrekey struct {
	record
	versions []uint8
	key      [X25519KeySize]byte
}

// appendBody appends what the signature covers after the label:
// id || created_at || len8(versions) || versions || key.
func (p *SignedPrekey) appendBody(b []byte) []byte {
	b = p.appendHeader(b)
	b = append(b, byte(len(p.versions)))
	b = append(b, p.versions...)
	return append(b, p.key[:]...)
}

// Versions returns the protocol versions the device supports, increasing.
func (p *SignedPrekey) Versions() []uint8 { return slices.Clone(p.versions) }

// Key returns the X25519 public key.
func (p *SignedPrekey) Key() []byte { return slices.Clone(p.key[:]) }

// Verify checks the versions, the key (canonical, not of low order) and the
// signature by the identity v. It does not check the age; Bundle.Verify
// does.
func (p *SignedPrekey) Verify(v identity.Verifier) error {
	if err := checkVersions(p.versions); err != nil {
		return err
	}
	if err := ecc.CheckX25519Public(p.key[:]); err != nil {
		return fmt.Errorf("%w: signed prekey: %w", ErrInvalid, err)
	}
	if !v.Verify(LabelSignedPrekey, p.appendBody(nil), p.sig[:]) {
		return fmt.Errorf("%w: signed prekey signature", ErrInvalid)
	}
	return nil
}

// AppendBinary appends the encoding: the signed body, then the signature.
func (p *SignedPrekey) AppendBinary(b []byte) []byte {
	return append(p.appendBody(b), p.sig[:]...)
}

// MarshalBinary returns the encoding.
func (p *SignedPrekey) MarshalBinary() ([]byte, error) {
	return p.AppendBinary(make([]byte, 0, MaxSignedPrekeySize)), nil
}

// ParseSignedPrekey parses the encoding; call Verify before trusting it.
func ParseSignedPrekey(b []byte) (*SignedPrekey, error) {
	p, rest, err := readSignedPrekey(b)
	if err != nil {
		return nil, err
	}
	return p, noTrailing(rest, "signed prekey")
}

func readSignedPrekey(b []byte) (*SignedPrekey, []byte, error) {
	if len(b) < headerSize+1 {
		return nil, nil, fmt.Errorf("%w: signed prekey too short", ErrMalformed)
	}
	p := &SignedPrekey{}
	b, err := p.readHeader(b)
	if err != nil {
		return nil, nil, err
	}
	n := int(b[0])
	b = b[1:]
	if n == 0 || n > MaxVersions {
		return nil, nil, fmt.Errorf("%w: %d protocol versions", ErrMalformed, n)
	}
	if len(b) < n+X25519KeySize+sigSize {
		return nil, nil, fmt.Errorf("%w: signed prekey too short", ErrMalformed)
	}
	p.versions = slices.Clone(b[:n])
	if err := checkVersions(p.versions); err != nil {
		return nil, nil, err
	}
	b = b[n:]
	b = b[copy(p.key[:], b):]
	b = b[copy(p.sig[:], b):]
	return p, b, nil
}

// KEMPrekey is a device's signed last-resort ML-KEM-768 key, used when no
// one-time prekey is available.
type KEMPrekey struct {
	record
	key kemKey
}

// appendBody appends id || created_at || encapsulation key.
func (p *KEMPrekey) appendBody(b []byte) []byte {
	return append(p.appendHeader(b), p.key.raw...)
}

// Key returns the ML-KEM-768 encapsulation key bytes.
func (p *KEMPrekey) Key() []byte { return slices.Clone(p.key.raw) }

// EncapsulationKey returns the parsed encapsulation key, or an error
// wrapping ErrInvalid if it fails the ML-KEM check.
func (p *KEMPrekey) EncapsulationKey() (*mlkem.EncapsulationKey768, error) {
	return p.key.parsed()
}

// Verify checks the ML-KEM-768 key (length, every coefficient reduced) and
// the signature by the identity v. It does not check the age.
func (p *KEMPrekey) Verify(v identity.Verifier) error {
	if _, err := p.key.parsed(); err != nil {
		return fmt.Errorf("last-resort KEM prekey: %w", err)
	}
	if !v.Verify(LabelKEMPrekey, p.appendBody(nil), p.sig[:]) {
		return fmt.Errorf("%w: last-resort KEM prekey signature", ErrInvalid)
	}
	return nil
}

// AppendBinary appends the encoding: the signed body, then the signature.
func (p *KEMPrekey) AppendBinary(b []byte) []byte {
	return append(p.appendBody(b), p.sig[:]...)
}

// MarshalBinary returns the encoding (KEMPrekeySize bytes).
func (p *KEMPrekey) MarshalBinary() ([]byte, error) {
	return p.AppendBinary(make([]byte, 0, KEMPrekeySize)), nil
}

// ParseKEMPrekey parses the encoding; call Verify before trusting it.
func ParseKEMPrekey(b []byte) (*KEMPrekey, error) {
	p, rest, err := readKEMPrekey(b)
	if err != nil {
		return nil, err
	}
	return p, noTrailing(rest, "KEM prekey")
}

func readKEMPrekey(b []byte) (*KEMPrekey, []byte, error) {
	if len(b) < KEMPrekeySize {
		return nil, nil, fmt.Errorf("%w: KEM prekey too short", ErrMalformed)
	}
	p := &KEMPrekey{}
	b, err := p.readHeader(b)
	if err != nil {
		return nil, nil, err
	}
	p.key = newKEMKey(slices.Clone(b[:KEMKeySize]))
	b = b[KEMKeySize:]
	b = b[copy(p.sig[:], b):]
	return p, b, nil
}

// OneTimePrekey is a signed pair of an X25519 key and an ML-KEM-768 key,
// handed out once and consumed by the first message that uses it.
type OneTimePrekey struct {
	record
	dh  [X25519KeySize]byte
	kem kemKey
}

// appendBody appends id || created_at || X25519 key || encapsulation key.
func (p *OneTimePrekey) appendBody(b []byte) []byte {
	b = append(p.appendHeader(b), p.dh[:]...)
	return append(b, p.kem.raw...)
}

// DHKey returns the X25519 public key.
func (p *OneTimePrekey) DHKey() []byte { return slices.Clone(p.dh[:]) }

// KEMKey returns the ML-KEM-768 encapsulation key bytes.
func (p *OneTimePrekey) KEMKey() []byte { return slices.Clone(p.kem.raw) }

// EncapsulationKey returns the parsed encapsulation key, or an error
// wrapping ErrInvalid if it fails the ML-KEM check.
func (p *OneTimePrekey) EncapsulationKey() (*mlkem.EncapsulationKey768, error) {
	return p.kem.parsed()
}

// Verify checks both keys and the signature by the identity v. It does not
// check the age.
func (p *OneTimePrekey) Verify(v identity.Verifier) error {
	if err := ecc.CheckX25519Public(p.dh[:]); err != nil {
		return fmt.Errorf("%w: one-time prekey: %w", ErrInvalid, err)
	}
	if _, err := p.kem.parsed(); err != nil {
		return fmt.Errorf("one-time prekey: %w", err)
	}
	if !v.Verify(LabelOneTimePrekey, p.appendBody(nil), p.sig[:]) {
		return fmt.Errorf("%w: one-time prekey signature", ErrInvalid)
	}
	return nil
}

// AppendBinary appends the encoding: the signed body, then the signature.
func (p *OneTimePrekey) AppendBinary(b []byte) []byte {
	return append(p.appendBody(b), p.sig[:]...)
}

// MarshalBinary returns the encoding (OneTimePrekeySize bytes).
func (p *OneTimePrekey) MarshalBinary() ([]byte, error) {
	return p.AppendBinary(make([]byte, 0, OneTimePrekeySize)), nil
}

// ParseOneTimePrekey parses the encoding; call Verify before trusting it.
func ParseOneTimePrekey(b []byte) (*OneTimePrekey, error) {
	p, rest, err := readOneTimePrekey(b)
	if err != nil {
		return nil, err
	}
	return p, noTrailing(rest, "one-time prekey")
}

func readOneTimePrekey(b []byte) (*OneTimePrekey, []byte, error) {
	if len(b) < OneTimePrekeySize {
		return nil, nil, fmt.Errorf("%w: one-time prekey too short", ErrMalformed)
	}
	p := &OneTimePrekey{}
	b, err := p.readHeader(b)
	if err != nil {
		return nil, nil, err
	}
	b = b[copy(p.dh[:], b):]
	p.kem = newKEMKey(slices.Clone(b[:KEMKeySize]))
	b = b[KEMKeySize:]
	b = b[copy(p.sig[:], b):]
	return p, b, nil
}

// kemKey is an ML-KEM-768 encapsulation key as received, with its parsed
// form when it passes the ML-KEM check. Parsing expands the key's matrix,
// which costs about as much as an encapsulation, so it is done once, when
// the record is made or parsed.
type kemKey struct {
	raw []byte
	ek  *mlkem.EncapsulationKey768 // nil if raw fails the check
}

func newKEMKey(raw []byte) kemKey {
	ek, err := mlkem.NewEncapsulationKey768(raw)
	if err != nil {
		ek = nil
	}
	return kemKey{raw: raw, ek: ek}
}

// parsed returns the parsed key, or the reason raw fails the ML-KEM check.
func (k *kemKey) parsed() (*mlkem.EncapsulationKey768, error) {
	if k.ek != nil {
		return k.ek, nil
	}
	if len(k.raw) != KEMKeySize {
		return nil, fmt.Errorf("%w: ML-KEM-768 key of %d bytes", ErrInvalid, len(k.raw))
	}
	ek, err := mlkem.NewEncapsulationKey768(k.raw)
	if err != nil {
		return nil, fmt.Errorf("%w: ML-KEM-768 key: %v", ErrInvalid, err)
	}
	return ek, nil
}

func noTrailing(rest []byte, what string) error {
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes after %s", ErrMalformed, len(rest), what)
	}
	return nil
}
