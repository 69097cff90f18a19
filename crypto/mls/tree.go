package mls

import (
	"bytes"
	"fmt"
	"slices"
)

// ratchetTree is the public state of a ratchet tree (RFC 9420 §4, §7):
// leaves and parent nodes in array order, nil for blank. Nodes in the tree
// are never modified in place, so copying the slices copies the tree; tree
// hashes are cached per node and dropped along the path of every change.
type ratchetTree struct {
	leaves  []*leafNode
	parents []*parentNode // parent node x is parents[x/2]
	hashes  [][]byte      // tree hash of node x, nil when not computed
}

func newTree(leaves uint32) *ratchetTree {
	return &ratchetTree{
		leaves:  make([]*leafNode, leaves),
		parents: make([]*parentNode, leaves-1),
		hashes:  make([][]byte, nodeWidth(leaves)),
	}
}

func (t *ratchetTree) size() uint32 { return uint32(len(t.leaves)) }

func (t *ratchetTree) clone() *ratchetTree {
	return &ratchetTree{
		leaves:  slices.Clone(t.leaves),
		parents: slices.Clone(t.parents),
		hashes:  slices.Clone(t.hashes),
	}
}

func (t *ratchetTree) leaf(l leafIndex) *leafNode {
	if uint32(l) >= t.size() {
		return nil
	}
	return t.leaves[l]
}

func (t *ratchetTree) parent(x nodeIndex) *parentNode { return t.parents[x.parentIndex()] }

func (t *ratchetTree) blank(x nodeIndex) bool {
	if x.isLeaf() {
		return t.leaves[x.leaf()] == nil
	}
	return t.parents[x.parentIndex()] == nil
}

// encryptionKey returns the HPKE public key of a non-blank node.
func (t *ratchetTree) encryptionKey(x nodeIndex) []byte {
	if x.isLeaf() {
		return t.leaves[x.leaf()].encryptionKey
	}
	return t.parents[x.parentIndex()].encryptionKey
}

// invalidate drops the cached hashes of x and its ancestors.
func (t *ratchetTree) invalidate(x nodeIndex) {
	r := root(t.size())
	for {
		t.hashes[x] = nil
		if x == r {
			return
		}
		x = x.parent()
	}
}

func (t *ratchetTree) setLeaf(l leafIndex, n *leafNode) {
	t.leaves[l] = n
	t.invalidate(l.node())
}

func (t *ratchetTree) setParent(x nodeIndex, p *parentNode) {
	t.parents[x.parentIndex()] = p
	t.invalidate(x)
}

// grow doubles the tree: the old tree becomes the left subtree of a new
// blank root.
func (t *ratchetTree) grow() {
	n := t.size()
	t.leaves = append(t.leaves, make([]*leafNode, n)...)
	t.parents = append(t.parents, make([]*parentNode, n)...)
	t.hashes = append(t.hashes, make([][]byte, 2*n)...)
	t.hashes[root(2*n)] = nil
}

// truncate halves the tree while its right half is all blank leaves
// (RFC 9420 §7.7).
func (t *ratchetTree) truncate() {
	for n := t.size(); n > 1; n /= 2 {
		if slices.ContainsFunc(t.leaves[n/2:], func(l *leafNode) bool { return l != nil }) {
			return
		}
		t.leaves = t.leaves[:n/2]
		t.parents = t.parents[:n/2-1]
		t.hashes = t.hashes[:nodeWidth(n/2)]
	}
}

// memberCount returns the number of non-blank leaves.
func (t *ratchetTree) memberCount() int {
	c := 0
	for _, l := range t.leaves {
		if l != nil {
			c++
		}
	}
	return c
}

// resolution appends the resolution of x (RFC 9420 §4.1.1) to dst.
func (t *ratchetTree) resolution(dst []nodeIndex, x nodeIndex) []nodeIndex {
	if x.isLeaf() {
		if t.leaves[x.leaf()] != nil {
			dst = append(dst, x)
		}
		return dst
	}
	if p := t.parent(x); p != nil {
		dst = append(dst, x)
		for _, l := range p.unmergedLeaves {
			dst = append(dst, l.node())
		}
		return dst
	}
	dst = t.resolution(dst, x.left())
	return t.resolution(dst, x.right())
}

// pathStep is one node of a filtered direct path: the parent node and its
// child on the copath.
type pathStep struct {
	node, copath nodeIndex
}

// filteredDirectPath returns the filtered direct path of leaf l, with the
// copath child of each node.
func (t *ratchetTree) filteredDirectPath(l leafIndex) []pathStep {
	var steps []pathStep
	x := l.node()
	r := root(t.size())
	var res []nodeIndex
	for x != r {
		p, s := x.parent(), x.sibling()
		res = t.resolution(res[:0], s)
		if len(res) > 0 {
			steps = append(steps, pathStep{node: p, copath: s})
		}
		x = p
	}
	return steps
}

// leftmostBlank returns the leftmost blank leaf, growing the tree if all
// leaves are taken.
func (t *ratchetTree) leftmostBlank() leafIndex {
	for i, l := range t.leaves {
		if l == nil {
			return leafIndex(i)
		}
	}
	n := t.size()
	t.grow()
	return leafIndex(n)
}

// addLeaf puts n at the leftmost blank leaf and adds that leaf to the
// unmerged leaves of every non-blank node above it (RFC 9420 §12.1.1).
func (t *ratchetTree) addLeaf(n *leafNode) leafIndex {
	l := t.leftmostBlank()
	t.setLeaf(l, n)
	for _, x := range directPath(l.node(), t.size()) {
		if p := t.parent(x); p != nil {
			q := *p
			q.unmergedLeaves = append(slices.Clone(p.unmergedLeaves), l)
			slices.Sort(q.unmergedLeaves)
			t.setParent(x, &q)
		}
	}
	return l
}

// blankPath blanks the parent nodes above leaf l.
func (t *ratchetTree) blankPath(l leafIndex) {
	for _, x := range directPath(l.node(), t.size()) {
		if t.parent(x) != nil {
			t.setParent(x, nil)
		}
	}
}

// updateLeaf replaces the leaf of l and blanks its direct path.
func (t *ratchetTree) updateLeaf(l leafIndex, n *leafNode) {
	t.setLeaf(l, n)
	t.blankPath(l)
}

// removeLeaf blanks leaf l and its direct path. The caller truncates once
// all removals are applied.
func (t *ratchetTree) removeLeaf(l leafIndex) {
	t.setLeaf(l, nil)
	t.blankPath(l)
}

// treeHash returns the tree hash of node x (RFC 9420 §7.8).
func (t *ratchetTree) treeHash(s *suite, x nodeIndex) []byte {
	if h := t.hashes[x]; h != nil {
		return h
	}
	var h []byte
	if x.isLeaf() {
		h = s.hash(t.leafHashInput(x.leaf(), t.leaves[x.leaf()]))
	} else {
		h = s.hash(parentHashInput(t.parent(x), nil, t.treeHash(s, x.left()), t.treeHash(s, x.right())))
	}
	t.hashes[x] = h
	return h
}

// rootHash is the tree hash of the whole tree.
func (t *ratchetTree) rootHash(s *suite) []byte { return t.treeHash(s, root(t.size())) }

func (t *ratchetTree) leafHashInput(l leafIndex, n *leafNode) []byte {
	return mustEncode(func(w *writer) {
		w.u8(nodeTypeLeaf)
		w.u32(uint32(l))
		w.optional(n != nil, func() { n.encode(w) })
	})
}

// parentHashInput encodes the TreeHashInput of a parent node; drop lists
// unmerged leaves to leave out of it.
func parentHashInput(p *parentNode, drop []leafIndex, left, right []byte) []byte {
	return mustEncode(func(w *writer) {
		w.u8(nodeTypeParent)
		w.optional(p != nil, func() {
			if len(drop) == 0 {
				p.encode(w)
				return
			}
			q := *p
			q.unmergedLeaves = slices.DeleteFunc(slices.Clone(p.unmergedLeaves), func(l leafIndex) bool {
				return slices.Contains(drop, l)
			})
			q.encode(w)
		})
		w.opaque(left)
		w.opaque(right)
	})
}

// treeHashWithout is the tree hash of x in the tree where the leaves in
// drop are blank and gone from every unmerged list: the "original sibling
// tree hash" of RFC 9420 §7.9. Subtrees without a dropped leaf use the
// cached hash.
func (t *ratchetTree) treeHashWithout(s *suite, x nodeIndex, drop []leafIndex) []byte {
	var inside []leafIndex
	for _, l := range drop {
		if isDescendant(l.node(), x) {
			inside = append(inside, l)
		}
	}
	if len(inside) == 0 {
		return t.treeHash(s, x)
	}
	if x.isLeaf() {
		return s.hash(t.leafHashInput(x.leaf(), nil))
	}
	return s.hash(parentHashInput(t.parent(x), inside,
		t.treeHashWithout(s, x.left(), inside), t.treeHashWithout(s, x.right(), inside)))
}

// parentHash is the parent hash of parent node x with copath child s
// (RFC 9420 §7.9), for the node's current encryption key and parent_hash.
func (t *ratchetTree) parentHash(s *suite, x, sibling nodeIndex) []byte {
	p := t.parent(x)
	return s.hash(mustEncode(func(w *writer) {
		w.opaque(p.encryptionKey)
		w.opaque(p.parentHash)
		w.opaque(t.treeHashWithout(s, sibling, p.unmergedLeaves))
	}))
}

// setPathKeys installs the public keys of a new update path for leaf l:
// it blanks the direct path, sets the filtered direct path's keys with
// empty unmerged lists, and chains their parent hashes from the top down.
// It returns the parent hash the leaf node must carry. steps is the
// filtered direct path of l and keys holds one public key per step.
func (t *ratchetTree) setPathKeys(s *suite, l leafIndex, steps []pathStep, keys [][]byte) []byte {
	t.blankPath(l)
	for i, st := range steps {
		t.setParent(st.node, &parentNode{encryptionKey: keys[i], unmergedLeaves: []leafIndex{}})
	}
	var ph []byte
	for i := len(steps) - 1; i >= 0; i-- {
		st := steps[i]
		p := *t.parent(st.node)
		p.parentHash = ph
		if p.parentHash == nil {
			p.parentHash = []byte{}
		}
		t.setParent(st.node, &p)
		ph = t.parentHash(s, st.node, st.copath)
	}
	if ph == nil {
		ph = []byte{}
	}
	return ph
}

// encodeHashes writes the tree hash of every node, computing those not
// cached: opaque hashes<V>, one per node in array order.
func (t *ratchetTree) encodeHashes(w *writer, s *suite) {
	t.rootHash(s)
	w.vector(func() {
		for _, h := range t.hashes {
			w.opaque(h)
		}
	})
}

// decodeHashes reads what encodeHashes wrote into the cache: one hash of
// the suite's size for each node of the tree.
func (t *ratchetTree) decodeHashes(r *reader, s *suite) {
	v := r.vector(MaxMessageSize)
	backing := make([]byte, 0, len(t.hashes)*s.nh)
	for x := 0; v.more(); x++ {
		h := v.opaqueRef(maxHashSize)
		if x >= len(t.hashes) || len(h) != s.nh {
			v.fail(fmt.Errorf("tree hashes do not fit the tree"))
			break
		}
		backing = append(backing, h...)
		t.hashes[x] = backing[len(backing)-s.nh : len(backing) : len(backing)]
	}
	if v.err == nil && len(backing) != len(t.hashes)*s.nh {
		v.fail(fmt.Errorf("tree hashes do not fit the tree"))
	}
	r.finish(v)
}

// encodeTree writes optional<Node> ratchet_tree<V> without trailing
// blank nodes.
func (t *ratchetTree) encode(w *writer) {
	last := -1
	for x := int(nodeWidth(t.size())) - 1; x >= 0; x-- {
		if !t.blank(nodeIndex(x)) {
			last = x
			break
		}
	}
	w.vector(func() {
		for x := 0; x <= last; x++ {
			xi := nodeIndex(x)
			w.optional(!t.blank(xi), func() {
				if xi.isLeaf() {
					w.u8(nodeTypeLeaf)
					t.leaves[xi.leaf()].encode(w)
				} else {
					w.u8(nodeTypeParent)
					t.parent(xi).encode(w)
				}
			})
		}
	})
}

func (t *ratchetTree) bytes() []byte {
	w := &writer{b: make([]byte, 0, t.sizeHint())}
	t.encode(w)
	b, err := w.result()
	if err != nil {
		panic("mls: " + err.Error())
	}
	return b
}

// sizeHint is a little more than the size of the tree's encoding, so it
// is written without growing its buffer: the variable fields' sizes and a
// margin for the fixed fields and headers.
func (t *ratchetTree) sizeHint() int {
	n := 8
	for _, l := range t.leaves {
		n += 2
		if l == nil {
			continue
		}
		n += 128 + len(l.encryptionKey) + len(l.signatureKey) + len(l.signature) + len(l.parentHash) + len(l.credential.Identity) +
			2*(len(l.capabilities.versions)+len(l.capabilities.cipherSuites)+len(l.capabilities.extensions)+len(l.capabilities.proposals)+len(l.capabilities.credentials))
		for _, c := range l.credential.Certificates {
			n += 4 + len(c)
		}
		for _, e := range l.extensions {
			n += 6 + len(e.Data)
		}
	}
	for _, p := range t.parents {
		n += 2
		if p != nil {
			n += 16 + len(p.encryptionKey) + len(p.parentHash) + 4*len(p.unmergedLeaves)
		}
	}
	return n
}

// decodeTree reads optional<Node> ratchet_tree<V>: the last node must be
// non-blank; the tree is extended with blanks to a full tree.
func decodeTree(r *reader) *ratchetTree {
	v := r.vector(MaxMessageSize)
	var leaves []*leafNode
	var parents []*parentNode
	for x := 0; v.more(); x++ {
		if x >= int(nodeWidth(MaxMembers)) {
			v.fail(fmt.Errorf("%w: ratchet tree of more than %d members", ErrTooLarge, MaxMembers))
			break
		}
		present := v.optional()
		isLeaf := x%2 == 0
		if !present {
			if isLeaf {
				leaves = append(leaves, nil)
			} else {
				parents = append(parents, nil)
			}
			continue
		}
		typ := v.u8()
		switch {
		case isLeaf && typ == nodeTypeLeaf:
			n := new(leafNode)
			n.decode(v)
			leaves = append(leaves, n)
		case !isLeaf && typ == nodeTypeParent:
			p := new(parentNode)
			p.decode(v)
			parents = append(parents, p)
		default:
			v.fail(fmt.Errorf("node %d of type %d", x, typ))
		}
	}
	r.finish(v)
	if r.err != nil {
		return nil
	}
	width := len(leaves) + len(parents)
	if width == 0 {
		r.fail(fmt.Errorf("empty ratchet tree"))
		return nil
	}
	lastBlank := (width-1)%2 == 0 && leaves[len(leaves)-1] == nil || (width-1)%2 == 1 && parents[len(parents)-1] == nil
	if lastBlank {
		r.fail(fmt.Errorf("ratchet tree ends with a blank node"))
		return nil
	}
	n := uint32(1)
	for nodeWidth(n) < uint32(width) {
		n *= 2
	}
	t := newTree(n)
	copy(t.leaves, leaves)
	copy(t.parents, parents)
	return t
}

// parseTree decodes a ratchet tree.
func parseTree(b []byte) (*ratchetTree, error) {
	var t *ratchetTree
	if err := decodeAll(b, func(r *reader) { t = decodeTree(r) }); err != nil {
		return nil, err
	}
	return t, nil
}

// findLeaf returns the leaf whose node equals n byte for byte.
func (t *ratchetTree) findLeaf(n *leafNode) (leafIndex, bool) {
	enc := n.bytes()
	for i, l := range t.leaves {
		if l != nil && bytes.Equal(l.bytes(), enc) {
			return leafIndex(i), true
		}
	}
	return 0, false
}
