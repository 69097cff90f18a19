package mls

import (
	"crypto/subtle"
	"fmt"
	"io"
)

// Message framing (RFC 9420 §6): signing a FramedContent, the membership
// tag of a PublicMessage, and the two layers of encryption of a
// PrivateMessage.

// contentTBS encodes the FramedContentTBS: what a sender signs. The group
// context is included for member and new-member-commit senders.
func contentTBS(wireFormat uint16, content *framedContent, groupContext []byte) []byte {
	return mustEncode(func(w *writer) {
		w.u16(protocolVersionMLS10)
		w.u16(wireFormat)
		content.encode(w)
		if t := content.sender.typ; t == senderMember || t == senderNewMemberCommit {
			w.bytes(groupContext)
		}
	})
}

// signContent returns the signature of a FramedContent.
func (s *suite) signContent(sg *signer, wireFormat uint16, content *framedContent, groupContext []byte) ([]byte, error) {
	return s.signWithLabel(sg, "FramedContentTBS", contentTBS(wireFormat, content, groupContext))
}

// verifyContent checks the signature of a FramedContent.
func (s *suite) verifyContent(pub []byte, wireFormat uint16, content *framedContent, groupContext, sig []byte) bool {
	return s.verifyWithLabel(pub, "FramedContentTBS", contentTBS(wireFormat, content, groupContext), sig)
}

// membershipTag is MAC(membership_key, AuthenticatedContentTBM).
func (s *suite) membershipTag(key []byte, content *framedContent, auth *authData, groupContext []byte) []byte {
	return s.mac(key, mustEncode(func(w *writer) {
		w.bytes(contentTBS(wireFormatPublicMessage, content, groupContext))
		auth.encode(w, content.contentType)
	}))
}

// authenticatedContentBytes encodes the AuthenticatedContent of a message:
// what a proposal reference hashes.
func authenticatedContentBytes(wireFormat uint16, content *framedContent, auth *authData) []byte {
	return mustEncode(func(w *writer) {
		w.u16(wireFormat)
		content.encode(w)
		auth.encode(w, content.contentType)
	})
}

// privateContentAAD encodes the PrivateContentAAD.
func privateContentAAD(m *privateMessage) []byte {
	return mustEncode(func(w *writer) {
		w.opaque(m.groupID)
		w.u64(m.epoch)
		w.u8(m.contentType)
		w.opaque(m.authenticatedData)
	})
}

// senderDataAAD encodes the SenderDataAAD.
func senderDataAAD(m *privateMessage) []byte {
	return mustEncode(func(w *writer) {
		w.opaque(m.groupID)
		w.u64(m.epoch)
		w.u8(m.contentType)
	})
}

// ratchetType is the sender ratchet that protects a content type.
func ratchetType(contentType uint8) int {
	if contentType == contentApplication {
		return applicationRatchet
	}
	return handshakeRatchet
}

// guardNonce XORs the reuse guard into the first four bytes of a copy of
// the ratchet nonce.
func guardNonce(nonce []byte, guard [4]byte) []byte {
	n := append([]byte(nil), nonce...)
	subtle.XORBytes(n[:4], n[:4], guard[:])
	return n
}

// sealPrivate encrypts an authenticated content from a member as a
// PrivateMessage with the given key from the sender's ratchet, padding
// the plaintext to a multiple of padBlock bytes (no padding when padBlock
// is 0 or 1). The reuse guard is read from rand.
func (s *suite) sealPrivate(content *framedContent, auth *authData, senderDataSecret []byte,
	generation uint32, kn keyNonce, padBlock int, rand io.Reader) (*privateMessage, error) {
	if content.sender.typ != senderMember {
		return nil, fmt.Errorf("mls: private message from a non-member sender")
	}
	var guard [4]byte
	if _, err := io.ReadFull(rand, guard[:]); err != nil {
		return nil, err
	}
	pt := mustEncode(func(w *writer) {
		content.encodeBody(w)
		auth.encode(w, content.contentType)
	})
	if padBlock > 1 {
		if r := len(pt) % padBlock; r != 0 {
			pt = append(pt, make([]byte, padBlock-r)...)
		}
	}
	m := &privateMessage{
		groupID:           content.groupID,
		epoch:             content.epoch,
		contentType:       content.contentType,
		authenticatedData: content.authenticatedData,
	}
	ct, err := s.aeadSeal(kn.key, guardNonce(kn.nonce, guard), pt, privateContentAAD(m))
	if err != nil {
		return nil, err
	}
	m.ciphertext = ct
	sd := mustEncode(func(w *writer) {
		w.u32(content.sender.index)
		w.u32(generation)
		w.bytes(guard[:])
	})
	key, nonce := s.senderDataKeyNonce(senderDataSecret, ct)
	if m.encryptedSenderData, err = s.aeadSeal(key, nonce, sd, senderDataAAD(m)); err != nil {
		return nil, err
	}
	return m, nil
}

// openSenderData decrypts the sender data of a PrivateMessage.
func (s *suite) openSenderData(m *privateMessage, senderDataSecret []byte) (senderData, error) {
	key, nonce := s.senderDataKeyNonce(senderDataSecret, m.ciphertext)
	pt, err := s.aeadOpen(key, nonce, m.encryptedSenderData, senderDataAAD(m))
	if err != nil {
		return senderData{}, ErrAuth
	}
	if len(pt) != senderDataSize {
		return senderData{}, fmt.Errorf("%w: sender data of %d bytes", ErrMalformed, len(pt))
	}
	r := &reader{b: pt}
	sd := senderData{leaf: leafIndex(r.u32()), generation: r.u32()}
	copy(sd.reuseGuard[:], r.take(4))
	return sd, nil
}

// openContent decrypts the content of a PrivateMessage with the key of
// its sender's ratchet and returns the FramedContent and its auth data.
// Padding must be all zero.
func (s *suite) openContent(m *privateMessage, sd senderData, kn keyNonce) (*framedContent, *authData, error) {
	pt, err := s.aeadOpen(kn.key, guardNonce(kn.nonce, sd.reuseGuard), m.ciphertext, privateContentAAD(m))
	if err != nil {
		return nil, nil, ErrAuth
	}
	c := &framedContent{
		groupID:           m.groupID,
		epoch:             m.epoch,
		sender:            sender{typ: senderMember, index: uint32(sd.leaf)},
		authenticatedData: m.authenticatedData,
		contentType:       m.contentType,
	}
	a := new(authData)
	r := &reader{b: pt}
	c.decodeBody(r)
	a.decode(r, c.contentType)
	if r.err != nil {
		return nil, nil, fmt.Errorf("%w: private message content: %v", ErrMalformed, r.err)
	}
	for _, b := range r.b {
		if b != 0 {
			return nil, nil, fmt.Errorf("%w: non-zero padding", ErrMalformed)
		}
	}
	return c, a, nil
}

// sealPublic frames signed content as a PublicMessage, with a membership
// tag for member senders. Application data is never sent in the clear.
func (s *suite) sealPublic(content *framedContent, auth *authData, membershipKey, groupContext []byte) (*publicMessage, error) {
	if content.contentType == contentApplication {
		return nil, fmt.Errorf("mls: application data must be sent as a private message")
	}
	m := &publicMessage{content: *content, auth: *auth}
	if content.sender.typ == senderMember {
		m.membershipTag = s.membershipTag(membershipKey, content, auth, groupContext)
	}
	return m, nil
}
