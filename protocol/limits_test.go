package protocol

import (
	"strings"
	"testing"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/pqxdh"
	"github.com/sealpost/sealpost/crypto/prekey"
	"github.com/sealpost/sealpost/crypto/ratchet"
	"github.com/sealpost/sealpost/crypto/seal"
)

// TestLimitsFitCrypto checks the limits against the sizes crypto/ defines.
func TestLimitsFitCrypto(t *testing.T) {
	if MaxEnvelope != seal.MaxEnvelopeSize {
		t.Errorf("MaxEnvelope %d, crypto/seal's largest envelope %d", MaxEnvelope, seal.MaxEnvelopeSize)
	}
	// The largest Ciphertext, from the largest sender device, seals.
	if seal.EnvelopeSize(MaxCiphertext, MaxPeerID) == 0 {
		t.Errorf("a Ciphertext of MaxCiphertext (%d) bytes does not fit a sealed envelope", MaxCiphertext)
	}
	// The largest Plaintext encrypts to a ratchet message within its limit.
	if n := MaxPlaintext + ratchet.Overhead; n > MaxRatchetMessage || n > ratchet.MaxMessageSize {
		t.Errorf("largest plaintext encrypts to %d bytes; MaxRatchetMessage %d, ratchet's limit %d", n, MaxRatchetMessage, ratchet.MaxMessageSize)
	}
	if MaxPlaintext > ratchet.MaxPlaintextSize {
		t.Errorf("MaxPlaintext %d over ratchet's %d", MaxPlaintext, ratchet.MaxPlaintextSize)
	}
	if pqxdh.MaxInitialMessageSize > MaxPrekeyMessage {
		t.Errorf("crypto/pqxdh initial messages reach %d bytes, MaxPrekeyMessage %d", pqxdh.MaxInitialMessageSize, MaxPrekeyMessage)
	}
	if prekey.MaxBundleSize > MaxBundle {
		t.Errorf("crypto/prekey bundles reach %d bytes, MaxBundle %d", prekey.MaxBundleSize, MaxBundle)
	}
	if MaxIdentity != identity.PublicSize || MaxDeviceRecord != identity.MaxDeviceRecordSize {
		t.Error("identity limits differ from crypto/identity's sizes")
	}
	if MaxPeerID > identity.MaxDeviceIDSize || MaxPeerID > seal.MaxDeviceIDSize {
		t.Errorf("a peer ID of %d bytes would not fit a device record or an envelope", MaxPeerID)
	}
}

// TestLimitsNest builds the largest value of each layer and checks that it
// fits the next: frame ⊇ Deliver ⊇ Ciphertext ⊇ ratchet(Plaintext) ⊇ Card.
func TestLimitsNest(t *testing.T) {
	// The largest card that Marshal accepts, near MaxCard.
	card := sampleCard()
	card.Identity = pattern(MaxIdentity, 1)
	card.Device = pattern(MaxDeviceRecord, 2)
	card.Name = strings.Repeat("n", MaxName)
	card.Seq, card.UpdatedAt = 1<<63, MaxUnixMilli
	for len(card.Mailboxes) < MaxMailboxes {
		card.Mailboxes = append(card.Mailboxes, sampleMailbox())
	}
	for i := range card.Mailboxes {
		card.Mailboxes[i].Token = pattern(MaxToken, 3)
		card.Mailboxes[i].RelayAddrs = nil
		for range MaxMailboxAddrs {
			card.Mailboxes[i].RelayAddrs = append(card.Mailboxes[i].RelayAddrs, pattern(MaxAddr, 4))
		}
	}
	for n := MaxAddr; n > 0; n-- {
		card.Addrs = nil
		for range MaxCardAddrs {
			card.Addrs = append(card.Addrs, pattern(n, 4))
		}
		if _, err := card.Marshal(); err == nil {
			break
		}
	}
	cardSize := len(marshal(t, card))
	if cardSize < MaxCard-2*MaxCardAddrs {
		t.Fatalf("largest card built is %d bytes, MaxCard %d", cardSize, MaxCard)
	}

	big := []*Plaintext{
		{Kind: KindText, Text: strings.Repeat("é", MaxText/2)},
		{Kind: KindDeliveryReceipt, Covers: make([]MessageID, MaxReceiptIDs)},
		{Kind: KindSenderKey, Payload: pattern(MaxPayload, 5)},
	}
	for _, p := range big {
		p.ID, p.Seq, p.SentAt = MessageID(pattern(16, 6)), 1<<63, MaxUnixMilli
		p.Card, p.InviteSecret = card, InviteSecret(pattern(16, 7))
		for i := range p.Covers {
			p.Covers[i] = MessageID(pattern(16, byte(i+1)))
		}
		b, err := p.Marshal()
		if err != nil {
			t.Fatalf("largest %s with the largest card: %v", p.Kind, err)
		}
		t.Logf("largest %s with the largest card: %d bytes (MaxPlaintext %d)", p.Kind, len(b), MaxPlaintext)
	}

	c := &Ciphertext{Prekey: pattern(MaxPrekeyMessage, 8), Ratchet: pattern(MaxRatchetMessage, 9)}
	cb, err := c.Marshal()
	if err != nil {
		t.Fatalf("largest ciphertext: %v", err)
	}
	d := &Deliver{ID: 1 << 63, Identity: pattern(MaxIdentity, 1), Device: append([]byte{0x00, maxInlineKey}, pattern(maxInlineKey, 2)...), Ciphertext: cb}
	frame, err := AppendFrame(nil, d)
	if err != nil {
		t.Fatalf("largest deliver: %v", err)
	}
	t.Logf("largest ciphertext %d bytes, largest deliver frame %d bytes (MaxMsgFrame %d)", len(cb), len(frame), MaxMsgFrame)

	r := &BundleResponse{Code: CodeOK, Bundle: pattern(MaxBundle, 1)}
	if _, err := AppendFrame(nil, r); err != nil {
		t.Fatalf("largest bundle response: %v", err)
	}
	for _, limit := range []int{MaxMsgFrame, MaxBundleFrame, MaxRelayFrame, MaxCard, MaxPlaintext, MaxCiphertext, MaxInvite} {
		if uvarintLen(uint64(limit)) > maxFramePrefix {
			t.Errorf("limit %d needs a longer frame prefix than %d bytes", limit, maxFramePrefix)
		}
	}
}
