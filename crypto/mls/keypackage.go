package mls

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// SignatureKey is a member's signature key pair for one cipher suite.
type SignatureKey struct {
	suite *suite
	priv  []byte
	pub   []byte
	sg    *signer
}

// GenerateSignatureKey draws a signature key for cs from rand.
func GenerateSignatureKey(cs CipherSuite, rand io.Reader) (*SignatureKey, error) {
	s, err := lookupSuite(cs)
	if err != nil {
		return nil, err
	}
	priv, err := s.generateSignatureKey(rand)
	if err != nil {
		return nil, err
	}
	return newSignatureKey(s, priv)
}

// NewSignatureKey returns the signature key of cs with the given private
// key: a 32-byte Ed25519 seed (ed25519.PrivateKey.Seed), or an ECDSA
// scalar as a big-endian integer of the curve's size.
func NewSignatureKey(cs CipherSuite, private []byte) (*SignatureKey, error) {
	s, err := lookupSuite(cs)
	if err != nil {
		return nil, err
	}
	return newSignatureKey(s, slices.Clone(private))
}

func newSignatureKey(s *suite, priv []byte) (*SignatureKey, error) {
	sg, err := s.parseSigner(priv)
	if err != nil {
		return nil, err
	}
	return &SignatureKey{suite: s, priv: priv, pub: sg.publicKey(), sg: sg}, nil
}

// Public returns the encoded public key.
func (k *SignatureKey) Public() []byte { return slices.Clone(k.pub) }

// CipherSuite returns the suite the key is for.
func (k *SignatureKey) CipherSuite() CipherSuite { return k.suite.id }

// KeyPackage is a client's published offer to be added to a group
// (RFC 9420 §10). It is signed and single-use.
type KeyPackage struct {
	kp  keyPackage
	raw []byte // the MLSMessage encoding
	ref []byte
}

func newKeyPackage(s *suite, kp keyPackage) *KeyPackage {
	raw := mustEncode((&mlsMessage{wireFormat: wireFormatKeyPackage, keyPackage: &kp}).encode)
	return &KeyPackage{kp: kp, raw: raw, ref: s.refHash("MLS 1.0 KeyPackage Reference", mustEncode(kp.encode))}
}

// ParseKeyPackage decodes an MLSMessage carrying a KeyPackage and checks
// its suite, keys and signatures. Its credential is checked by the member
// who adds it, with its CredentialValidator.
func ParseKeyPackage(b []byte) (*KeyPackage, error) {
	m, err := parseMessage(b)
	if err != nil {
		return nil, err
	}
	if m.keyPackage == nil {
		return nil, fmt.Errorf("%w: not a key package", ErrMalformed)
	}
	s, err := lookupSuite(m.keyPackage.cipherSuite)
	if err != nil {
		return nil, err
	}
	if err := s.validateKeyPackage(m.keyPackage); err != nil {
		return nil, err
	}
	ln := &m.keyPackage.leafNode
	if ln.source != leafSourceKeyPackage {
		return nil, fmt.Errorf("%w: key package leaf node source %d", ErrInvalid, ln.source)
	}
	if !s.verifyWithLabel(ln.signatureKey, "LeafNodeTBS", ln.tbs(nil, 0), ln.signature) {
		return nil, ErrAuth
	}
	return newKeyPackage(s, *m.keyPackage), nil
}

// MarshalBinary returns the MLSMessage encoding of the KeyPackage.
func (k *KeyPackage) MarshalBinary() ([]byte, error) { return slices.Clone(k.raw), nil }

// Ref returns the KeyPackageRef that names it in a Welcome.
func (k *KeyPackage) Ref() []byte { return slices.Clone(k.ref) }

// CipherSuite returns the suite of the KeyPackage.
func (k *KeyPackage) CipherSuite() CipherSuite { return k.kp.cipherSuite }

// Credential returns the credential of the client it would add.
func (k *KeyPackage) Credential() Credential { return k.kp.leafNode.credential.clone() }

// SignatureKey returns the client's signature public key.
func (k *KeyPackage) SignatureKey() []byte { return slices.Clone(k.kp.leafNode.signatureKey) }

// Lifetime returns the times between which the KeyPackage is valid.
func (k *KeyPackage) Lifetime() (notBefore, notAfter time.Time) {
	return time.Unix(int64(k.kp.leafNode.notBefore), 0), time.Unix(int64(k.kp.leafNode.notAfter), 0)
}

// KeyPackagePrivate is a KeyPackage with its private keys: keep it until a
// Welcome that uses it arrives (Join), then delete it.
type KeyPackagePrivate struct {
	kp            *KeyPackage
	initKey       []byte
	encryptionKey []byte
	signature     *SignatureKey
}

// KeyPackage returns the public KeyPackage to publish.
func (p *KeyPackagePrivate) KeyPackage() *KeyPackage { return p.kp }

// Capabilities this package implements, advertised in every leaf node it
// makes.
var (
	supportedVersions    = []uint16{protocolVersionMLS10}
	supportedCredentials = []uint16{uint16(CredentialBasic), uint16(CredentialX509)}
)

func (s *suite) defaultCapabilities() capabilities {
	return capabilities{
		versions:     supportedVersions,
		cipherSuites: []uint16{uint16(s.id)},
		extensions:   []uint16{},
		proposals:    []uint16{},
		credentials:  supportedCredentials,
	}
}

// capabilitiesWith is defaultCapabilities listing the application's own
// extension types too.
func (s *suite) capabilitiesWith(exts []ExtensionType) capabilities {
	c := s.defaultCapabilities()
	for _, t := range exts {
		if !isDefaultExtension(uint16(t)) && !slices.Contains(c.extensions, uint16(t)) {
			c.extensions = append(c.extensions, uint16(t))
		}
	}
	return c
}

// supportsExtension reports whether a GroupContext may carry an extension
// of type t for a member with policy cfg.
func (cfg *Config) supportsExtension(t ExtensionType) bool {
	return isDefaultExtension(uint16(t)) || slices.Contains(cfg.Extensions, t)
}

// KeyPackageOptions are the optional inputs of NewKeyPackageWith.
type KeyPackageOptions struct {
	// Extensions are the application's GroupContext extension types the
	// client supports (Config.Extensions): its leaf lists them, so that
	// groups that use them can add it.
	Extensions []ExtensionType
}

// NewKeyPackage makes a KeyPackage for a client with credential cred and
// signature key key, valid from notBefore to notAfter, with fresh init and
// encryption keys drawn from rand.
func NewKeyPackage(cred Credential, key *SignatureKey, notBefore, notAfter time.Time, rand io.Reader) (*KeyPackagePrivate, error) {
	return NewKeyPackageWith(cred, key, notBefore, notAfter, KeyPackageOptions{}, rand)
}

// NewKeyPackageWith is NewKeyPackage with options.
func NewKeyPackageWith(cred Credential, key *SignatureKey, notBefore, notAfter time.Time, opts KeyPackageOptions, rand io.Reader) (*KeyPackagePrivate, error) {
	s := key.suite
	if notBefore.Unix() < 0 || notAfter.Before(notBefore) {
		return nil, fmt.Errorf("mls: key package lifetime %v to %v", notBefore, notAfter)
	}
	if err := checkCredential(&cred); err != nil {
		return nil, err
	}
	initPriv, initPub, err := s.generateHPKEKey(rand)
	if err != nil {
		return nil, err
	}
	encPriv, encPub, err := s.generateHPKEKey(rand)
	if err != nil {
		return nil, err
	}
	kp := keyPackage{
		version:     protocolVersionMLS10,
		cipherSuite: s.id,
		initKey:     initPub,
		leafNode: leafNode{
			encryptionKey: encPub,
			signatureKey:  key.Public(),
			credential:    cred.clone(),
			capabilities:  s.capabilitiesWith(opts.Extensions),
			source:        leafSourceKeyPackage,
			notBefore:     uint64(notBefore.Unix()),
			notAfter:      uint64(notAfter.Unix()),
			extensions:    []Extension{},
		},
		extensions: []Extension{},
	}
	if kp.leafNode.signature, err = s.signWithLabel(key.sg, "LeafNodeTBS", kp.leafNode.tbs(nil, 0)); err != nil {
		return nil, err
	}
	if kp.signature, err = s.signWithLabel(key.sg, "KeyPackageTBS", mustEncode(kp.encodeBody)); err != nil {
		return nil, err
	}
	return &KeyPackagePrivate{kp: newKeyPackage(s, kp), initKey: initPriv, encryptionKey: encPriv, signature: key}, nil
}

// checkCredential checks that a credential this member presents can be
// encoded.
func checkCredential(c *Credential) error {
	switch c.Type {
	case CredentialBasic:
		if len(c.Identity) > maxCredentialSize {
			return fmt.Errorf("%w: credential identity of %d bytes", ErrTooLarge, len(c.Identity))
		}
	case CredentialX509:
		n := 0
		for _, cert := range c.Certificates {
			n += len(cert) + 4
		}
		if n > maxCredentialSize {
			return fmt.Errorf("%w: certificate chain of %d bytes", ErrTooLarge, n)
		}
	default:
		return fmt.Errorf("%w: credential type %d", ErrUnsupported, c.Type)
	}
	return nil
}

// MarshalBinary encodes the KeyPackage and its private keys (secret: store
// it as such).
func (p *KeyPackagePrivate) MarshalBinary() ([]byte, error) {
	return encode(func(w *writer) {
		w.u8(keyPackagePrivateVersion)
		w.opaque(p.kp.raw)
		w.opaque(p.initKey)
		w.opaque(p.encryptionKey)
		w.opaque(p.signature.priv)
	})
}

// UnmarshalKeyPackagePrivate decodes what KeyPackagePrivate.MarshalBinary
// returned.
func UnmarshalKeyPackagePrivate(b []byte) (*KeyPackagePrivate, error) {
	var raw, initKey, encKey, sigKey []byte
	err := decodeAll(b, func(r *reader) {
		if v := r.u8(); v != keyPackagePrivateVersion && r.err == nil {
			r.fail(fmt.Errorf("version %d", v))
		}
		raw = r.opaque(MaxMessageSize)
		initKey = r.opaque(maxKeySize)
		encKey = r.opaque(maxKeySize)
		sigKey = r.opaque(maxKeySize)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	kp, err := ParseKeyPackage(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	sk, err := NewSignatureKey(kp.CipherSuite(), sigKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	p := &KeyPackagePrivate{kp: kp, initKey: initKey, encryptionKey: encKey, signature: sk}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	return p, nil
}

// check verifies that the private keys belong to the KeyPackage.
func (p *KeyPackagePrivate) check() error {
	s := p.signature.suite
	if pub, err := s.hpkePublicOf(p.initKey); err != nil || !equalBytes(pub, p.kp.kp.initKey) {
		return fmt.Errorf("init key does not match")
	}
	if pub, err := s.hpkePublicOf(p.encryptionKey); err != nil || !equalBytes(pub, p.kp.kp.leafNode.encryptionKey) {
		return fmt.Errorf("encryption key does not match")
	}
	if !equalBytes(p.signature.pub, p.kp.kp.leafNode.signatureKey) {
		return fmt.Errorf("signature key does not match")
	}
	return nil
}

func equalBytes(a, b []byte) bool { return string(a) == string(b) }
