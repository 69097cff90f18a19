package mls

import "fmt"

// epochSecrets are the secrets of one epoch derived from its epoch secret
// (RFC 9420 §8). The encryption secret goes straight into the secret tree.
type epochSecrets struct {
	senderData    []byte
	encryption    []byte
	exporter      []byte
	external      []byte
	confirmation  []byte
	membership    []byte
	resumption    []byte
	authenticator []byte
	init          []byte // init_secret of this epoch, for the next one
	welcome       []byte // welcome_secret of this epoch
	joiner        []byte // joiner_secret of this epoch
}

// joinerSecret is ExpandWithLabel(Extract(init, commit), "joiner", gc, Nh).
func (s *suite) joinerSecret(initSecret, commitSecret, groupContext []byte) []byte {
	return s.expandWithLabel(s.extract(initSecret, commitSecret), "joiner", groupContext, s.nh)
}

// epochFromJoiner derives the epoch's secrets from the joiner secret, the
// PSK secret (nil for none, meaning the all-zero string) and the encoded
// GroupContext of the new epoch.
func (s *suite) epochFromJoiner(joiner, pskSecret, groupContext []byte) *epochSecrets {
	if pskSecret == nil {
		pskSecret = make([]byte, s.nh)
	}
	member := s.extract(joiner, pskSecret)
	epoch := s.expandWithLabel(member, "epoch", groupContext, s.nh)
	e := &epochSecrets{
		joiner:        joiner,
		welcome:       s.deriveSecret(member, "welcome"),
		senderData:    s.deriveSecret(epoch, "sender data"),
		encryption:    s.deriveSecret(epoch, "encryption"),
		exporter:      s.deriveSecret(epoch, "exporter"),
		external:      s.deriveSecret(epoch, "external"),
		confirmation:  s.deriveSecret(epoch, "confirm"),
		membership:    s.deriveSecret(epoch, "membership"),
		resumption:    s.deriveSecret(epoch, "resumption"),
		authenticator: s.deriveSecret(epoch, "authentication"),
		init:          s.deriveSecret(epoch, "init"),
	}
	return e
}

// welcomeKeyNonce derives the key and nonce that encrypt the GroupInfo of
// a Welcome.
func (s *suite) welcomeKeyNonce(welcomeSecret []byte) (key, nonce []byte) {
	return s.expandWithLabel(welcomeSecret, "key", nil, s.nk), s.expandWithLabel(welcomeSecret, "nonce", nil, s.nn)
}

// pskSecret chains the PSKs into psk_secret (RFC 9420 §8.4); with no PSKs
// it is the all-zero string.
func (s *suite) pskSecret(ids []pskID, psks [][]byte) []byte {
	zero := make([]byte, s.nh)
	secret := zero
	for i := range ids {
		extracted := s.extract(zero, psks[i])
		label := mustEncode(func(w *writer) {
			ids[i].encode(w)
			w.u16(uint16(i))
			w.u16(uint16(len(ids)))
		})
		input := s.expandWithLabel(extracted, "derived psk", label, s.nh)
		secret = s.extract(input, secret)
	}
	return secret
}

// exporter is MLS-Exporter(label, context, length) over an exporter secret.
func (s *suite) exporter(exporterSecret []byte, label string, context []byte, length int) ([]byte, error) {
	if length < 0 || length > 255*s.nh {
		return nil, fmt.Errorf("mls: exporter length %d out of range", length)
	}
	return s.expandWithLabel(s.deriveSecret(exporterSecret, label), "exported", s.hash(context), length), nil
}

// confirmedTranscriptHash is Hash(interim || ConfirmedTranscriptHashInput)
// for a commit's wire format, content and signature.
func (s *suite) confirmedTranscriptHash(interim []byte, wireFormat uint16, content *framedContent, signature []byte) []byte {
	return s.hash(mustEncode(func(w *writer) {
		w.bytes(interim)
		w.u16(wireFormat)
		content.encode(w)
		w.opaque(signature)
	}))
}

// interimTranscriptHash is Hash(confirmed || InterimTranscriptHashInput).
func (s *suite) interimTranscriptHash(confirmed, confirmationTag []byte) []byte {
	return s.hash(mustEncode(func(w *writer) {
		w.bytes(confirmed)
		w.opaque(confirmationTag)
	}))
}
