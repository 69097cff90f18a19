package mls

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"time"
)

// Reinitialization (RFC 9420 §11.2): a committed ReInit closes a group; a
// member then creates the new group it names, with the same members, and
// binds it to the old one with the old group's resumption PSK.

// ReInit returns the parameters of the ReInit this group's last commit
// made, if it made one.
func (g *Group) ReInit() (ReInitParams, bool) {
	ri := g.st.reinit
	if g.st.status != statusReInit || ri == nil {
		return ReInitParams{}, false
	}
	return ReInitParams{GroupID: slices.Clone(ri.groupID), CipherSuite: ri.cipherSuite, Extensions: cloneExtensions(ri.extensions)}, true
}

// ReInitGroup creates the group a committed ReInit names, with this member
// (with credential cred and a signature key key of the new suite) as its
// creator, and commits adding the clients of kps: the other members'
// KeyPackages for the new suite. The commit carries the old group's
// resumption PSK; its Welcome comes when the commit is merged
// (MergePendingCommit, as nobody else is in the new group yet).
func (g *Group) ReInitGroup(cred Credential, key *SignatureKey, kps []*KeyPackage, now time.Time, rand io.Reader) (*Group, error) {
	params, ok := g.ReInit()
	if !ok {
		return nil, fmt.Errorf("%w: the group was not reinitialized", ErrInvalid)
	}
	if key.suite.id != params.CipherSuite {
		return nil, fmt.Errorf("%w: signature key for %v, the new group uses %v", ErrInvalid, key.suite.id, params.CipherSuite)
	}
	ng, err := NewGroup(g.cfg, params.GroupID, cred, key, GroupOptions{Extensions: params.Extensions}, rand)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, key.suite.nh)
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return nil, err
	}
	psk := &proposal{typ: proposalPSK, psk: &pskID{typ: pskResumption, usage: resumptionReInit,
		groupID: slices.Clone(g.st.ctx.groupID), epoch: g.st.ctx.epoch, nonce: nonce}}
	me := sender{typ: senderMember, index: 0}
	list := []resolvedProposal{{p: psk, sender: me}}
	for _, kp := range kps {
		k := kp.kp
		list = append(list, resolvedProposal{p: &proposal{typ: proposalAdd, add: &k}, sender: me})
	}
	ng.reinitFrom = g
	defer func() { ng.reinitFrom = nil }()
	pc, err := ng.makeCommit(list, CommitOptions{}, now, rand)
	if err != nil {
		return nil, err
	}
	ng.st.pending = pc
	return ng, nil
}

// checkReInitWelcome checks a Welcome that carries a reinit PSK against
// the group it reinitializes (RFC 9420 §12.4.3.1).
func checkReInitWelcome(old *Group, id *pskID, gc *groupContext) error {
	if old == nil {
		return fmt.Errorf("%w: welcome reinitializes a group: JoinOptions.ReInitFrom is needed", ErrInvalid)
	}
	params, ok := old.ReInit()
	switch {
	case !ok || !bytes.Equal(id.groupID, old.st.ctx.groupID) || id.epoch != old.st.ctx.epoch:
		return fmt.Errorf("%w: welcome's reinit PSK does not name the reinitialized group's last epoch", ErrInvalid)
	case !bytes.Equal(params.GroupID, gc.groupID) || params.CipherSuite != gc.cipherSuite || gc.version != protocolVersionMLS10:
		return fmt.Errorf("%w: new group does not match the ReInit", ErrInvalid)
	case !extensionsEqual(params.Extensions, gc.extensions):
		return fmt.Errorf("%w: new group's extensions do not match the ReInit", ErrInvalid)
	}
	return nil
}

func extensionsEqual(a, b []Extension) bool {
	return slices.EqualFunc(a, b, func(x, y Extension) bool { return x.Type == y.Type && bytes.Equal(x.Data, y.Data) })
}
