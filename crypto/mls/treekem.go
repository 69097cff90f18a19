package mls

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
)

// TreeKEM (RFC 9420 §7.4–7.6): creating an UpdatePath along the committer's
// filtered direct path, and merging one into the tree with the path secret
// this member can decrypt.

// treePrivate is what a member knows of the tree: its leaf, the private
// key of its leaf's encryption key, and the private keys of the parent
// nodes above it it holds (serialized HPKE private keys).
type treePrivate struct {
	leaf     leafIndex
	leafKey  []byte
	pathKeys map[nodeIndex][]byte
}

func (p *treePrivate) clone() *treePrivate {
	return &treePrivate{leaf: p.leaf, leafKey: p.leafKey, pathKeys: maps.Clone(p.pathKeys)}
}

// key returns the private key this member holds for node x, or nil.
func (p *treePrivate) key(x nodeIndex) []byte {
	if x == p.leaf.node() {
		return p.leafKey
	}
	return p.pathKeys[x]
}

// prune drops the keys of nodes that are blank in t or not above the leaf.
func (p *treePrivate) prune(t *ratchetTree) {
	for x := range p.pathKeys {
		if uint32(x) >= nodeWidth(t.size()) || t.blank(x) || !isDescendant(p.leaf.node(), x) {
			delete(p.pathKeys, x)
		}
	}
}

// pathSecrets derives the chain of path secrets from first, one per node
// of the filtered direct path from index from, and the commit secret.
func (s *suite) pathChain(first []byte, n int) (secrets [][]byte, commitSecret []byte) {
	secrets = make([][]byte, n)
	ps := first
	for i := range n {
		secrets[i] = ps
		ps = s.deriveSecret(ps, "path")
	}
	return secrets, ps
}

// nodeKeyPair derives the HPKE key pair of a path secret.
func (s *suite) nodeKeyPair(pathSecret []byte) (priv, pub []byte, err error) {
	return s.deriveKeyPair(s.deriveSecret(pathSecret, "node"))
}

// copathResolution is the resolution of a copath node without the leaves
// added by the commit being made or processed.
func (t *ratchetTree) copathResolution(x nodeIndex, exclude []leafIndex) []nodeIndex {
	res := t.resolution(nil, x)
	if len(exclude) == 0 {
		return res
	}
	return slices.DeleteFunc(res, func(y nodeIndex) bool {
		return y.isLeaf() && slices.Contains(exclude, y.leaf())
	})
}

// pathResult is an UpdatePath made by this member.
type pathResult struct {
	path         *updatePath
	commitSecret []byte
	private      *treePrivate
	// secrets holds the path secret of every node on the filtered direct
	// path, for the Welcome of members added by the same commit.
	secrets map[nodeIndex][]byte
}

// createPath makes an UpdatePath for priv.leaf in t (which already has the
// commit's proposals applied) and applies it to t. leaf is the member's new
// leaf node without keys, parent hash and signature; exclude lists the
// leaves added by the commit; groupContext returns the encoded provisional
// GroupContext for the tree hash of the updated tree.
func (s *suite) createPath(t *ratchetTree, priv *treePrivate, leaf *leafNode, exclude []leafIndex, groupID []byte,
	sg *signer, groupContext func(treeHash []byte) []byte, rand io.Reader) (*pathResult, error) {
	steps := t.filteredDirectPath(priv.leaf)
	leafPriv, leafPub, err := s.generateHPKEKey(rand)
	if err != nil {
		return nil, err
	}
	first := make([]byte, s.nh)
	if _, err := io.ReadFull(rand, first); err != nil {
		return nil, err
	}
	secrets, commitSecret := s.pathChain(first, len(steps))
	next := &treePrivate{leaf: priv.leaf, leafKey: leafPriv, pathKeys: map[nodeIndex][]byte{}}
	pubs := make([][]byte, len(steps))
	bySecret := make(map[nodeIndex][]byte, len(steps))
	for i, st := range steps {
		nodePriv, nodePub, err := s.nodeKeyPair(secrets[i])
		if err != nil {
			return nil, err
		}
		next.pathKeys[st.node] = nodePriv
		pubs[i] = nodePub
		bySecret[st.node] = secrets[i]
	}
	ph := t.setPathKeys(s, priv.leaf, steps, pubs)
	n := *leaf
	n.encryptionKey = leafPub
	n.source = leafSourceCommit
	n.parentHash = ph
	n.notBefore, n.notAfter = 0, 0
	if n.signature, err = s.signWithLabel(sg, "LeafNodeTBS", n.tbs(groupID, priv.leaf)); err != nil {
		return nil, err
	}
	t.setLeaf(priv.leaf, &n)
	gc := groupContext(t.rootHash(s))

	path := &updatePath{leafNode: n, nodes: make([]updatePathNode, len(steps))}
	for i, st := range steps {
		res := t.copathResolution(st.copath, exclude)
		node := updatePathNode{encryptionKey: pubs[i], secrets: make([]hpkeCiphertext, len(res))}
		for j, x := range res {
			kem, ct, err := s.encryptWithLabel(t.encryptionKey(x), "UpdatePathNode", gc, secrets[i])
			if err != nil {
				return nil, err
			}
			node.secrets[j] = hpkeCiphertext{kemOutput: kem, ciphertext: ct}
		}
		path.nodes[i] = node
	}
	return &pathResult{path: path, commitSecret: commitSecret, private: next, secrets: bySecret}, nil
}

// mergePath applies another member's UpdatePath from leaf sender to t:
// it installs the path's keys, checks the parent hash the leaf node
// carries, and sets the leaf. The leaf node itself is validated by the
// caller. It returns an error if the path does not fit the tree.
func (s *suite) mergePath(t *ratchetTree, sender leafIndex, path *updatePath, exclude []leafIndex) error {
	steps := t.filteredDirectPath(sender)
	if len(path.nodes) != len(steps) {
		return fmt.Errorf("%w: update path has %d nodes, the filtered direct path %d", ErrInvalid, len(path.nodes), len(steps))
	}
	pubs := make([][]byte, len(steps))
	for i, st := range steps {
		if want := len(t.copathResolution(st.copath, exclude)); len(path.nodes[i].secrets) != want {
			return fmt.Errorf("%w: update path node %d has %d ciphertexts, want %d", ErrInvalid, i, len(path.nodes[i].secrets), want)
		}
		if !s.validHPKEKey(path.nodes[i].encryptionKey) {
			return fmt.Errorf("%w: update path node %d: bad HPKE public key", ErrInvalid, i)
		}
		pubs[i] = path.nodes[i].encryptionKey
	}
	ph := t.setPathKeys(s, sender, steps, pubs)
	if path.leafNode.source != leafSourceCommit || !bytes.Equal(path.leafNode.parentHash, ph) {
		return fmt.Errorf("%w: update path leaf node's parent hash does not match the path", ErrInvalid)
	}
	n := path.leafNode
	t.setLeaf(sender, &n)
	return nil
}

// decryptPath recovers the path secrets this member can from a merged
// UpdatePath of leaf sender: it decrypts the one for the lowest node of
// the filtered direct path above it, derives those above, checks every
// derived public key against the tree, and returns the commit secret and
// the member's new private state. Every failure to decrypt or match is
// ErrAuth. t is the tree after mergePath; priv is the state before.
func (s *suite) decryptPath(t *ratchetTree, priv *treePrivate, sender leafIndex, path *updatePath,
	exclude []leafIndex, groupContext []byte) (commitSecret []byte, next *treePrivate, firstSecret []byte, err error) {
	steps := t.filteredDirectPath(sender)
	me := priv.leaf.node()
	for i, st := range steps {
		if !isDescendant(me, st.copath) {
			continue
		}
		res := t.copathResolution(st.copath, exclude)
		for j, x := range res {
			key := priv.key(x)
			if key == nil {
				continue
			}
			c := path.nodes[i].secrets[j]
			ps, err := s.decryptWithLabel(key, "UpdatePathNode", groupContext, c.kemOutput, c.ciphertext)
			if err != nil {
				return nil, nil, nil, ErrAuth
			}
			next = priv.clone()
			secrets, commit := s.pathChain(ps, len(steps)-i)
			for k, secret := range secrets {
				nodePriv, nodePub, err := s.nodeKeyPair(secret)
				if err != nil {
					return nil, nil, nil, ErrAuth
				}
				if !bytes.Equal(nodePub, path.nodes[i+k].encryptionKey) {
					return nil, nil, nil, ErrAuth
				}
				next.pathKeys[steps[i+k].node] = nodePriv
			}
			next.prune(t)
			return commit, next, ps, nil
		}
		return nil, nil, nil, fmt.Errorf("%w: no private key for the resolution of the update path's copath node", ErrInvalid)
	}
	return nil, nil, nil, fmt.Errorf("%w: member is not under the update path", ErrInvalid)
}

// pathKeysFrom derives the private keys of the nodes from the lowest
// common ancestor of this member and the committer up to the root, given
// the path secret of that ancestor (a Welcome's path secret), and checks
// them against the tree.
func (s *suite) pathKeysFrom(t *ratchetTree, priv *treePrivate, committer leafIndex, pathSecret []byte) error {
	lca := commonAncestor(priv.leaf.node(), committer.node())
	steps := t.filteredDirectPath(committer)
	first := slices.IndexFunc(steps, func(st pathStep) bool { return st.node == lca })
	if first < 0 {
		return fmt.Errorf("%w: the common ancestor with the committer is not on its filtered direct path", ErrInvalid)
	}
	ps := pathSecret
	for _, st := range steps[first:] {
		nodePriv, nodePub, err := s.nodeKeyPair(ps)
		if err != nil {
			return ErrAuth
		}
		if t.blank(st.node) || !bytes.Equal(nodePub, t.encryptionKey(st.node)) {
			return ErrAuth
		}
		priv.pathKeys[st.node] = nodePriv
		ps = s.deriveSecret(ps, "path")
	}
	return nil
}
