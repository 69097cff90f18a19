package mls

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"time"
)

// Proposals (RFC 9420 §12.1-12.3): making and receiving them, and
// validating and applying the proposal list of a commit.

// resolvedProposal is a proposal of a commit with its sender, and its
// reference when the commit named it by reference.
type resolvedProposal struct {
	p      *proposal
	sender sender
	ref    []byte
}

// applied is the effect of a proposal list on the tree and context.
type applied struct {
	extensions   []Extension
	added        []leafIndex
	addedKPs     []*keyPackage
	removed      []Member
	updated      []leafIndex
	psks         []pskID
	pskValues    [][]byte
	externalInit []byte
	reinit       *reInit
	pathRequired bool
	// removedPrev is the credential of the member an external commit
	// replaces (a resync), if any.
	removedPrev *Credential
}

// proposalRef is the ProposalRef of a proposal message.
func (s *suite) proposalRef(wireFormat uint16, content *framedContent, auth *authData) []byte {
	return s.refHash("MLS 1.0 Proposal Reference", authenticatedContentBytes(wireFormat, content, auth))
}

// resolve turns a commit's proposals into the proposals themselves.
func (g *Group) resolve(c *commit, committer sender) ([]resolvedProposal, error) {
	list := make([]resolvedProposal, 0, len(c.proposals))
	for _, por := range c.proposals {
		if por.proposal != nil {
			list = append(list, resolvedProposal{p: por.proposal, sender: committer})
			continue
		}
		if committer.typ == senderNewMemberCommit {
			return nil, fmt.Errorf("%w: external commit refers to a proposal", ErrInvalid)
		}
		i := slices.IndexFunc(g.st.proposals, func(cp cachedProposal) bool { return bytes.Equal(cp.ref, por.ref) })
		if i < 0 {
			return nil, ErrUnknownProposal
		}
		cp := g.st.proposals[i]
		list = append(list, resolvedProposal{p: cp.proposal, sender: cp.sender, ref: cp.ref})
	}
	return list, nil
}

// pskValue finds the value of a PSK.
func (g *Group) pskValue(id *pskID) ([]byte, error) {
	switch id.typ {
	case pskExternal:
		if g.cfg.ExternalPSK != nil {
			if v, ok := g.cfg.ExternalPSK(slices.Clone(id.id)); ok {
				return v, nil
			}
		}
	case pskResumption:
		if old := g.reinitFrom; old != nil && bytes.Equal(id.groupID, old.st.ctx.groupID) {
			if v, ok := old.ResumptionPSK(id.epoch); ok {
				return v, nil
			}
		} else if g.st != nil && bytes.Equal(id.groupID, g.st.ctx.groupID) {
			if v, ok := g.ResumptionPSK(id.epoch); ok {
				return v, nil
			}
		} else if g.cfg.ResumptionPSK != nil {
			if v, ok := g.cfg.ResumptionPSK(slices.Clone(id.groupID), id.epoch); ok {
				return v, nil
			}
		}
	}
	return nil, ErrPSK
}

// applyProposals checks a proposal list (RFC 9420 §12.2) and applies it
// to tree in the order of §12.3. committer is the member (or, for an
// external commit, the joiner) making the commit. With creating set the
// committer is this member, which also checks KeyPackage lifetimes.
func (g *Group) applyProposals(tree *ratchetTree, list []resolvedProposal, committer sender, now time.Time, creating bool) (*applied, error) {
	s, st := g.suite, g.st
	external := committer.typ == senderNewMemberCommit
	ap := &applied{extensions: st.ctx.extensions, pathRequired: len(list) == 0}
	var gce, reinit, extInit int
	var updates, removes, adds, psks []resolvedProposal
	touched := map[leafIndex]bool{}
	for _, r := range list {
		p := r.p
		if external && p.typ != proposalExternalInit && p.typ != proposalRemove && p.typ != proposalPSK {
			return nil, fmt.Errorf("%w: external commit with a proposal of type %d", ErrInvalid, p.typ)
		}
		switch p.typ {
		case proposalAdd:
			adds = append(adds, r)
		case proposalUpdate:
			if r.sender.typ != senderMember {
				return nil, fmt.Errorf("%w: update from a non-member", ErrInvalid)
			}
			l := leafIndex(r.sender.index)
			if r.sender == committer {
				return nil, fmt.Errorf("%w: commit includes the committer's own update", ErrInvalid)
			}
			if touched[l] || tree.leaf(l) == nil {
				return nil, fmt.Errorf("%w: update for leaf %d that is blank or changed twice", ErrInvalid, l)
			}
			touched[l] = true
			updates = append(updates, r)
			ap.pathRequired = true
		case proposalRemove:
			l := p.remove
			if committer.typ == senderMember && l == leafIndex(committer.index) {
				return nil, fmt.Errorf("%w: commit removes the committer", ErrInvalid)
			}
			if touched[l] || tree.leaf(l) == nil {
				return nil, fmt.Errorf("%w: remove of leaf %d that is blank or changed twice", ErrInvalid, l)
			}
			touched[l] = true
			removes = append(removes, r)
			ap.pathRequired = true
		case proposalPSK:
			reinitPSK := p.psk.typ == pskResumption && p.psk.usage == resumptionReInit && g.reinitFrom != nil
			if p.psk.typ == pskResumption && p.psk.usage != resumptionApplication && !reinitPSK {
				return nil, fmt.Errorf("%w: PSK proposal for a reinit or branch resumption PSK", ErrInvalid)
			}
			if len(p.psk.nonce) != s.nh {
				return nil, fmt.Errorf("%w: PSK nonce of %d bytes", ErrInvalid, len(p.psk.nonce))
			}
			enc := p.psk.bytes()
			for _, q := range psks {
				if bytes.Equal(q.p.psk.bytes(), enc) {
					return nil, fmt.Errorf("%w: one PSK proposed twice", ErrInvalid)
				}
			}
			psks = append(psks, r)
		case proposalReInit:
			reinit++
			if p.reinit.version < st.ctx.version {
				return nil, fmt.Errorf("%w: reinit to version %d", ErrInvalid, p.reinit.version)
			}
			ap.reinit = p.reinit
		case proposalExternalInit:
			if !external {
				return nil, fmt.Errorf("%w: external init in a member's commit", ErrInvalid)
			}
			extInit++
			ap.externalInit = p.externalInit
			ap.pathRequired = true
		case proposalGroupContextExtension:
			gce++
			if err := checkExtensions(p.extensions); err != nil {
				return nil, err
			}
			ap.extensions = p.extensions
			ap.pathRequired = true
		default:
			return nil, fmt.Errorf("%w: proposal type %d", ErrUnsupported, p.typ)
		}
	}
	switch {
	case gce > 1:
		return nil, fmt.Errorf("%w: two group context extensions proposals", ErrInvalid)
	case reinit > 0 && len(list) > 1:
		return nil, fmt.Errorf("%w: reinit with other proposals", ErrInvalid)
	case external && (extInit != 1 || len(removes) > 1):
		return nil, fmt.Errorf("%w: external commit needs one external init and at most one remove", ErrInvalid)
	}
	if gce == 1 {
		for _, e := range ap.extensions {
			if !g.cfg.supportsExtension(e.Type) {
				return nil, fmt.Errorf("%w: group context extension 0x%04x", ErrUnsupported, e.Type)
			}
		}
		if _, err := parseExternalSenders(ap.extensions); err != nil {
			return nil, err
		}
	}

	groupID := st.ctx.groupID
	for _, r := range updates {
		l := leafIndex(r.sender.index)
		old := tree.leaf(l)
		n := r.p.update
		prev := old.credential.clone()
		c := &leafCheck{source: leafSourceUpdate, groupID: groupID, leaf: l, groupExtensions: ap.extensions,
			tree: tree, replaced: true, prev: &prev, maxLifetime: g.cfg.MaxLifetime}
		if err := s.validateLeafNode(n, c, g.cfg.ValidateCredential); err != nil {
			return nil, fmt.Errorf("update of leaf %d: %w", l, err)
		}
		if bytes.Equal(n.encryptionKey, old.encryptionKey) {
			return nil, fmt.Errorf("%w: update keeps the encryption key", ErrInvalid)
		}
		tree.updateLeaf(l, n)
		ap.updated = append(ap.updated, l)
	}
	for _, r := range removes {
		l := r.p.remove
		old := tree.leaf(l)
		ap.removed = append(ap.removed, memberOf(l, old))
		if external {
			prev := old.credential.clone()
			ap.removedPrev = &prev
		}
		tree.removeLeaf(l)
	}
	if len(removes) > 0 {
		tree.truncate()
	}
	for _, r := range adds {
		kp := r.p.add
		if err := s.validateKeyPackage(kp); err != nil {
			return nil, fmt.Errorf("add: %w", err)
		}
		c := &leafCheck{source: leafSourceKeyPackage, groupExtensions: ap.extensions, tree: tree,
			now: now, checkLifetime: creating, maxLifetime: g.cfg.MaxLifetime}
		if err := s.validateLeafNode(&kp.leafNode, c, g.cfg.ValidateCredential); err != nil {
			return nil, fmt.Errorf("add: %w", err)
		}
		n := kp.leafNode
		if tree.memberCount() >= MaxMembers {
			return nil, fmt.Errorf("%w: group of %d members", ErrTooLarge, MaxMembers)
		}
		ap.added = append(ap.added, tree.addLeaf(&n))
		ap.addedKPs = append(ap.addedKPs, kp)
	}
	for _, r := range psks {
		v, err := g.pskValue(r.p.psk)
		if err != nil {
			return nil, err
		}
		ap.psks = append(ap.psks, *r.p.psk)
		ap.pskValues = append(ap.pskValues, v)
	}
	if gce == 1 {
		for i, l := range tree.leaves {
			if l != nil {
				if err := checkSupports(&l.capabilities, ap.extensions); err != nil {
					return nil, fmt.Errorf("member %d: %w", i, err)
				}
			}
		}
	}
	return ap, nil
}

// externalSender is an entry of the external_senders extension.
type externalSender struct {
	signatureKey []byte
	credential   Credential
}

func parseExternalSenders(exts []Extension) ([]externalSender, error) {
	e := findExtension(exts, extExternalSenders)
	if e == nil {
		return nil, nil
	}
	var out []externalSender
	err := decodeAll(e.Data, func(r *reader) {
		v := r.vector(MaxMessageSize)
		for v.more() {
			var es externalSender
			es.signatureKey = v.opaque(maxKeySize)
			es.credential.decode(v)
			out = append(out, es)
		}
		r.finish(v)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: external_senders: %w", ErrInvalid, err)
	}
	return out, nil
}

// processProposal caches an authenticated proposal of the current epoch.
func (g *Group) processProposal(in *inbound) (*Received, error) {
	s, st := g.suite, g.st
	p := in.content.proposal
	switch in.content.sender.typ {
	case senderMember:
		if p.typ == proposalExternalInit {
			return nil, fmt.Errorf("%w: external init proposal from a member", ErrInvalid)
		}
	case senderExternal:
		if p.typ == proposalUpdate || p.typ == proposalExternalInit {
			return nil, fmt.Errorf("%w: proposal type %d from an external sender", ErrMalformed, p.typ)
		}
	}
	// Check what can be checked of the proposal alone; the list is
	// checked again when a commit covers it.
	switch p.typ {
	case proposalAdd:
		if err := s.validateKeyPackage(p.add); err != nil {
			return nil, err
		}
		c := &leafCheck{source: leafSourceKeyPackage, groupExtensions: st.ctx.extensions, maxLifetime: g.cfg.MaxLifetime}
		if err := s.validateLeafNode(&p.add.leafNode, c, g.cfg.ValidateCredential); err != nil {
			return nil, err
		}
	case proposalUpdate:
		l := leafIndex(in.content.sender.index)
		prev := st.tree.leaf(l).credential.clone()
		c := &leafCheck{source: leafSourceUpdate, groupID: st.ctx.groupID, leaf: l, groupExtensions: st.ctx.extensions,
			tree: st.tree, replaced: true, prev: &prev, maxLifetime: g.cfg.MaxLifetime}
		if err := s.validateLeafNode(p.update, c, g.cfg.ValidateCredential); err != nil {
			return nil, err
		}
	case proposalRemove:
		if st.tree.leaf(p.remove) == nil {
			return nil, fmt.Errorf("%w: remove of blank leaf %d", ErrInvalid, p.remove)
		}
	case proposalPSK:
		if len(p.psk.nonce) != s.nh {
			return nil, fmt.Errorf("%w: PSK nonce of %d bytes", ErrInvalid, len(p.psk.nonce))
		}
	}
	if err := g.checkPolicy(p, in.content.sender, in.member, false); err != nil {
		return nil, err
	}
	ref := s.proposalRef(in.wireFormat, in.content, in.auth)
	in.consume()
	if !slices.ContainsFunc(st.proposals, func(cp cachedProposal) bool { return bytes.Equal(cp.ref, ref) }) {
		st.proposals = append(st.proposals, cachedProposal{ref: ref, proposal: p, sender: in.content.sender})
	}
	return &Received{
		Kind: KindProposal, Epoch: st.ctx.epoch, Sender: in.member, SenderExternal: in.external,
		AuthenticatedData: in.content.authenticatedData, ProposalRef: slices.Clone(ref),
	}, nil
}

// checkPolicy asks Config.ValidateProposal about proposal p from sender
// (member, when it is one).
func (g *Group) checkPolicy(p *proposal, from sender, member Member, byValue bool) error {
	if g.cfg.ValidateProposal == nil {
		return nil
	}
	pc := ProposalCheck{Type: ProposalType(p.typ), Sender: member, SenderExternal: from.typ != senderMember, ByValue: byValue}
	if pc.SenderExternal {
		pc.Sender = Member{Index: from.index}
	}
	switch p.typ {
	case proposalAdd:
		pc.Member = Member{Credential: p.add.leafNode.credential.clone(), SignatureKey: slices.Clone(p.add.leafNode.signatureKey)}
	case proposalUpdate:
		pc.Member = memberOf(leafIndex(from.index), p.update)
	case proposalRemove:
		if l := g.st.tree.leaf(p.remove); l != nil {
			pc.Member = memberOf(p.remove, l)
		}
	case proposalGroupContextExtension:
		pc.Extensions = cloneExtensions(p.extensions)
	}
	if err := g.cfg.ValidateProposal(pc); err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return nil
}

// handshakeWireFormat is the wire format of this member's proposals and
// commits.
func (g *Group) handshakeWireFormat() uint16 {
	if g.cfg.PublicHandshake {
		return wireFormatPublicMessage
	}
	return wireFormatPrivateMessage
}

// propose signs and sends a proposal, and caches it for this member's own
// commits.
func (g *Group) propose(p *proposal, authenticatedData []byte, rand io.Reader) ([]byte, []byte, error) {
	st := g.st
	if st.status != statusActive {
		return nil, nil, ErrNotMember
	}
	if st.pending != nil {
		return nil, nil, ErrPendingCommit
	}
	content := &framedContent{
		groupID: st.ctx.groupID, epoch: st.ctx.epoch,
		sender:            sender{typ: senderMember, index: uint32(st.priv.leaf)},
		authenticatedData: nonNil(authenticatedData), contentType: contentProposal, proposal: p,
	}
	wf := g.handshakeWireFormat()
	msg, auth, err := g.protect(content, wf, rand)
	if err != nil {
		return nil, nil, err
	}
	ref := g.suite.proposalRef(wf, content, auth)
	st.proposals = append(st.proposals, cachedProposal{ref: ref, proposal: p, sender: content.sender})
	return msg, ref, nil
}

// ErrPendingCommit means this member has a commit pending: merge or
// discard it first.
var ErrPendingCommit = fmt.Errorf("mls: a commit is pending")

// ProposeAdd proposes to add the client of kp. It returns the message and
// the proposal's reference.
func (g *Group) ProposeAdd(kp *KeyPackage, rand io.Reader) ([]byte, []byte, error) {
	k := kp.kp
	return g.propose(&proposal{typ: proposalAdd, add: &k}, nil, rand)
}

// ProposeRemove proposes to remove the member at leaf index leaf.
func (g *Group) ProposeRemove(leaf uint32, rand io.Reader) ([]byte, []byte, error) {
	if g.st.tree.leaf(leafIndex(leaf)) == nil {
		return nil, nil, fmt.Errorf("%w: no member at leaf %d", ErrInvalid, leaf)
	}
	return g.propose(&proposal{typ: proposalRemove, remove: leafIndex(leaf)}, nil, rand)
}

// ProposeUpdate proposes to replace this member's leaf with one with a
// fresh encryption key. Another member must commit it.
func (g *Group) ProposeUpdate(rand io.Reader) ([]byte, []byte, error) {
	s, st := g.suite, g.st
	encPriv, encPub, err := s.generateHPKEKey(rand)
	if err != nil {
		return nil, nil, err
	}
	n := *st.tree.leaf(st.priv.leaf)
	n.encryptionKey = encPub
	n.source = leafSourceUpdate
	n.parentHash, n.notBefore, n.notAfter = nil, 0, 0
	if n.signature, err = s.signWithLabel(st.sigKey.sg, "LeafNodeTBS", n.tbs(st.ctx.groupID, st.priv.leaf)); err != nil {
		return nil, nil, err
	}
	msg, ref, err := g.propose(&proposal{typ: proposalUpdate, update: &n}, nil, rand)
	if err != nil {
		return nil, nil, err
	}
	st.ownUpdates = append(st.ownUpdates, ownUpdate{ref: ref, leafKey: encPriv})
	return msg, ref, nil
}

// ProposeExternalPSK proposes to inject the external PSK with the given ID
// (which Config.ExternalPSK must know) into the next epoch.
func (g *Group) ProposeExternalPSK(id []byte, rand io.Reader) ([]byte, []byte, error) {
	p, err := g.pskProposal(&pskID{typ: pskExternal, id: slices.Clone(id)}, rand)
	if err != nil {
		return nil, nil, err
	}
	return g.propose(p, nil, rand)
}

func (g *Group) pskProposal(id *pskID, rand io.Reader) (*proposal, error) {
	if len(id.id) > MaxGroupIDSize {
		return nil, fmt.Errorf("%w: PSK ID of %d bytes", ErrTooLarge, len(id.id))
	}
	id.nonce = make([]byte, g.suite.nh)
	if _, err := io.ReadFull(rand, id.nonce); err != nil {
		return nil, err
	}
	if _, err := g.pskValue(id); err != nil {
		return nil, err
	}
	return &proposal{typ: proposalPSK, psk: id}, nil
}

// ProposeGroupContextExtensions proposes to replace the group's extensions.
func (g *Group) ProposeGroupContextExtensions(exts []Extension, rand io.Reader) ([]byte, []byte, error) {
	if err := checkExtensions(exts); err != nil {
		return nil, nil, err
	}
	return g.propose(&proposal{typ: proposalGroupContextExtension, extensions: cloneExtensions(exts)}, nil, rand)
}

// ProposeReInit proposes to reinitialize the group as a new group with the
// given ID, suite and extensions.
func (g *Group) ProposeReInit(groupID []byte, cs CipherSuite, exts []Extension, rand io.Reader) ([]byte, []byte, error) {
	if len(groupID) == 0 || len(groupID) > MaxGroupIDSize {
		return nil, nil, fmt.Errorf("mls: group ID of %d bytes", len(groupID))
	}
	return g.propose(&proposal{typ: proposalReInit, reinit: &reInit{
		groupID: slices.Clone(groupID), version: protocolVersionMLS10, cipherSuite: cs, extensions: cloneExtensions(exts),
	}}, nil, rand)
}
