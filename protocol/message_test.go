package protocol

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sealpost/sealpost/crypto/ratchet"
	"github.com/sealpost/sealpost/protocol/internal/pb"
)

func TestRoundTrip(t *testing.T) {
	for _, s := range samples(t) {
		t.Run(s.name, func(t *testing.T) {
			b := marshal(t, s.msg)
			got := s.zero()
			if err := got.Unmarshal(b); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(got, s.msg) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, s.msg)
			}
			if again := marshal(t, got); !bytes.Equal(again, b) {
				t.Errorf("second encoding differs:\n got %x\nwant %x", again, b)
			}
			// The decoded value owns its bytes: the input may be reused.
			for i := range b {
				b[i] ^= 0xff
			}
			if !reflect.DeepEqual(got, s.msg) {
				t.Error("decoded value changed with its input buffer")
			}
		})
	}
}

// TestValidate breaks one rule at a time on a valid value. Each broken value
// must fail Validate and Marshal, and its encoding (made without
// validation) must fail Unmarshal, all with the same sentinel.
func TestValidate(t *testing.T) {
	long := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = addrTCP
		}
		return out
	}
	ids := func(n int) []MessageID {
		out := make([]MessageID, n)
		for i := range out {
			out[i] = MessageID(pattern(16, byte(i+1)))
		}
		return out
	}
	type tc struct {
		name string
		msg  Message
		want error
	}
	var cases []tc
	add := func(name string, want error, m Message) { cases = append(cases, tc{name, m, want}) }

	// Ciphertext
	c := sampleCiphertext()
	c.Ratchet = nil
	add("ciphertext: ratchet missing", ErrMalformed, c)
	c = sampleCiphertext()
	c.Ratchet = make([]byte, MaxRatchetMessage+1)
	add("ciphertext: ratchet too large", ErrTooLarge, c)
	c = sampleCiphertext()
	c.Prekey = make([]byte, MaxPrekeyMessage+1)
	add("ciphertext: prekey too large", ErrTooLarge, c)

	// Deliver
	d := sampleDeliver(t)
	d.ID = 0
	add("deliver: id missing", ErrMalformed, d)
	d = sampleDeliver(t)
	d.Identity = nil
	add("deliver: identity missing", ErrMalformed, d)
	d = sampleDeliver(t)
	d.Identity = make([]byte, MaxIdentity+1)
	add("deliver: identity too large", ErrTooLarge, d)
	d = sampleDeliver(t)
	d.Device = nil
	add("deliver: device missing", ErrMalformed, d)
	d = sampleDeliver(t)
	d.Device = d.Device[:len(d.Device)-1]
	add("deliver: device not a multihash", ErrMalformed, d)
	d = sampleDeliver(t)
	d.Ciphertext = nil
	add("deliver: ciphertext missing", ErrMalformed, d)
	d = sampleDeliver(t)
	d.Ciphertext = []byte{0x08, 0x01, 0x1a}
	add("deliver: ciphertext does not decode", ErrMalformed, d)
	d = sampleDeliver(t)
	d.Ciphertext = marshalRaw(t, &pb.Ciphertext{Version: 2, Ratchet: []byte{1}})
	add("deliver: ciphertext of another version", ErrUnsupportedVersion, d)

	// Ack
	add("ack: code missing", ErrMalformed, &Ack{ID: 1})
	add("ack: unknown code", ErrMalformed, &Ack{ID: 1, Code: 99})
	add("ack: ok without id", ErrMalformed, &Ack{Code: CodeOK})
	add("ack: duplicate without id", ErrMalformed, &Ack{Code: CodeDuplicate})

	// Plaintext
	p := sampleText()
	p.ID = MessageID{}
	add("plaintext: id missing", ErrMalformed, p)
	p = sampleText()
	p.Seq = 0
	add("plaintext: seq missing", ErrMalformed, p)
	p = sampleText()
	p.SentAt = 0
	add("plaintext: sent_at missing", ErrMalformed, p)
	p = sampleText()
	p.SentAt = MaxUnixMilli + 1
	add("plaintext: sent_at too late", ErrMalformed, p)
	p = sampleText()
	p.Kind = 0
	add("plaintext: kind missing", ErrMalformed, p)
	p = sampleText()
	p.Kind = 7
	add("plaintext: unknown kind", ErrMalformed, p)
	p = sampleText()
	p.Text = ""
	add("plaintext: text without text", ErrMalformed, p)
	p = sampleText()
	p.Text = strings.Repeat("x", MaxText+1)
	add("plaintext: text too large", ErrTooLarge, p)
	p = sampleText()
	p.Covers = ids(1)
	add("plaintext: text with covers", ErrMalformed, p)
	p = sampleText()
	p.Payload = []byte{1}
	add("plaintext: text with payload", ErrMalformed, p)
	p = sampleReceipt()
	p.Covers = nil
	add("plaintext: receipt without covers", ErrMalformed, p)
	p = sampleReceipt()
	p.Covers = ids(MaxReceiptIDs + 1)
	add("plaintext: receipt with too many covers", ErrTooLarge, p)
	p = sampleReceipt()
	p.Covers[1] = MessageID{}
	add("plaintext: receipt covers a zero id", ErrMalformed, p)
	p = sampleReceipt()
	p.Text = "x"
	add("plaintext: receipt with text", ErrMalformed, p)
	p = sampleCardUpdate()
	p.Card = nil
	add("plaintext: card update without card", ErrMalformed, p)
	p = sampleCardUpdate()
	p.Covers = ids(1)
	add("plaintext: card update with covers", ErrMalformed, p)
	p = sampleReserved()
	p.Payload = nil
	add("plaintext: reserved without payload", ErrMalformed, p)
	p = sampleReserved()
	p.Payload = make([]byte, MaxPayload+1)
	add("plaintext: payload too large", ErrTooLarge, p)
	p = sampleReserved()
	p.Text = "x"
	add("plaintext: reserved with text", ErrMalformed, p)
	p = sampleText()
	p.Card.Seq = 0
	add("plaintext: attached card invalid", ErrMalformed, p)

	// Card
	card := func(f func(*Card)) *Card { c := sampleCard(); f(c); return c }
	add("card: identity missing", ErrMalformed, card(func(c *Card) { c.Identity = nil }))
	add("card: identity too large", ErrTooLarge, card(func(c *Card) { c.Identity = make([]byte, MaxIdentity+1) }))
	add("card: device record missing", ErrMalformed, card(func(c *Card) { c.Device = nil }))
	add("card: device record too large", ErrTooLarge, card(func(c *Card) { c.Device = make([]byte, MaxDeviceRecord+1) }))
	add("card: name too long", ErrTooLarge, card(func(c *Card) { c.Name = strings.Repeat("é", MaxName/2+1) }))
	add("card: name with a control character", ErrMalformed, card(func(c *Card) { c.Name = "al\x1b[2Jice" }))
	add("card: name with a bidi override", ErrMalformed, card(func(c *Card) { c.Name = "alice\u202egnp.exe" }))
	add("card: name with trailing space", ErrMalformed, card(func(c *Card) { c.Name = "alice " }))
	add("card: too many addrs", ErrTooLarge, card(func(c *Card) { c.Addrs = long(MaxCardAddrs + 1) }))
	add("card: empty addr", ErrMalformed, card(func(c *Card) { c.Addrs = [][]byte{addrTCP, {}} }))
	add("card: addr too long", ErrTooLarge, card(func(c *Card) { c.Addrs = [][]byte{make([]byte, MaxAddr+1)} }))
	add("card: too many mailboxes", ErrTooLarge, card(func(c *Card) {
		c.Mailboxes = []Mailbox{sampleMailbox(), sampleMailbox(), sampleMailbox(), sampleMailbox(), sampleMailbox()}
	}))
	add("card: mailbox relay missing", ErrMalformed, card(func(c *Card) { c.Mailboxes[0].Relay = nil }))
	add("card: mailbox relay not a peer ID", ErrMalformed, card(func(c *Card) { c.Mailboxes[0].Relay = []byte{0x12, 0x10, 1} }))
	add("card: mailbox without relay addrs", ErrMalformed, card(func(c *Card) { c.Mailboxes[0].RelayAddrs = nil }))
	add("card: mailbox with too many relay addrs", ErrTooLarge, card(func(c *Card) { c.Mailboxes[0].RelayAddrs = long(MaxMailboxAddrs + 1) }))
	add("card: mailbox id missing", ErrMalformed, card(func(c *Card) { c.Mailboxes[0].ID = MailboxID{} }))
	add("card: mailbox sealing key missing", ErrMalformed, card(func(c *Card) { c.Mailboxes[0].SealingKey = SealingKey{} }))
	add("card: mailbox token too short", ErrMalformed, card(func(c *Card) { c.Mailboxes[0].Token = make([]byte, MinToken-1) }))
	add("card: mailbox token missing", ErrMalformed, card(func(c *Card) { c.Mailboxes[0].Token = nil }))
	add("card: mailbox token too long", ErrTooLarge, card(func(c *Card) { c.Mailboxes[0].Token = make([]byte, MaxToken+1) }))
	add("card: updated_at missing", ErrMalformed, card(func(c *Card) { c.UpdatedAt = 0 }))
	add("card: updated_at too late", ErrMalformed, card(func(c *Card) { c.UpdatedAt = MaxUnixMilli + 1 }))
	add("card: seq missing", ErrMalformed, card(func(c *Card) { c.Seq = 0 }))

	// Bundle
	add("bundle response: code missing", ErrMalformed, &BundleResponse{Bundle: []byte{1}})
	add("bundle response: unknown code", ErrMalformed, &BundleResponse{Code: 77})
	add("bundle response: ok without bundle", ErrMalformed, &BundleResponse{Code: CodeOK})
	add("bundle response: error with bundle", ErrMalformed, &BundleResponse{Code: CodeExpired, Bundle: []byte{1}})
	add("bundle response: bundle too large", ErrTooLarge, &BundleResponse{Code: CodeOK, Bundle: make([]byte, MaxBundle+1)})

	// Invite
	inv := func(f func(*Invite)) *Invite { i := sampleInviteRelay(); f(i); return i }
	add("invite: identity short", ErrMalformed, inv(func(i *Invite) { i.Identity = i.Identity[:31] }))
	add("invite: identity missing", ErrMalformed, inv(func(i *Invite) { i.Identity = nil }))
	add("invite: identity zero", ErrMalformed, inv(func(i *Invite) { i.Identity = make(ed25519.PublicKey, 32) }))
	add("invite: device missing", ErrMalformed, inv(func(i *Invite) { i.Device = nil }))
	add("invite: device bad multihash", ErrMalformed, inv(func(i *Invite) { i.Device = []byte{0x13, 0x01, 0x00} }))
	add("invite: too many addrs", ErrTooLarge, inv(func(i *Invite) { i.Addrs = long(MaxInviteAddrs + 1) }))
	add("invite: empty addr", ErrMalformed, inv(func(i *Invite) { i.Addrs = [][]byte{nil} }))
	add("invite: pin missing", ErrMalformed, inv(func(i *Invite) { i.Pin = BundlePin{} }))
	add("invite: secret missing", ErrMalformed, inv(func(i *Invite) { i.Secret = InviteSecret{} }))
	add("invite: name too long", ErrTooLarge, inv(func(i *Invite) { i.Name = strings.Repeat("b", MaxInviteName+1) }))
	add("invite: name with newline", ErrMalformed, inv(func(i *Invite) { i.Name = "bob\nroot" }))
	add("invite: too many relays", ErrTooLarge, inv(func(i *Invite) {
		i.Relays = append(i.Relays, i.Relays[0], i.Relays[0], i.Relays[0])
	}))
	add("invite: relay peer missing", ErrMalformed, inv(func(i *Invite) { i.Relays[0].Peer = nil }))
	add("invite: relay addr missing", ErrMalformed, inv(func(i *Invite) { i.Relays[0].Addr = nil }))
	add("invite: relay addr too long", ErrTooLarge, inv(func(i *Invite) { i.Relays[0].Addr = make([]byte, MaxAddr+1) }))
	add("invite: relay mailbox missing", ErrMalformed, inv(func(i *Invite) { i.Relays[0].Mailbox = MailboxID{} }))
	add("invite: neither addrs nor relays", ErrMalformed, inv(func(i *Invite) { i.Addrs, i.Relays = nil, nil }))

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.msg.Validate(); !errors.Is(err, c.want) {
				t.Errorf("Validate: got %v, want %v", err, c.want)
			}
			if _, err := c.msg.Marshal(); !errors.Is(err, c.want) {
				t.Errorf("Marshal: got %v, want %v", err, c.want)
			}
			b := marshalRaw(t, c.msg.wire())
			if err := newLike(c.msg).Unmarshal(b); !errors.Is(err, c.want) {
				t.Errorf("Unmarshal: got %v, want %v", err, c.want)
			}
		})
	}
}

// marshalRaw encodes a generated message as it is, without validation.
func marshalRaw(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newLike returns a new zero value of m's type.
func newLike(m Message) Message {
	return reflect.New(reflect.TypeOf(m).Elem()).Interface().(Message)
}

// TestDecodeWire covers the rules that only an encoding can break: the
// version, fixed lengths, the canonical form, unknown fields and the
// invite's compressed peer IDs.
func TestDecodeWire(t *testing.T) {
	text := sampleText().wire().(*pb.Plaintext)
	card := sampleCard().wire().(*pb.Card)
	cardV2 := sampleCardV2().wire().(*pb.Card)
	inv := sampleInviteRelay().wire().(*pb.Invite)
	good := marshalRaw(t, text)
	// Text that is not UTF-8 cannot be made with the generated code, which
	// refuses it; write the field by hand: field 6, length 1, 0xff.
	notUTF8 := append(marshalRaw(t, &pb.Plaintext{Version: 1, Id: text.Id, Seq: 1, SentAt: 1, Kind: 1}), 0x32, 0x01, 0xff)
	cases := []struct {
		name string
		into Message
		b    []byte
		want error
	}{
		{"empty", new(Ack), nil, ErrMalformed},
		{"version missing", new(Ack), marshalRaw(t, &pb.Ack{Id: 1, Code: pb.Code_CODE_OK}), ErrMalformed},
		{"version 2", new(Ack), marshalRaw(t, &pb.Ack{Version: 2, Id: 1, Code: pb.Code_CODE_OK}), ErrUnsupportedVersion},
		{"version 2 with fields unknown to version 1", new(Ack), append(marshalRaw(t, &pb.Ack{Version: 2, Id: 1}), 0x78, 0x01), ErrUnsupportedVersion},
		{"version 2 after other fields", new(Ack), []byte{0x10, 0x01, 0x08, 0x02}, ErrUnsupportedVersion},
		{"version as bytes", new(Ack), []byte{0x0a, 0x01, 0x01, 0x10, 0x01, 0x18, 0x01}, ErrMalformed},
		{"unknown field", new(Ack), append(marshalRaw(t, &pb.Ack{Version: 1, Id: 1, Code: 1}), 0x78, 0x01), ErrMalformed},
		{"unknown field in a card", new(Plaintext), withUnknownInCard(t, text), ErrMalformed},
		{"trailing zero byte", new(Ack), append(marshalRaw(t, &pb.Ack{Version: 1, Id: 1, Code: 1}), 0x00), ErrMalformed},
		{"field repeated", new(Ack), []byte{0x08, 0x01, 0x10, 0x01, 0x10, 0x02, 0x18, 0x01}, ErrMalformed},
		{"fields out of order", new(Ack), []byte{0x08, 0x01, 0x18, 0x01, 0x10, 0x01}, ErrMalformed},
		{"default written out", new(Ack), []byte{0x08, 0x01, 0x10, 0x00, 0x18, 0x02}, ErrMalformed},
		{"overlong varint", new(Ack), []byte{0x08, 0x01, 0x10, 0x81, 0x00, 0x18, 0x01}, ErrMalformed},
		{"truncated", new(Plaintext), good[:len(good)-1], ErrMalformed},
		{"text not UTF-8", new(Plaintext), notUTF8, ErrMalformed},
		{"message id short", new(Plaintext), withPlaintext(t, text, func(p *pb.Plaintext) { p.Id = p.Id[:15] }), ErrMalformed},
		{"invite secret short", new(Plaintext), withPlaintext(t, text, func(p *pb.Plaintext) { p.InviteSecret = p.InviteSecret[:15] }), ErrMalformed},
		{"invite secret zero", new(Plaintext), withPlaintext(t, text, func(p *pb.Plaintext) { p.InviteSecret = make([]byte, 16) }), ErrMalformed},
		{"covers id long", new(Plaintext), withPlaintext(t, sampleReceipt().wire().(*pb.Plaintext), func(p *pb.Plaintext) { p.Covers[0] = make([]byte, 17) }), ErrMalformed},
		{"covers over the limit", new(Plaintext), withPlaintext(t, sampleReceipt().wire().(*pb.Plaintext), func(p *pb.Plaintext) {
			p.Covers = make([][]byte, MaxReceiptIDs+1)
			for i := range p.Covers {
				p.Covers[i] = pattern(16, 1)
			}
		}), ErrTooLarge},
		{"card version missing", new(Plaintext), withPlaintext(t, text, func(p *pb.Plaintext) { p.Card.Version = 0 }), ErrMalformed},
		{"card version 3", new(Plaintext), withPlaintext(t, text, func(p *pb.Plaintext) { p.Card.Version = 3 }), ErrUnsupportedVersion},
		{"card version 2 without a prekey key", new(Plaintext), withPlaintext(t, text, func(p *pb.Plaintext) { p.Card.Version = 2 }), ErrMalformed},
		{"card version 1 with a prekey key", new(Plaintext), withPlaintext(t, text, func(p *pb.Plaintext) { p.Card.Mailboxes[0].PrekeyKey = pattern(32, 1) }), ErrMalformed},
		{"top-level card version 3", new(Card), withCard(t, cardV2, func(c *pb.Card) { c.Version = 3 }), ErrUnsupportedVersion},
		{"top-level card version 2 without a prekey key", new(Card), withCard(t, card, func(c *pb.Card) { c.Version = 2 }), ErrMalformed},
		{"top-level card version 1 with a prekey key", new(Card), withCard(t, cardV2, func(c *pb.Card) { c.Version = 1 }), ErrMalformed},
		{"mailbox prekey key short", new(Card), withCard(t, cardV2, func(c *pb.Card) { c.Mailboxes[0].PrekeyKey = c.Mailboxes[0].PrekeyKey[:31] }), ErrMalformed},
		{"mailbox prekey key zero", new(Card), withCard(t, cardV2, func(c *pb.Card) { c.Mailboxes[0].PrekeyKey = make([]byte, 32) }), ErrMalformed},
		{"mailbox id short", new(Card), withCard(t, card, func(c *pb.Card) { c.Mailboxes[0].Id = c.Mailboxes[0].Id[:31] }), ErrMalformed},
		{"mailbox sealing key long", new(Card), withCard(t, card, func(c *pb.Card) { c.Mailboxes[0].SealingKey = make([]byte, 33) }), ErrMalformed},
		{"mailboxes over the limit", new(Card), withCard(t, card, func(c *pb.Card) {
			c.Mailboxes = append(c.Mailboxes, c.Mailboxes[0], c.Mailboxes[0], c.Mailboxes[0], c.Mailboxes[0])
		}), ErrTooLarge},
		{"pin short", new(BundleRequest), marshalRaw(t, &pb.BundleRequest{Version: 1, Pin: make([]byte, 15)}), ErrMalformed},
		{"pin zero", new(BundleRequest), marshalRaw(t, &pb.BundleRequest{Version: 1, Pin: make([]byte, 16)}), ErrMalformed},
		{"invite identity long", new(Invite), withInvite(t, inv, func(i *pb.Invite) { i.Identity = make([]byte, 33) }), ErrMalformed},
		{"invite device twice", new(Invite), withInvite(t, inv, func(i *pb.Invite) { i.DeviceId = sha256Peer(1) }), ErrMalformed},
		{"invite device missing", new(Invite), withInvite(t, inv, func(i *pb.Invite) { i.DeviceKey = nil }), ErrMalformed},
		{"invite device key short", new(Invite), withInvite(t, inv, func(i *pb.Invite) { i.DeviceKey = i.DeviceKey[:31] }), ErrMalformed},
		{"invite Ed25519 device as bytes", new(Invite), withInvite(t, inv, func(i *pb.Invite) { i.DeviceId, i.DeviceKey = ed25519Peer(0x20), nil }), ErrMalformed},
		{"invite relay peer twice", new(Invite), withInvite(t, inv, func(i *pb.Invite) { i.Relays[0].PeerId = sha256Peer(1) }), ErrMalformed},
		{"invite relay Ed25519 peer as bytes", new(Invite), withInvite(t, inv, func(i *pb.Invite) { i.Relays[0].PeerId, i.Relays[0].PeerKey = ed25519Peer(1), nil }), ErrMalformed},
		{"invite relay mailbox short", new(Invite), withInvite(t, inv, func(i *pb.Invite) { i.Relays[0].Mailbox = make([]byte, 16) }), ErrMalformed},
		{"invite pin long", new(Invite), withInvite(t, inv, func(i *pb.Invite) { i.BundlePin = make([]byte, 32) }), ErrMalformed},
		{"invite secret missing", new(Invite), withInvite(t, inv, func(i *pb.Invite) { i.Secret = nil }), ErrMalformed},
		{"invite relays over the limit", new(Invite), withInvite(t, inv, func(i *pb.Invite) {
			i.Relays = append(i.Relays, i.Relays[0], i.Relays[0], i.Relays[0])
		}), ErrTooLarge},
		{"too large before parsing", new(Ack), make([]byte, MaxMsgFrame+1), ErrTooLarge},
		{"invite too large before parsing", new(Invite), make([]byte, MaxInvite+1), ErrTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.into.Unmarshal(c.b); !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
		})
	}
}

func withPlaintext(t *testing.T, p *pb.Plaintext, f func(*pb.Plaintext)) []byte {
	c := proto.Clone(p).(*pb.Plaintext)
	f(c)
	return marshalRaw(t, c)
}

func withCard(t *testing.T, p *pb.Card, f func(*pb.Card)) []byte {
	c := proto.Clone(p).(*pb.Card)
	f(c)
	return marshalRaw(t, c)
}

func withInvite(t *testing.T, p *pb.Invite, f func(*pb.Invite)) []byte {
	c := proto.Clone(p).(*pb.Invite)
	f(c)
	return marshalRaw(t, c)
}

// withUnknownInCard puts an unknown field inside the attached card.
func withUnknownInCard(t *testing.T, p *pb.Plaintext) []byte {
	c := proto.Clone(p).(*pb.Plaintext)
	c.Card.ProtoReflect().SetUnknown([]byte{0x78, 0x01})
	return marshalRaw(t, c)
}

// TestUnmarshalKeepsValueOnError checks that a failed Unmarshal leaves its
// receiver as it was.
func TestUnmarshalKeepsValueOnError(t *testing.T) {
	p := sampleText()
	bad := marshal(t, sampleReceipt())
	bad = bad[:len(bad)-1]
	if err := p.Unmarshal(bad); err == nil {
		t.Fatal("truncated plaintext decoded")
	}
	if !reflect.DeepEqual(p, sampleText()) {
		t.Error("failed Unmarshal changed its receiver")
	}
}

func TestKindsMatchProto(t *testing.T) {
	want := map[Kind]pb.Kind{
		KindText:            pb.Kind_KIND_TEXT,
		KindDeliveryReceipt: pb.Kind_KIND_DELIVERY_RECEIPT,
		KindReadReceipt:     pb.Kind_KIND_READ_RECEIPT,
		KindCard:            pb.Kind_KIND_CARD,
		KindSenderKey:       pb.Kind_KIND_SENDER_KEY,
		KindDeviceList:      pb.Kind_KIND_DEVICE_LIST,
		KindFile:            pb.Kind_KIND_FILE,
		KindGroup:           pb.Kind_KIND_GROUP,
	}
	if len(want) != len(pb.Kind_name)-1 {
		t.Errorf("plaintext.proto has %d kinds, Go has %d", len(pb.Kind_name)-1, len(want))
	}
	for k, v := range want {
		if int32(k) != int32(v) {
			t.Errorf("%s = %d, proto %s = %d", k, k, v, v)
		}
		if strings.HasPrefix(k.String(), "kind(") {
			t.Errorf("kind %d has no name", k)
		}
		if k.Reserved() != (k == KindSenderKey || k == KindDeviceList) {
			t.Errorf("%s: Reserved() = %v", k, k.Reserved())
		}
	}
	if got := Kind(42).String(); got != "kind(42)" {
		t.Errorf("Kind(42) = %q", got)
	}
}

func TestCardTooLarge(t *testing.T) {
	c := sampleCard()
	c.Addrs = nil
	for range MaxCardAddrs {
		c.Addrs = append(c.Addrs, make([]byte, MaxAddr))
	}
	for len(c.Mailboxes) < MaxMailboxes {
		c.Mailboxes = append(c.Mailboxes, sampleMailbox())
	}
	for i := range c.Mailboxes {
		c.Mailboxes[i].RelayAddrs = nil
		for range MaxMailboxAddrs {
			c.Mailboxes[i].RelayAddrs = append(c.Mailboxes[i].RelayAddrs, make([]byte, MaxAddr))
		}
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("every field within its limit, yet Validate: %v", err)
	}
	if _, err := c.Marshal(); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Marshal of a card over MaxCard: got %v, want ErrTooLarge", err)
	}
	if _, err := AppendFrame(nil, c); !errors.Is(err, ErrTooLarge) {
		t.Errorf("AppendFrame of a card over MaxCard: got %v, want ErrTooLarge", err)
	}
}

func TestAckCommitted(t *testing.T) {
	for _, c := range codes {
		a := Ack{ID: 1, Code: c.code}
		if got, want := a.Committed(), c.code == CodeOK || c.code == CodeDuplicate; got != want {
			t.Errorf("Ack{%s}.Committed() = %v", c.code, got)
		}
	}
}

func TestSeenKey(t *testing.T) {
	c := sampleCiphertext()
	if c.SeenKey() != ratchet.MessageHash(c.Ratchet) {
		t.Error("SeenKey is not the ratchet message hash")
	}
	stripped := &Ciphertext{Ratchet: c.Ratchet}
	if stripped.SeenKey() != c.SeenKey() {
		t.Error("stripping the prekey message changes the seen key")
	}
	other := &Ciphertext{Prekey: c.Prekey, Ratchet: pattern(48, 0x41)}
	if other.SeenKey() == c.SeenKey() {
		t.Error("two ratchet messages, one seen key")
	}
}

func TestBundlePin(t *testing.T) {
	hash := pattern(32, 0x40)
	p, err := PinOf(hash)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Matches(hash) {
		t.Error("pin does not match its hash")
	}
	other := append([]byte(nil), hash...)
	other[15] ^= 1
	if p.Matches(other) || p.Matches(hash[:15]) {
		t.Error("pin matches another hash")
	}
	other = append([]byte(nil), hash...)
	other[16] ^= 1
	if !p.Matches(other) {
		t.Error("pin depends on bytes past its 16")
	}
	if _, err := PinOf(hash[:15]); !errors.Is(err, ErrMalformed) {
		t.Errorf("PinOf(15 bytes): %v", err)
	}
}

// TestValidateUTF8 covers the UTF-8 rules, whose values the generated code
// refuses to encode (so TestValidate cannot build them).
func TestValidateUTF8(t *testing.T) {
	p := sampleText()
	p.Text = "ok \xff"
	c := sampleCard()
	c.Name = "al\xffce"
	i := sampleInvite()
	i.Name = "b\xc3"
	for _, m := range []Message{p, c, i} {
		if err := m.Validate(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s with invalid UTF-8: Validate: %v", m.kind(), err)
		}
		if _, err := m.Marshal(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s with invalid UTF-8: Marshal: %v", m.kind(), err)
		}
	}
}

func TestIDs(t *testing.T) {
	id := MessageID(pattern(16, 0xf0))
	if got := id.String(); got != "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff" {
		t.Errorf("MessageID.String() = %s", got)
	}
	mb := MailboxID(pattern(32, 0))
	if got := mb.String(); got != "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" {
		t.Errorf("MailboxID.String() = %s", got)
	}
	if id.IsZero() || mb.IsZero() || SealingKey(pattern(32, 1)).IsZero() || InviteSecret(pattern(16, 1)).IsZero() || BundlePin(pattern(16, 1)).IsZero() {
		t.Error("non-zero value IsZero")
	}
	if !(MessageID{}).IsZero() || !(MailboxID{}).IsZero() || !(SealingKey{}).IsZero() || !(InviteSecret{}).IsZero() || !(BundlePin{}).IsZero() {
		t.Error("zero value not IsZero")
	}
}

func TestNewRandom(t *testing.T) {
	id, err := NewMessageID(bytes.NewReader(pattern(16, 1)))
	if err != nil || id != MessageID(pattern(16, 1)) {
		t.Errorf("NewMessageID: %x, %v", id, err)
	}
	s, err := NewInviteSecret(bytes.NewReader(pattern(16, 2)))
	if err != nil || s != InviteSecret(pattern(16, 2)) {
		t.Errorf("NewInviteSecret: %x, %v", s, err)
	}
	if _, err := NewMessageID(bytes.NewReader(pattern(15, 1))); err == nil {
		t.Error("NewMessageID from 15 bytes")
	}
	if _, err := NewInviteSecret(bytes.NewReader(make([]byte, 16))); err == nil {
		t.Error("NewInviteSecret from zeros")
	}
}
