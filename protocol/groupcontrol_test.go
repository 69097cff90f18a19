package protocol

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/sealpost/sealpost/crypto/identity"
)

// TestGroupControlValidate breaks one rule of GroupMeta and GroupControl at
// a time: Validate, Marshal and Unmarshal of the raw encoding all refuse it
// with the same sentinel.
func TestGroupControlValidate(t *testing.T) {
	type tc struct {
		name string
		msg  Message
		want error
	}
	var cases []tc
	meta := func(f func(m *GroupMeta)) *GroupMeta {
		m := sampleGroupMeta()
		f(m)
		return m
	}
	ctl := func(f func(c *GroupControl)) *Plaintext {
		p := sampleGroupWelcome()
		w := *p.Group.Welcome
		c := *p.Group
		c.Welcome = &w
		p.Group = &c
		f(p.Group)
		return p
	}
	add := func(name string, want error, m Message) { cases = append(cases, tc{name, m, want}) }
	add("meta without name", ErrMalformed, meta(func(m *GroupMeta) { m.Name = "" }))
	add("meta name with control", ErrMalformed, meta(func(m *GroupMeta) { m.Name = "a\nb" }))
	add("meta name too long", ErrTooLarge, meta(func(m *GroupMeta) { m.Name = string(bytes.Repeat([]byte("a"), MaxName+1)) }))
	add("meta without admin", ErrMalformed, meta(func(m *GroupMeta) { m.Admins = nil }))
	add("meta admin twice", ErrMalformed, meta(func(m *GroupMeta) { m.Admins = append(m.Admins, m.Admins[0]) }))
	add("meta too many admins", ErrTooLarge, meta(func(m *GroupMeta) {
		m.Admins = nil
		for i := range MaxGroupAdmins + 1 {
			m.Admins = append(m.Admins, identity.UserID(pattern(32, byte(i))))
		}
	}))
	add("meta without home", ErrMalformed, meta(func(m *GroupMeta) { m.Homes = nil }))
	add("meta three homes", ErrTooLarge, meta(func(m *GroupMeta) { m.Homes = append(m.Homes, sampleHome(0x70)) }))
	add("meta one relay twice", ErrMalformed, meta(func(m *GroupMeta) { m.Homes[1].Relay = m.Homes[0].Relay }))
	add("meta home without addrs", ErrMalformed, meta(func(m *GroupMeta) { m.Homes[0].Addrs = nil }))
	add("meta home bad peer", ErrMalformed, meta(func(m *GroupMeta) { m.Homes[0].Relay = []byte{1, 2, 3} }))
	add("meta home without log", ErrMalformed, meta(func(m *GroupMeta) { m.Homes[0].Log = GroupLogID{} }))

	add("control without group", ErrMalformed, ctl(func(c *GroupControl) { c.Group = GroupID{} }))
	add("control unknown op", ErrMalformed, ctl(func(c *GroupControl) { c.Op = 9 }))
	add("invite without name", ErrMalformed, ctl(func(c *GroupControl) { c.Op, c.Welcome = GroupInvite, nil }))
	add("key package missing", ErrMalformed, ctl(func(c *GroupControl) { c.Op, c.Welcome = GroupKeyPackage, nil }))
	add("key package too large", ErrTooLarge, ctl(func(c *GroupControl) {
		c.Op, c.Welcome, c.KeyPackage = GroupKeyPackage, nil, make([]byte, MaxKeyPackage+1)
	}))
	add("key package on a welcome", ErrMalformed, ctl(func(c *GroupControl) { c.KeyPackage = []byte{1} }))
	add("welcome missing", ErrMalformed, ctl(func(c *GroupControl) { c.Welcome = nil }))
	add("welcome on a decline", ErrMalformed, ctl(func(c *GroupControl) { c.Op = GroupDecline }))
	add("welcome without token", ErrMalformed, ctl(func(c *GroupControl) { c.Welcome.Token = GroupToken{} }))
	add("welcome without pieces", ErrMalformed, ctl(func(c *GroupControl) { c.Welcome.Pieces = nil }))
	add("welcome too many pieces", ErrTooLarge, ctl(func(c *GroupControl) { c.Welcome.Pieces = make([][32]byte, MaxWelcomePieces+1) }))
	add("welcome without homes", ErrMalformed, ctl(func(c *GroupControl) { c.Welcome.Homes = nil }))
	add("group kind without control", ErrMalformed, &Plaintext{ID: MessageID(pattern(16, 1)), Seq: 1, SentAt: 1, Kind: KindGroup})
	add("text with a control", ErrMalformed, &Plaintext{ID: MessageID(pattern(16, 1)), Seq: 1, SentAt: 1, Kind: KindText, Text: "x", Group: sampleGroupInvite().Group})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkRefused(t, c.msg, c.want) })
	}
}

// checkRefused checks that Validate, Marshal and Unmarshal of msg's raw
// encoding all fail with want.
func checkRefused(t *testing.T, msg Message, want error) {
	t.Helper()
	if err := msg.Validate(); !errors.Is(err, want) {
		t.Fatalf("Validate: %v, want %v", err, want)
	}
	if _, err := msg.Marshal(); !errors.Is(err, want) {
		t.Fatalf("Marshal: %v, want %v", err, want)
	}
	if err := newLike(msg).Unmarshal(marshalRaw(t, msg.wire())); !errors.Is(err, want) {
		t.Fatalf("Unmarshal: %v, want %v", err, want)
	}
}

func TestGroupContent(t *testing.T) {
	text := sampleText()
	text.Card, text.InviteSecret = nil, InviteSecret{}
	for _, p := range []*Plaintext{text, sampleReceipt(), sampleFileMessage()} {
		if err := p.ValidateGroup(); err != nil {
			t.Errorf("%s: %v", p.Kind, err)
		}
	}
	withCard := sampleText()
	withCard.InviteSecret = InviteSecret{}
	withSecret := sampleText()
	withSecret.Card = nil
	for _, p := range []*Plaintext{sampleCardUpdate(), sampleReserved(), sampleGroupInvite(), withCard, withSecret,
		{ID: MessageID(pattern(16, 9)), Seq: 9, SentAt: 1, Kind: KindReadReceipt, Covers: []MessageID{MessageID(pattern(16, 1))}}} {
		if err := p.ValidateGroup(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s as group content: %v, want ErrMalformed", p.Kind, err)
		}
	}
}

func TestWelcomePieces(t *testing.T) {
	welcome := pattern(2*MaxGroupBody+10, 7)
	bodies, hashes, err := WelcomePieces(welcome)
	if err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 3 || len(bodies[2]) != 10 || !bytes.Equal(bytes.Join(bodies, nil), welcome) {
		t.Fatalf("%d pieces", len(bodies))
	}
	for i := range bodies {
		if hashes[i] != sha256.Sum256(bodies[i]) || hashes[i] != (&GroupMessage{Body: bodies[i]}).Hash() {
			t.Errorf("piece %d: hash is not the entry's seen-set key", i)
		}
	}
	if _, _, err := WelcomePieces(nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("empty welcome: %v", err)
	}
}
