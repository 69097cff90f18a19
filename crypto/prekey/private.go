package prekey

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/subtle"
	"fmt"
	"io"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/internal/ecc"
)

// PrivateVersion starts the store form of every private prekey.
const PrivateVersion = 1

// Sizes of the store forms.
const (
	// KEMPrekeyPrivateSize: version || ML-KEM seed || public encoding.
	KEMPrekeyPrivateSize = 1 + KEMSeedSize + KEMPrekeySize
	// OneTimePrekeyPrivateSize: version || X25519 private || ML-KEM seed ||
	// public encoding.
	OneTimePrekeyPrivateSize = 1 + X25519KeySize + KEMSeedSize + OneTimePrekeySize
	// MaxSignedPrekeyPrivateSize: version || X25519 private || public
	// encoding.
	MaxSignedPrekeyPrivateSize = 1 + X25519KeySize + MaxSignedPrekeySize
)

// SignedPrekeyPrivate is a signed prekey with its private key.
type SignedPrekeyPrivate struct {
	pub *SignedPrekey
	key *ecdh.PrivateKey
}

// NewSignedPrekey makes a signed prekey with ID keyID, listing versions
// (increasing, 1 to MaxVersions entries), created at now, with a private key
// of 32 bytes read from rand.
func NewSignedPrekey(id *identity.Private, keyID uint32, versions []uint8, now time.Time, rand io.Reader) (*SignedPrekeyPrivate, error) {
	if err := checkVersions(versions); err != nil {
		return nil, err
	}
	r, err := newRecord(keyID, now)
	if err != nil {
		return nil, err
	}
	key, err := readX25519(rand)
	if err != nil {
		return nil, err
	}
	p := &SignedPrekey{record: r, versions: append([]uint8(nil), versions...)}
	copy(p.key[:], key.PublicKey().Bytes())
	copy(p.sig[:], id.Sign(LabelSignedPrekey, p.appendBody(nil)))
	return &SignedPrekeyPrivate{pub: p, key: key}, nil
}

// Public returns the signed public record.
func (k *SignedPrekeyPrivate) Public() *SignedPrekey { return k.pub }

// PrivateKey returns the X25519 private key (for PQXDH and to start the
// responder's ratchet).
func (k *SignedPrekeyPrivate) PrivateKey() *ecdh.PrivateKey { return k.key }

// MarshalBinary returns the store form: version || X25519 private key ||
// public encoding.
func (k *SignedPrekeyPrivate) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, MaxSignedPrekeyPrivateSize)
	b = append(b, PrivateVersion)
	b = append(b, k.key.Bytes()...)
	return k.pub.AppendBinary(b), nil
}

// ParseSignedPrekeyPrivate parses the store form and checks that the private
// key matches the public one.
func ParseSignedPrekeyPrivate(b []byte) (*SignedPrekeyPrivate, error) {
	if len(b) < 1+X25519KeySize || len(b) > MaxSignedPrekeyPrivateSize {
		return nil, fmt.Errorf("%w: private signed prekey of %d bytes", ErrMalformed, len(b))
	}
	if b[0] != PrivateVersion {
		return nil, fmt.Errorf("%w: private signed prekey version %d", ErrVersion, b[0])
	}
	key, err := ecdh.X25519().NewPrivateKey(b[1 : 1+X25519KeySize])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	pub, err := ParseSignedPrekey(b[1+X25519KeySize:])
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(key.PublicKey().Bytes(), pub.key[:]) != 1 {
		return nil, fmt.Errorf("%w: private signed prekey does not match its public key", ErrMalformed)
	}
	return &SignedPrekeyPrivate{pub: pub, key: key}, nil
}

// KEMPrekeyPrivate is a last-resort ML-KEM-768 key with its decapsulation
// key.
type KEMPrekeyPrivate struct {
	pub *KEMPrekey
	key *mlkem.DecapsulationKey768
}

// NewKEMPrekey makes a signed last-resort ML-KEM-768 key with ID keyID,
// created at now, from a 64-byte seed read from rand.
func NewKEMPrekey(id *identity.Private, keyID uint32, now time.Time, rand io.Reader) (*KEMPrekeyPrivate, error) {
	r, err := newRecord(keyID, now)
	if err != nil {
		return nil, err
	}
	dk, err := readKEM(rand)
	if err != nil {
		return nil, err
	}
	ek := dk.EncapsulationKey()
	p := &KEMPrekey{record: r, key: kemKey{raw: ek.Bytes(), ek: ek}}
	copy(p.sig[:], id.Sign(LabelKEMPrekey, p.appendBody(nil)))
	return &KEMPrekeyPrivate{pub: p, key: dk}, nil
}

// Public returns the signed public record.
func (k *KEMPrekeyPrivate) Public() *KEMPrekey { return k.pub }

// DecapsulationKey returns the ML-KEM-768 decapsulation key.
func (k *KEMPrekeyPrivate) DecapsulationKey() *mlkem.DecapsulationKey768 { return k.key }

// MarshalBinary returns the store form: version || ML-KEM seed (64) ||
// public encoding.
func (k *KEMPrekeyPrivate) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, KEMPrekeyPrivateSize)
	b = append(b, PrivateVersion)
	b = append(b, k.key.Bytes()...)
	return k.pub.AppendBinary(b), nil
}

// ParseKEMPrekeyPrivate parses the store form and checks that the
// decapsulation key matches the public one.
func ParseKEMPrekeyPrivate(b []byte) (*KEMPrekeyPrivate, error) {
	if len(b) != KEMPrekeyPrivateSize {
		return nil, fmt.Errorf("%w: private KEM prekey of %d bytes", ErrMalformed, len(b))
	}
	if b[0] != PrivateVersion {
		return nil, fmt.Errorf("%w: private KEM prekey version %d", ErrVersion, b[0])
	}
	dk, err := mlkem.NewDecapsulationKey768(b[1 : 1+KEMSeedSize])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	pub, err := ParseKEMPrekey(b[1+KEMSeedSize:])
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(dk.EncapsulationKey().Bytes(), pub.key.raw) != 1 {
		return nil, fmt.Errorf("%w: private KEM prekey does not match its public key", ErrMalformed)
	}
	return &KEMPrekeyPrivate{pub: pub, key: dk}, nil
}

// OneTimePrekeyPrivate is a one-time prekey with both private keys.
type OneTimePrekeyPrivate struct {
	pub *OneTimePrekey
	dh  *ecdh.PrivateKey
	kem *mlkem.DecapsulationKey768
}

// NewOneTimePrekeys makes n (1 to MaxOneTimeBatch) signed one-time prekeys
// with IDs firstID, firstID+1, ..., created at now. For each it reads 32
// bytes (X25519) and then 64 bytes (ML-KEM seed) from rand.
func NewOneTimePrekeys(id *identity.Private, firstID uint32, n int, now time.Time, rand io.Reader) ([]*OneTimePrekeyPrivate, error) {
	if n < 1 || n > MaxOneTimeBatch {
		return nil, fmt.Errorf("prekey: batch of %d one-time prekeys, want 1 to %d", n, MaxOneTimeBatch)
	}
	if uint64(firstID)+uint64(n)-1 > uint64(^uint32(0)) {
		return nil, fmt.Errorf("prekey: one-time prekey IDs from %d overflow", firstID)
	}
	out := make([]*OneTimePrekeyPrivate, 0, n)
	for i := range n {
		r, err := newRecord(firstID+uint32(i), now)
		if err != nil {
			return nil, err
		}
		dh, err := readX25519(rand)
		if err != nil {
			return nil, err
		}
		kem, err := readKEM(rand)
		if err != nil {
			return nil, err
		}
		ek := kem.EncapsulationKey()
		p := &OneTimePrekey{record: r, kem: kemKey{raw: ek.Bytes(), ek: ek}}
		copy(p.dh[:], dh.PublicKey().Bytes())
		copy(p.sig[:], id.Sign(LabelOneTimePrekey, p.appendBody(nil)))
		out = append(out, &OneTimePrekeyPrivate{pub: p, dh: dh, kem: kem})
	}
	return out, nil
}

// Public returns the signed public record.
func (k *OneTimePrekeyPrivate) Public() *OneTimePrekey { return k.pub }

// PrivateKey returns the X25519 private key.
func (k *OneTimePrekeyPrivate) PrivateKey() *ecdh.PrivateKey { return k.dh }

// DecapsulationKey returns the ML-KEM-768 decapsulation key.
func (k *OneTimePrekeyPrivate) DecapsulationKey() *mlkem.DecapsulationKey768 { return k.kem }

// MarshalBinary returns the store form: version || X25519 private key (32)
// || ML-KEM seed (64) || public encoding.
func (k *OneTimePrekeyPrivate) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, OneTimePrekeyPrivateSize)
	b = append(b, PrivateVersion)
	b = append(b, k.dh.Bytes()...)
	b = append(b, k.kem.Bytes()...)
	return k.pub.AppendBinary(b), nil
}

// ParseOneTimePrekeyPrivate parses the store form and checks that both
// private keys match the public ones.
func ParseOneTimePrekeyPrivate(b []byte) (*OneTimePrekeyPrivate, error) {
	if len(b) != OneTimePrekeyPrivateSize {
		return nil, fmt.Errorf("%w: private one-time prekey of %d bytes", ErrMalformed, len(b))
	}
	if b[0] != PrivateVersion {
		return nil, fmt.Errorf("%w: private one-time prekey version %d", ErrVersion, b[0])
	}
	b = b[1:]
	dh, err := ecdh.X25519().NewPrivateKey(b[:X25519KeySize])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	b = b[X25519KeySize:]
	kem, err := mlkem.NewDecapsulationKey768(b[:KEMSeedSize])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	pub, err := ParseOneTimePrekey(b[KEMSeedSize:])
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(dh.PublicKey().Bytes(), pub.dh[:]) != 1 ||
		subtle.ConstantTimeCompare(kem.EncapsulationKey().Bytes(), pub.kem.raw) != 1 {
		return nil, fmt.Errorf("%w: private one-time prekey does not match its public keys", ErrMalformed)
	}
	return &OneTimePrekeyPrivate{pub: pub, dh: dh, kem: kem}, nil
}

// readX25519 reads a 32-byte X25519 private key from rand. A key whose
// public half fails the public-key checks (probability about 2^-250) is
// refused rather than published.
func readX25519(rand io.Reader) (*ecdh.PrivateKey, error) {
	var seed [X25519KeySize]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("prekey: read random: %w", err)
	}
	k, err := ecdh.X25519().NewPrivateKey(seed[:])
	clear(seed[:])
	if err != nil {
		return nil, fmt.Errorf("prekey: X25519 key: %w", err)
	}
	if err := ecc.CheckX25519Public(k.PublicKey().Bytes()); err != nil {
		return nil, fmt.Errorf("prekey: generated X25519 key: %w", err)
	}
	return k, nil
}

// readKEM reads a 64-byte ML-KEM-768 seed from rand.
func readKEM(rand io.Reader) (*mlkem.DecapsulationKey768, error) {
	var seed [KEMSeedSize]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("prekey: read random: %w", err)
	}
	k, err := mlkem.NewDecapsulationKey768(seed[:])
	clear(seed[:])
	if err != nil {
		return nil, fmt.Errorf("prekey: ML-KEM key: %w", err)
	}
	return k, nil
}
