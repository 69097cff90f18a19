package mls

import (
	"bytes"
	"crypto/hpke"
	"fmt"
	"io"
	"slices"
	"time"
)

// Commits (RFC 9420 §12.4): making a commit and its Welcome, processing
// another member's. Proposals and the list a commit applies are in
// proposal.go.

// CommitOptions say what a commit does besides committing the proposals
// this member received in the epoch.
type CommitOptions struct {
	// Add adds the clients of these KeyPackages.
	Add []*KeyPackage
	// Remove removes the members at these leaf indexes.
	Remove []uint32
	// ExternalPSKs injects these external PSKs (by ID).
	ExternalPSKs [][]byte
	// Extensions, when SetExtensions is set, replace the group's
	// GroupContext extensions.
	Extensions    []Extension
	SetExtensions bool
	// ReInit, when set, commits only a ReInit to these parameters.
	ReInit *ReInitParams
	// Credential replaces this member's credential in its new leaf.
	Credential *Credential
	// NoPath leaves out the UpdatePath when the proposals allow it (adds
	// and PSKs only): cheaper, but no post-compromise security for this
	// commit.
	NoPath bool
	// OmitRatchetTree leaves the ratchet tree out of the Welcome; the new
	// members then need it from elsewhere (Group.RatchetTree).
	OmitRatchetTree bool
	// AuthenticatedData is sent with the commit, authenticated.
	AuthenticatedData []byte
}

// ReInitParams are the parameters of the group a ReInit creates.
type ReInitParams struct {
	GroupID     []byte
	CipherSuite CipherSuite
	Extensions  []Extension
}

// Commit makes a commit of the proposals received in this epoch (those
// still valid) and those opts asks for. The group does not change epoch
// yet: send the returned message to the group and process it when the
// delivery service delivers it back (Process recognizes it, or call
// MergePendingCommit); the Welcome for added members comes with it. If
// another member's commit for the epoch arrives first, this one is void.
// now is checked against the lifetime of added KeyPackages.
func (g *Group) Commit(opts CommitOptions, now time.Time, rand io.Reader) ([]byte, error) {
	st := g.st
	if st.status != statusActive {
		return nil, ErrNotMember
	}
	if st.pending != nil {
		return nil, ErrPendingCommit
	}
	me := sender{typ: senderMember, index: uint32(st.priv.leaf)}
	var byValue []resolvedProposal
	add := func(p *proposal) { byValue = append(byValue, resolvedProposal{p: p, sender: me}) }
	if opts.ReInit != nil {
		if len(opts.ReInit.GroupID) == 0 || len(opts.ReInit.GroupID) > MaxGroupIDSize {
			return nil, fmt.Errorf("mls: group ID of %d bytes", len(opts.ReInit.GroupID))
		}
		add(&proposal{typ: proposalReInit, reinit: &reInit{groupID: slices.Clone(opts.ReInit.GroupID), version: protocolVersionMLS10,
			cipherSuite: opts.ReInit.CipherSuite, extensions: cloneExtensions(opts.ReInit.Extensions)}})
	}
	if opts.SetExtensions {
		if err := checkExtensions(opts.Extensions); err != nil {
			return nil, err
		}
		add(&proposal{typ: proposalGroupContextExtension, extensions: cloneExtensions(opts.Extensions)})
	}
	for _, l := range opts.Remove {
		add(&proposal{typ: proposalRemove, remove: leafIndex(l)})
	}
	for _, kp := range opts.Add {
		k := kp.kp
		add(&proposal{typ: proposalAdd, add: &k})
	}
	for _, id := range opts.ExternalPSKs {
		p, err := g.pskProposal(&pskID{typ: pskExternal, id: slices.Clone(id)}, rand)
		if err != nil {
			return nil, err
		}
		add(p)
	}
	if opts.Credential != nil {
		if err := checkCredential(opts.Credential); err != nil {
			return nil, err
		}
	}

	// The proposals received in the epoch, less the ones that cannot go
	// with the rest: this member's own updates, changes to leaves this
	// commit removes (a remove wins over an update), and anything if this
	// is a reinit.
	var cached []resolvedProposal
	if opts.ReInit == nil {
		touched := map[leafIndex]bool{}
		for _, r := range byValue {
			if r.p.typ == proposalRemove {
				touched[r.p.remove] = true
			}
		}
		for _, cp := range st.proposals {
			r := resolvedProposal{p: cp.proposal, sender: cp.sender, ref: cp.ref}
			switch cp.proposal.typ {
			case proposalRemove:
				if touched[cp.proposal.remove] {
					continue
				}
				touched[cp.proposal.remove] = true
			case proposalUpdate:
				l := leafIndex(cp.sender.index)
				if cp.sender == me || touched[l] {
					continue
				}
			case proposalReInit:
				continue
			}
			cached = append(cached, r)
		}
		// Updates go after removes have claimed their leaves.
		cached = slices.DeleteFunc(cached, func(r resolvedProposal) bool {
			return r.p.typ == proposalUpdate && touched[leafIndex(r.sender.index)] &&
				slices.ContainsFunc(cached, func(q resolvedProposal) bool {
					return q.p.typ == proposalRemove && q.p.remove == leafIndex(r.sender.index)
				})
		})
	}
	res, err := g.makeCommit(append(cached, byValue...), opts, now, rand)
	if err != nil && len(cached) > 0 {
		// A received proposal that no longer holds: commit only ours.
		res, err = g.makeCommit(byValue, opts, now, rand)
	}
	if err != nil {
		return nil, err
	}
	st.pending = res
	return slices.Clone(res.message), nil
}

// makeCommit builds a commit of list and the state it leads to.
func (g *Group) makeCommit(list []resolvedProposal, opts CommitOptions, now time.Time, rand io.Reader) (*pendingCommit, error) {
	s, st := g.suite, g.st
	me := sender{typ: senderMember, index: uint32(st.priv.leaf)}
	tree := st.tree.clone()
	ap, err := g.applyProposals(tree, list, me, now, true)
	if err != nil {
		return nil, err
	}
	c := &commit{}
	for _, r := range list {
		if r.ref != nil {
			c.proposals = append(c.proposals, proposalOrRef{ref: r.ref})
		} else {
			c.proposals = append(c.proposals, proposalOrRef{proposal: r.p})
		}
	}
	newEpoch := st.ctx.epoch + 1
	provisional := func(treeHash []byte) []byte {
		return (&groupContext{version: st.ctx.version, cipherSuite: s.id, groupID: st.ctx.groupID, epoch: newEpoch,
			treeHash: treeHash, confirmedTranscriptHash: st.ctx.confirmedTranscriptHash, extensions: ap.extensions}).bytes()
	}
	commitSecret := make([]byte, s.nh)
	priv := st.priv.clone()
	var pathSecrets map[nodeIndex][]byte
	if ap.pathRequired || !opts.NoPath || opts.Credential != nil {
		tmpl := *tree.leaf(st.priv.leaf)
		if opts.Credential != nil {
			tmpl.credential = opts.Credential.clone()
		}
		tmpl.capabilities = s.capabilitiesWith(g.cfg.Extensions)
		for _, e := range ap.extensions {
			if !isDefaultExtension(uint16(e.Type)) {
				tmpl.capabilities.extensions = append(tmpl.capabilities.extensions, uint16(e.Type))
			}
		}
		res, err := s.createPath(tree, priv, &tmpl, ap.added, st.ctx.groupID, st.sigKey.sg, provisional, rand)
		if err != nil {
			return nil, err
		}
		if opts.Credential != nil {
			prev := st.tree.leaf(st.priv.leaf).credential.clone()
			if err := g.cfg.ValidateCredential(opts.Credential.clone(), st.sigKey.Public(), &prev); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrCredential, err)
			}
		}
		c.path, commitSecret, priv, pathSecrets = res.path, res.commitSecret, res.private, res.secrets
	}
	priv.prune(tree)
	content := &framedContent{
		groupID: st.ctx.groupID, epoch: st.ctx.epoch, sender: me,
		authenticatedData: nonNil(opts.AuthenticatedData), contentType: contentCommit, commit: c,
	}
	wf := g.handshakeWireFormat()
	sig, err := s.signContent(st.sigKey.sg, wf, content, st.ctx.bytes())
	if err != nil {
		return nil, err
	}
	pskSecret := s.pskSecret(ap.psks, ap.pskValues)
	next, welcomeSecret, joiner := g.nextEpoch(tree, priv, ap, wf, content, sig, commitSecret, pskSecret, st.secrets.init)
	msg, err := g.frame(content, &authData{signature: sig, confirmationTag: next.confirmationTag}, wf, rand)
	if err != nil {
		return nil, err
	}
	pc := &pendingCommit{message: msg, next: next, info: g.commitInfo(ap, tree, true, c.path)}
	if len(ap.added) > 0 {
		if pc.welcome, err = g.makeWelcome(next, welcomeSecret, joiner, ap, pathSecrets, !opts.OmitRatchetTree); err != nil {
			return nil, err
		}
	}
	pc.info.Welcome = pc.welcome
	return pc, nil
}

// nextEpoch builds the state of the epoch a commit starts, from the new
// tree and private state, the commit's content and signature and the
// secrets it contributes. It returns the welcome and joiner secrets too.
func (g *Group) nextEpoch(tree *ratchetTree, priv *treePrivate, ap *applied, wireFormat uint16, content *framedContent,
	signature, commitSecret, pskSecret, initSecret []byte) (*groupState, []byte, []byte) {
	s, st := g.suite, g.st
	confirmed := s.confirmedTranscriptHash(st.interim, wireFormat, content, signature)
	next := &groupState{
		ctx: groupContext{
			version: st.ctx.version, cipherSuite: s.id, groupID: st.ctx.groupID, epoch: st.ctx.epoch + 1,
			treeHash: tree.rootHash(s), confirmedTranscriptHash: confirmed, extensions: ap.extensions,
		},
		tree:   tree,
		priv:   priv,
		sigKey: st.sigKey,
	}
	gc := next.ctx.bytes()
	joiner := s.joinerSecret(initSecret, commitSecret, gc)
	es := s.epochFromJoiner(joiner, pskSecret, gc)
	welcomeSecret := es.welcome
	next.confirmationTag = s.mac(es.confirmation, confirmed)
	next.interim = s.interimTranscriptHash(confirmed, next.confirmationTag)
	next.setEpoch(s, es)

	if st.secrets == nil {
		// An external join: there is no ending epoch of this member.
		return next, welcomeSecret, joiner
	}
	// Keep the ending epoch for late application messages, and its
	// resumption PSK.
	next.past = append(slices.Clone(st.past), st.archive())
	if over := len(next.past) - g.cfg.PastEpochs; over > 0 {
		next.past = next.past[over:]
	}
	next.resumption = append(slices.Clone(st.resumption), resumptionPSK{epoch: st.ctx.epoch, psk: st.secrets.resumption})
	if over := len(next.resumption) - g.cfg.ResumptionEpochs; over > 0 {
		next.resumption = next.resumption[over:]
	}
	if ap.reinit != nil {
		next.status = statusReInit
		next.reinit = ap.reinit
	}
	return next, welcomeSecret, joiner
}

// archive keeps what late application messages of the current epoch need.
func (st *groupState) archive() *pastEpoch {
	p := &pastEpoch{epoch: st.ctx.epoch, context: st.ctx.bytes(), senderData: st.secrets.senderData,
		secretTree: st.secretTree, ownLeaf: st.priv.leaf}
	p.members = make([]pastMember, 0, st.tree.memberCount())
	for i, l := range st.tree.leaves {
		if l != nil {
			p.members = append(p.members, pastMember{leaf: leafIndex(i), signatureKey: l.signatureKey, credential: l.credential})
		}
	}
	return p
}

// frame frames signed content as a PublicMessage or as a PrivateMessage
// with the next key of this member's ratchet.
func (g *Group) frame(content *framedContent, auth *authData, wireFormat uint16, rand io.Reader) ([]byte, error) {
	s, st := g.suite, g.st
	m := &mlsMessage{wireFormat: wireFormat}
	var err error
	if wireFormat == wireFormatPublicMessage {
		if m.publicMessage, err = s.sealPublic(content, auth, st.secrets.membership, st.ctx.bytes()); err != nil {
			return nil, err
		}
		return encode(m.encode)
	}
	r, store, err := st.secretTree.leafRatchets(s, st.priv.leaf)
	if err != nil {
		return nil, err
	}
	// Sending consumes the generation whatever happens next, so a key is
	// never used twice.
	if store != nil {
		store()
	}
	gen, kn, err := r[ratchetType(content.contentType)].send(s)
	if err != nil {
		return nil, err
	}
	if m.privateMessage, err = s.sealPrivate(content, auth, st.secrets.senderData, gen, kn, g.cfg.PaddingBlock, rand); err != nil {
		return nil, err
	}
	return encode(m.encode)
}

// commitInfo describes the effect of a commit.
func (g *Group) commitInfo(ap *applied, tree *ratchetTree, own bool, path *updatePath) *CommitInfo {
	info := &CommitInfo{Own: own, Removed: ap.removed, ReInit: ap.reinit != nil}
	if path != nil {
		info.PathNodes = len(path.nodes)
		for _, n := range path.nodes {
			info.PathCiphertexts += len(n.secrets)
		}
	}
	for _, l := range ap.added {
		info.Added = append(info.Added, memberOf(l, tree.leaf(l)))
	}
	for _, l := range ap.updated {
		info.Updated = append(info.Updated, memberOf(l, tree.leaf(l)))
	}
	return info
}

// makeWelcome builds the Welcome for the members a commit adds.
func (g *Group) makeWelcome(next *groupState, welcomeSecret, joiner []byte, ap *applied, pathSecrets map[nodeIndex][]byte, withTree bool) ([]byte, error) {
	s := g.suite
	key, nonce := s.welcomeKeyNonce(welcomeSecret)
	a, err := s.newAEAD(key)
	if err != nil {
		return nil, err
	}
	gi, err := g.groupInfo(next, withTree, false, a.Overhead())
	if err != nil {
		return nil, err
	}
	// The GroupInfo is encrypted where it was encoded.
	egi := a.Seal(gi[:0], nonce, gi, nil)
	w := &welcome{cipherSuite: s.id, encryptedGroupInfo: egi}
	size := 64 + len(egi)
	for i, l := range ap.added {
		gs := groupSecrets{joinerSecret: joiner, psks: ap.psks}
		if pathSecrets != nil {
			gs.pathSecret = pathSecrets[commonAncestor(l.node(), next.priv.leaf.node())]
		}
		kp := ap.addedKPs[i]
		kem, ct, err := s.encryptWithLabel(kp.initKey, "Welcome", egi, mustEncode(gs.encode))
		if err != nil {
			return nil, err
		}
		w.secrets = append(w.secrets, encryptedGroupSecrets{
			newMember: s.refHash("MLS 1.0 KeyPackage Reference", mustEncode(kp.encode)),
			secrets:   hpkeCiphertext{kemOutput: kem, ciphertext: ct},
		})
		size += 16 + s.nh + len(kem) + len(ct)
	}
	enc := &writer{b: make([]byte, 0, size)}
	(&mlsMessage{wireFormat: wireFormatWelcome, welcome: w}).encode(enc)
	return enc.result()
}

// groupInfo encodes the signed GroupInfo of a state, with capacity for
// spare more bytes after it.
func (g *Group) groupInfo(st *groupState, withTree, withExternalPub bool, spare int) ([]byte, error) {
	s := g.suite
	gi := &groupInfo{groupContext: st.ctx, extensions: []Extension{}, confirmationTag: st.confirmationTag, signer: st.priv.leaf}
	size := 1024
	if withTree {
		gi.tree = st.tree
		size += st.tree.sizeHint()
	}
	if withExternalPub {
		_, pub, err := s.deriveKeyPair(st.secrets.external)
		if err != nil {
			return nil, err
		}
		gi.extensions = append(gi.extensions, Extension{Type: extExternalPub, Data: mustEncode(func(w *writer) { w.opaque(pub) })})
		size += len(pub)
	}
	for _, e := range st.ctx.extensions {
		size += len(e.Data)
	}
	sigOpaque := 4 + maxSignatureSize
	body, sig, err := s.signEncoded(st.sigKey.sg, "GroupInfoTBS", size, sigOpaque+spare, gi.encodeBody)
	if err != nil {
		return nil, err
	}
	// GroupInfo is the signed body followed by the signature.
	w := &writer{b: body}
	w.opaque(sig)
	return w.b, nil
}

// GroupInfo returns a signed GroupInfo of the current epoch (RFC 9420
// §12.4.3), as an MLSMessage. withTree includes the ratchet tree;
// withExternalPub includes the key a client needs to join by an external
// commit (JoinExternal).
func (g *Group) GroupInfo(withTree, withExternalPub bool) ([]byte, error) {
	if g.st.status != statusActive {
		return nil, ErrNotMember
	}
	gi, err := g.groupInfo(g.st, withTree, withExternalPub, 0)
	if err != nil {
		return nil, err
	}
	w := &writer{b: make([]byte, 0, 4+len(gi))}
	w.u16(protocolVersionMLS10)
	w.u16(wireFormatGroupInfo)
	w.bytes(gi)
	return w.b, nil
}

// RatchetTree returns the encoded ratchet tree of the current epoch, for
// new members whose Welcome leaves it out.
func (g *Group) RatchetTree() []byte { return g.st.tree.bytes() }

// PendingCommit returns the commit this member made and has not merged,
// to send again after a restart.
func (g *Group) PendingCommit() ([]byte, bool) {
	if g.st.pending == nil {
		return nil, false
	}
	return slices.Clone(g.st.pending.message), true
}

// DiscardPendingCommit forgets the pending commit: call it when the
// delivery service refused it. Its proposals are kept.
func (g *Group) DiscardPendingCommit() {
	if g.st.status == statusExternal {
		return
	}
	g.st.pending = nil
}

// MergePendingCommit moves the group to the epoch of its pending commit,
// as processing the commit delivered back would.
func (g *Group) MergePendingCommit() (*Received, error) {
	if g.st.pending == nil {
		return nil, fmt.Errorf("mls: no pending commit")
	}
	return g.mergePending(), nil
}

func (g *Group) mergePending() *Received {
	pc, old := g.st.pending, g.st
	if pc.next == nil {
		// An external join, confirmed.
		g.st.pending = nil
		g.st.status = statusActive
		return &Received{Kind: KindCommit, Epoch: old.ctx.epoch - 1, Sender: memberOf(old.priv.leaf, old.tree.leaf(old.priv.leaf)),
			Commit: &CommitInfo{Own: true}}
	}
	g.st = pc.next
	return &Received{Kind: KindCommit, Epoch: old.ctx.epoch, Sender: memberOf(old.priv.leaf, old.tree.leaf(old.priv.leaf)), Commit: pc.info}
}

// processCommit applies another member's commit of the current epoch.
func (g *Group) processCommit(in *inbound, now time.Time) (*Received, error) {
	s, st := g.suite, g.st
	c := in.content.commit
	committer := in.content.sender
	external := committer.typ == senderNewMemberCommit
	if committer.typ != senderMember && !external {
		return nil, fmt.Errorf("%w: commit from sender type %d", ErrMalformed, committer.typ)
	}
	list, err := g.resolve(c, committer)
	if err != nil {
		return nil, err
	}
	for _, r := range list {
		if r.ref == nil {
			if err := g.checkPolicy(r.p, committer, in.member, true); err != nil {
				return nil, err
			}
		}
	}
	tree := st.tree.clone()
	ap, err := g.applyProposals(tree, list, committer, now, false)
	if err != nil {
		return nil, err
	}
	if ap.pathRequired && c.path == nil {
		return nil, fmt.Errorf("%w: commit without the path its proposals require", ErrInvalid)
	}
	priv := st.priv.clone()
	// A committed update of this member's leaf brings its new key.
	for _, r := range list {
		if r.p.typ == proposalUpdate && leafIndex(r.sender.index) == priv.leaf {
			i := slices.IndexFunc(st.ownUpdates, func(u ownUpdate) bool { return bytes.Equal(u.ref, r.ref) })
			if i < 0 {
				return nil, fmt.Errorf("%w: commit applies an update of this member it did not make", ErrInvalid)
			}
			priv.leafKey = st.ownUpdates[i].leafKey
		}
	}
	selfRemoved := tree.leaf(priv.leaf) == nil
	if !selfRemoved {
		priv.prune(tree)
	}
	senderLeaf := leafIndex(committer.index)
	if external {
		senderLeaf = tree.leftmostBlank()
	}
	commitSecret := make([]byte, s.nh)
	newEpoch := st.ctx.epoch + 1
	if c.path != nil {
		var prev *Credential
		if !external {
			cr := tree.leaf(senderLeaf).credential.clone()
			prev = &cr
		} else {
			prev = ap.removedPrev
		}
		chk := &leafCheck{source: leafSourceCommit, groupID: st.ctx.groupID, leaf: senderLeaf, groupExtensions: ap.extensions,
			tree: tree, replaced: !external, prev: prev, maxLifetime: g.cfg.MaxLifetime}
		if err := s.validateLeafNode(&c.path.leafNode, chk, g.cfg.ValidateCredential); err != nil {
			return nil, fmt.Errorf("commit path: %w", err)
		}
		if !external && bytes.Equal(c.path.leafNode.encryptionKey, tree.leaf(senderLeaf).encryptionKey) {
			return nil, fmt.Errorf("%w: commit path keeps the committer's encryption key", ErrInvalid)
		}
		if err := checkPathKeysFresh(tree, c.path); err != nil {
			return nil, err
		}
		if err := s.mergePath(tree, senderLeaf, c.path, ap.added); err != nil {
			return nil, err
		}
		if !selfRemoved {
			gc := (&groupContext{version: st.ctx.version, cipherSuite: s.id, groupID: st.ctx.groupID, epoch: newEpoch,
				treeHash: tree.rootHash(s), confirmedTranscriptHash: st.ctx.confirmedTranscriptHash, extensions: ap.extensions}).bytes()
			if commitSecret, priv, _, err = s.decryptPath(tree, priv, senderLeaf, c.path, ap.added, gc); err != nil {
				return nil, err
			}
		}
	} else if external {
		return nil, fmt.Errorf("%w: external commit without a path", ErrInvalid)
	}
	info := g.commitInfo(ap, tree, false, c.path)
	info.PendingDiscarded = st.pending != nil
	recv := &Received{Kind: KindCommit, Epoch: st.ctx.epoch, Sender: in.member, SenderExternal: external,
		AuthenticatedData: in.content.authenticatedData, Commit: info}
	if external {
		recv.Sender = memberOf(senderLeaf, tree.leaf(senderLeaf))
	}
	if selfRemoved {
		// This member cannot follow into the new epoch (the commit's
		// secrets are not encrypted to it): it stays in its last epoch, to
		// read that epoch's late messages, and can no longer send.
		in.consume()
		st.status = statusRemoved
		st.pending = nil
		st.proposals = nil
		info.SelfRemoved = true
		return recv, nil
	}
	initSecret := st.secrets.init
	if external {
		if initSecret, err = g.externalInitSecret(ap.externalInit); err != nil {
			return nil, err
		}
	}
	pskSecret := s.pskSecret(ap.psks, ap.pskValues)
	next, _, _ := g.nextEpoch(tree, priv, ap, in.wireFormat, in.content, in.auth.signature, commitSecret, pskSecret, initSecret)
	if !equalSecret(next.confirmationTag, in.auth.confirmationTag) {
		return nil, ErrAuth
	}
	in.consume()
	g.st = next
	return recv, nil
}

// checkPathKeysFresh refuses an UpdatePath that reuses a key of the tree.
func checkPathKeysFresh(t *ratchetTree, p *updatePath) error {
	keys := [][]byte{p.leafNode.encryptionKey}
	for _, n := range p.nodes {
		keys = append(keys, n.encryptionKey)
	}
	for _, k := range keys {
		for _, l := range t.leaves {
			if l != nil && bytes.Equal(l.encryptionKey, k) {
				return fmt.Errorf("%w: update path reuses a key of the tree", ErrInvalid)
			}
		}
		for _, q := range t.parents {
			if q != nil && bytes.Equal(q.encryptionKey, k) {
				return fmt.Errorf("%w: update path reuses a key of the tree", ErrInvalid)
			}
		}
	}
	return nil
}

// externalInitSecret recovers the init secret a joiner sent in an
// ExternalInit proposal, with the external key of the current epoch.
func (g *Group) externalInitSecret(kemOutput []byte) ([]byte, error) {
	s := g.suite
	k, err := s.kem.DeriveKeyPair(g.st.secrets.external)
	if err != nil {
		return nil, err
	}
	r, err := hpke.NewRecipient(kemOutput, k, s.kdf, s.aead, nil)
	if err != nil {
		return nil, ErrAuth
	}
	return r.Export("MLS 1.0 external init secret", s.nh)
}
