package ratchet

import (
	"crypto/sha256"
	"encoding/binary"
)

// Domain labels. Each is the HKDF info (or hash prefix) of one derivation;
// docs/PROTOCOL.md §6 lists them.
const (
	labelInit    = "sealpost/v1/dr/init"
	labelRoot    = "sealpost/v1/dr/root"
	labelMessage = "sealpost/v1/dr/msg"
	labelHash    = "sealpost/v1/dr/hash"
)

// Chain KDF inputs (Signal's recommendation): the message key is
// HMAC(ck, 0x01), the next chain key HMAC(ck, 0x02).
const (
	chainMessageByte = 0x01
	chainNextByte    = 0x02
)

// maxHMACMessage bounds the messages hmacSHA256 takes: every message in this
// package is at most 32 bytes of key material plus a label and a counter.
const maxHMACMessage = 64

// hmacSHA256 computes HMAC-SHA256 (RFC 2104) of msg under a 32-byte key on
// the stack: keys here are used for one or two HMACs only, so precomputing
// the pads (as crypto/hmac does) would not pay, and this avoids its
// allocations. The tests compare it with crypto/hmac.
func hmacSHA256(key *[32]byte, msg []byte) [32]byte {
	if len(msg) > maxHMACMessage {
		panic("ratchet: hmac message too long") // programmer error: all callers pass fixed sizes
	}
	var inner [64 + maxHMACMessage]byte
	for i := range 32 {
		inner[i] = key[i] ^ 0x36
	}
	for i := 32; i < 64; i++ {
		inner[i] = 0x36
	}
	n := copy(inner[64:], msg)
	ih := sha256.Sum256(inner[:64+n])
	var outer [64 + 32]byte
	for i := range 32 {
		outer[i] = key[i] ^ 0x5c
	}
	for i := 32; i < 64; i++ {
		outer[i] = 0x5c
	}
	copy(outer[64:], ih[:])
	return sha256.Sum256(outer[:])
}

// hkdfExtract is HKDF-Extract(salt, ikm) with SHA-256 for a 32-byte salt and
// a 32-byte input.
func hkdfExtract(salt *[32]byte, ikm []byte) [32]byte {
	return hmacSHA256(salt, ikm)
}

// hkdfExpand fills out (at most 3*32 bytes) with HKDF-Expand(prk, info)
// using SHA-256. info must be at most 31 bytes.
func hkdfExpand(prk *[32]byte, info string, out []byte) {
	var buf [32 + 31 + 1]byte
	var t [32]byte
	prev := 0
	for i := byte(1); len(out) > 0; i++ {
		n := copy(buf[:], t[:prev])
		n += copy(buf[n:], info)
		buf[n] = i
		t = hmacSHA256(prk, buf[:n+1])
		prev = 32
		out = out[copy(out, t[:]):]
	}
}

// kdfInit derives the first root key and the two shared header keys from
// the PQXDH secret: HKDF-SHA256(salt = 32 zero bytes, ikm = secret,
// info = labelInit || version), 96 bytes.
func kdfInit(secret *[32]byte, version uint8) (rk, hka, nhkb [32]byte) {
	var zero [32]byte
	prk := hkdfExtract(&zero, secret[:])
	var info [len(labelInit) + 1]byte
	copy(info[:], labelInit)
	info[len(labelInit)] = version
	var out [96]byte
	hkdfExpand(&prk, string(info[:]), out[:])
	copy(rk[:], out[0:32])
	copy(hka[:], out[32:64])
	copy(nhkb[:], out[64:96])
	clear(out[:])
	return
}

// kdfRoot is KDF_RK_HE: HKDF-SHA256(salt = rk, ikm = dh, info = labelRoot),
// 96 bytes split into the next root key, a chain key and the next header key.
func kdfRoot(rk *[32]byte, dh []byte) (nrk, ck, nhk [32]byte) {
	prk := hkdfExtract(rk, dh)
	var out [96]byte
	hkdfExpand(&prk, labelRoot, out[:])
	copy(nrk[:], out[0:32])
	copy(ck[:], out[32:64])
	copy(nhk[:], out[64:96])
	clear(out[:])
	return
}

// kdfChain is KDF_CK: it returns the message key and the next chain key.
func kdfChain(ck *[32]byte) (mk, next [32]byte) {
	mk = hmacSHA256(ck, []byte{chainMessageByte})
	next = hmacSHA256(ck, []byte{chainNextByte})
	return
}

// messageKeys expands a message key into the ChaCha20-Poly1305 key and nonce:
// HKDF-Expand(prk = mk, info = labelMessage, 44 bytes). mk is already a
// uniformly random 32-byte key, so the extract step is skipped (RFC 5869 §3.3).
func messageKeys(mk *[32]byte) (key [32]byte, nonce [12]byte) {
	var out [44]byte
	hkdfExpand(mk, labelMessage, out[:])
	copy(key[:], out[:32])
	copy(nonce[:], out[32:])
	clear(out[:])
	return
}

// MessageHash returns SHA-256(labelHash || 0x00 || msg), a stable, labelled
// hash of a wire message. The node keeps it in its seen-set and checks it
// before decrypting, so a message that arrives twice (directly and through
// relays) is processed once.
func MessageHash(msg []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(labelHash))
	h.Write([]byte{0})
	h.Write(msg)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// putHeader writes the 40-byte header plaintext.
func putHeader(b []byte, dh *[32]byte, pn, n uint32) {
	copy(b[:32], dh[:])
	binary.BigEndian.PutUint32(b[32:36], pn)
	binary.BigEndian.PutUint32(b[36:40], n)
}
