package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol/internal/pb"
)

// What members of a group agree on besides MLS's membership (GroupMeta,
// carried in the GroupContext), what two contacts tell each other to add
// one of them to a group (GroupControl, in the Double Ratchet), and what a
// group's application messages hold (a Plaintext of the group kinds,
// inside an MLS PrivateMessage). docs/PROTOCOL.md §12.

// GroupIDSize is the size of a group's ID: its MLS group ID, 32 random
// bytes its creator picks.
const GroupIDSize = 32

// GroupID names a group. Only its members and the contacts invited to it
// see it: a relay sees the IDs of the group's logs, which are unrelated.
type GroupID [GroupIDSize]byte

// IsZero reports whether id is all zero (absent).
func (id GroupID) IsZero() bool { return id == GroupID{} }

// String returns id in lowercase hex.
func (id GroupID) String() string { return hex.EncodeToString(id[:]) }

// GroupMetaExtension is the MLS extension type of GroupMeta in a group's
// GroupContext, from RFC 9420's private-use range.
const GroupMetaExtension = 0xF0A0

// Limits of groups' own messages.
const (
	// MaxGroupAdmins bounds the admins of a group.
	MaxGroupAdmins = 64
	// MaxGroupMeta bounds an encoded GroupMeta: a name, the admins' IDs
	// and the home relays with their addresses.
	MaxGroupMeta = 8 << 10
	// MaxKeyPackage bounds an MLS KeyPackage in a GroupControl: with the
	// post-quantum suite two X-Wing keys (2 x 1216 bytes), a device record
	// as the credential, two signatures and the capabilities take under
	// 4 KiB.
	MaxKeyPackage = 16 << 10
	// MaxWelcomePieces bounds the pieces of a Welcome: a Welcome carries
	// the ratchet tree, about 2.6 KiB a member with the post-quantum suite,
	// so a group at its largest takes a few MiB; 32 pieces of
	// MaxGroupBody hold 64 MiB (crypto/mls's bound on a message).
	MaxWelcomePieces = 32
)

// GroupHome is a home relay of a group and the ID of the group's log on it.
type GroupHome struct {
	// Relay is the relay's peer ID; Addrs 1 to MaxMailboxAddrs binary
	// multiaddrs of it.
	Relay []byte
	Addrs [][]byte
	Log   GroupLogID
}

func (h *GroupHome) validate(what string) error {
	if err := checkPeerID(h.Relay, what+": relay"); err != nil {
		return err
	}
	if err := checkAddrs(h.Addrs, 1, MaxMailboxAddrs, what+": addrs"); err != nil {
		return err
	}
	return checkRequired(h.Log[:], what+": log")
}

func (h *GroupHome) wireHome() *pb.GroupHome {
	return &pb.GroupHome{Relay: h.Relay, Addrs: h.Addrs, Log: h.Log[:]}
}

func homesFromPB(ws []*pb.GroupHome, what string) ([]GroupHome, error) {
	if len(ws) > MaxHomeRelays {
		return nil, fmt.Errorf("%w: %s: %d home relays, limit %d", ErrTooLarge, what, len(ws), MaxHomeRelays)
	}
	out := make([]GroupHome, len(ws))
	for i, w := range ws {
		out[i] = GroupHome{Relay: w.Relay, Addrs: w.Addrs}
		if err := fixed(out[i].Log[:], w.Log, false, fmt.Sprintf("%s: homes[%d]: log", what, i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func validHomes(hs []GroupHome, what string) error {
	if len(hs) == 0 {
		return fmt.Errorf("%w: %s: no home relay", ErrMalformed, what)
	}
	if len(hs) > MaxHomeRelays {
		return fmt.Errorf("%w: %s: %d home relays, limit %d", ErrTooLarge, what, len(hs), MaxHomeRelays)
	}
	for i := range hs {
		if err := hs[i].validate(fmt.Sprintf("%s: homes[%d]", what, i)); err != nil {
			return err
		}
		for j := range i {
			if string(hs[j].Relay) == string(hs[i].Relay) {
				return fmt.Errorf("%w: %s: one relay twice", ErrMalformed, what)
			}
		}
	}
	return nil
}

// GroupMeta is what a group's members agree on besides the MLS membership:
// its name, its admins (who add, remove and promote) and its home relays.
// It is the data of the GroupMetaExtension in the group's GroupContext, so
// it changes only by a commit and every member of an epoch holds the same.
type GroupMeta struct {
	// Name is the group's name: 1 to MaxName bytes, the rules of display
	// names.
	Name string
	// Admins are the user IDs of the admins, 1 to MaxGroupAdmins, without
	// repeats.
	Admins []identity.UserID
	// Homes are the home relays, 1 to MaxHomeRelays: the first orders the
	// commits.
	Homes []GroupHome
}

// Validate checks m's fields.
func (m *GroupMeta) Validate() error {
	if m.Name == "" {
		return fmt.Errorf("%w: group meta: name missing", ErrMalformed)
	}
	if err := checkName(m.Name, MaxName, "group meta: name"); err != nil {
		return err
	}
	if len(m.Admins) == 0 {
		return fmt.Errorf("%w: group meta: no admin", ErrMalformed)
	}
	if len(m.Admins) > MaxGroupAdmins {
		return fmt.Errorf("%w: group meta: %d admins, limit %d", ErrTooLarge, len(m.Admins), MaxGroupAdmins)
	}
	for i, a := range m.Admins {
		if err := checkRequired(a[:], "group meta: admin"); err != nil {
			return err
		}
		for j := range i {
			if m.Admins[j] == a {
				return fmt.Errorf("%w: group meta: admin %s twice", ErrMalformed, a)
			}
		}
	}
	return validHomes(m.Homes, "group meta")
}

// IsAdmin reports whether u is an admin.
func (m *GroupMeta) IsAdmin(u identity.UserID) bool {
	for _, a := range m.Admins {
		if a == u {
			return true
		}
	}
	return false
}

// Marshal returns the canonical encoding of m.
func (m *GroupMeta) Marshal() ([]byte, error) { return encode(nil, m) }

// Unmarshal decodes and validates b into m.
func (m *GroupMeta) Unmarshal(b []byte) error {
	var w pb.GroupMeta
	if err := decode(b, m.limit(), m.kind(), &w); err != nil {
		return err
	}
	if len(w.Admins) > MaxGroupAdmins {
		return fmt.Errorf("%w: group meta: %d admins, limit %d", ErrTooLarge, len(w.Admins), MaxGroupAdmins)
	}
	v := GroupMeta{Name: w.Name, Admins: make([]identity.UserID, len(w.Admins))}
	for i, a := range w.Admins {
		if err := fixed(v.Admins[i][:], a, false, "group meta: admin"); err != nil {
			return err
		}
	}
	var err error
	if v.Homes, err = homesFromPB(w.Homes, "group meta"); err != nil {
		return err
	}
	if err := v.Validate(); err != nil {
		return err
	}
	*m = v
	return nil
}

func (m *GroupMeta) wire() proto.Message {
	w := &pb.GroupMeta{Version: Version, Name: m.Name}
	for i := range m.Admins {
		w.Admins = append(w.Admins, m.Admins[i][:])
	}
	for i := range m.Homes {
		w.Homes = append(w.Homes, m.Homes[i].wireHome())
	}
	return w
}

func (m *GroupMeta) limit() int   { return MaxGroupMeta }
func (m *GroupMeta) kind() string { return "group meta" }

// GroupControlOp says what a GroupControl asks or tells.
type GroupControlOp int32

// The steps of adding a contact to a group. Their numbers are the enum
// values of group.proto.
const (
	// GroupInvite: an admin asks a contact to join the group Name; the
	// contact answers with GroupKeyPackage (it joins) or GroupDecline.
	GroupInvite GroupControlOp = 1
	// GroupKeyPackage: the invited contact's KeyPackage, for the admin to
	// add it with.
	GroupKeyPackage GroupControlOp = 2
	// GroupWelcomed: the contact was added; Welcome says where the MLS
	// Welcome is.
	GroupWelcomed GroupControlOp = 3
	// GroupDecline: the invited contact does not join.
	GroupDecline GroupControlOp = 4
)

var groupControlOpNames = [...]string{
	GroupInvite:     "invite",
	GroupKeyPackage: "key_package",
	GroupWelcomed:   "welcome",
	GroupDecline:    "decline",
}

// String returns the op's name, or "op(N)".
func (op GroupControlOp) String() string {
	if op > 0 && int(op) < len(groupControlOpNames) {
		return groupControlOpNames[op]
	}
	return fmt.Sprintf("op(%d)", int32(op))
}

// GroupWelcomeRef says where a new member finds the Welcome that adds it:
// in the logs of the epoch the Welcome starts, as entries of kind
// GroupWelcome whose bodies, in the order of Pieces, make the Welcome.
type GroupWelcomeRef struct {
	Epoch uint64
	// Token is that epoch's log token.
	Token GroupToken
	// Homes are the group's home relays.
	Homes []GroupHome
	// Pieces are SHA-256 of each piece's body, in order, 1 to
	// MaxWelcomePieces.
	Pieces [][32]byte
}

// GroupControl is the body of a KindGroup plaintext: one step of adding a
// contact to a group, between that contact and an admin.
type GroupControl struct {
	Op    GroupControlOp
	Group GroupID
	// Name is the group's name (GroupInvite; optional otherwise).
	Name string
	// KeyPackage is an MLSMessage holding a KeyPackage (GroupKeyPackage),
	// at most MaxKeyPackage bytes.
	KeyPackage []byte
	// Welcome is set for GroupWelcomed.
	Welcome *GroupWelcomeRef
}

// Validate checks c's fields, and that exactly those of its op are set.
func (c *GroupControl) Validate() error {
	if err := checkRequired(c.Group[:], "group control: group"); err != nil {
		return err
	}
	if err := checkName(c.Name, MaxName, "group control: name"); err != nil {
		return err
	}
	switch c.Op {
	case GroupInvite, GroupKeyPackage, GroupWelcomed, GroupDecline:
	default:
		return fmt.Errorf("%w: group control: unknown op %d", ErrMalformed, int32(c.Op))
	}
	if c.Op == GroupInvite && c.Name == "" {
		return fmt.Errorf("%w: group control: invite without a name", ErrMalformed)
	}
	if err := checkBytes(c.KeyPackage, 0, MaxKeyPackage, "group control: key package"); err != nil {
		return err
	}
	if (c.Op == GroupKeyPackage) != (len(c.KeyPackage) > 0) {
		return fmt.Errorf("%w: group control: %s and key package do not go together", ErrMalformed, c.Op)
	}
	if (c.Op == GroupWelcomed) != (c.Welcome != nil) {
		return fmt.Errorf("%w: group control: %s and welcome do not go together", ErrMalformed, c.Op)
	}
	if w := c.Welcome; w != nil {
		if err := checkRequired(w.Token[:], "group control: welcome: token"); err != nil {
			return err
		}
		if err := validHomes(w.Homes, "group control: welcome"); err != nil {
			return err
		}
		if len(w.Pieces) == 0 {
			return fmt.Errorf("%w: group control: welcome without pieces", ErrMalformed)
		}
		if len(w.Pieces) > MaxWelcomePieces {
			return fmt.Errorf("%w: group control: welcome of %d pieces, limit %d", ErrTooLarge, len(w.Pieces), MaxWelcomePieces)
		}
	}
	return nil
}

// MaxGroupControl bounds an encoded GroupControl: a KeyPackage, or a
// Welcome reference with its pieces' hashes (8 KiB) and two home relays.
const MaxGroupControl = MaxKeyPackage + 1<<10

// Marshal returns the canonical encoding of c (as a node keeps it; on the
// wire it travels inside a Plaintext).
func (c *GroupControl) Marshal() ([]byte, error) { return encode(nil, c) }

// Unmarshal decodes and validates b into c.
func (c *GroupControl) Unmarshal(b []byte) error {
	var w pb.GroupControl
	if err := decode(b, c.limit(), c.kind(), &w); err != nil {
		return err
	}
	v, err := controlFromPB(&w)
	if err != nil {
		return err
	}
	*c = *v
	return nil
}

func (c *GroupControl) wire() proto.Message { return c.wireControl() }
func (c *GroupControl) limit() int          { return MaxGroupControl }
func (c *GroupControl) kind() string        { return "group control" }

func (c *GroupControl) wireControl() *pb.GroupControl {
	w := &pb.GroupControl{Version: Version, Op: pb.GroupControlOp(c.Op), Group: c.Group[:], Name: c.Name, KeyPackage: c.KeyPackage}
	if c.Welcome != nil {
		ww := &pb.GroupWelcome{Epoch: c.Welcome.Epoch, Token: c.Welcome.Token[:]}
		for i := range c.Welcome.Homes {
			ww.Homes = append(ww.Homes, c.Welcome.Homes[i].wireHome())
		}
		for i := range c.Welcome.Pieces {
			ww.Pieces = append(ww.Pieces, c.Welcome.Pieces[i][:])
		}
		w.Welcome = ww
	}
	return w
}

func controlFromPB(w *pb.GroupControl) (*GroupControl, error) {
	if w.Version != Version {
		return nil, fmt.Errorf("%w: group control version %d", ErrUnsupportedVersion, w.Version)
	}
	c := &GroupControl{Op: GroupControlOp(w.Op), Name: w.Name, KeyPackage: w.KeyPackage}
	if err := fixed(c.Group[:], w.Group, false, "group control: group"); err != nil {
		return nil, err
	}
	if ww := w.Welcome; ww != nil {
		if len(ww.Pieces) > MaxWelcomePieces {
			return nil, fmt.Errorf("%w: group control: welcome of %d pieces, limit %d", ErrTooLarge, len(ww.Pieces), MaxWelcomePieces)
		}
		r := &GroupWelcomeRef{Epoch: ww.Epoch, Pieces: make([][32]byte, len(ww.Pieces))}
		if err := fixed(r.Token[:], ww.Token, false, "group control: welcome: token"); err != nil {
			return nil, err
		}
		for i, p := range ww.Pieces {
			if err := fixed(r.Pieces[i][:], p, false, "group control: welcome: piece"); err != nil {
				return nil, err
			}
		}
		var err error
		if r.Homes, err = homesFromPB(ww.Homes, "group control: welcome"); err != nil {
			return nil, err
		}
		c.Welcome = r
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// WelcomePieces cuts an MLS Welcome into the bodies of log entries of at
// most MaxGroupBody bytes each, and returns them with their hashes (the
// Pieces of a GroupWelcomeRef).
func WelcomePieces(welcome []byte) ([][]byte, [][32]byte, error) {
	n := (len(welcome) + MaxGroupBody - 1) / MaxGroupBody
	if n == 0 || n > MaxWelcomePieces {
		return nil, nil, fmt.Errorf("%w: welcome of %d bytes", ErrTooLarge, len(welcome))
	}
	bodies := make([][]byte, 0, n)
	hashes := make([][32]byte, 0, n)
	for len(welcome) > 0 {
		k := min(len(welcome), MaxGroupBody)
		bodies = append(bodies, welcome[:k])
		hashes = append(hashes, sha256.Sum256(welcome[:k]))
		welcome = welcome[k:]
	}
	return bodies, hashes, nil
}

// ValidateGroup checks that p is a group's application content (what an
// MLS PrivateMessage of a group carries): a text, a delivery receipt or a
// file, without a card, an invite secret or a group control.
func (p *Plaintext) ValidateGroup() error {
	switch p.Kind {
	case KindText, KindDeliveryReceipt, KindFile:
	default:
		return fmt.Errorf("%w: group content of kind %s", ErrMalformed, p.Kind)
	}
	if p.Card != nil || !p.InviteSecret.IsZero() || p.Group != nil {
		return fmt.Errorf("%w: group content with a card, invite secret or group control", ErrMalformed)
	}
	return p.Validate()
}
