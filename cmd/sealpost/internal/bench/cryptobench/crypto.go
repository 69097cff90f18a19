// Package cryptobench measures the crypto figures of `sealpost bench`:
// ratchet messages, PQXDH and sealed envelopes (Run), and MLS groups (MLS),
// each next to the time its primitives alone take in the same run.
package cryptobench

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench"
	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/pqxdh"
	"github.com/sealpost/sealpost/crypto/prekey"
	"github.com/sealpost/sealpost/crypto/ratchet"
	"github.com/sealpost/sealpost/crypto/seal"
)

// Options tune Run.
type Options struct {
	// Duration is the total measuring time, spread over every figure and
	// primitive and over the rounds. Zero means 3 seconds.
	Duration time.Duration
	// Rounds is how many times each operation is measured; the best round
	// counts. Zero means 3.
	Rounds int
}

// Names of the figures Run returns.
const (
	RatchetRoundTrip = "ratchet_roundtrip"
	RatchetDHStep    = "ratchet_dh_step"
	RatchetAllocs    = "ratchet_allocs_per_message"
	PQXDHInitiate    = "pqxdh_initiate"
	PQXDHRespond     = "pqxdh_respond"
	SealOpen         = "seal_open"
)

// payloadSize is the plaintext size of the ratchet figures.
const payloadSize = 256

// Run measures the crypto figures, each next to its limit: the time its
// primitives alone take, timed in the same run. Every operation (figures and
// primitives) is timed in Rounds interleaved rounds and its best round
// counts, so a burst of load on a shared machine hits figures and limits
// alike. All figures are in ops/s; Ratio = Value/Limit.
//
//	ratchet_roundtrip   encrypt + decrypt of a 256-byte message in a running
//	                    chain (no DH step). Limit: 8 HMAC (2 × (2 chain-step
//	                    HMACs + 2 for the message-key expansion)) +
//	                    ChaCha20-Poly1305 seal + open of 256 B (with the
//	                    session AD and encrypted header as associated data) +
//	                    XChaCha20-Poly1305 seal + open of the 40-byte header.
//	ratchet_dh_step     encrypt + decrypt of a 256-byte message that carries a
//	                    new ratchet key. Limit: the above + X25519 key
//	                    generation + 2 X25519 + 2 root-KDF steps (4 HMAC each:
//	                    HKDF extract + 3 expand blocks).
//	pqxdh_initiate      pqxdh.Initiate to a bundle with a one-time prekey,
//	                    bundle verification included. Limit: the bundle's
//	                    signature checks (2 Ed25519 key checks + 6 Ed25519
//	                    verifications) + X25519 key generation + 4 X25519 +
//	                    ML-KEM-768 encapsulation + HKDF.
//	pqxdh_respond       pqxdh.Respond to that message. Limit: 4 X25519 +
//	                    ML-KEM-768 decapsulation + HKDF + the initiator
//	                    checks (2 Ed25519 key checks + 3 Ed25519
//	                    verifications for its identity and device record +
//	                    the base key's subgroup check).
//	seal_open           seal.Seal + seal.Open of a 256-byte ratchet message
//	                    (a 2 KiB envelope). Limit: X25519 key generation +
//	                    2 X25519 + 2 HKDF + ChaCha20-Poly1305 seal + open of
//	                    the envelope.
//
// The primitives: HMAC is HMAC-SHA256 under a fresh 32-byte key computed as
// its definition (two crypto/sha256 calls; a key is used once or twice, so
// there is nothing to precompute); the AEADs are golang.org/x/crypto's, a
// ChaCha20-Poly1305 instance made per message (a fresh key each time) and an
// XChaCha20-Poly1305 instance made once (the header key lasts a chain);
// X25519 key generation is 32 bytes from crypto/rand and
// ecdh.X25519().NewPrivateKey; X25519 is (*ecdh.PrivateKey).ECDH; Ed25519
// verification is crypto/ed25519.Verify of a 128-byte message; the key
// check is identity.UserIDFromBytes (the check every identity and device key
// goes through) and the base-key check pqxdh.CheckBaseKey; HKDF is
// crypto/hkdf with the input sizes of the operation.
//
// The figure ratchet_allocs_per_message counts heap allocations of one
// encrypt + decrypt (256 bytes, destination buffers reused).
func Run(opts Options) ([]bench.Figure, error) {
	if opts.Duration <= 0 {
		opts.Duration = 3 * time.Second
	}
	if opts.Rounds <= 0 {
		opts.Rounds = 3
	}
	w, err := newWorkload()
	if err != nil {
		return nil, err
	}
	ops := w.ops()
	per := opts.Duration / time.Duration(len(ops)*opts.Rounds)
	if err := measureAll(ops, opts.Rounds, per); err != nil {
		return nil, err
	}
	ns := make(map[string]float64, len(ops))
	for _, o := range ops {
		ns[o.name] = o.best
	}

	roundTripLimit := 2*(2*ns[primHMAC]+2*ns[primHMAC]) +
		ns[primAEADSeal] + ns[primAEADOpen] + ns[primHeaderSeal] + ns[primHeaderOpen]
	dhStepLimit := roundTripLimit + ns[primX25519KeyGen] + 2*ns[primX25519] + 2*4*ns[primHMAC]
	sealLimit := ns[primX25519KeyGen] + 2*ns[primX25519] + 2*ns[primSealHKDF] +
		ns[primEnvelopeSeal] + ns[primEnvelopeOpen]
	initiateLimit := 2*ns[primEd25519Check] + 6*ns[primEd25519Verify] +
		ns[primX25519KeyGen] + 4*ns[primX25519] + ns[primMLKEMEncaps] + ns[primPQXDHHKDF]
	respondLimit := 4*ns[primX25519] + ns[primMLKEMDecaps] + ns[primPQXDHHKDF] +
		2*ns[primEd25519Check] + 3*ns[primEd25519Verify] + ns[primBaseKeyCheck]

	allocs, err := allocsPerRun(1000, w.roundTrip)
	if err != nil {
		return nil, err
	}
	figures := []bench.Figure{
		throughput(RatchetRoundTrip, ns[RatchetRoundTrip], roundTripLimit),
		throughput(RatchetDHStep, ns[RatchetDHStep], dhStepLimit),
		throughput(PQXDHInitiate, ns[PQXDHInitiate], initiateLimit),
		throughput(PQXDHRespond, ns[PQXDHRespond], respondLimit),
		throughput(SealOpen, ns[SealOpen], sealLimit),
		{Name: RatchetAllocs, Unit: "allocs/msg", Value: allocs},
	}
	return figures, nil
}

// throughput makes an ops/s figure from ns/op of the operation and of its
// limit.
func throughput(name string, ns, limitNS float64) bench.Figure {
	var limit float64
	if limitNS > 0 {
		limit = 1e9 / limitNS
	}
	return bench.Rate(name, "ops/s", 1e9/ns, limit)
}

// Names of the primitives.
const (
	primHMAC          = "hmac_sha256"
	primAEADSeal      = "chacha20poly1305_seal_256"
	primAEADOpen      = "chacha20poly1305_open_256"
	primHeaderSeal    = "xchacha20poly1305_seal_header"
	primHeaderOpen    = "xchacha20poly1305_open_header"
	primX25519KeyGen  = "x25519_keygen"
	primX25519        = "x25519"
	primSealHKDF      = "seal_hkdf"
	primEnvelopeSeal  = "chacha20poly1305_seal_envelope"
	primEnvelopeOpen  = "chacha20poly1305_open_envelope"
	primEd25519Verify = "ed25519_verify"
	primEd25519Check  = "ed25519_key_check"
	primBaseKeyCheck  = "x25519_base_key_check"
	primMLKEMEncaps   = "mlkem768_encapsulate"
	primMLKEMDecaps   = "mlkem768_decapsulate"
	primPQXDHHKDF     = "pqxdh_hkdf"
)

// workload holds the sessions, keys and buffers the operations use.
type workload struct {
	rand io.Reader

	// Ratchet sessions: a and b for the round trip, c and d for DH steps.
	a, b, c, d *ratchet.State
	ad         []byte
	pt, msg    []byte
	out        []byte

	// Sealing.
	sender   *identity.Private
	sealing  *ecdh.PrivateKey
	mailbox  [seal.MailboxIDSize]byte
	device   []byte
	envelope []byte
	ratchMsg []byte

	// Primitive inputs.
	key        [32]byte
	hmacKey    [32]byte
	nonce      [chacha20poly1305.NonceSizeX]byte
	header     []byte
	headerCT   []byte
	headerAEAD interface {
		Seal(dst, nonce, plaintext, ad []byte) []byte
		Open(dst, nonce, ciphertext, ad []byte) ([]byte, error)
	}
	aeadCT     []byte
	aeadAD     []byte
	envPT      []byte
	envCT      []byte
	x25519Priv *ecdh.PrivateKey
	x25519Pub  *ecdh.PublicKey
	hkdfInfo   []byte
	scratch    []byte

	// PQXDH.
	now       time.Time
	alice     *identity.Private
	aliceDev  *identity.DeviceRecord
	bundle    *prekey.Bundle
	responder *pqxdh.Responder
	initial   *pqxdh.InitialMessage
	edPub     ed25519.PublicKey
	edMsg     []byte
	edSig     []byte
	baseKey   []byte
	kemEK     *mlkem.EncapsulationKey768
	kemDK     *mlkem.DecapsulationKey768
	kemCT     []byte
	pqxdhIKM  []byte
	pqxdhInfo []byte
}

func newWorkload() (*workload, error) {
	w := &workload{rand: rand.Reader}
	var err error
	// A realistic AD size: both public identities and both device IDs.
	w.ad = make([]byte, 1+2*identity.PublicSize+2*38)
	if _, err := io.ReadFull(w.rand, w.ad); err != nil {
		return nil, err
	}
	if w.a, w.b, err = w.session(); err != nil {
		return nil, err
	}
	if w.c, w.d, err = w.session(); err != nil {
		return nil, err
	}
	w.pt = make([]byte, payloadSize)
	w.msg = make([]byte, 0, payloadSize+ratchet.Overhead)
	w.out = make([]byte, 0, payloadSize)
	// Prime both sessions so that b and d can send.
	if err := w.roundTrip(); err != nil {
		return nil, err
	}
	if err := w.dhStep(); err != nil {
		return nil, err
	}

	if w.sender, err = identity.Generate(w.rand); err != nil {
		return nil, err
	}
	if w.sealing, err = ecdh.X25519().GenerateKey(w.rand); err != nil {
		return nil, err
	}
	w.device = make([]byte, 38)
	w.ratchMsg = make([]byte, payloadSize+ratchet.Overhead)

	// Primitive inputs.
	if _, err := io.ReadFull(w.rand, w.key[:]); err != nil {
		return nil, err
	}
	xa, err := chacha20poly1305.NewX(w.key[:])
	if err != nil {
		return nil, err
	}
	w.headerAEAD = xa
	w.header = make([]byte, ratchet.HeaderSize)
	w.headerCT = xa.Seal(nil, w.nonce[:], w.header, w.nonce[:1])
	w.aeadAD = make([]byte, len(w.ad)+1+ratchet.EncryptedHeaderSize)
	ca, err := chacha20poly1305.New(w.key[:])
	if err != nil {
		return nil, err
	}
	w.aeadCT = ca.Seal(nil, w.nonce[:12], w.pt, w.aeadAD)
	envSize := seal.EnvelopeSize(len(w.ratchMsg), len(w.device))
	w.envPT = make([]byte, envSize-seal.Overhead)
	w.envCT = ca.Seal(nil, w.nonce[:12], w.envPT, w.aeadAD[:seal.HeaderSize])
	if w.x25519Priv, err = ecdh.X25519().GenerateKey(w.rand); err != nil {
		return nil, err
	}
	w.x25519Pub = w.sealing.PublicKey()
	w.hkdfInfo = make([]byte, len("sealpost/v1/seal")+seal.HeaderSize+64)
	w.scratch = make([]byte, 0, 64<<10)
	if err := w.initPQXDH(); err != nil {
		return nil, err
	}
	return w, nil
}

// initPQXDH makes two devices, Bob's bundle with a one-time prekey, and an
// initial message from Alice for the responder figure.
func (w *workload) initPQXDH() error {
	w.now = time.Now()
	device := func(id *identity.Private) (*identity.DeviceRecord, error) {
		_, devKey, err := ed25519.GenerateKey(w.rand)
		if err != nil {
			return nil, err
		}
		devID := make([]byte, 38) // the size of an Ed25519 libp2p peer ID
		if _, err := io.ReadFull(w.rand, devID); err != nil {
			return nil, err
		}
		return identity.NewDeviceRecord(id, devKey, devID, w.now, 1)
	}
	var err error
	if w.alice, err = identity.Generate(w.rand); err != nil {
		return err
	}
	if w.aliceDev, err = device(w.alice); err != nil {
		return err
	}
	bob, err := identity.Generate(w.rand)
	if err != nil {
		return err
	}
	bobDev, err := device(bob)
	if err != nil {
		return err
	}
	spk, err := prekey.NewSignedPrekey(bob, 1, pqxdh.SupportedVersions(), w.now, w.rand)
	if err != nil {
		return err
	}
	kem, err := prekey.NewKEMPrekey(bob, 2, w.now, w.rand)
	if err != nil {
		return err
	}
	otps, err := prekey.NewOneTimePrekeys(bob, 3, 1, w.now, w.rand)
	if err != nil {
		return err
	}
	w.bundle = &prekey.Bundle{Identity: bob.Public(), Device: bobDev, SignedPrekey: spk.Public(), KEMPrekey: kem.Public(), OneTime: otps[0].Public()}
	w.responder = &pqxdh.Responder{Identity: bob, Device: bobDev, SignedPrekey: spk, KEMPrekey: kem, OneTime: otps[0]}
	ini, err := pqxdh.Initiate(w.alice, w.aliceDev, w.bundle, w.now, w.rand)
	if err != nil {
		return err
	}
	w.initial = ini.Message

	// Primitive inputs of the same sizes.
	edPub, edPriv, err := ed25519.GenerateKey(w.rand)
	if err != nil {
		return err
	}
	w.edPub = edPub
	w.edMsg = make([]byte, 128)
	w.edSig = ed25519.Sign(edPriv, w.edMsg)
	w.baseKey = ini.Message.BaseKey[:]
	if w.kemDK, err = mlkem.GenerateKey768(); err != nil {
		return err
	}
	w.kemEK = w.kemDK.EncapsulationKey()
	_, w.kemCT = w.kemEK.Encapsulate()
	w.pqxdhIKM = make([]byte, 32+4*32+mlkem.SharedKeySize)
	w.pqxdhInfo = make([]byte, len(pqxdh.LabelKDF)+1+len(ini.AD))
	return nil
}

// session starts a pair of ratchet sessions from a random secret.
func (w *workload) session() (*ratchet.State, *ratchet.State, error) {
	var secret [32]byte
	if _, err := io.ReadFull(w.rand, secret[:]); err != nil {
		return nil, nil, err
	}
	spk, err := ecdh.X25519().GenerateKey(w.rand)
	if err != nil {
		return nil, nil, err
	}
	a, err := ratchet.NewInitiator(secret, w.ad, spk.PublicKey().Bytes(), ratchet.Version, w.rand)
	if err != nil {
		return nil, nil, err
	}
	b, err := ratchet.NewResponder(secret, w.ad, spk, ratchet.Version)
	return a, b, err
}

func (w *workload) ops() []*op {
	return []*op{
		{name: RatchetRoundTrip, fn: w.roundTrip},
		{name: RatchetDHStep, fn: w.dhStep},
		{name: SealOpen, fn: w.sealOpen},
		{name: PQXDHInitiate, fn: w.initiate},
		{name: PQXDHRespond, fn: w.respond},
		{name: primHMAC, fn: w.hmac},
		{name: primAEADSeal, fn: w.aeadSeal},
		{name: primAEADOpen, fn: w.aeadOpen},
		{name: primHeaderSeal, fn: w.headerSeal},
		{name: primHeaderOpen, fn: w.headerOpen},
		{name: primX25519KeyGen, fn: w.keyGen},
		{name: primX25519, fn: w.x25519},
		{name: primSealHKDF, fn: w.sealHKDF},
		{name: primEnvelopeSeal, fn: w.envelopeSeal},
		{name: primEnvelopeOpen, fn: w.envelopeOpen},
		{name: primEd25519Verify, fn: w.edVerify},
		{name: primEd25519Check, fn: w.edCheck},
		{name: primBaseKeyCheck, fn: w.baseKeyCheck},
		{name: primMLKEMEncaps, fn: w.encaps},
		{name: primMLKEMDecaps, fn: w.decaps},
		{name: primPQXDHHKDF, fn: w.pqxdhHKDF},
	}
}

// initiate runs PQXDH as initiator to a bundle with a one-time prekey,
// including the bundle's verification.
func (w *workload) initiate() error {
	_, err := pqxdh.Initiate(w.alice, w.aliceDev, w.bundle, w.now, w.rand)
	return err
}

// respond runs PQXDH as responder to an initial message that used a
// one-time prekey, including the initiator's checks.
func (w *workload) respond() error {
	_, err := pqxdh.Respond(w.responder, w.initial)
	return err
}

func (w *workload) edVerify() error {
	if !ed25519.Verify(w.edPub, w.edMsg, w.edSig) {
		return fmt.Errorf("bench: ed25519 signature does not verify")
	}
	return nil
}

func (w *workload) edCheck() error {
	_, err := identity.UserIDFromBytes(w.edPub)
	return err
}

func (w *workload) baseKeyCheck() error { return pqxdh.CheckBaseKey(w.baseKey) }

func (w *workload) encaps() error {
	w.kemEK.Encapsulate()
	return nil
}

func (w *workload) decaps() error {
	_, err := w.kemDK.Decapsulate(w.kemCT)
	return err
}

func (w *workload) pqxdhHKDF() error {
	_, err := hkdfKey(w.pqxdhIKM, string(w.pqxdhInfo))
	return err
}

// roundTrip: a encrypts 256 bytes, b decrypts; no DH step.
func (w *workload) roundTrip() error {
	var err error
	if w.msg, err = w.a.Encrypt(w.msg[:0], w.pt, w.rand); err != nil {
		return err
	}
	w.out, err = w.b.Decrypt(w.out[:0], w.msg, time.Unix(0, 0))
	return err
}

// dhStep: one message the other way than the last, so it carries a new
// ratchet key.
func (w *workload) dhStep() error {
	var err error
	if w.msg, err = w.c.Encrypt(w.msg[:0], w.pt, w.rand); err != nil {
		return err
	}
	if w.out, err = w.d.Decrypt(w.out[:0], w.msg, time.Unix(0, 0)); err != nil {
		return fmt.Errorf("dh step: %w", err)
	}
	w.c, w.d = w.d, w.c
	return nil
}

// sealOpen seals a 256-byte ratchet message and opens it.
func (w *workload) sealOpen() error {
	env, err := seal.Seal(w.scratch[:0], w.mailbox, w.x25519Pub.Bytes(), w.sender.Public(), w.device, w.ratchMsg, w.rand)
	if err != nil {
		return err
	}
	_, err = seal.Open(env, w.sealing)
	return err
}

// hmac is HMAC-SHA256 (RFC 2104) under a fresh 32-byte key of a message of
// at most 55 bytes, computed as its definition with two SHA-256 calls: the
// cheapest form for a key used once.
func (w *workload) hmac() error {
	var inner [64 + 32]byte
	for i := range 32 {
		inner[i] = w.hmacKey[i] ^ 0x36
	}
	for i := 32; i < 64; i++ {
		inner[i] = 0x36
	}
	copy(inner[64:], w.hmacKey[:])
	ih := sha256.Sum256(inner[:])
	var outer [64 + 32]byte
	for i := range 32 {
		outer[i] = w.hmacKey[i] ^ 0x5c
	}
	for i := 32; i < 64; i++ {
		outer[i] = 0x5c
	}
	copy(outer[64:], ih[:])
	w.hmacKey = sha256.Sum256(outer[:])
	return nil
}

func (w *workload) aeadSeal() error {
	a, err := chacha20poly1305.New(w.key[:])
	if err != nil {
		return err
	}
	w.scratch = a.Seal(w.scratch[:0], w.nonce[:12], w.pt, w.aeadAD)
	return nil
}

func (w *workload) aeadOpen() error {
	a, err := chacha20poly1305.New(w.key[:])
	if err != nil {
		return err
	}
	w.scratch, err = a.Open(w.scratch[:0], w.nonce[:12], w.aeadCT, w.aeadAD)
	return err
}

func (w *workload) headerSeal() error {
	w.scratch = w.headerAEAD.Seal(w.scratch[:0], w.nonce[:], w.header, w.nonce[:1])
	return nil
}

func (w *workload) headerOpen() error {
	var err error
	w.scratch, err = w.headerAEAD.Open(w.scratch[:0], w.nonce[:], w.headerCT, w.nonce[:1])
	return err
}

func (w *workload) keyGen() error {
	var seed [32]byte
	if _, err := io.ReadFull(w.rand, seed[:]); err != nil {
		return err
	}
	_, err := ecdh.X25519().NewPrivateKey(seed[:])
	return err
}

func (w *workload) x25519() error {
	_, err := w.x25519Priv.ECDH(w.x25519Pub)
	return err
}

func (w *workload) sealHKDF() error {
	_, err := hkdfKey(w.key[:], string(w.hkdfInfo))
	return err
}

func (w *workload) envelopeSeal() error {
	a, err := chacha20poly1305.New(w.key[:])
	if err != nil {
		return err
	}
	w.scratch = a.Seal(w.scratch[:0], w.nonce[:12], w.envPT, w.aeadAD[:seal.HeaderSize])
	return nil
}

func (w *workload) envelopeOpen() error {
	a, err := chacha20poly1305.New(w.key[:])
	if err != nil {
		return err
	}
	w.scratch, err = a.Open(w.scratch[:0], w.nonce[:12], w.envCT, w.aeadAD[:seal.HeaderSize])
	return err
}
