package mls

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
)

// The marshalled group state: a version byte, then the state in the TLS
// presentation language (the package's own layout, not an RFC 9420
// structure). It holds every secret of the member's view of the group;
// store it encrypted.

// stateVersion is the version of the marshalled group state. Version 2
// follows the ratchet tree with the tree hash of each of its nodes, so a
// loaded state hashes only what a commit changes; version 1 states are
// read too (their tree hashes are computed when first needed). Version 3
// follows each sender ratchet's skipped keys with the generation below
// which its keys were given up (ErrEvicted); a state of an earlier version
// reads as one that gave up none.
const stateVersion = 3

// keyPackagePrivateVersion is the version of marshalled KeyPackage private
// keys.
const keyPackagePrivateVersion = 1

// MarshalBinary encodes the group state, pending commit included.
func (g *Group) MarshalBinary() ([]byte, error) {
	return encode(func(w *writer) {
		w.u8(stateVersion)
		w.u16(uint16(g.suite.id))
		encodeState(w, g.suite, g.st)
	})
}

// UnmarshalGroup decodes a group state MarshalBinary returned. cfg is the
// member's policy, as for NewGroup.
func UnmarshalGroup(cfg Config, b []byte) (*Group, error) {
	cfg = cfg.withDefaults()
	if cfg.ValidateCredential == nil {
		return nil, fmt.Errorf("%w: no credential validator configured", ErrCredential)
	}
	if len(b) > 2*MaxMessageSize {
		return nil, fmt.Errorf("%w: state of %d bytes", ErrTooLarge, len(b))
	}
	var s *suite
	var st *groupState
	err := decodeAll(b, func(r *reader) {
		version := r.u8()
		if (version < 1 || version > stateVersion) && r.err == nil {
			r.fail(fmt.Errorf("state version %d", version))
			return
		}
		cs := CipherSuite(r.u16())
		if r.err != nil {
			return
		}
		var err error
		if s, err = lookupSuite(cs); err != nil {
			r.fail(err)
			return
		}
		st = decodeState(r, s, version, 0)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	return &Group{cfg: cfg, suite: s, st: st}, nil
}

func encodeMember(w *writer, m *Member) {
	w.u32(m.Index)
	m.Credential.encode(w)
	w.opaque(m.SignatureKey)
}

func decodeMember(r *reader) Member {
	var m Member
	m.Index = r.u32()
	m.Credential.decode(r)
	m.SignatureKey = r.opaque(maxKeySize)
	return m
}

func encodeMembers(w *writer, ms []Member) {
	w.vector(func() {
		for i := range ms {
			encodeMember(w, &ms[i])
		}
	})
}

func decodeMembers(r *reader) []Member {
	v := r.vector(MaxMessageSize)
	var ms []Member
	for v.more() {
		ms = append(ms, decodeMember(v))
	}
	r.finish(v)
	return ms
}

func encodeState(w *writer, s *suite, st *groupState) {
	st.ctx.encode(w)
	st.tree.encode(w)
	st.tree.encodeHashes(w, s)
	w.u32(uint32(st.priv.leaf))
	w.opaque(st.priv.leafKey)
	w.vector(func() {
		for _, x := range slices.Sorted(maps.Keys(st.priv.pathKeys)) {
			w.u32(uint32(x))
			w.opaque(st.priv.pathKeys[x])
		}
	})
	w.opaque(st.sigKey.priv)
	w.opaque(st.interim)
	w.opaque(st.confirmationTag)
	es := st.secrets
	for _, v := range [][]byte{es.senderData, es.exporter, es.external, es.confirmation, es.membership, es.resumption, es.authenticator, es.init} {
		w.opaque(v)
	}
	encodeSecretTree(w, st.secretTree)
	w.vector(func() {
		for _, cp := range st.proposals {
			w.opaque(cp.ref)
			cp.proposal.encode(w)
			cp.sender.encode(w)
		}
	})
	w.optional(st.pending != nil, func() {
		pc := st.pending
		w.opaque(pc.message)
		w.optional(pc.welcome != nil, func() { w.opaque(pc.welcome) })
		w.optional(pc.next != nil, func() {
			encodeState(w, s, pc.next)
			encodeMembers(w, pc.info.Added)
			encodeMembers(w, pc.info.Removed)
			encodeMembers(w, pc.info.Updated)
			w.u8(boolByte(pc.info.ReInit))
			w.u32(uint32(pc.info.PathNodes))
			w.u32(uint32(pc.info.PathCiphertexts))
		})
	})
	w.vector(func() {
		for _, p := range st.past {
			w.u64(p.epoch)
			w.opaque(p.context)
			w.opaque(p.senderData)
			encodeSecretTree(w, p.secretTree)
			w.u32(uint32(p.ownLeaf))
			w.vector(func() {
				for _, m := range p.members {
					w.u32(uint32(m.leaf))
					w.opaque(m.signatureKey)
					m.credential.encode(w)
				}
			})
		}
	})
	w.vector(func() {
		for _, r := range st.resumption {
			w.u64(r.epoch)
			w.opaque(r.psk)
		}
	})
	w.u8(st.status)
	w.optional(st.reinit != nil, func() {
		(&proposal{typ: proposalReInit, reinit: st.reinit}).encodeBody(w)
	})
	w.vector(func() {
		for _, u := range st.ownUpdates {
			w.opaque(u.ref)
			w.opaque(u.leafKey)
		}
	})
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// decodeState reads a state of the given version; depth bounds the
// nesting of pending states.
func decodeState(r *reader, s *suite, version uint8, depth int) *groupState {
	st := &groupState{secrets: &epochSecrets{}}
	st.ctx.decode(r)
	st.tree = decodeTree(r)
	if version >= 2 && st.tree != nil {
		st.tree.decodeHashes(r, s)
	}
	st.priv = &treePrivate{leaf: leafIndex(r.u32()), leafKey: r.opaque(maxKeySize), pathKeys: map[nodeIndex][]byte{}}
	v := r.vector(MaxMessageSize)
	for v.more() {
		x := nodeIndex(v.u32())
		st.priv.pathKeys[x] = v.opaque(maxKeySize)
	}
	r.finish(v)
	sigPriv := r.opaque(maxKeySize)
	st.interim = r.opaque(maxHashSize)
	st.confirmationTag = r.opaque(maxHashSize)
	es := st.secrets
	for _, p := range []*[]byte{&es.senderData, &es.exporter, &es.external, &es.confirmation, &es.membership, &es.resumption, &es.authenticator, &es.init} {
		*p = r.opaque(maxHashSize)
	}
	st.secretTree = decodeSecretTree(r, version)
	v = r.vector(MaxMessageSize)
	for v.more() {
		cp := cachedProposal{ref: v.opaque(maxHashSize), proposal: new(proposal)}
		cp.proposal.decode(v)
		cp.sender.decode(v)
		st.proposals = append(st.proposals, cp)
	}
	r.finish(v)
	if r.optional() {
		pc := &pendingCommit{message: r.opaque(MaxMessageSize)}
		if r.optional() {
			pc.welcome = r.opaque(MaxMessageSize)
		}
		if r.optional() {
			if depth > 0 {
				r.fail(fmt.Errorf("nested pending commit"))
				return nil
			}
			pc.next = decodeState(r, s, version, depth+1)
			pc.info = &CommitInfo{Own: true, Welcome: pc.welcome}
			pc.info.Added = decodeMembers(r)
			pc.info.Removed = decodeMembers(r)
			pc.info.Updated = decodeMembers(r)
			pc.info.ReInit = r.u8() == 1
			pc.info.PathNodes = int(r.u32())
			pc.info.PathCiphertexts = int(r.u32())
		}
		st.pending = pc
	}
	v = r.vector(MaxMessageSize)
	for v.more() {
		p := &pastEpoch{epoch: v.u64(), context: v.opaque(MaxMessageSize), senderData: v.opaque(maxHashSize)}
		p.secretTree = decodeSecretTree(v, version)
		p.ownLeaf = leafIndex(v.u32())
		mv := v.vector(MaxMessageSize)
		for mv.more() {
			m := pastMember{leaf: leafIndex(mv.u32()), signatureKey: mv.opaque(maxKeySize)}
			m.credential.decode(mv)
			p.members = append(p.members, m)
		}
		v.finish(mv)
		st.past = append(st.past, p)
	}
	r.finish(v)
	v = r.vector(MaxMessageSize)
	for v.more() {
		st.resumption = append(st.resumption, resumptionPSK{epoch: v.u64(), psk: v.opaque(maxHashSize)})
	}
	r.finish(v)
	st.status = r.u8()
	if r.optional() {
		p := &proposal{typ: proposalReInit}
		p.decodeBody(r)
		st.reinit = p.reinit
	}
	v = r.vector(MaxMessageSize)
	for v.more() {
		st.ownUpdates = append(st.ownUpdates, ownUpdate{ref: v.opaque(maxHashSize), leafKey: v.opaque(maxKeySize)})
	}
	r.finish(v)
	if r.err != nil {
		return nil
	}
	if err := st.check(s, sigPriv); err != nil {
		r.fail(err)
		return nil
	}
	return st
}

// check verifies the invariants a decoded state must hold before use.
func (st *groupState) check(s *suite, sigPriv []byte) error {
	if st.ctx.cipherSuite != s.id || st.ctx.version != protocolVersionMLS10 {
		return fmt.Errorf("group context of suite %v version %d", st.ctx.cipherSuite, st.ctx.version)
	}
	if st.status > statusExternal {
		return fmt.Errorf("status %d", st.status)
	}
	if st.tree.leaf(st.priv.leaf) == nil {
		return fmt.Errorf("own leaf %d is blank", st.priv.leaf)
	}
	// Computed for a version 1 state, read for a later one.
	if !bytes.Equal(st.tree.rootHash(s), st.ctx.treeHash) {
		return fmt.Errorf("the tree hash does not match the group context")
	}
	for x := range st.priv.pathKeys {
		if uint32(x) >= nodeWidth(st.tree.size()) || x.isLeaf() {
			return fmt.Errorf("private key for node %d", x)
		}
	}
	if st.secretTree.leaves != st.tree.size() {
		return fmt.Errorf("secret tree of %d leaves for a tree of %d", st.secretTree.leaves, st.tree.size())
	}
	for _, b := range [][]byte{st.secrets.senderData, st.secrets.exporter, st.secrets.init, st.secrets.membership} {
		if len(b) != s.nh {
			return fmt.Errorf("epoch secret of %d bytes", len(b))
		}
	}
	k, err := newSignatureKey(s, sigPriv)
	if err != nil {
		return err
	}
	st.sigKey = k
	return nil
}

func encodeSecretTree(w *writer, t *secretTree) {
	w.u32(t.leaves)
	w.vector(func() {
		for _, x := range slices.Sorted(maps.Keys(t.nodes)) {
			w.u32(uint32(x))
			w.opaque(t.nodes[x])
		}
	})
	w.vector(func() {
		for _, l := range slices.Sorted(maps.Keys(t.ratchets)) {
			w.u32(uint32(l))
			for _, r := range t.ratchets[l] {
				w.opaque(r.secret)
				w.u32(r.next)
				w.vector(func() {
					for _, k := range r.skipped {
						w.u32(k.generation)
						w.opaque(k.key)
						w.opaque(k.nonce)
					}
				})
				w.u32(r.evicted)
			}
		}
	})
}

func decodeSecretTree(r *reader, version uint8) *secretTree {
	t := &secretTree{leaves: r.u32(), nodes: map[nodeIndex][]byte{}, ratchets: map[leafIndex]*leafRatchets{}}
	if r.err == nil && (t.leaves == 0 || t.leaves > MaxMembers || t.leaves&(t.leaves-1) != 0) {
		r.fail(fmt.Errorf("secret tree of %d leaves", t.leaves))
	}
	v := r.vector(MaxMessageSize)
	for v.more() {
		x := nodeIndex(v.u32())
		if uint32(x) >= nodeWidth(t.leaves) {
			v.fail(fmt.Errorf("secret tree node %d", x))
		}
		t.nodes[x] = v.opaque(maxHashSize)
	}
	r.finish(v)
	v = r.vector(MaxMessageSize)
	for v.more() {
		l := leafIndex(v.u32())
		if uint32(l) >= t.leaves {
			v.fail(fmt.Errorf("secret tree leaf %d", l))
		}
		var lr leafRatchets
		for i := range lr {
			hr := &hashRatchet{secret: v.opaque(maxHashSize), next: v.u32()}
			sv := v.vector(MaxMessageSize)
			for sv.more() {
				k := skippedKey{generation: sv.u32()}
				k.key = sv.opaque(maxHashSize)
				k.nonce = sv.opaque(maxHashSize)
				if n := len(hr.skipped); n > 0 && hr.skipped[n-1].generation >= k.generation || k.generation >= hr.next {
					sv.fail(fmt.Errorf("skipped keys out of order"))
				}
				hr.skipped = append(hr.skipped, k)
			}
			v.finish(sv)
			if version >= 3 {
				if hr.evicted = v.u32(); hr.evicted > hr.next {
					v.fail(fmt.Errorf("keys evicted up to generation %d of %d", hr.evicted, hr.next))
				}
			}
			lr[i] = hr
		}
		t.ratchets[l] = &lr
	}
	r.finish(v)
	return t
}

// keysVersion is the version of the marshalled keys (MarshalKeys).
const keysVersion = 1

// MarshalKeys encodes the part of the state that application messages
// move: the secret trees (the senders' ratchets and the keys of messages
// skipped) of the current epoch and of the past epochs kept, with the
// epochs they belong to. That includes this member's own sender
// ratchets: the generation its next application message takes, which
// Encrypt moves and nothing else. The rest of the state changes only with
// proposals and commits (this member's or others'). Between two writes of
// the whole state, a member can store only these (a few hundred bytes a
// sender) instead of the state, which grows with the group (the ratchet
// tree: about 2 KB a member with post-quantum keys); ApplyKeys puts them
// back into the state they came from. It holds secrets: store it
// encrypted.
func (g *Group) MarshalKeys() ([]byte, error) {
	return encode(func(w *writer) {
		w.u8(keysVersion)
		w.u64(g.st.ctx.epoch)
		encodeSecretTree(w, g.st.secretTree)
		w.vector(func() {
			for _, p := range g.st.past {
				w.u64(p.epoch)
				encodeSecretTree(w, p.secretTree)
			}
		})
	})
}

// ApplyKeys replaces the secret trees of g with keys MarshalKeys returned
// for a later copy of the same state. Keys of another state (another
// epoch, other past epochs, another size) are refused with
// ErrInvalidState and g is left as it was.
func (g *Group) ApplyKeys(b []byte) error {
	if len(b) > 2*MaxMessageSize {
		return fmt.Errorf("%w: keys of %d bytes", ErrTooLarge, len(b))
	}
	var epoch uint64
	var cur *secretTree
	var past []*pastEpoch
	err := decodeAll(b, func(r *reader) {
		if v := r.u8(); v != keysVersion && r.err == nil {
			r.fail(fmt.Errorf("keys version %d", v))
			return
		}
		epoch = r.u64()
		cur = decodeSecretTree(r, stateVersion)
		v := r.vector(MaxMessageSize)
		for v.more() {
			if len(past) >= len(g.st.past) {
				v.fail(fmt.Errorf("keys of %d past epochs or more, the state keeps %d", len(past)+1, len(g.st.past)))
				break
			}
			p := &pastEpoch{epoch: v.u64()}
			p.secretTree = decodeSecretTree(v, stateVersion)
			past = append(past, p)
		}
		r.finish(v)
	})
	if err != nil {
		return fmt.Errorf("%w: keys: %w", ErrInvalidState, err)
	}
	if epoch != g.st.ctx.epoch || cur.leaves != g.st.secretTree.leaves || len(past) != len(g.st.past) {
		return fmt.Errorf("%w: keys of epoch %d (%d leaves, %d past), the state is at %d (%d leaves, %d past)",
			ErrInvalidState, epoch, cur.leaves, len(past), g.st.ctx.epoch, g.st.secretTree.leaves, len(g.st.past))
	}
	for i, p := range past {
		if q := g.st.past[i]; p.epoch != q.epoch || p.secretTree.leaves != q.secretTree.leaves {
			return fmt.Errorf("%w: keys of past epoch %d, the state keeps %d", ErrInvalidState, p.epoch, q.epoch)
		}
	}
	g.st.secretTree = cur
	for i, p := range past {
		g.st.past[i].secretTree = p.secretTree
	}
	return nil
}
