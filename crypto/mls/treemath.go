package mls

import "math/bits"

// Array-based tree math (RFC 9420 Appendix C). Trees are full: the number
// of leaves is a power of two. Node x is a leaf when x is even (leaf index
// x/2) and a parent otherwise; nodes are numbered by an in-order walk.

// nodeIndex numbers the nodes of the tree, leafIndex its leaves.
type (
	nodeIndex uint32
	leafIndex uint32
)

func (l leafIndex) node() nodeIndex { return nodeIndex(2 * l) }

func (x nodeIndex) isLeaf() bool        { return x&1 == 0 }
func (x nodeIndex) leaf() leafIndex     { return leafIndex(x / 2) }
func (x nodeIndex) parentIndex() uint32 { return uint32(x) / 2 } // index among parents

// level is the height of x above the leaves (leaves are level 0).
func (x nodeIndex) level() int { return bits.TrailingZeros32(^uint32(x)) }

// nodeWidth is the number of nodes of a tree with n leaves.
func nodeWidth(n uint32) uint32 {
	if n == 0 {
		return 0
	}
	return 2*(n-1) + 1
}

// root is the root of a tree with n leaves.
func root(n uint32) nodeIndex {
	w := nodeWidth(n)
	return nodeIndex(uint32(1)<<(bits.Len32(w)-1) - 1)
}

// left and right are the children of parent node x.
func (x nodeIndex) left() nodeIndex {
	k := x.level()
	return x ^ nodeIndex(1)<<(k-1)
}

func (x nodeIndex) right() nodeIndex {
	k := x.level()
	return x ^ nodeIndex(3)<<(k-1)
}

// parent is the parent of x, which must not be the root.
func (x nodeIndex) parent() nodeIndex {
	k := x.level()
	b := (x >> (k + 1)) & 1
	return (x | 1<<k) ^ (b << (k + 1))
}

// sibling is the other child of x's parent.
func (x nodeIndex) sibling() nodeIndex {
	p := x.parent()
	if x < p {
		return p.right()
	}
	return p.left()
}

// directPath returns the nodes from x's parent to the root of a tree with
// n leaves.
func directPath(x nodeIndex, n uint32) []nodeIndex {
	r := root(n)
	var d []nodeIndex
	for x != r {
		x = x.parent()
		d = append(d, x)
	}
	return d
}

// copath returns the siblings of x and of the nodes of its direct path
// but the root.
func copath(x nodeIndex, n uint32) []nodeIndex {
	r := root(n)
	var c []nodeIndex
	for x != r {
		c = append(c, x.sibling())
		x = x.parent()
	}
	return c
}

// isDescendant reports whether x is in the subtree under a (or is a).
func isDescendant(x, a nodeIndex) bool {
	k := a.level()
	lo := uint32(a) - (uint32(1)<<k - 1)
	hi := uint32(a) + (uint32(1)<<k - 1)
	return uint32(x) >= lo && uint32(x) <= hi
}

// commonAncestor is the lowest node in the direct paths of both x and y
// (or x itself if y is under x).
func commonAncestor(x, y nodeIndex) nodeIndex {
	lx, ly := x.level()+1, y.level()+1
	if lx <= ly && x>>ly == y>>ly {
		return y
	}
	if ly <= lx && x>>lx == y>>lx {
		return x
	}
	xn, yn := x, y
	k := 0
	for xn != yn {
		xn, yn = xn>>1, yn>>1
		k++
	}
	return xn<<k + 1<<(k-1) - 1
}
