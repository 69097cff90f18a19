package groups

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/mls"
	"github.com/sealpost/sealpost/protocol"
)

// deviceSeed returns the Ed25519 seed of the device's libp2p key (the
// stored form), which is also its MLS signature key.
func deviceSeed(stored []byte) ([]byte, error) {
	k, err := crypto.UnmarshalPrivateKey(stored)
	if err != nil {
		return nil, fmt.Errorf("groups: device key: %w", err)
	}
	if k.Type() != crypto.Ed25519 {
		return nil, errors.New("groups: the device key is not Ed25519")
	}
	raw, err := k.Raw()
	if err != nil || len(raw) != 64 {
		return nil, fmt.Errorf("groups: device key: %v", err)
	}
	return raw[:32], nil
}

// member is what a credential says of a member: its user ID and device.
type member struct {
	user   identity.UserID
	device peer.ID
}

// memberOf reads a member's credential: a basic credential holding a
// device record (PROTOCOL.md §13.2).
func memberOf(c mls.Credential) (member, error) {
	if c.Type != mls.CredentialBasic {
		return member{}, errors.New("not a basic credential")
	}
	rec, err := identity.ParseDeviceRecord(c.Identity)
	if err != nil {
		return member{}, err
	}
	return member{user: rec.Identity(), device: peer.ID(rec.DeviceID())}, nil
}

// validateCredential is the groups' authentication service: the
// credential is a device record that verifies, for the leaf's signature
// key, and a replacement keeps the identity (PROTOCOL.md §13.2).
func validateCredential(c mls.Credential, signatureKey []byte, prev *mls.Credential) error {
	if c.Type != mls.CredentialBasic {
		return errors.New("groups: only basic credentials")
	}
	rec, err := identity.ParseDeviceRecord(c.Identity)
	if err != nil {
		return err
	}
	if err := rec.Verify(); err != nil {
		return err
	}
	if !bytes.Equal(rec.DeviceKey(), signatureKey) {
		return errors.New("groups: the device record is not for the signature key")
	}
	if prev != nil {
		old, err := memberOf(*prev)
		if err != nil {
			return err
		}
		if old.user != rec.Identity() {
			return errors.New("groups: a member's identity cannot change")
		}
	}
	return nil
}

// metaOf returns the group meta of a GroupContext's extensions.
func metaOf(exts []mls.Extension) (*protocol.GroupMeta, error) {
	for _, e := range exts {
		if e.Type == protocol.GroupMetaExtension {
			m := new(protocol.GroupMeta)
			if err := m.Unmarshal(e.Data); err != nil {
				return nil, err
			}
			return m, nil
		}
	}
	return nil, errors.New("groups: the group has no meta")
}

// metaExtensions returns the GroupContext extensions holding meta.
func metaExtensions(meta *protocol.GroupMeta) ([]mls.Extension, error) {
	b, err := meta.Marshal()
	if err != nil {
		return nil, err
	}
	return []mls.Extension{{Type: protocol.GroupMetaExtension, Data: b}}, nil
}

// checkProposal is the rule every member applies to the proposals of
// others (PROTOCOL.md §12.7), with meta the group's meta of the epoch.
func checkProposal(meta *protocol.GroupMeta, p mls.ProposalCheck) error {
	if p.SenderExternal {
		return errors.New("no external senders")
	}
	switch p.Type {
	case mls.ProposalUpdate:
		return nil
	case mls.ProposalRemove:
		if !p.ByValue && p.Member.Index == p.Sender.Index {
			return nil // leaving
		}
	}
	who, err := memberOf(p.Sender.Credential)
	if err != nil {
		return err
	}
	if !meta.IsAdmin(who.user) {
		return fmt.Errorf("proposal of type %d from a member who is not an admin", p.Type)
	}
	switch p.Type {
	case mls.ProposalAdd, mls.ProposalRemove:
		return nil
	case mls.ProposalGroupContextExtensions:
		_, err := metaOf(p.Extensions)
		return err
	}
	return fmt.Errorf("proposal type %d is not used", p.Type)
}

// policy is the group's mls.Config.ValidateProposal: checkProposal, and a
// note of the members who asked to leave (an admin's commit drops them
// from the admins too).
func (g *group) policy(p mls.ProposalCheck) error {
	if g.mg == nil {
		return errors.New("no group")
	}
	meta, err := metaOf(g.mg.Extensions())
	if err != nil {
		return err
	}
	if err := checkProposal(meta, p); err != nil {
		return err
	}
	if p.Type == mls.ProposalRemove && !p.ByValue && p.Member.Index == p.Sender.Index {
		if who, err := memberOf(p.Sender.Credential); err == nil {
			g.leaving[who.user] = true
		}
	}
	return nil
}
