package mls

import (
	"bytes"
	"crypto/hpke"
	"fmt"
	"io"
	"slices"
	"time"
)

// Joining a group: by a Welcome (RFC 9420 §12.4.3.1) or by an external
// commit (§12.4.3.2).

// JoinOptions are the optional inputs of Join.
type JoinOptions struct {
	// RatchetTree is the group's encoded ratchet tree, when the Welcome's
	// GroupInfo does not carry it.
	RatchetTree []byte
	// ReInitFrom is the member's state of the group a Welcome
	// reinitializes (its last commit was a ReInit): the Welcome's group
	// must match the ReInit, and its PSK comes from this group.
	ReInitFrom *Group
}

// Join joins a group with a Welcome addressed to one of the KeyPackages
// in kps. It checks the whole group state it receives: the GroupInfo's
// signature, the ratchet tree (every leaf's signature and credential, the
// parent and tree hashes) and the confirmation tag.
func Join(cfg Config, welcomeMsg []byte, kps []*KeyPackagePrivate, opts JoinOptions) (*Group, error) {
	cfg = cfg.withDefaults()
	if cfg.ValidateCredential == nil {
		return nil, fmt.Errorf("%w: no credential validator configured", ErrCredential)
	}
	m, err := parseMessage(welcomeMsg)
	if err != nil {
		return nil, err
	}
	if m.welcome == nil {
		return nil, fmt.Errorf("%w: not a welcome", ErrMalformed)
	}
	w := m.welcome
	s, err := lookupSuite(w.cipherSuite)
	if err != nil {
		return nil, err
	}
	var kp *KeyPackagePrivate
	var egs *encryptedGroupSecrets
	for _, k := range kps {
		if k.kp.kp.cipherSuite != s.id {
			continue
		}
		for i := range w.secrets {
			if bytes.Equal(w.secrets[i].newMember, k.kp.ref) {
				kp, egs = k, &w.secrets[i]
			}
		}
	}
	if kp == nil {
		return nil, ErrNoKeyPackage
	}
	pt, err := s.decryptWithLabel(kp.initKey, "Welcome", w.encryptedGroupInfo, egs.secrets.kemOutput, egs.secrets.ciphertext)
	if err != nil {
		return nil, ErrAuth
	}
	var gs groupSecrets
	if err := decodeAll(pt, gs.decode); err != nil {
		return nil, err
	}
	if len(gs.joinerSecret) != s.nh || gs.pathSecret != nil && len(gs.pathSecret) != s.nh {
		return nil, fmt.Errorf("%w: group secrets of the wrong size", ErrMalformed)
	}
	g := &Group{cfg: cfg, suite: s, reinitFrom: opts.ReInitFrom}
	var pskValues [][]byte
	resumption := 0
	var reinitPSK *pskID
	for i := range gs.psks {
		id := &gs.psks[i]
		if id.typ == pskResumption && id.usage == resumptionBranch {
			return nil, fmt.Errorf("%w: subgroup branching", ErrUnsupported)
		}
		if id.typ == pskResumption && id.usage == resumptionReInit {
			resumption++
			reinitPSK = id
		}
		v, err := g.pskValue(id)
		if err != nil {
			return nil, err
		}
		pskValues = append(pskValues, v)
	}
	if resumption > 1 {
		return nil, fmt.Errorf("%w: welcome with %d reinit or branch PSKs", ErrInvalid, resumption)
	}
	pskSecret := s.pskSecret(gs.psks, pskValues)
	member := s.extract(gs.joinerSecret, pskSecret)
	key, nonce := s.welcomeKeyNonce(s.deriveSecret(member, "welcome"))
	gib, err := s.aeadOpen(key, nonce, w.encryptedGroupInfo, nil)
	if err != nil {
		return nil, ErrAuth
	}
	var gi groupInfo
	if err := decodeAll(gib, gi.decode); err != nil {
		return nil, err
	}
	tree, err := verifyGroupInfo(s, &cfg, &gi, opts.RatchetTree)
	if err != nil {
		return nil, err
	}
	if reinitPSK != nil {
		if gi.groupContext.epoch != 1 {
			return nil, fmt.Errorf("%w: reinit welcome to epoch %d", ErrInvalid, gi.groupContext.epoch)
		}
		if err := checkReInitWelcome(opts.ReInitFrom, reinitPSK, &gi.groupContext); err != nil {
			return nil, err
		}
	}
	me, ok := tree.findLeaf(&kp.kp.kp.leafNode)
	if !ok {
		return nil, fmt.Errorf("%w: the key package's leaf is not in the tree", ErrInvalid)
	}
	priv := &treePrivate{leaf: me, leafKey: kp.encryptionKey, pathKeys: map[nodeIndex][]byte{}}
	if gs.pathSecret != nil {
		if gi.signer == me {
			return nil, fmt.Errorf("%w: welcome signed by the new member", ErrInvalid)
		}
		if err := s.pathKeysFrom(tree, priv, gi.signer, gs.pathSecret); err != nil {
			return nil, err
		}
	}
	st := &groupState{ctx: gi.groupContext, tree: tree, priv: priv, sigKey: kp.signature}
	es := s.epochFromJoiner(gs.joinerSecret, pskSecret, st.ctx.bytes())
	if !s.verifyMAC(es.confirmation, st.ctx.confirmedTranscriptHash, gi.confirmationTag) {
		return nil, ErrAuth
	}
	st.confirmationTag = gi.confirmationTag
	st.interim = s.interimTranscriptHash(st.ctx.confirmedTranscriptHash, gi.confirmationTag)
	st.setEpoch(s, es)
	g.st = st
	g.reinitFrom = nil
	return g, nil
}

// verifyGroupInfo checks a GroupInfo and the tree it comes with: the tree
// from its ratchet_tree extension or, failing that, treeBytes.
func verifyGroupInfo(s *suite, cfg *Config, gi *groupInfo, treeBytes []byte) (*ratchetTree, error) {
	gc := &gi.groupContext
	if gc.version != protocolVersionMLS10 {
		return nil, fmt.Errorf("%w: protocol version %d", ErrUnsupported, gc.version)
	}
	if gc.cipherSuite != s.id {
		return nil, fmt.Errorf("%w: group info for suite %v, expected %v", ErrInvalid, gc.cipherSuite, s.id)
	}
	for _, e := range gc.extensions {
		if !cfg.supportsExtension(e.Type) {
			return nil, fmt.Errorf("%w: group context extension 0x%04x", ErrUnsupported, e.Type)
		}
	}
	if _, err := parseExternalSenders(gc.extensions); err != nil {
		return nil, err
	}
	if e := findExtension(gi.extensions, extRatchetTree); e != nil {
		treeBytes = e.Data
	}
	if treeBytes == nil {
		return nil, fmt.Errorf("%w: no ratchet tree", ErrInvalid)
	}
	tree, err := parseTree(treeBytes)
	if err != nil {
		return nil, err
	}
	signer := tree.leaf(gi.signer)
	if signer == nil {
		return nil, fmt.Errorf("%w: group info signer %d is not a member", ErrInvalid, gi.signer)
	}
	if !s.verifyWithLabel(signer.signatureKey, "GroupInfoTBS", mustEncode(gi.encodeBody), gi.signature) {
		return nil, ErrAuth
	}
	if !bytes.Equal(tree.rootHash(s), gc.treeHash) {
		return nil, fmt.Errorf("%w: ratchet tree does not match the tree hash", ErrInvalid)
	}
	if err := s.validateTree(tree, gc.groupID, gc.extensions, cfg.ValidateCredential, cfg.MaxLifetime); err != nil {
		return nil, err
	}
	return tree, nil
}

// ExternalJoinOptions are the optional inputs of JoinExternal.
type ExternalJoinOptions struct {
	// RatchetTree is the group's encoded ratchet tree, when the GroupInfo
	// does not carry it.
	RatchetTree []byte
	// Resync removes the member at this leaf index in the same commit: the
	// joiner's own earlier membership (its credential must be an
	// acceptable successor of that member's).
	Resync *uint32
	// AuthenticatedData is sent with the commit, authenticated.
	AuthenticatedData []byte
}

// JoinExternal joins a group from a GroupInfo that carries the group's
// external key (Group.GroupInfo with withExternalPub), by an external
// commit (RFC 9420 §12.4.3.2). It returns the group, in the epoch the
// commit starts, and the commit to send to the group. The group is active
// once the commit is delivered back (Process recognizes it; it returns
// ErrConflict if another commit was accepted first, and the join failed).
func JoinExternal(cfg Config, groupInfoMsg []byte, cred Credential, key *SignatureKey, opts ExternalJoinOptions, rand io.Reader) (*Group, []byte, error) {
	cfg = cfg.withDefaults()
	if cfg.ValidateCredential == nil {
		return nil, nil, fmt.Errorf("%w: no credential validator configured", ErrCredential)
	}
	s := key.suite
	m, err := parseMessage(groupInfoMsg)
	if err != nil {
		return nil, nil, err
	}
	if m.groupInfo == nil {
		return nil, nil, fmt.Errorf("%w: not a group info", ErrMalformed)
	}
	gi := m.groupInfo
	tree, err := verifyGroupInfo(s, &cfg, gi, opts.RatchetTree)
	if err != nil {
		return nil, nil, err
	}
	if err := checkCredential(&cred); err != nil {
		return nil, nil, err
	}
	ext := findExtension(gi.extensions, extExternalPub)
	if ext == nil {
		return nil, nil, fmt.Errorf("%w: group info without an external key", ErrInvalid)
	}
	var pubBytes []byte
	if err := decodeAll(ext.Data, func(r *reader) { pubBytes = r.opaque(maxKeySize) }); err != nil {
		return nil, nil, err
	}
	pub, err := s.kem.NewPublicKey(pubBytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: external key: %v", ErrInvalid, err)
	}
	kemOutput, hs, err := hpke.NewSender(pub, s.kdf, s.aead, nil)
	if err != nil {
		return nil, nil, err
	}
	initSecret, err := hs.Export("MLS 1.0 external init secret", s.nh)
	if err != nil {
		return nil, nil, err
	}

	// The state of the epoch the GroupInfo describes, as far as the
	// joiner knows it.
	gc := gi.groupContext
	g := &Group{cfg: cfg, suite: s, st: &groupState{
		ctx: gc, tree: tree, sigKey: key,
		interim: s.interimTranscriptHash(gc.confirmedTranscriptHash, gi.confirmationTag),
	}}
	joiner := sender{typ: senderNewMemberCommit}
	list := []resolvedProposal{{p: &proposal{typ: proposalExternalInit, externalInit: kemOutput}, sender: joiner}}
	if opts.Resync != nil {
		list = append(list, resolvedProposal{p: &proposal{typ: proposalRemove, remove: leafIndex(*opts.Resync)}, sender: joiner})
	}
	newTree := tree.clone()
	ap, err := g.applyProposals(newTree, list, joiner, time.Time{}, true)
	if err != nil {
		return nil, nil, err
	}
	me := newTree.leftmostBlank()
	tmpl := &leafNode{
		signatureKey: key.Public(),
		credential:   cred.clone(),
		capabilities: s.capabilitiesWith(cfg.Extensions),
		extensions:   []Extension{},
	}
	if err := cfg.ValidateCredential(cred.clone(), key.Public(), ap.removedPrev); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrCredential, err)
	}
	provisional := func(treeHash []byte) []byte {
		return (&groupContext{version: gc.version, cipherSuite: s.id, groupID: gc.groupID, epoch: gc.epoch + 1,
			treeHash: treeHash, confirmedTranscriptHash: gc.confirmedTranscriptHash, extensions: ap.extensions}).bytes()
	}
	priv := &treePrivate{leaf: me, pathKeys: map[nodeIndex][]byte{}}
	res, err := s.createPath(newTree, priv, tmpl, nil, gc.groupID, key.sg, provisional, rand)
	if err != nil {
		return nil, nil, err
	}
	c := &commit{path: res.path}
	for _, r := range list {
		c.proposals = append(c.proposals, proposalOrRef{proposal: r.p})
	}
	content := &framedContent{
		groupID: gc.groupID, epoch: gc.epoch, sender: joiner,
		authenticatedData: nonNil(opts.AuthenticatedData), contentType: contentCommit, commit: c,
	}
	sig, err := s.signContent(key.sg, wireFormatPublicMessage, content, gc.bytes())
	if err != nil {
		return nil, nil, err
	}
	next, _, _ := g.nextEpoch(newTree, res.private, ap, wireFormatPublicMessage, content, sig, res.commitSecret,
		s.pskSecret(ap.psks, ap.pskValues), initSecret)
	msg, err := encode((&mlsMessage{wireFormat: wireFormatPublicMessage, publicMessage: &publicMessage{
		content: *content, auth: authData{signature: sig, confirmationTag: next.confirmationTag},
	}}).encode)
	if err != nil {
		return nil, nil, err
	}
	next.status = statusExternal
	next.pending = &pendingCommit{message: msg}
	g.st = next
	return g, slices.Clone(msg), nil
}
