package mailbox

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/sealpost/sealpost/protocol"
)

// What an invite unlocks on a relay (docs/PROTOCOL.md, relay section).
// The invite link carries the invite secret S and, per relay, the mailbox
// ID; the relay never sees S:
//
//	token T = protocol.InviteToken(S, mailbox ID)
//	card key = HKDF-SHA256(ikm = S, salt = none,
//	                       info = "sealpost/v1/invite-card" || 0x00 || mailbox ID, 32)
//
// T is the deposit token of the invite on that mailbox (the relay holds
// SHA-256(T)), and the card blob is stored under it:
//
//	blob = nonce (24) || XChaCha20-Poly1305(card key, nonce,
//	                        contents, ad = "sealpost/v1/invite-card" || 0x00 || mailbox ID)
//	contents = 0x01 || uvarint(len card) || card || uvarint(len bundle) || bundle
//	           [|| prekey key (32)]
//
// card is the owner's encoded protocol.Card (with the mailbox entries,
// sealing keys and T), bundle the crypto/prekey bundle version the invite
// pins, without a one-time prekey. The initiator checks the bundle against
// the invite's pin and identity key, as for a bundle its device serves.
//
// The prekey key K_pk of the mailbox encrypts the one-time prekeys the
// owner keeps on the relay (one crypto/prekey one-time prekey record per
// blob, handed to one token holder each):
//
//	K_pk = HKDF-SHA256(ikm = the mailbox's X25519 sealing private key,
//	                   salt = none, info = "sealpost/v1/relay-prekeys" || 0x00 || mailbox ID, 32)
//	prekey blob = nonce (24) || XChaCha20-Poly1305(K_pk, nonce, record,
//	                   ad = "sealpost/v1/relay-prekeys" || 0x00 || mailbox ID)
//
// The relay knows only the sealing key's public half, so it can neither
// read the prekeys nor test them against identity keys; whoever holds the
// invite learns K_pk from the card blob, and an accepted contact from the
// mailbox entry of the owner's card (protocol card version 2).
//
// Under each accepted contact's deposit token the owner keeps the card
// blob of that token: its current bundle (without a one-time prekey), for
// when the contact must start a session while the owner's device is
// offline:
//
//	bundle key = HKDF-SHA256(ikm = K_pk, salt = none,
//	                         info = "sealpost/v1/contact-bundle" || 0x00 || mailbox ID, 32)
//	bundle blob = nonce (24) || XChaCha20-Poly1305(bundle key, nonce,
//	                   0x01 || bundle, ad = "sealpost/v1/contact-bundle" || 0x00 || mailbox ID)
//
// The relay hands it only to a holder of that token; every holder of K_pk
// could read it, but it holds nothing they could not fetch from the
// owner's device. The contact checks the bundle against the pinned
// identity and device, as for a bundle the device serves.
const (
	cardLabel   = "sealpost/v1/invite-card"
	prekeyLabel = "sealpost/v1/relay-prekeys"
	bundleLabel = "sealpost/v1/contact-bundle"
	blobFormat  = 1
)

// PrekeyKeySize is the size of K_pk.
const PrekeyKeySize = chacha20poly1305.KeySize

// PrekeyKey derives K_pk from a mailbox's sealing private key (its
// 32-byte seed, store.Mailbox.SealingKey).
func PrekeyKey(sealing []byte, m [32]byte) []byte {
	k, err := hkdf.Key(sha256.New, sealing, nil, prekeyLabel+"\x00"+string(m[:]), PrekeyKeySize)
	if err != nil {
		panic(err)
	}
	return k
}

// SealPrekey encrypts one one-time prekey record for mailbox m under
// key (PrekeyKey).
func SealPrekey(key []byte, m [32]byte, record []byte, rand io.Reader) ([]byte, error) {
	return sealBlob(key, prekeyLabel, m, record, rand)
}

// ErrPrekeyBlob is the one error OpenPrekey returns.
var ErrPrekeyBlob = errors.New("mailbox: cannot open the prekey blob")

// OpenPrekey decrypts a prekey blob of mailbox m; the record is
// unchecked (the caller parses and verifies it).
func OpenPrekey(key []byte, m [32]byte, blob []byte) ([]byte, error) {
	pt, ok := openBlob(key, prekeyLabel, m, blob, protocol.MaxPrekeyBlob)
	if !ok {
		return nil, ErrPrekeyBlob
	}
	return pt, nil
}

// sealBlob encrypts pt under key (XChaCha20-Poly1305, bound to label and
// mailbox m) behind a nonce from rand.
func sealBlob(key []byte, label string, m [32]byte, pt []byte, rand io.Reader) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(pt)+aead.Overhead())
	if _, err := io.ReadFull(rand, out); err != nil {
		return nil, fmt.Errorf("mailbox: nonce: %w", err)
	}
	return aead.Seal(out, out, pt, []byte(label+"\x00"+string(m[:]))), nil
}

// openBlob decrypts what sealBlob made with the same key, label and m; it
// reports false for a blob over max bytes or one that does not open.
func openBlob(key []byte, label string, m [32]byte, blob []byte, max int) ([]byte, bool) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil || len(blob) > max || len(blob) < aead.NonceSize()+aead.Overhead() {
		return nil, false
	}
	n := aead.NonceSize()
	pt, err := aead.Open(nil, blob[:n], blob[n:], []byte(label+"\x00"+string(m[:])))
	return pt, err == nil
}

// ErrCardBlob is the one error OpenCard returns for a blob that does not
// open or parse: a wrong secret, another mailbox, or damage.
var ErrCardBlob = errors.New("mailbox: cannot open the card blob")

func cardKey(s [16]byte, m [32]byte) []byte {
	k, err := hkdf.Key(sha256.New, s[:], nil, cardLabel+"\x00"+string(m[:]), chacha20poly1305.KeySize)
	if err != nil {
		panic(err)
	}
	return k
}

// SealCard encrypts the card blob of the invite with secret s on mailbox
// m; prekeyKey (K_pk, optional) lets the initiator read the one-time
// prekeys on the relay. rand supplies the nonce.
func SealCard(s [16]byte, m [32]byte, card, bundle, prekeyKey []byte, rand io.Reader) ([]byte, error) {
	if len(prekeyKey) != 0 && len(prekeyKey) != PrekeyKeySize {
		return nil, fmt.Errorf("mailbox: prekey key of %d bytes", len(prekeyKey))
	}
	if len(card) == 0 || len(card) > protocol.MaxCard || len(bundle) == 0 || len(bundle) > protocol.MaxBundle {
		return nil, fmt.Errorf("mailbox: card blob of a %d-byte card and a %d-byte bundle", len(card), len(bundle))
	}
	pt := []byte{blobFormat}
	pt = binary.AppendUvarint(pt, uint64(len(card)))
	pt = append(pt, card...)
	pt = binary.AppendUvarint(pt, uint64(len(bundle)))
	pt = append(pt, bundle...)
	pt = append(pt, prekeyKey...)
	return sealBlob(cardKey(s, m), cardLabel, m, pt, rand)
}

// OpenCard decrypts a card blob and returns the card and bundle bytes,
// unchecked (the caller parses and verifies both), and K_pk if the blob
// holds one. Every failure is ErrCardBlob.
func OpenCard(s [16]byte, m [32]byte, blob []byte) (card, bundle, prekeyKey []byte, err error) {
	pt, ok := openBlob(cardKey(s, m), cardLabel, m, blob, protocol.MaxCardBlob)
	if !ok || len(pt) < 1 || pt[0] != blobFormat {
		return nil, nil, nil, ErrCardBlob
	}
	rest := pt[1:]
	field := func(max int) []byte {
		l, k := binary.Uvarint(rest)
		if k <= 0 || l == 0 || l > uint64(max) || l > uint64(len(rest)-k) {
			rest = nil
			return nil
		}
		f := rest[k : k+int(l)]
		rest = rest[k+int(l):]
		return f
	}
	card = field(protocol.MaxCard)
	if card == nil {
		return nil, nil, nil, ErrCardBlob
	}
	bundle = field(protocol.MaxBundle)
	if bundle == nil || (len(rest) != 0 && len(rest) != PrekeyKeySize) {
		return nil, nil, nil, ErrCardBlob
	}
	if len(rest) > 0 {
		prekeyKey = rest
	}
	return card, bundle, prekeyKey, nil
}

// ErrBundleBlob is the one error OpenBundle returns for a blob that does
// not open: a wrong key, another mailbox, or damage.
var ErrBundleBlob = errors.New("mailbox: cannot open the bundle blob")

func bundleKey(prekeyKey []byte, m [32]byte) ([]byte, error) {
	if len(prekeyKey) != PrekeyKeySize {
		return nil, fmt.Errorf("mailbox: prekey key of %d bytes", len(prekeyKey))
	}
	return hkdf.Key(sha256.New, prekeyKey, nil, bundleLabel+"\x00"+string(m[:]), chacha20poly1305.KeySize)
}

// SealBundle encrypts the bundle blob of mailbox m (the owner's current
// bundle, without a one-time prekey) under a key derived from K_pk
// (PrekeyKey). rand supplies the nonce.
func SealBundle(prekeyKey []byte, m [32]byte, bundle []byte, rand io.Reader) ([]byte, error) {
	if len(bundle) == 0 || len(bundle) > protocol.MaxBundle {
		return nil, fmt.Errorf("mailbox: bundle blob of a %d-byte bundle", len(bundle))
	}
	k, err := bundleKey(prekeyKey, m)
	if err != nil {
		return nil, err
	}
	return sealBlob(k, bundleLabel, m, append([]byte{blobFormat}, bundle...), rand)
}

// OpenBundle decrypts a bundle blob of mailbox m and returns the bundle
// bytes, unchecked (the caller parses and verifies them). Every failure
// is ErrBundleBlob.
func OpenBundle(prekeyKey []byte, m [32]byte, blob []byte) ([]byte, error) {
	k, err := bundleKey(prekeyKey, m)
	if err != nil {
		return nil, ErrBundleBlob
	}
	pt, ok := openBlob(k, bundleLabel, m, blob, protocol.MaxCardBlob)
	if !ok || len(pt) < 2 || pt[0] != blobFormat || len(pt)-1 > protocol.MaxBundle {
		return nil, ErrBundleBlob
	}
	return pt[1:], nil
}
