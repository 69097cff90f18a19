package mls

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// CipherSuite names the algorithms of a group (RFC 9420 §5.1, §17.1).
type CipherSuite uint16

// The cipher suites this package implements. The RFC 9420 suites with
// X448 and Ed448 (0x0004 and 0x0006) are not implemented: the standard
// library has neither.
const (
	MLS128DHKEMX25519AES128GCMSHA256Ed25519        CipherSuite = 0x0001
	MLS128DHKEMP256AES128GCMSHA256P256             CipherSuite = 0x0002
	MLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519 CipherSuite = 0x0003
	MLS256DHKEMP521AES256GCMSHA512P521             CipherSuite = 0x0005
	MLS256DHKEMP384AES256GCMSHA384P384             CipherSuite = 0x0007

	// MLS128MLKEM768X25519AES128GCMSHA256Ed25519 is the hybrid
	// post-quantum suite MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519
	// of draft-ietf-mls-pq-ciphersuites-06 (HPKE KEM 0x647A, X-Wing; KDF
	// HKDF-SHA256; AEAD AES-128-GCM; SHA-256; Ed25519). The draft assigns
	// it no code point yet, so it takes one from the private-use range.
	MLS128MLKEM768X25519AES128GCMSHA256Ed25519 CipherSuite = 0xF001
)

// DefaultSuite is the suite sealpost's groups use.
const DefaultSuite = MLS128MLKEM768X25519AES128GCMSHA256Ed25519

// String returns the suite's RFC name, or its number.
func (cs CipherSuite) String() string {
	if s, err := lookupSuite(cs); err == nil {
		return s.name
	}
	return fmt.Sprintf("0x%04x", uint16(cs))
}

// Supported reports whether this package implements cs.
func (cs CipherSuite) Supported() bool {
	_, err := lookupSuite(cs)
	return err == nil
}

// signatureScheme is a suite's signature algorithm.
type signatureScheme int

const (
	sigEd25519 signatureScheme = iota
	sigECDSAP256
	sigECDSAP384
	sigECDSAP521
)

// suite holds the primitives of a cipher suite.
type suite struct {
	id      CipherSuite
	name    string
	newHash func() hash.Hash
	nh      int // KDF.Nh, the hash size
	kem     hpke.KEM
	kdf     hpke.KDF
	aead    hpke.AEAD
	nk, nn  int // AEAD key and nonce sizes
	newAEAD func(key []byte) (cipher.AEAD, error)
	sig     signatureScheme
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

var suites = []*suite{
	{id: MLS128DHKEMX25519AES128GCMSHA256Ed25519, name: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
		newHash: sha256.New, nh: 32, kem: hpke.DHKEM(ecdh.X25519()), kdf: hpke.HKDFSHA256(), aead: hpke.AES128GCM(),
		nk: 16, nn: 12, newAEAD: newGCM, sig: sigEd25519},
	{id: MLS128DHKEMP256AES128GCMSHA256P256, name: "MLS_128_DHKEMP256_AES128GCM_SHA256_P256",
		newHash: sha256.New, nh: 32, kem: hpke.DHKEM(ecdh.P256()), kdf: hpke.HKDFSHA256(), aead: hpke.AES128GCM(),
		nk: 16, nn: 12, newAEAD: newGCM, sig: sigECDSAP256},
	{id: MLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519, name: "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519",
		newHash: sha256.New, nh: 32, kem: hpke.DHKEM(ecdh.X25519()), kdf: hpke.HKDFSHA256(), aead: hpke.ChaCha20Poly1305(),
		nk: 32, nn: 12, newAEAD: chacha20poly1305.New, sig: sigEd25519},
	{id: MLS256DHKEMP521AES256GCMSHA512P521, name: "MLS_256_DHKEMP521_AES256GCM_SHA512_P521",
		newHash: sha512.New, nh: 64, kem: hpke.DHKEM(ecdh.P521()), kdf: hpke.HKDFSHA512(), aead: hpke.AES256GCM(),
		nk: 32, nn: 12, newAEAD: newGCM, sig: sigECDSAP521},
	{id: MLS256DHKEMP384AES256GCMSHA384P384, name: "MLS_256_DHKEMP384_AES256GCM_SHA384_P384",
		newHash: sha512.New384, nh: 48, kem: hpke.DHKEM(ecdh.P384()), kdf: hpke.HKDFSHA384(), aead: hpke.AES256GCM(),
		nk: 32, nn: 12, newAEAD: newGCM, sig: sigECDSAP384},
	{id: MLS128MLKEM768X25519AES128GCMSHA256Ed25519, name: "MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519",
		newHash: sha256.New, nh: 32, kem: hpke.MLKEM768X25519(), kdf: hpke.HKDFSHA256(), aead: hpke.AES128GCM(),
		nk: 16, nn: 12, newAEAD: newGCM, sig: sigEd25519},
}

func lookupSuite(cs CipherSuite) (*suite, error) {
	for _, s := range suites {
		if s.id == cs {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: cipher suite 0x%04x", ErrUnsupported, uint16(cs))
}

// hash returns Hash(b).
func (s *suite) hash(b []byte) []byte {
	h := s.newHash()
	h.Write(b)
	return h.Sum(make([]byte, 0, s.nh))
}

// mac returns HMAC(key, b).
func (s *suite) mac(key, b []byte) []byte {
	m := hmac.New(s.newHash, key)
	m.Write(b)
	return m.Sum(make([]byte, 0, s.nh))
}

// verifyMAC compares mac against HMAC(key, b) in constant time.
func (s *suite) verifyMAC(key, b, mac []byte) bool {
	return hmac.Equal(s.mac(key, b), mac)
}

// extract is KDF.Extract(salt, ikm).
func (s *suite) extract(salt, ikm []byte) []byte {
	prk, err := hkdf.Extract(s.newHash, ikm, salt)
	if err != nil {
		panic("mls: hkdf extract: " + err.Error())
	}
	return prk
}

// expandWithLabel is ExpandWithLabel(secret, label, context, length)
// (RFC 9420 §8). length is at most 255 hash blocks, which every caller's
// constant length is.
func (s *suite) expandWithLabel(secret []byte, label string, context []byte, length int) []byte {
	info := make([]byte, 0, 2+1+len(labelPrefix)+len(label)+4+len(context))
	w := writer{b: info}
	w.u16(uint16(length))
	w.varint(len(labelPrefix) + len(label))
	w.b = append(w.b, labelPrefix...)
	w.b = append(w.b, label...)
	w.opaque(context)
	out, err := hkdf.Expand(s.newHash, secret, string(w.b), length)
	if err != nil {
		panic("mls: hkdf expand: " + err.Error())
	}
	return out
}

// labelPrefix starts every label (RFC 9420 §5.1.2, §5.1.3, §8).
const labelPrefix = "MLS 1.0 "

// deriveSecret is DeriveSecret(secret, label).
func (s *suite) deriveSecret(secret []byte, label string) []byte {
	return s.expandWithLabel(secret, label, nil, s.nh)
}

// deriveTreeSecret is DeriveTreeSecret(secret, label, generation, length).
func (s *suite) deriveTreeSecret(secret []byte, label string, generation uint32, length int) []byte {
	var g [4]byte
	binary.BigEndian.PutUint32(g[:], generation)
	return s.expandWithLabel(secret, label, g[:], length)
}

// refHash is RefHash(label, value) (RFC 9420 §5.2); label is used as
// given, without the "MLS 1.0 " prefix.
func (s *suite) refHash(label string, value []byte) []byte {
	w := writer{b: make([]byte, 0, 8+len(label)+len(value))}
	w.opaque([]byte(label))
	w.opaque(value)
	return s.hash(w.b)
}

// labeled encodes the SignContent / EncryptContext struct: the prefixed
// label and the content, each as opaque<V>.
func labeled(label string, content []byte) []byte {
	w := writer{b: make([]byte, 0, 8+len(labelPrefix)+len(label)+len(content))}
	w.varint(len(labelPrefix) + len(label))
	w.b = append(w.b, labelPrefix...)
	w.b = append(w.b, label...)
	w.opaque(content)
	return w.b
}

// signatureDigest hashes msg for the ECDSA schemes.
func (s *suite) signatureDigest(msg []byte) []byte {
	switch s.sig {
	case sigECDSAP256:
		h := sha256.Sum256(msg)
		return h[:]
	case sigECDSAP384:
		h := sha512.Sum384(msg)
		return h[:]
	default:
		h := sha512.Sum512(msg)
		return h[:]
	}
}

func (s *suite) curve() elliptic.Curve {
	switch s.sig {
	case sigECDSAP256:
		return elliptic.P256()
	case sigECDSAP384:
		return elliptic.P384()
	default:
		return elliptic.P521()
	}
}

// signer is a parsed signature private key.
type signer struct {
	ed ed25519.PrivateKey
	ec *ecdsa.PrivateKey
}

// parseSigner parses a signature private key in the suite's encoding: the
// 32-byte Ed25519 seed, or the ECDSA scalar as a big-endian field element.
func (s *suite) parseSigner(priv []byte) (*signer, error) {
	if s.sig == sigEd25519 {
		if len(priv) != ed25519.SeedSize {
			return nil, fmt.Errorf("%w: Ed25519 private key of %d bytes", ErrMalformed, len(priv))
		}
		return &signer{ed: ed25519.NewKeyFromSeed(priv)}, nil
	}
	// Some encoders drop the leading zero bytes of the scalar.
	if size := (s.curve().Params().BitSize + 7) / 8; len(priv) < size {
		priv = append(make([]byte, size-len(priv)), priv...)
	}
	k, err := ecdsa.ParseRawPrivateKey(s.curve(), priv)
	if err != nil {
		return nil, fmt.Errorf("%w: ECDSA private key: %v", ErrMalformed, err)
	}
	return &signer{ec: k}, nil
}

// publicKey returns the encoded public key of sg.
func (sg *signer) publicKey() []byte {
	if sg.ed != nil {
		return append([]byte(nil), sg.ed.Public().(ed25519.PublicKey)...)
	}
	b, err := sg.ec.PublicKey.Bytes()
	if err != nil {
		panic("mls: ECDSA public key: " + err.Error())
	}
	return b
}

// generateSignatureKey draws a signature private key from rand.
func (s *suite) generateSignatureKey(random io.Reader) ([]byte, error) {
	if s.sig == sigEd25519 {
		seed := make([]byte, ed25519.SeedSize)
		if _, err := io.ReadFull(random, seed); err != nil {
			return nil, err
		}
		return seed, nil
	}
	size := (s.curve().Params().BitSize + 7) / 8
	for range 64 {
		b := make([]byte, size)
		if _, err := io.ReadFull(random, b); err != nil {
			return nil, err
		}
		if s.sig == sigECDSAP521 {
			b[0] &= 1 // 521 bits
		}
		if _, err := ecdsa.ParseRawPrivateKey(s.curve(), b); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("mls: random source gave no valid ECDSA scalar")
}

// signWithLabel is SignWithLabel (RFC 9420 §5.1.2). ECDSA signing draws
// its nonce from crypto/rand; Ed25519 is deterministic.
func (s *suite) signWithLabel(sg *signer, label string, content []byte) ([]byte, error) {
	return s.sign(sg, labeled(label, content))
}

// signEncoded is SignWithLabel(label, content) for the content enc writes,
// encoded once, in place in the SignContent: it returns the content and
// its signature. The content has capacity for spare more bytes; sizeHint
// is about its size.
func (s *suite) signEncoded(sg *signer, label string, sizeHint, spare int, enc func(*writer)) (content, sig []byte, err error) {
	w := &writer{b: make([]byte, 0, 8+len(labelPrefix)+len(label)+sizeHint+spare)}
	w.varint(len(labelPrefix) + len(label))
	w.b = append(w.b, labelPrefix...)
	w.b = append(w.b, label...)
	start := len(w.b)
	w.vector(func() { enc(w) })
	msg, err := w.result()
	if err != nil {
		return nil, nil, err
	}
	r := reader{b: msg[start:]}
	content = msg[len(msg)-r.length(len(msg)):] // with the spare capacity
	if sig, err = s.sign(sg, msg); err != nil {
		return nil, nil, err
	}
	return content, sig, nil
}

// sign signs an encoded SignContent.
func (s *suite) sign(sg *signer, msg []byte) ([]byte, error) {
	if s.sig == sigEd25519 {
		if sg.ed == nil {
			return nil, errors.New("mls: signer does not match the cipher suite")
		}
		return ed25519.Sign(sg.ed, msg), nil
	}
	if sg.ec == nil || sg.ec.Curve != s.curve() {
		return nil, errors.New("mls: signer does not match the cipher suite")
	}
	return ecdsa.SignASN1(rand.Reader, sg.ec, s.signatureDigest(msg))
}

// verifyWithLabel is VerifyWithLabel (RFC 9420 §5.1.2).
func (s *suite) verifyWithLabel(pub []byte, label string, content, sig []byte) bool {
	msg := labeled(label, content)
	if s.sig == sigEd25519 {
		return len(pub) == ed25519.PublicKeySize && len(sig) == ed25519.SignatureSize &&
			ed25519.Verify(pub, msg, sig)
	}
	k, err := ecdsa.ParseUncompressedPublicKey(s.curve(), pub)
	if err != nil {
		return false
	}
	return ecdsa.VerifyASN1(k, s.signatureDigest(msg), sig)
}

// validSignatureKey reports whether pub is a well-formed signature public
// key for the suite.
func (s *suite) validSignatureKey(pub []byte) bool {
	if s.sig == sigEd25519 {
		return len(pub) == ed25519.PublicKeySize
	}
	_, err := ecdsa.ParseUncompressedPublicKey(s.curve(), pub)
	return err == nil
}

// validHPKEKey reports whether pub is a well-formed HPKE public key.
func (s *suite) validHPKEKey(pub []byte) bool {
	_, err := s.kem.NewPublicKey(pub)
	return err == nil
}

// deriveKeyPair is KEM.DeriveKeyPair(secret): it returns the serialized
// private and public keys.
func (s *suite) deriveKeyPair(secret []byte) (priv, pub []byte, err error) {
	k, err := s.kem.DeriveKeyPair(secret)
	if err != nil {
		return nil, nil, err
	}
	priv, err = k.Bytes()
	if err != nil {
		return nil, nil, err
	}
	return priv, k.PublicKey().Bytes(), nil
}

// generateHPKEKey draws a key pair from rand through DeriveKeyPair.
func (s *suite) generateHPKEKey(random io.Reader) (priv, pub []byte, err error) {
	ikm := make([]byte, s.nh)
	if _, err := io.ReadFull(random, ikm); err != nil {
		return nil, nil, err
	}
	return s.deriveKeyPair(ikm)
}

// parseHPKEPrivate parses a serialized HPKE private key. NIST curve
// scalars shorter than the field size (some encoders drop leading zeros)
// are left-padded.
func (s *suite) parseHPKEPrivate(priv []byte) (hpke.PrivateKey, error) {
	if s.sig != sigEd25519 {
		if size := (s.curve().Params().BitSize + 7) / 8; len(priv) < size {
			priv = append(make([]byte, size-len(priv)), priv...)
		}
	}
	return s.kem.NewPrivateKey(priv)
}

// hpkePublicOf returns the public key of a serialized HPKE private key.
func (s *suite) hpkePublicOf(priv []byte) ([]byte, error) {
	k, err := s.parseHPKEPrivate(priv)
	if err != nil {
		return nil, err
	}
	return k.PublicKey().Bytes(), nil
}

// encryptWithLabel is EncryptWithLabel (RFC 9420 §5.1.3): HPKE SealBase
// with the labeled context as info and no AAD. The encapsulation's
// randomness comes from crypto/hpke (crypto/rand).
func (s *suite) encryptWithLabel(pub []byte, label string, context, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	pk, err := s.kem.NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: HPKE public key: %v", ErrMalformed, err)
	}
	enc, sender, err := hpke.NewSender(pk, s.kdf, s.aead, labeled(label, context))
	if err != nil {
		return nil, nil, err
	}
	ct, err := sender.Seal(nil, plaintext)
	if err != nil {
		return nil, nil, err
	}
	return enc, ct, nil
}

// decryptWithLabel is DecryptWithLabel (RFC 9420 §5.1.3). Every failure
// is ErrAuth.
func (s *suite) decryptWithLabel(priv []byte, label string, context, kemOutput, ciphertext []byte) ([]byte, error) {
	k, err := s.parseHPKEPrivate(priv)
	if err != nil {
		return nil, ErrAuth
	}
	r, err := hpke.NewRecipient(kemOutput, k, s.kdf, s.aead, labeled(label, context))
	if err != nil {
		return nil, ErrAuth
	}
	pt, err := r.Open(nil, ciphertext)
	if err != nil {
		return nil, ErrAuth
	}
	return pt, nil
}

// aeadSeal and aeadOpen are the suite's AEAD for message protection.
func (s *suite) aeadSeal(key, nonce, plaintext, ad []byte) ([]byte, error) {
	a, err := s.newAEAD(key)
	if err != nil {
		return nil, err
	}
	return a.Seal(nil, nonce, plaintext, ad), nil
}

func (s *suite) aeadOpen(key, nonce, ciphertext, ad []byte) ([]byte, error) {
	a, err := s.newAEAD(key)
	if err != nil {
		return nil, ErrAuth
	}
	pt, err := a.Open(nil, nonce, ciphertext, ad)
	if err != nil {
		return nil, ErrAuth
	}
	return pt, nil
}

// equalSecret compares two secrets in constant time.
func equalSecret(a, b []byte) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare(a, b) == 1
}
