package protocol

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestPeerIDFromEd25519 checks the conversion against libp2p: the key of
// ed25519.NewKeyFromSeed(00 01 .. 1f) has the peer ID
// 12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB, whose bytes
// (computed with go-libp2p v0.51.0 core/peer.IDFromPublicKey) are below.
func TestPeerIDFromEd25519(t *testing.T) {
	pub := ed25519.NewKeyFromSeed(pattern(32, 0)).Public().(ed25519.PublicKey)
	want := mustHex(t, "00240801122003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")
	id, err := PeerIDFromEd25519(pub)
	if err != nil || !bytes.Equal(id, want) {
		t.Fatalf("got %x, %v\nwant %x", id, err, want)
	}
	key, ok := Ed25519FromPeerID(id)
	if !ok || !key.Equal(pub) {
		t.Errorf("Ed25519FromPeerID: %x, %v", key, ok)
	}
	if err := checkPeerID(id, "id"); err != nil {
		t.Error(err)
	}
	if _, err := PeerIDFromEd25519(pub[:31]); !errors.Is(err, ErrMalformed) {
		t.Errorf("31-byte key: %v", err)
	}
	for _, other := range [][]byte{
		sha256Peer(1),
		append(mustHex(t, "002508021221"), pattern(33, 2)...), // secp256k1, inlined
		id[:37],
		append(append([]byte(nil), id...), 0),
	} {
		if _, ok := Ed25519FromPeerID(other); ok {
			t.Errorf("%x taken for an Ed25519 peer ID", other)
		}
	}
}

func TestCheckPeerID(t *testing.T) {
	good := [][]byte{
		ed25519Peer(1),
		sha256Peer(1),
		append(mustHex(t, "002508021221"), pattern(33, 2)...), // secp256k1, inlined
		append([]byte{0x00, 42}, pattern(42, 3)...),           // the largest inlined key
	}
	for _, id := range good {
		if err := checkPeerID(id, "id"); err != nil {
			t.Errorf("%x: %v", id, err)
		}
	}
	bad := []struct {
		id   []byte
		want error
	}{
		{nil, ErrMalformed},
		{append([]byte{0x00, 43}, pattern(43, 3)...), ErrTooLarge},
		{[]byte{0x00, 0x00}, ErrMalformed},                                  // empty identity digest
		{append([]byte{0x12, 0x14}, pattern(20, 1)...), ErrMalformed},       // short SHA-256
		{append([]byte{0x13, 0x20}, pattern(32, 1)...), ErrMalformed},       // SHA-512 code
		{append([]byte{0x12, 0x21}, pattern(32, 1)...), ErrMalformed},       // length past the end
		{append([]byte{0x92, 0x00, 0x20}, pattern(32, 1)...), ErrMalformed}, // non-minimal code
		{[]byte{0x80}, ErrMalformed},
		{append([]byte{0x00, 0x80, 0x00}, pattern(2, 1)...), ErrMalformed}, // non-minimal length
	}
	for _, c := range bad {
		if err := checkPeerID(c.id, "id"); !errors.Is(err, c.want) {
			t.Errorf("%x: got %v, want %v", c.id, err, c.want)
		}
	}
}

// TestInviteLinkLength measures the links of a typical loopback node (two
// addresses, TCP and QUIC, a three-letter name) without and with one relay,
// and holds them to the 300-character aim of DESIGN.md §6.
func TestInviteLinkLength(t *testing.T) {
	for _, c := range []struct {
		name string
		inv  *Invite
		max  int
	}{
		{"loopback, no relay", sampleInvite(), 200},
		{"loopback, one loopback relay", sampleInviteRelay(), 300},
		{"loopback, one relay by DNS name", withRelayAddr(sampleInviteRelay(), addrDNS), 320},
	} {
		link, err := c.inv.Link()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d characters", c.name, len(link))
		if len(link) > c.max {
			t.Errorf("%s: link of %d characters, want at most %d", c.name, len(link), c.max)
		}
	}
}

func withRelayAddr(inv *Invite, addr []byte) *Invite {
	inv.Relays[0].Addr = addr
	return inv
}

func TestParseLink(t *testing.T) {
	inv := sampleInviteRelay()
	link, err := inv.Link()
	if err != nil {
		t.Fatal(err)
	}
	for _, variant := range []string{link, " " + link + "\n", "SEALPOST://" + link[len(InviteScheme):], "SealPost://" + link[len(InviteScheme):]} {
		got, err := ParseLink(variant)
		if err != nil {
			t.Errorf("%q: %v", variant, err)
			continue
		}
		if !reflect.DeepEqual(got, inv) {
			t.Errorf("%q: got %+v", variant, got)
		}
	}
	body := link[len(InviteScheme):]
	raw, _ := base64.RawURLEncoding.DecodeString(body)
	bad := []struct {
		name, link string
		want       error
	}{
		{"empty", "", ErrMalformed},
		{"scheme only", InviteScheme, ErrMalformed},
		{"other scheme", "https://" + body, ErrMalformed},
		{"no slashes", "sealpost:" + body, ErrMalformed},
		{"padding", InviteScheme + base64.URLEncoding.EncodeToString(raw), ErrMalformed},
		{"standard alphabet", InviteScheme + strings.NewReplacer("-", "+", "_", "/").Replace(body) + "+/", ErrMalformed},
		{"space inside", link[:40] + " " + link[40:], ErrMalformed},
		{"line break inside", link[:40] + "\n" + link[40:], ErrMalformed},
		{"carriage return inside", link[:40] + "\r" + link[40:], ErrMalformed},
		{"trailing bits set", InviteScheme + body[:len(body)-1] + flipLowBits(body[len(body)-1]), ErrMalformed},
		{"trailing garbage", InviteScheme + base64.RawURLEncoding.EncodeToString(append(raw, 0)), ErrMalformed},
		{"cut short", link[:len(link)-4], ErrMalformed},
		{"too long", InviteScheme + strings.Repeat("A", MaxInviteLink), ErrTooLarge},
	}
	for _, c := range bad {
		if _, err := ParseLink(c.link); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

// flipLowBits changes the last base64 character so that it encodes the same
// bytes with trailing bits set (what Strict decoding refuses), or at least a
// different character.
func flipLowBits(c byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return string(alphabet[i^1])
}

func TestInviteTooLarge(t *testing.T) {
	inv := sampleInviteRelay()
	inv.Addrs = [][]byte{make([]byte, MaxAddr), make([]byte, MaxAddr), make([]byte, MaxAddr), make([]byte, MaxAddr)}
	if err := inv.Validate(); err != nil {
		t.Fatalf("every field within its limit, yet Validate: %v", err)
	}
	if _, err := inv.Link(); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Link of an invite over MaxInvite: got %v, want ErrTooLarge", err)
	}
}

// TestLargestInviteLink checks that MaxInviteLink admits the link of every
// invite Link can make.
func TestLargestInviteLink(t *testing.T) {
	inv := sampleInviteRelay()
	inv.Name = strings.Repeat("n", MaxInviteName)
	for len(inv.Relays) < MaxInviteRelays {
		inv.Relays = append(inv.Relays, inv.Relays[0])
	}
	// Grow an address until the invite is exactly MaxInvite bytes.
	inv.Addrs = [][]byte{nil, make([]byte, MaxAddr), make([]byte, 1)}
	for n := 1; n <= MaxAddr; n++ {
		inv.Addrs[0] = make([]byte, n)
		b, err := inv.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < MaxInvite {
			continue
		}
		if len(b) > MaxInvite {
			inv.Addrs[2] = nil
			inv.Addrs = inv.Addrs[:2]
			continue
		}
		link, err := inv.Link()
		if err != nil {
			t.Fatal(err)
		}
		if len(link) != MaxInviteLink {
			t.Errorf("link of the largest invite: %d characters, MaxInviteLink %d", len(link), MaxInviteLink)
		}
		if _, err := ParseLink(link); err != nil {
			t.Errorf("largest link: %v", err)
		}
		return
	}
	t.Fatal("no invite of exactly MaxInvite bytes")
}
