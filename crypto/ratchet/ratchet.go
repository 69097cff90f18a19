// Package ratchet implements the Double Ratchet with header encryption
// (Signal's specification, revision 3, section 4) for sealpost sessions.
//
// A session starts from the 32-byte secret and the associated data (AD)
// that PQXDH produced: the initiator calls NewInitiator with the responder's
// signed prekey as the first remote ratchet key, the responder calls
// NewResponder with that prekey's private key. From then on each side calls
// Encrypt and Decrypt, and stores the State (MarshalBinary) after every call
// that succeeded; a call that fails leaves the State unchanged, byte for byte.
//
// Algorithms: root KDF HKDF-SHA256, chain KDF HMAC-SHA256, message AEAD
// ChaCha20-Poly1305 with key and nonce expanded from the message key, header
// AEAD XChaCha20-Poly1305 with a random nonce. Every message authenticates
// the session's AD, its version byte and its encrypted header. The byte
// layouts, labels and constants are in docs/PROTOCOL.md §6.
//
// One difference from the specification's pseudocode, which changes no byte
// on the wire: the new sending ratchet key is generated when the next message
// is encrypted, not when the peer's new ratchet key is received, so Decrypt
// needs no randomness. The order of root-KDF steps, and so every key, is the
// same. The old ratchet private key is erased when the peer's new key is
// received, as the specification (and libsignal) does by replacing it: it
// takes part in no later step, and for a responder's first message it is
// the signed prekey's, which must not outlive the prekey's retention in a
// stored session. A state that received and has not sent since holds no
// ratchet private key at all, so a copy of it taken then learns nothing of
// the key the next message will carry (libsignal makes that key on receipt,
// and a copy holds it). States stored by versions that kept the old key
// erase it at their next Encrypt or Decrypt.
//
// What the caller must do:
//   - check ratchet.MessageHash of a received message against its seen-set
//     before calling Decrypt, and commit the new state, the plaintext and the
//     seen-entry together;
//   - treat ErrDuplicate as "already processed" (acknowledge, do not show);
//   - accept a sender's claimed identity only if it equals the one bound in
//     the session's AD (State.AD).
//
// Limits: at most MaxSkip message keys are skipped in one chain, checked
// before any key is derived; at most MaxSkippedKeys skipped keys are stored
// per session (the oldest go first) and none longer than MaxSkippedAge, nor
// once their chain is more than MaxOldChains chains old. A skipped key is a
// key that would decrypt a message not yet received: keeping it weakens
// forward secrecy for that message until it arrives or is evicted.
package ratchet

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/sealpost/sealpost/crypto/internal/ecc"
)

// Version is the protocol version of the message format this package writes
// and reads. It is the first byte of every message and is authenticated.
const Version = 1

// Sizes of the wire message (docs/PROTOCOL.md §6).
const (
	// HeaderSize is the size of the header plaintext: ratchet public key,
	// previous chain length, message number.
	HeaderSize = 32 + 4 + 4
	// headerNonceSize is XChaCha20-Poly1305's nonce size.
	headerNonceSize = chacha20poly1305.NonceSizeX
	// EncryptedHeaderSize is the header's nonce, ciphertext and tag.
	EncryptedHeaderSize = headerNonceSize + HeaderSize + chacha20poly1305.Overhead
	// prefixSize is the version byte and the encrypted header.
	prefixSize = 1 + EncryptedHeaderSize
	// Overhead is the size of a message minus the size of its plaintext.
	Overhead = prefixSize + chacha20poly1305.Overhead
	// MaxMessageSize bounds a wire message: it must fit a sealed envelope.
	MaxMessageSize = 64 << 10
	// MaxPlaintextSize bounds the plaintext Encrypt takes.
	MaxPlaintextSize = MaxMessageSize - Overhead
	// MaxADSize bounds the associated data of a session.
	MaxADSize = 2048
)

// Limits on skipped message keys.
const (
	// MaxSkip is the largest number of message keys skipped in one chain by
	// one message. A message that would skip more is refused
	// (ErrTooFarAhead) before any key is derived.
	MaxSkip = 1000
	// MaxSkippedKeys bounds the skipped keys a session stores; when more
	// are added, the oldest are dropped.
	MaxSkippedKeys = 2000
	// MaxSkippedAge is how long a skipped key, and the header key of a
	// past receiving chain, is kept.
	MaxSkippedAge = 30 * 24 * time.Hour
	// MaxOldChains is the number of past receiving chains whose header
	// keys are kept (to decrypt late messages and to recognise replays).
	MaxOldChains = 5
)

// Errors. Decrypt returns ErrDecrypt for every authentication failure, so a
// forger learns nothing from which check failed.
var (
	ErrDecrypt = errors.New("ratchet: message authentication failed")
	// ErrDuplicate means the message is authentic but its key is gone: it
	// was decrypted before, or it was skipped and its key was evicted. It
	// never comes with a plaintext.
	ErrDuplicate = errors.New("ratchet: message already received")
	// ErrTooFarAhead means an authentic header would skip more than
	// MaxSkip keys in one chain.
	ErrTooFarAhead = errors.New("ratchet: message skips too many keys")
	// ErrVersion means the message's version is below the session's
	// minimum (a downgrade), or the session's version is not supported.
	ErrVersion = errors.New("ratchet: version refused")
	// ErrCannotSend means the responder has not yet received a message,
	// so it has no sending chain.
	ErrCannotSend = errors.New("ratchet: no sending chain before the first message is received")
	// ErrTooLarge means the plaintext exceeds MaxPlaintextSize.
	ErrTooLarge = errors.New("ratchet: plaintext too large")
	// ErrChainExhausted means 2^32-1 messages were sent in one chain.
	ErrChainExhausted = errors.New("ratchet: sending chain exhausted")
	// ErrInvalidState means UnmarshalBinary was given bytes that are not a
	// session state.
	ErrInvalidState = errors.New("ratchet: invalid session state")
)

// State flags, serialized.
const (
	flagRemoteKey   = 1 << 0 // dhr holds the peer's ratchet key
	flagSending     = 1 << 1 // cks, hks hold a sending chain
	flagReceiving   = 1 << 2 // ckr, hkr hold a receiving chain
	flagSendPending = 1 << 3 // the next Encrypt performs the sending DH step; no own ratchet key
	flagsKnown      = flagRemoteKey | flagSending | flagReceiving | flagSendPending
)

// skippedKey is a stored message key of a message not yet received.
type skippedKey struct {
	hk     [32]byte // header key of its chain
	n      uint32   // message number
	mk     [32]byte // message key
	stored int64    // Unix seconds when stored
}

// oldChain is a past receiving chain's header key.
type oldChain struct {
	hk      [32]byte
	retired int64 // Unix seconds when the chain was replaced
}

// State is one side of a Double Ratchet session. It is not safe for
// concurrent use: the caller serializes calls per session. The zero value is
// not usable; create one with NewInitiator, NewResponder or UnmarshalBinary.
type State struct {
	version    uint8
	minVersion uint8
	flags      uint8
	ns, nr, pn uint32

	dhsPriv [32]byte // own ratchet private key
	dhsPub  [32]byte // own ratchet public key
	dhr     [32]byte // peer's ratchet public key
	rk      [32]byte
	cks     [32]byte
	hks     [32]byte
	ckr     [32]byte
	hkr     [32]byte
	nhks    [32]byte
	nhkr    [32]byte

	ad        []byte
	oldChains []oldChain   // newest first
	skipped   []skippedKey // oldest first

	// Caches and scratch space, not part of the state: rebuilt on demand.
	dhsKey   *ecdh.PrivateKey
	hksAEAD  cipher.AEAD
	hkrAEAD  cipher.AEAD
	nhkrAEAD cipher.AEAD
	hdr      [HeaderSize]byte
	nonce    [chacha20poly1305.NonceSize]byte // here, not on the stack: it goes through an interface
	sent     [chacha20poly1305.NonceSize]byte // the nonce of the last message Encrypt produced
	adBuf    []byte                           // AD || message prefix
	stage    []skippedKey                     // keys skipped by the message being decrypted
}

// checkVersion reports whether this package can run a session of version v.
func checkVersion(v uint8) error {
	if v != Version {
		return fmt.Errorf("%w: unsupported version %d", ErrVersion, v)
	}
	return nil
}

func newState(ad []byte, version uint8) (*State, error) {
	if err := checkVersion(version); err != nil {
		return nil, err
	}
	if len(ad) > MaxADSize {
		return nil, fmt.Errorf("ratchet: associated data of %d bytes exceeds %d", len(ad), MaxADSize)
	}
	return &State{
		version:    version,
		minVersion: version,
		ad:         slices.Clone(ad),
	}, nil
}

// NewInitiator starts the session of the side that ran PQXDH as initiator.
// secret and ad come from PQXDH; remoteRatchetKey is the responder's signed
// prekey (X25519 public key), which is checked; version is the protocol
// version PQXDH chose and becomes the session's minimum. rand supplies the
// first ratchet key.
func NewInitiator(secret [32]byte, ad []byte, remoteRatchetKey []byte, version uint8, rand io.Reader) (*State, error) {
	s, err := newState(ad, version)
	if err != nil {
		return nil, err
	}
	if err := ecc.CheckX25519Public(remoteRatchetKey); err != nil {
		return nil, fmt.Errorf("ratchet: remote ratchet key: %w", err)
	}
	rk, hka, nhkb := kdfInit(&secret, version)
	s.rk = rk
	s.nhks = hka // becomes HKs in the sending step below
	s.nhkr = nhkb
	copy(s.dhr[:], remoteRatchetKey)
	s.flags = flagRemoteKey | flagSendPending
	if err := s.sendStep(rand); err != nil {
		return nil, err
	}
	return s, nil
}

// NewResponder starts the session of the side that ran PQXDH as responder.
// ownRatchetKey is the private key of the signed prekey the initiator used.
// The responder cannot encrypt until it has decrypted the first message;
// that Decrypt erases the signed prekey's private key from the state, so
// store a responder's state only after it.
func NewResponder(secret [32]byte, ad []byte, ownRatchetKey *ecdh.PrivateKey, version uint8) (*State, error) {
	s, err := newState(ad, version)
	if err != nil {
		return nil, err
	}
	if ownRatchetKey == nil || ownRatchetKey.Curve() != ecdh.X25519() {
		return nil, errors.New("ratchet: own ratchet key must be an X25519 key")
	}
	rk, hka, nhkb := kdfInit(&secret, version)
	s.rk = rk
	s.nhks = nhkb
	s.nhkr = hka
	copy(s.dhsPriv[:], ownRatchetKey.Bytes())
	copy(s.dhsPub[:], ownRatchetKey.PublicKey().Bytes())
	s.dhsKey = ownRatchetKey
	return s, nil
}

// Version returns the version the session sends.
func (s *State) Version() uint8 { return s.version }

// MinVersion returns the lowest message version the session accepts.
func (s *State) MinVersion() uint8 { return s.minVersion }

// AD returns a copy of the session's associated data (from PQXDH).
func (s *State) AD() []byte { return slices.Clone(s.ad) }

// SentNonce returns the AEAD nonce of the message the last Encrypt on
// this State produced (zero before one). The nonce is derived from the
// message key together with the key, so two messages with one nonce were
// encrypted under one message key: a node can show, without revealing any
// key, that it never used one twice. It is not secret and not stored.
func (s *State) SentNonce() [chacha20poly1305.NonceSize]byte { return s.sent }

// CanSend reports whether Encrypt can be called: false for a responder that
// has not yet decrypted a message.
func (s *State) CanSend() bool { return s.flags&(flagSending|flagSendPending) != 0 }

// sendStep is the sending half of the DH ratchet: a new ratchet key, one DH
// with the peer's key and one root-KDF step. It changes the state only on
// success.
func (s *State) sendStep(rand io.Reader) error {
	var seed [32]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return fmt.Errorf("ratchet: read random: %w", err)
	}
	priv, err := ecdh.X25519().NewPrivateKey(seed[:])
	clear(seed[:])
	if err != nil {
		return fmt.Errorf("ratchet: generate ratchet key: %w", err)
	}
	dh, err := ecc.X25519(priv, s.dhr[:])
	if err != nil {
		return fmt.Errorf("ratchet: ratchet step: %w", err)
	}
	rk, ck, nhk := kdfRoot(&s.rk, dh)
	clear(dh)

	s.pn = s.ns
	s.ns = 0
	s.hks = s.nhks
	s.hksAEAD = nil
	s.cks = ck
	s.nhks = nhk
	s.rk = rk
	s.dhsKey = priv
	copy(s.dhsPriv[:], priv.Bytes())
	copy(s.dhsPub[:], priv.PublicKey().Bytes())
	s.flags = s.flags&^flagSendPending | flagSending
	return nil
}

// forgetRatchetKey erases the own ratchet private key of a state whose
// sending step is pending: no later step uses it (the next one makes a new
// key), and the peer has moved past it.
func (s *State) forgetRatchetKey() {
	if s.flags&flagSendPending == 0 {
		return
	}
	clear(s.dhsPriv[:])
	clear(s.dhsPub[:])
	s.dhsKey = nil
}

// Encrypt encrypts plaintext, appends the wire message to dst and returns
// the extended slice. dst must not overlap plaintext. rand supplies the
// header nonce and, when the peer has sent a new ratchet key since the last
// message, the new ratchet key. The state changes only if Encrypt succeeds.
func (s *State) Encrypt(dst, plaintext []byte, rand io.Reader) ([]byte, error) {
	if !s.CanSend() {
		return nil, ErrCannotSend
	}
	if len(plaintext) > MaxPlaintextSize {
		return nil, ErrTooLarge
	}
	if s.flags&flagSendPending == 0 && s.ns == math.MaxUint32 {
		return nil, ErrChainExhausted
	}
	ret, out := sliceForAppend(dst, Overhead+len(plaintext))
	out[0] = s.version
	if _, err := io.ReadFull(rand, out[1:1+headerNonceSize]); err != nil {
		return nil, fmt.Errorf("ratchet: read random: %w", err)
	}
	if s.flags&flagSendPending != 0 {
		if err := s.sendStep(rand); err != nil {
			return nil, err
		}
	}
	mk, next := kdfChain(&s.cks)
	if s.hksAEAD == nil {
		s.hksAEAD = newHeaderAEAD(&s.hks)
	}
	putHeader(s.hdr[:], &s.dhsPub, s.pn, s.ns)
	s.hksAEAD.Seal(out[1+headerNonceSize:1+headerNonceSize], out[1:1+headerNonceSize], s.hdr[:], out[:1])
	clear(s.hdr[:])

	s.adBuf = append(append(s.adBuf[:0], s.ad...), out[:prefixSize]...)
	var key [32]byte
	key, s.nonce = messageKeys(&mk)
	aead, _ := chacha20poly1305.New(key[:]) // cannot fail: the key is 32 bytes
	aead.Seal(out[prefixSize:prefixSize], s.nonce[:], plaintext, s.adBuf)
	clear(key[:])
	clear(mk[:])
	s.sent = s.nonce

	s.cks = next
	s.ns++
	return ret, nil
}

// header is a decrypted header.
type header struct {
	dh    [32]byte
	pn, n uint32
}

// openHeader tries to decrypt the message's header under aead.
func (s *State) openHeader(aead cipher.AEAD, msg []byte, h *header) bool {
	pt, err := aead.Open(s.hdr[:0], msg[1:1+headerNonceSize], msg[1+headerNonceSize:prefixSize], msg[:1])
	if err != nil || len(pt) != HeaderSize {
		return false
	}
	copy(h.dh[:], pt[:32])
	h.pn = binary.BigEndian.Uint32(pt[32:36])
	h.n = binary.BigEndian.Uint32(pt[36:40])
	clear(s.hdr[:])
	return true
}

// openBody decrypts the message body under the message key mk.
func (s *State) openBody(dst []byte, mk *[32]byte, msg []byte) ([]byte, error) {
	s.adBuf = append(append(s.adBuf[:0], s.ad...), msg[:prefixSize]...)
	var key [32]byte
	key, s.nonce = messageKeys(mk)
	aead, _ := chacha20poly1305.New(key[:]) // cannot fail: the key is 32 bytes
	clear(key[:])
	out, err := aead.Open(dst, s.nonce[:], msg[prefixSize:], s.adBuf)
	if err != nil {
		return nil, ErrDecrypt
	}
	return out, nil
}

// Decrypt authenticates and decrypts the wire message msg, appends the
// plaintext to dst and returns the extended slice. dst must not overlap msg.
// now is the local time, used to date newly skipped keys and to evict old
// ones. On any error the state is unchanged.
func (s *State) Decrypt(dst, msg []byte, now time.Time) ([]byte, error) {
	if len(msg) < Overhead || len(msg) > MaxMessageSize {
		return nil, ErrDecrypt
	}
	if v := msg[0]; v != s.version {
		if v >= 1 && v <= Version && v < s.minVersion {
			return nil, ErrVersion
		}
		return nil, ErrDecrypt
	}
	var h header

	// The current receiving chain: a message in order, ahead, or late.
	if s.flags&flagReceiving != 0 {
		if s.hkrAEAD == nil {
			s.hkrAEAD = newHeaderAEAD(&s.hkr)
		}
		if s.openHeader(s.hkrAEAD, msg, &h) {
			if h.n < s.nr {
				return s.decryptSkipped(dst, &s.hkr, h.n, msg, now)
			}
			if h.n-s.nr > MaxSkip || h.n == math.MaxUint32 {
				return nil, ErrTooFarAhead // (an honest sender never numbers a message 2^32-1)
			}
			s.stage = s.stage[:0]
			ck := s.skipTo(s.ckr, &s.hkr, s.nr, h.n)
			mk, next := kdfChain(&ck)
			out, err := s.openBody(dst, &mk, msg)
			clear(mk[:])
			if err != nil {
				s.clearStage()
				return nil, err
			}
			s.commitStage(now)
			s.ckr = next
			s.nr = h.n + 1
			s.forgetRatchetKey() // (a state stored by an older version)
			s.evict(now)
			return out, nil
		}
	}

	// The next receiving chain: the peer's new ratchet key.
	if s.nhkrAEAD == nil {
		s.nhkrAEAD = newHeaderAEAD(&s.nhkr)
	}
	if s.openHeader(s.nhkrAEAD, msg, &h) {
		return s.decryptRatchet(dst, &h, msg, now)
	}

	// A past receiving chain: a late message or a replay.
	for i := range s.oldChains {
		hk := &s.oldChains[i].hk
		if s.openHeader(newHeaderAEAD(hk), msg, &h) {
			return s.decryptSkipped(dst, hk, h.n, msg, now)
		}
	}
	return nil, ErrDecrypt
}

// decryptRatchet handles a message whose header opened under NHKr: it
// performs the receiving half of the DH ratchet and erases the own ratchet
// key it used.
func (s *State) decryptRatchet(dst []byte, h *header, msg []byte, now time.Time) ([]byte, error) {
	if s.flags&flagSendPending != 0 && s.dhsPub == [32]byte{} {
		// A second new key before this side sent with a new key of its
		// own: an honest peer never sends one (its next key needs ours).
		return nil, ErrDecrypt
	}
	// Both skip counts are checked before any key is derived.
	var skipCurrent uint32
	receiving := s.flags&flagReceiving != 0
	if receiving && h.pn > s.nr {
		skipCurrent = h.pn - s.nr
	}
	if skipCurrent > MaxSkip || h.n > MaxSkip {
		return nil, ErrTooFarAhead
	}
	s.stage = s.stage[:0]
	if receiving {
		s.skipTo(s.ckr, &s.hkr, s.nr, s.nr+skipCurrent)
	}
	priv, err := s.ratchetKey()
	if err != nil {
		s.clearStage()
		return nil, err
	}
	dh, err := ecc.X25519(priv, h.dh[:])
	if err != nil {
		s.clearStage()
		return nil, ErrDecrypt
	}
	rk, ckr, nhkr := kdfRoot(&s.rk, dh)
	clear(dh)
	ck := s.skipTo(ckr, &s.nhkr, 0, h.n)
	mk, next := kdfChain(&ck)
	out, err := s.openBody(dst, &mk, msg)
	clear(mk[:])
	if err != nil {
		s.clearStage()
		clear(rk[:])
		clear(ckr[:])
		clear(nhkr[:])
		return nil, err
	}

	// Commit.
	s.commitStage(now)
	if receiving {
		s.oldChains = slices.Insert(s.oldChains, 0, oldChain{hk: s.hkr, retired: now.Unix()})
	}
	s.hkr = s.nhkr
	s.hkrAEAD = s.nhkrAEAD
	s.nhkr = nhkr
	s.nhkrAEAD = nil
	s.dhr = h.dh
	s.rk = rk
	s.ckr = next
	s.nr = h.n + 1
	s.flags |= flagRemoteKey | flagReceiving | flagSendPending
	s.forgetRatchetKey()
	s.evict(now)
	return out, nil
}

// decryptSkipped decrypts a message of an earlier position with its stored
// key, or reports a duplicate if the key is gone.
func (s *State) decryptSkipped(dst []byte, hk *[32]byte, n uint32, msg []byte, now time.Time) ([]byte, error) {
	i := s.findSkipped(hk, n)
	if i < 0 {
		return nil, ErrDuplicate
	}
	out, err := s.openBody(dst, &s.skipped[i].mk, msg)
	if err != nil {
		return nil, err
	}
	clear(s.skipped[i].mk[:])
	s.skipped = slices.Delete(s.skipped, i, i+1)
	s.forgetRatchetKey() // (a state stored by an older version)
	s.evict(now)
	return out, nil
}

func (s *State) findSkipped(hk *[32]byte, n uint32) int {
	for i := range s.skipped {
		k := &s.skipped[i]
		if k.n == n && k.hk == *hk {
			return i
		}
	}
	return -1
}

// skipTo derives the message keys from..until-1 of chain ck into s.stage and
// returns the chain key at position until. The caller has bounded until-from.
func (s *State) skipTo(ck [32]byte, hk *[32]byte, from, until uint32) [32]byte {
	for n := from; n < until; n++ {
		mk, next := kdfChain(&ck)
		s.stage = append(s.stage, skippedKey{hk: *hk, n: n, mk: mk})
		ck = next
	}
	return ck
}

func (s *State) clearStage() {
	clear(s.stage)
	s.stage = s.stage[:0]
}

func (s *State) commitStage(now time.Time) {
	t := now.Unix()
	for i := range s.stage {
		s.stage[i].stored = t
	}
	s.skipped = append(s.skipped, s.stage...)
	s.clearStage()
}

// evict drops skipped keys and old chains beyond their age or count bounds,
// and skipped keys whose chain is no longer known.
func (s *State) evict(now time.Time) {
	limit := now.Add(-MaxSkippedAge).Unix()
	s.oldChains = slices.DeleteFunc(s.oldChains, func(c oldChain) bool { return c.retired < limit })
	if len(s.oldChains) > MaxOldChains {
		clear(s.oldChains[MaxOldChains:])
		s.oldChains = s.oldChains[:MaxOldChains]
	}
	if len(s.skipped) == 0 {
		return
	}
	s.skipped = slices.DeleteFunc(s.skipped, func(k skippedKey) bool {
		if k.stored < limit {
			return true
		}
		if s.flags&flagReceiving != 0 && k.hk == s.hkr {
			return false
		}
		for i := range s.oldChains {
			if k.hk == s.oldChains[i].hk {
				return false
			}
		}
		return true
	})
	if extra := len(s.skipped) - MaxSkippedKeys; extra > 0 {
		s.skipped = slices.Delete(s.skipped, 0, extra)
	}
}

// ratchetKey returns the own ratchet private key, building it from its bytes
// after UnmarshalBinary.
func (s *State) ratchetKey() (*ecdh.PrivateKey, error) {
	if s.dhsKey != nil {
		return s.dhsKey, nil
	}
	priv, err := ecdh.X25519().NewPrivateKey(s.dhsPriv[:])
	if err != nil {
		return nil, ErrInvalidState
	}
	if subtle.ConstantTimeCompare(priv.PublicKey().Bytes(), s.dhsPub[:]) != 1 {
		return nil, ErrInvalidState
	}
	s.dhsKey = priv
	return priv, nil
}

func newHeaderAEAD(key *[32]byte) cipher.AEAD {
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		panic("ratchet: " + err.Error()) // unreachable: the key is 32 bytes
	}
	return aead
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
