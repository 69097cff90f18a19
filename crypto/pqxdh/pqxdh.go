// Package pqxdh runs Signal's PQXDH key agreement (revision 3) with X25519,
// ML-KEM-768 and HKDF-SHA256, to start a sealpost session with a device
// that may be offline, from its prekey bundle.
//
// The initiator calls Initiate with its identity, its device record and the
// responder's bundle; it sends the InitialMessage with its first ratchet
// message and starts its ratchet with
// ratchet.NewInitiator(r.Secret, r.AD, r.RemoteSignedPrekey, r.Version, rand).
// The responder parses the InitialMessage, looks up the prekeys it names,
// calls Respond, and starts its ratchet with
// ratchet.NewResponder(r.Secret, r.AD, r.SignedPrekey, r.Version).
//
// The associated data and the KDF info bind the chosen protocol version, the
// initiator's supported versions, both Ed25519 and both X25519 identity keys
// and both device IDs. The version chosen is the highest both sides support;
// Respond refuses any other (a downgrade). Every received key is checked:
// identity keys as in package identity, the base key additionally refused
// if it is on the twist or has a torsion component, as libsignal does. The
// byte layouts and labels are in docs/PROTOCOL.md §5.
//
// What the caller must do:
//   - As responder, before Respond: compute InitialMessage.ReplayHash and
//     refuse the message if it was seen (keep the hashes of first messages
//     that used no one-time prekey for the signed prekey's lifetime); after
//     the first ratchet message decrypted: commit the session, the hash and
//     the deletion of the one-time prekey (Responded.OneTimeID) together.
//   - Check that each device ID belongs to its device key (libp2p peer ID),
//     and pin the peer's identity (identity changes are the node's
//     business).
//   - Never start a session from a bundle that failed Bundle.Verify
//     (Initiate calls it).
package pqxdh

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/internal/ecc"
	"github.com/sealpost/sealpost/crypto/prekey"
)

// Protocol versions this package implements.
const (
	MinVersion = 1
	MaxVersion = 1
)

// SupportedVersions returns the protocol versions this package implements,
// increasing: what a device lists in its signed prekey.
func SupportedVersions() []uint8 {
	v := make([]uint8, 0, MaxVersion-MinVersion+1)
	for x := MinVersion; x <= MaxVersion; x++ {
		v = append(v, uint8(x))
	}
	return v
}

// LabelKDF labels the HKDF info.
const LabelKDF = "sealpost/v1/pqxdh-x25519-sha256-mlkem768"

// SecretSize is the size of the shared secret.
const SecretSize = 32

var (
	// ErrMalformed is returned (wrapped) for an initial message that cannot
	// be parsed or encoded.
	ErrMalformed = errors.New("pqxdh: malformed initial message")
	// ErrVersion is returned (wrapped) for an unknown message format.
	ErrVersion = errors.New("pqxdh: unsupported message format")
	// ErrInvalid is returned (wrapped) when a received key or signature is
	// refused.
	ErrInvalid = errors.New("pqxdh: invalid key or signature")
	// ErrNoCommonVersion is returned when the two sides share no version.
	ErrNoCommonVersion = errors.New("pqxdh: no common protocol version")
	// ErrDowngrade is returned by Respond when the message's version is not
	// the highest version both sides support.
	ErrDowngrade = errors.New("pqxdh: protocol version downgrade")
	// ErrNotForUs is returned by Respond when the message names another
	// recipient identity or device.
	ErrNotForUs = errors.New("pqxdh: message is for another identity or device")
	// ErrPrekeys is returned by Respond when the prekeys passed do not match
	// the IDs the message names.
	ErrPrekeys = errors.New("pqxdh: prekeys do not match the message")
)

// Initiated is the initiator's result.
type Initiated struct {
	Secret  [SecretSize]byte
	AD      []byte
	Version uint8
	// RemoteSignedPrekey is the responder's signed prekey (X25519 public
	// key), the initiator's first remote ratchet key.
	RemoteSignedPrekey []byte
	// Message goes to the responder with the first ratchet message.
	Message *InitialMessage
}

// Responded is the responder's result.
type Responded struct {
	Secret  [SecretSize]byte
	AD      []byte
	Version uint8
	// SignedPrekey is the private key of the signed prekey the initiator
	// used, the responder's first ratchet key.
	SignedPrekey *ecdh.PrivateKey
	// Initiator and InitiatorDevice are the verified sender.
	Initiator       *identity.Public
	InitiatorDevice *identity.DeviceRecord
	// ReplayHash is Message.ReplayHash.
	ReplayHash [ReplayHashSize]byte
	// UsedOneTime reports whether a one-time prekey was used; OneTimeID is
	// then its ID, to delete once the first ratchet message decrypted.
	UsedOneTime bool
	OneTimeID   uint32
}

// Responder holds the responder's keys: its identity, its own device record,
// and the prekeys the InitialMessage names (look them up by SignedPrekeyID
// and PrekeyID): the signed prekey, and either the one-time prekey (if
// OneTime) or the last-resort KEM key.
type Responder struct {
	Identity     *identity.Private
	Device       *identity.DeviceRecord
	SignedPrekey *prekey.SignedPrekeyPrivate
	KEMPrekey    *prekey.KEMPrekeyPrivate     // when the message used no one-time prekey
	OneTime      *prekey.OneTimePrekeyPrivate // when it did
}

// encapsulator encapsulates to an ML-KEM-768 key. Production code uses
// randomized encapsulation; the golden tests pass a derandomized one that
// reads its 32 bytes of randomness from rand.
type encapsulator func(ek *mlkem.EncapsulationKey768, rand io.Reader) (sharedKey, ciphertext []byte, err error)

func encapsulate(ek *mlkem.EncapsulationKey768, _ io.Reader) ([]byte, []byte, error) {
	ss, ct := ek.Encapsulate()
	return ss, ct, nil
}

// Initiate verifies bundle as of now, chooses the highest protocol version
// both sides support, and runs PQXDH as initiator with self (and its device
// record) to the bundle's owner. It uses the bundle's one-time prekey if
// there is one, and reads 32 bytes from rand for the base key.
func Initiate(self *identity.Private, device *identity.DeviceRecord, bundle *prekey.Bundle, now time.Time, rand io.Reader) (*Initiated, error) {
	return initiate(self, device, bundle, now, rand, SupportedVersions(), encapsulate)
}

func initiate(self *identity.Private, device *identity.DeviceRecord, bundle *prekey.Bundle, now time.Time, rand io.Reader, ours []uint8, encaps encapsulator) (*Initiated, error) {
	if !device.Identity().Equal(self.UserID()) {
		return nil, errors.New("pqxdh: own device record belongs to another identity")
	}
	if err := bundle.Verify(now); err != nil {
		return nil, fmt.Errorf("pqxdh: bundle: %w", err)
	}
	version := highestCommon(ours, bundle.Versions())
	if version == 0 {
		return nil, ErrNoCommonVersion
	}
	var seed [BaseKeySize]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("pqxdh: read random: %w", err)
	}
	base, err := ecdh.X25519().NewPrivateKey(seed[:])
	clear(seed[:])
	if err != nil {
		return nil, fmt.Errorf("pqxdh: base key: %w", err)
	}

	spk := bundle.SignedPrekey.Key()
	ik := bundle.Identity.DHKey()
	ikm := make([]byte, 0, ikmMaxSize)
	ikm = append(ikm, ikmPrefix[:]...)
	dh1, err := self.DH(spk) // DH1 = DH(IK_A, SPK_B)
	if err != nil {
		return nil, fmt.Errorf("%w: signed prekey: %w", ErrInvalid, err)
	}
	dh2, err := ecc.X25519(base, ik[:]) // DH2 = DH(EK_A, IK_B)
	if err != nil {
		return nil, fmt.Errorf("%w: identity key: %w", ErrInvalid, err)
	}
	dh3, err := ecc.X25519(base, spk) // DH3 = DH(EK_A, SPK_B)
	if err != nil {
		return nil, fmt.Errorf("%w: signed prekey: %w", ErrInvalid, err)
	}
	ikm = append(append(append(ikm, dh1...), dh2...), dh3...)

	msg := &InitialMessage{
		Version:         version,
		Versions:        slices.Clone(ours),
		Initiator:       self.Public(),
		InitiatorDevice: device,
		Recipient:       bundle.Identity.UserID(),
		RecipientDevice: bundle.Device.DeviceID(),
		SignedPrekeyID:  bundle.SignedPrekey.ID(),
	}
	copy(msg.BaseKey[:], base.PublicKey().Bytes())
	var ek *mlkem.EncapsulationKey768
	if otp := bundle.OneTime; otp != nil {
		dh4, err := ecc.X25519(base, otp.DHKey()) // DH4 = DH(EK_A, OPK_B)
		if err != nil {
			return nil, fmt.Errorf("%w: one-time prekey: %w", ErrInvalid, err)
		}
		ikm = append(ikm, dh4...)
		msg.OneTime, msg.PrekeyID = true, otp.ID()
		ek, err = otp.EncapsulationKey()
		if err != nil {
			return nil, err
		}
	} else {
		msg.PrekeyID = bundle.KEMPrekey.ID()
		ek, err = bundle.KEMPrekey.EncapsulationKey()
		if err != nil {
			return nil, err
		}
	}
	ss, ct, err := encaps(ek, rand)
	if err != nil {
		return nil, fmt.Errorf("pqxdh: encapsulate: %w", err)
	}
	msg.Ciphertext = ct
	ikm = append(ikm, ss...)

	ad := appendAD(nil, msg, bundle.Identity)
	secret, err := kdf(ikm, ad)
	clear(ikm)
	if err != nil {
		return nil, err
	}
	return &Initiated{Secret: secret, AD: ad, Version: version, RemoteSignedPrekey: spk, Message: msg}, nil
}

// Respond checks an initial message addressed to r and computes the shared
// secret. It refuses a message for another identity or device
// (ErrNotForUs), prekeys that do not match the message's IDs (ErrPrekeys),
// a version other than the highest common one (ErrDowngrade), an initiator
// whose identity or device record does not verify, and a base key that is
// not canonical, of low order, on the twist or with a torsion component
// (ErrInvalid).
func Respond(r *Responder, msg *InitialMessage) (*Responded, error) {
	return respond(r, msg, SupportedVersions())
}

// CheckBaseKey returns nil if key is a base key Respond accepts: the
// canonical encoding of an X25519 public key in the prime-order subgroup,
// which an honestly generated key always is. Otherwise it returns an error
// wrapping ErrInvalid. Respond applies it; on its own it is the cost that
// check adds to Respond.
func CheckBaseKey(key []byte) error {
	if err := ecc.CheckX25519BaseKey(key); err != nil {
		return fmt.Errorf("%w: base key: %w", ErrInvalid, err)
	}
	return nil
}

func respond(r *Responder, msg *InitialMessage, ours []uint8) (*Responded, error) {
	if r.Identity == nil || r.Device == nil || r.SignedPrekey == nil {
		return nil, fmt.Errorf("%w: responder keys incomplete", ErrPrekeys)
	}
	if !r.Device.Identity().Equal(r.Identity.UserID()) {
		return nil, errors.New("pqxdh: own device record belongs to another identity")
	}
	if msg.Initiator == nil || msg.InitiatorDevice == nil {
		return nil, fmt.Errorf("%w: no initiator", ErrMalformed)
	}
	if !msg.Recipient.Equal(r.Identity.UserID()) ||
		subtle.ConstantTimeCompare(msg.RecipientDevice, r.Device.DeviceID()) != 1 {
		return nil, ErrNotForUs
	}
	spk := r.SignedPrekey.Public()
	if spk.ID() != msg.SignedPrekeyID {
		return nil, fmt.Errorf("%w: signed prekey %d, message names %d", ErrPrekeys, spk.ID(), msg.SignedPrekeyID)
	}
	var dk *mlkem.DecapsulationKey768
	var opk *ecdh.PrivateKey
	switch {
	case msg.OneTime && r.OneTime != nil && r.OneTime.Public().ID() == msg.PrekeyID:
		dk, opk = r.OneTime.DecapsulationKey(), r.OneTime.PrivateKey()
	case !msg.OneTime && r.KEMPrekey != nil && r.KEMPrekey.Public().ID() == msg.PrekeyID:
		dk = r.KEMPrekey.DecapsulationKey()
	default:
		return nil, fmt.Errorf("%w: one-time %v, prekey ID %d", ErrPrekeys, msg.OneTime, msg.PrekeyID)
	}
	if err := checkVersionList(msg.Versions); err != nil {
		return nil, err
	}
	// The versions this device offered are those it signed in the signed
	// prekey the initiator used, limited to what this code implements.
	offered := intersect(ours, spk.Versions())
	want := highestCommon(offered, msg.Versions)
	if want == 0 {
		return nil, ErrNoCommonVersion
	}
	if msg.Version != want {
		return nil, fmt.Errorf("%w: message chose %d, highest common version is %d", ErrDowngrade, msg.Version, want)
	}

	v, err := msg.Initiator.Verifier()
	if err != nil {
		return nil, fmt.Errorf("%w: initiator: %w", ErrInvalid, err)
	}
	if err := msg.InitiatorDevice.VerifyFor(v); err != nil {
		return nil, fmt.Errorf("%w: initiator device record: %w", ErrInvalid, err)
	}
	if err := CheckBaseKey(msg.BaseKey[:]); err != nil {
		return nil, err
	}
	if len(msg.Ciphertext) != CiphertextSize {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes", ErrMalformed, len(msg.Ciphertext))
	}

	ikA := msg.Initiator.DHKey()
	spkPriv := r.SignedPrekey.PrivateKey()
	ikm := make([]byte, 0, ikmMaxSize)
	ikm = append(ikm, ikmPrefix[:]...)
	dh1, err := ecc.X25519(spkPriv, ikA[:]) // DH1 = DH(SPK_B, IK_A)
	if err != nil {
		return nil, fmt.Errorf("%w: initiator identity key: %w", ErrInvalid, err)
	}
	dh2, err := r.Identity.DH(msg.BaseKey[:]) // DH2 = DH(IK_B, EK_A)
	if err != nil {
		return nil, fmt.Errorf("%w: base key: %w", ErrInvalid, err)
	}
	dh3, err := ecc.X25519(spkPriv, msg.BaseKey[:]) // DH3 = DH(SPK_B, EK_A)
	if err != nil {
		return nil, fmt.Errorf("%w: base key: %w", ErrInvalid, err)
	}
	ikm = append(append(append(ikm, dh1...), dh2...), dh3...)
	if opk != nil {
		dh4, err := ecc.X25519(opk, msg.BaseKey[:]) // DH4 = DH(OPK_B, EK_A)
		if err != nil {
			return nil, fmt.Errorf("%w: base key: %w", ErrInvalid, err)
		}
		ikm = append(ikm, dh4...)
	}
	ss, err := dk.Decapsulate(msg.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: ciphertext: %v", ErrMalformed, err)
	}
	ikm = append(ikm, ss...)

	ad := appendAD(nil, msg, r.Identity.Public())
	secret, err := kdf(ikm, ad)
	clear(ikm)
	if err != nil {
		return nil, err
	}
	res := &Responded{
		Secret:          secret,
		AD:              ad,
		Version:         msg.Version,
		SignedPrekey:    spkPriv,
		Initiator:       msg.Initiator,
		InitiatorDevice: msg.InitiatorDevice,
		ReplayHash:      msg.ReplayHash(),
		UsedOneTime:     msg.OneTime,
	}
	if msg.OneTime {
		res.OneTimeID = msg.PrekeyID
	}
	return res, nil
}

// ikmPrefix is F, 32 0xFF bytes, which Signal's X25519 KDFs put before the
// DH outputs.
var ikmPrefix = [32]byte{
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
}

const ikmMaxSize = 32 + 4*32 + mlkem.SharedKeySize

// kdf is HKDF-SHA256 with a zero salt of 32 bytes, ikm, and info =
// LabelKDF || 0x00 || ad, giving 32 bytes.
func kdf(ikm, ad []byte) ([SecretSize]byte, error) {
	var out [SecretSize]byte
	info := make([]byte, 0, len(LabelKDF)+1+len(ad))
	info = append(append(append(info, LabelKDF...), 0), ad...)
	var salt [sha256.Size]byte
	k, err := hkdf.Key(sha256.New, ikm, salt[:], string(info), SecretSize)
	if err != nil {
		return out, fmt.Errorf("pqxdh: hkdf: %w", err)
	}
	copy(out[:], k)
	return out, nil
}

// appendAD appends the associated data:
//
//	version (1) ||
//	initiator Ed25519 (32) || initiator X25519 (32) || len8(initiator device ID) || initiator device ID ||
//	responder Ed25519 (32) || responder X25519 (32) || len8(responder device ID) || responder device ID ||
//	len8(initiator versions) || initiator versions
func appendAD(b []byte, msg *InitialMessage, responder *identity.Public) []byte {
	b = append(b, msg.Version)
	b = appendParty(b, msg.Initiator, msg.InitiatorDevice.DeviceID())
	b = appendParty(b, responder, msg.RecipientDevice)
	b = append(b, byte(len(msg.Versions)))
	return append(b, msg.Versions...)
}

func appendParty(b []byte, p *identity.Public, device []byte) []byte {
	id, dh := p.UserID(), p.DHKey()
	b = append(b, id[:]...)
	b = append(b, dh[:]...)
	b = append(b, byte(len(device)))
	return append(b, device...)
}

// highestCommon returns the highest version in both lists, or 0.
func highestCommon(a, b []uint8) uint8 {
	var best uint8
	for _, v := range a {
		if v > best && slices.Contains(b, v) {
			best = v
		}
	}
	return best
}

func intersect(a, b []uint8) []uint8 {
	var out []uint8
	for _, v := range a {
		if slices.Contains(b, v) {
			out = append(out, v)
		}
	}
	return out
}

// checkVersionList requires 1 to prekey.MaxVersions versions, non-zero and
// strictly increasing.
func checkVersionList(v []uint8) error {
	if len(v) == 0 || len(v) > prekey.MaxVersions {
		return fmt.Errorf("%w: %d protocol versions", ErrMalformed, len(v))
	}
	for i, x := range v {
		if x == 0 || (i > 0 && x <= v[i-1]) {
			return fmt.Errorf("%w: protocol versions not strictly increasing from 1", ErrMalformed)
		}
	}
	return nil
}
