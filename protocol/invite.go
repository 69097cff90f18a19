package protocol

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/sealpost/sealpost/protocol/internal/pb"
)

// InviteScheme begins every invite link.
const InviteScheme = "sealpost://"

// Invite is what an invite link carries: enough to find the inviter's
// device, fetch its bundle and check it, and prove later (in the first
// message) that the invite was used. It never holds a one-time prekey: a
// link can be used many times.
type Invite struct {
	// Identity is the inviter's Ed25519 identity key. The bundle fetched
	// must be signed by it.
	Identity ed25519.PublicKey
	// Device is the inviter's device peer ID. An Ed25519 peer ID travels as
	// its 32-byte key (Link does that; see PeerIDFromEd25519).
	Device []byte
	// Addrs are binary multiaddrs of the device (without /p2p/), at most
	// MaxInviteAddrs.
	Addrs [][]byte
	// Pin is the pin of the bundle the invite was made with; the invitee
	// fetches that version and checks the pin.
	Pin BundlePin
	// Secret is the invite's secret: 16 random bytes, a new one for each
	// invite, stored by the inviter so it can recognise (and revoke) it.
	Secret InviteSecret
	// Name is the inviter's display name, optional, at most MaxInviteName
	// bytes.
	Name string
	// Relays are mailboxes of the inviter, at most
	// MaxInviteRelays.
	Relays []InviteRelay
}

// InviteRelay is one relay mailbox in an invite. The link stays short: the
// deposit token is derived from the invite secret (InviteToken), and the
// mailbox's sealing key is in the card blob the relay keeps under that
// token, encrypted under a key derived from the invite secret too
// (docs/PROTOCOL.md §10.7).
type InviteRelay struct {
	// Peer is the relay's peer ID (an Ed25519 one travels as its key).
	Peer []byte
	// Addr is one binary multiaddr of the relay.
	Addr []byte
	// Mailbox is the mailbox ID.
	Mailbox MailboxID
}

// Validate checks inv's fields against their limits.
func (inv *Invite) Validate() error {
	if len(inv.Identity) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: invite: identity key of %d bytes, want %d", ErrMalformed, len(inv.Identity), ed25519.PublicKeySize)
	}
	if err := checkRequired(inv.Identity, "invite: identity key"); err != nil {
		return err
	}
	if err := checkPeerID(inv.Device, "invite: device"); err != nil {
		return err
	}
	if err := checkAddrs(inv.Addrs, 0, MaxInviteAddrs, "invite: addrs"); err != nil {
		return err
	}
	if inv.Pin.IsZero() {
		return fmt.Errorf("%w: invite: bundle pin missing", ErrMalformed)
	}
	if inv.Secret.IsZero() {
		return fmt.Errorf("%w: invite: secret missing", ErrMalformed)
	}
	if err := checkName(inv.Name, MaxInviteName, "invite: name"); err != nil {
		return err
	}
	if len(inv.Relays) > MaxInviteRelays {
		return fmt.Errorf("%w: invite: %d relays, limit %d", ErrTooLarge, len(inv.Relays), MaxInviteRelays)
	}
	for i := range inv.Relays {
		r := &inv.Relays[i]
		if err := checkPeerID(r.Peer, fmt.Sprintf("invite: relay[%d]: peer", i)); err != nil {
			return err
		}
		if err := checkBytes(r.Addr, 1, MaxAddr, fmt.Sprintf("invite: relay[%d]: addr", i)); err != nil {
			return err
		}
		if r.Mailbox.IsZero() {
			return fmt.Errorf("%w: invite: relay[%d]: mailbox missing", ErrMalformed, i)
		}
	}
	if len(inv.Addrs) == 0 && len(inv.Relays) == 0 {
		return fmt.Errorf("%w: invite: neither addrs nor relays", ErrMalformed)
	}
	return nil
}

// Link returns the invite as a link: InviteScheme followed by the canonical
// encoding in unpadded base64url. It fails with ErrTooLarge when the encoding
// is over MaxInvite bytes.
func (inv *Invite) Link() (string, error) {
	b, err := inv.Marshal()
	if err != nil {
		return "", err
	}
	return InviteScheme + base64.RawURLEncoding.EncodeToString(b), nil
}

// ParseLink decodes and validates an invite link. White space around it is
// ignored and the scheme is matched without regard to case (QR readers and
// chat programs change both); the rest must be exact unpadded base64url.
func ParseLink(link string) (*Invite, error) {
	link = strings.TrimSpace(link)
	if len(link) > MaxInviteLink {
		return nil, fmt.Errorf("%w: invite link of %d characters, limit %d", ErrTooLarge, len(link), MaxInviteLink)
	}
	if len(link) < len(InviteScheme) || !strings.EqualFold(link[:len(InviteScheme)], InviteScheme) {
		return nil, fmt.Errorf("%w: invite link does not begin with %s", ErrMalformed, InviteScheme)
	}
	body := link[len(InviteScheme):]
	if strings.ContainsAny(body, "\r\n") {
		// The base64 decoder would skip them; a link has one spelling.
		return nil, fmt.Errorf("%w: invite link holds a line break", ErrMalformed)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("%w: invite link: %v", ErrMalformed, err)
	}
	var inv Invite
	if err := inv.Unmarshal(b); err != nil {
		return nil, err
	}
	return &inv, nil
}

// Marshal returns the canonical binary encoding of inv (without the scheme
// and base64; see Link).
func (inv *Invite) Marshal() ([]byte, error) { return encode(nil, inv) }

// Unmarshal decodes and validates the binary encoding b into inv.
func (inv *Invite) Unmarshal(b []byte) error {
	var p pb.Invite
	if err := decode(b, inv.limit(), inv.kind(), &p); err != nil {
		return err
	}
	v := Invite{Addrs: p.Addrs, Name: p.Name}
	if len(p.Identity) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: invite: identity key of %d bytes, want %d", ErrMalformed, len(p.Identity), ed25519.PublicKeySize)
	}
	v.Identity = ed25519.PublicKey(p.Identity)
	dev, err := peerFromWire(p.DeviceKey, p.DeviceId, "invite: device")
	if err != nil {
		return err
	}
	v.Device = dev
	if err := fixed(v.Pin[:], p.BundlePin, false, "invite: bundle pin"); err != nil {
		return err
	}
	if err := fixed(v.Secret[:], p.Secret, false, "invite: secret"); err != nil {
		return err
	}
	if len(p.Relays) > MaxInviteRelays {
		return fmt.Errorf("%w: invite: %d relays, limit %d", ErrTooLarge, len(p.Relays), MaxInviteRelays)
	}
	for i, pr := range p.Relays {
		what := fmt.Sprintf("invite: relay[%d]", i)
		peer, err := peerFromWire(pr.PeerKey, pr.PeerId, what+": peer")
		if err != nil {
			return err
		}
		r := InviteRelay{Peer: peer, Addr: pr.Addr}
		if err := fixed(r.Mailbox[:], pr.Mailbox, false, what+": mailbox"); err != nil {
			return err
		}
		v.Relays = append(v.Relays, r)
	}
	if err := v.Validate(); err != nil {
		return err
	}
	*inv = v
	return nil
}

func (inv *Invite) wire() proto.Message {
	p := &pb.Invite{
		Version:   Version,
		Identity:  inv.Identity,
		Addrs:     inv.Addrs,
		BundlePin: inv.Pin[:],
		Secret:    inv.Secret[:],
		Name:      inv.Name,
	}
	p.DeviceKey, p.DeviceId = peerToWire(inv.Device)
	for i := range inv.Relays {
		r := &inv.Relays[i]
		pr := &pb.InviteRelay{Addr: r.Addr, Mailbox: r.Mailbox[:]}
		pr.PeerKey, pr.PeerId = peerToWire(r.Peer)
		p.Relays = append(p.Relays, pr)
	}
	return p
}

// peerToWire splits a peer ID into the invite's two fields: the key of an
// Ed25519 peer ID, or the peer ID bytes.
func peerToWire(id []byte) (key, raw []byte) {
	if k, ok := Ed25519FromPeerID(id); ok {
		return k, nil
	}
	return nil, id
}

// peerFromWire rebuilds a peer ID from the invite's two fields, exactly one
// of which is set; an Ed25519 peer ID given as bytes is not canonical.
func peerFromWire(key, raw []byte, what string) ([]byte, error) {
	switch {
	case len(key) > 0 && len(raw) > 0:
		return nil, fmt.Errorf("%w: %s given twice", ErrMalformed, what)
	case len(key) > 0:
		id, err := PeerIDFromEd25519(key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return id, nil
	case len(raw) == 0:
		return nil, fmt.Errorf("%w: %s missing", ErrMalformed, what)
	}
	if _, ok := Ed25519FromPeerID(raw); ok {
		return nil, fmt.Errorf("%w: %s: an Ed25519 peer ID must be given as its key", ErrMalformed, what)
	}
	return raw, nil
}

func (inv *Invite) limit() int   { return MaxInvite }
func (inv *Invite) kind() string { return "invite" }
