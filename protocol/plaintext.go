package protocol

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/sealpost/sealpost/protocol/internal/pb"
)

// Kind is what a Plaintext is.
type Kind int32

// Plaintext kinds. Their numbers are the enum values of plaintext.proto.
const (
	// KindText is a text message: Text.
	KindText Kind = 1
	// KindDeliveryReceipt says the messages in Covers were committed by
	// the recipient. Receipts get no receipts.
	KindDeliveryReceipt Kind = 2
	// KindReadReceipt says the messages in Covers were shown to the user.
	KindReadReceipt Kind = 3
	// KindCard is a contact-card update: Card.
	KindCard Kind = 4
	// KindSenderKey is reserved for group sender keys: Payload.
	KindSenderKey Kind = 5
	// KindDeviceList is reserved for multi-device lists: Payload.
	KindDeviceList Kind = 6
	// KindFile is a file: File, with an optional caption in Text.
	KindFile Kind = 7
	// KindGroup is a step of adding the recipient to a group (or the
	// answer to one): Group.
	KindGroup Kind = 8
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindText:
		return "text"
	case KindDeliveryReceipt:
		return "delivery_receipt"
	case KindReadReceipt:
		return "read_receipt"
	case KindCard:
		return "card"
	case KindSenderKey:
		return "sender_key"
	case KindDeviceList:
		return "device_list"
	case KindFile:
		return "file"
	case KindGroup:
		return "group"
	}
	return fmt.Sprintf("kind(%d)", int32(k))
}

// Reserved reports whether k is a kind this version defines but does not
// use (KindSenderKey, KindDeviceList). A node that receives one commits it
// like any message (its Seq counts) and shows nothing for it.
func (k Kind) Reserved() bool { return k == KindSenderKey || k == KindDeviceList }

// Plaintext is the typed record inside a ratchet message (DESIGN.md §3).
// Exactly the body field of its Kind is set: Text, Covers, Card (for
// KindCard), Payload or File (for KindFile, which may carry a caption in
// Text as well).
type Plaintext struct {
	// ID is the message ID: 16 random bytes chosen by the sender.
	ID MessageID
	// Seq is the sender's sequence number in the conversation, from 1,
	// taken by every kind (receipts and card updates too), so a gap is
	// visible whatever went missing. It defines the order.
	Seq uint64
	// SentAt is the sender's clock when it sent, Unix milliseconds; for
	// display only.
	SentAt int64
	Kind   Kind
	// Text is the body of KindText: 1 to MaxText bytes of UTF-8; with
	// KindFile, the caption: 0 to MaxCaption bytes.
	Text string
	// Covers is the body of the receipt kinds: the IDs of the messages the
	// receipt is for, 1 to MaxReceiptIDs.
	Covers []MessageID
	// Payload is the body of the reserved kinds: 1 to MaxPayload bytes.
	Payload []byte
	// Card is the body of KindCard. With any other kind it is optional: the
	// sender's card, attached until the peer has acknowledged one.
	Card *Card
	// File is the body of KindFile: the attachment pointer.
	File *File
	// Group is the body of KindGroup.
	Group *GroupControl
	// InviteSecret is set in the first messages of a session its sender
	// started from one of the recipient's invites; zero otherwise.
	InviteSecret InviteSecret
}

// Validate checks p's fields, and that exactly the body of its kind is set.
func (p *Plaintext) Validate() error {
	if p.ID.IsZero() {
		return fmt.Errorf("%w: plaintext: id missing", ErrMalformed)
	}
	if p.Seq == 0 {
		return fmt.Errorf("%w: plaintext: seq missing", ErrMalformed)
	}
	if err := checkTime(p.SentAt, "plaintext: sent_at"); err != nil {
		return err
	}
	text, covers, payload, card, file, group := false, false, false, false, false, false
	switch p.Kind {
	case KindText:
		text = true
	case KindDeliveryReceipt, KindReadReceipt:
		covers = true
	case KindCard:
		card = true
	case KindSenderKey, KindDeviceList:
		payload = true
	case KindFile:
		file = true
	case KindGroup:
		group = true
	case 0:
		return fmt.Errorf("%w: plaintext: kind missing", ErrMalformed)
	default:
		return fmt.Errorf("%w: plaintext: unknown kind %d", ErrMalformed, int32(p.Kind))
	}
	if file {
		// The caption is optional.
		if len(p.Text) > MaxCaption {
			return fmt.Errorf("%w: plaintext: caption of %d, limit %d", ErrTooLarge, len(p.Text), MaxCaption)
		}
	} else if err := body(text, len(p.Text), MaxText, p.Kind, "text"); err != nil {
		return err
	}
	if !utf8.ValidString(p.Text) {
		return fmt.Errorf("%w: plaintext: text is not UTF-8", ErrMalformed)
	}
	if err := body(covers, len(p.Covers), MaxReceiptIDs, p.Kind, "covers"); err != nil {
		return err
	}
	for i, id := range p.Covers {
		if id.IsZero() {
			return fmt.Errorf("%w: plaintext: covers[%d] is all zero", ErrMalformed, i)
		}
	}
	if err := body(payload, len(p.Payload), MaxPayload, p.Kind, "payload"); err != nil {
		return err
	}
	switch {
	case file && p.File == nil:
		return fmt.Errorf("%w: plaintext: %s without its file", ErrMalformed, p.Kind)
	case !file && p.File != nil:
		return fmt.Errorf("%w: plaintext: %s with a file", ErrMalformed, p.Kind)
	case file:
		if err := p.File.Validate(); err != nil {
			return fmt.Errorf("plaintext: %w", err)
		}
	}
	switch {
	case group && p.Group == nil:
		return fmt.Errorf("%w: plaintext: %s without its group control", ErrMalformed, p.Kind)
	case !group && p.Group != nil:
		return fmt.Errorf("%w: plaintext: %s with a group control", ErrMalformed, p.Kind)
	case group:
		if err := p.Group.Validate(); err != nil {
			return fmt.Errorf("plaintext: %w", err)
		}
	}
	if card && p.Card == nil {
		return fmt.Errorf("%w: plaintext: %s without its card", ErrMalformed, p.Kind)
	}
	if p.Card != nil {
		if err := p.Card.Validate(); err != nil {
			return fmt.Errorf("plaintext: %w", err)
		}
	}
	return nil
}

// body checks one body field of length n: present (and at most max) when
// want, absent otherwise.
func body(want bool, n, max int, k Kind, field string) error {
	switch {
	case want && n == 0:
		return fmt.Errorf("%w: plaintext: %s without %s", ErrMalformed, k, field)
	case want && n > max:
		return fmt.Errorf("%w: plaintext: %s of %d, limit %d", ErrTooLarge, field, n, max)
	case !want && n > 0:
		return fmt.Errorf("%w: plaintext: %s with %s", ErrMalformed, k, field)
	}
	return nil
}

// Marshal returns the canonical encoding of p.
func (p *Plaintext) Marshal() ([]byte, error) { return encode(nil, p) }

// Unmarshal decodes and validates b into p.
func (p *Plaintext) Unmarshal(b []byte) error {
	var w pb.Plaintext
	if err := decode(b, p.limit(), p.kind(), &w); err != nil {
		return err
	}
	v := Plaintext{
		Seq:     w.Seq,
		SentAt:  timeFromWire(w.SentAt),
		Kind:    Kind(w.Kind),
		Text:    w.Text,
		Payload: w.Payload,
	}
	if err := fixed(v.ID[:], w.Id, false, "plaintext: id"); err != nil {
		return err
	}
	if err := fixed(v.InviteSecret[:], w.InviteSecret, true, "plaintext: invite secret"); err != nil {
		return err
	}
	if len(w.Covers) > MaxReceiptIDs {
		return fmt.Errorf("%w: plaintext: covers of %d, limit %d", ErrTooLarge, len(w.Covers), MaxReceiptIDs)
	}
	if len(w.Covers) > 0 {
		v.Covers = make([]MessageID, len(w.Covers))
		for i, id := range w.Covers {
			if err := fixed(v.Covers[i][:], id, false, fmt.Sprintf("plaintext: covers[%d]", i)); err != nil {
				return err
			}
		}
	}
	if w.Card != nil {
		c, err := cardFromPB(w.Card)
		if err != nil {
			return fmt.Errorf("plaintext: %w", err)
		}
		v.Card = c
	}
	if w.File != nil {
		f, err := fileFromPB(w.File)
		if err != nil {
			return fmt.Errorf("plaintext: %w", err)
		}
		v.File = f
	}
	if w.Group != nil {
		c, err := controlFromPB(w.Group)
		if err != nil {
			return fmt.Errorf("plaintext: %w", err)
		}
		v.Group = c
	}
	if err := v.Validate(); err != nil {
		return err
	}
	*p = v
	return nil
}

func (p *Plaintext) wire() proto.Message {
	w := &pb.Plaintext{
		Version:      Version,
		Id:           p.ID[:],
		Seq:          p.Seq,
		SentAt:       uint64(p.SentAt),
		Kind:         pb.Kind(p.Kind),
		Text:         p.Text,
		Payload:      p.Payload,
		InviteSecret: optional(p.InviteSecret[:]),
	}
	for i := range p.Covers {
		w.Covers = append(w.Covers, p.Covers[i][:])
	}
	if p.Card != nil {
		w.Card = p.Card.wireCard()
	}
	if p.File != nil {
		w.File = p.File.wireFile()
	}
	if p.Group != nil {
		w.Group = p.Group.wireControl()
	}
	return w
}

func (p *Plaintext) limit() int   { return MaxPlaintext }
func (p *Plaintext) kind() string { return "plaintext" }
