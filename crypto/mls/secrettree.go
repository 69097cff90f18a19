package mls

import (
	"fmt"
	"math"
	"slices"
)

// The secret tree of an epoch (RFC 9420 §9): secrets derived from the
// encryption secret down the tree to each leaf, where each leaf starts a
// handshake and an application hash ratchet. Secrets are derived when
// first needed; a consumed secret is deleted as soon as its children (or
// its key, nonce and successor) are derived, as the deletion schedule of
// §9.2 requires.
//
// Reading never changes the tree: lookups return the key and a function
// that stores the derivation, which the caller runs once the message
// authenticated, so a failed decryption leaves the state as it was.

// ratchet types.
const (
	handshakeRatchet   = 0
	applicationRatchet = 1
)

// Limits is the receive window of the sender ratchets.
type limits struct {
	// maxGap is how many generations one message may move a ratchet.
	maxGap uint32
	// window is how many skipped keys a ratchet keeps for late messages.
	window int
	// keep refuses (ErrWouldEvict) a generation whose keys would push
	// keys of skipped generations out of the window.
	keep bool
}

type keyNonce struct {
	key, nonce []byte
}

// skippedKey is the key and nonce of a generation not yet received.
type skippedKey struct {
	generation uint32
	keyNonce
}

// hashRatchet is one sender ratchet: the secret of generation next, and
// the keys of earlier generations kept for late messages (ordered by
// generation, at most the window's size). Keys are given up (evicted)
// lowest generation first, so every generation below evicted whose key
// is not in skipped was given up, or used before it would have been.
type hashRatchet struct {
	secret  []byte
	next    uint32
	skipped []skippedKey
	evicted uint32
}

// leafRatchets are the handshake and application ratchets of one leaf.
type leafRatchets [2]*hashRatchet

type secretTree struct {
	leaves   uint32
	nodes    map[nodeIndex][]byte
	ratchets map[leafIndex]*leafRatchets
}

func newSecretTree(encryptionSecret []byte, leaves uint32) *secretTree {
	return &secretTree{
		leaves:   leaves,
		nodes:    map[nodeIndex][]byte{root(leaves): encryptionSecret},
		ratchets: map[leafIndex]*leafRatchets{},
	}
}

// leafRatchets returns the ratchets of leaf and, if they had to be derived,
// a function that stores them (nil otherwise).
func (t *secretTree) leafRatchets(s *suite, leaf leafIndex) (*leafRatchets, func(), error) {
	if uint32(leaf) >= t.leaves {
		return nil, nil, fmt.Errorf("%w: leaf %d outside a tree of %d", ErrMalformed, leaf, t.leaves)
	}
	if r, ok := t.ratchets[leaf]; ok {
		return r, nil, nil
	}
	path := append([]nodeIndex{leaf.node()}, directPath(leaf.node(), t.leaves)...)
	top := -1
	for i, x := range path {
		if _, ok := t.nodes[x]; ok {
			top = i
			break
		}
	}
	if top < 0 {
		return nil, nil, fmt.Errorf("mls: secret tree has no secret above leaf %d", leaf)
	}
	// Derive down from path[top] without touching t; record what changes.
	secret := t.nodes[path[top]]
	derived := map[nodeIndex][]byte{}
	for i := top; i > 0; i-- {
		x := path[i]
		l := s.expandWithLabel(secret, "tree", []byte("left"), s.nh)
		r := s.expandWithLabel(secret, "tree", []byte("right"), s.nh)
		derived[x.left()], derived[x.right()] = l, r
		secret = derived[path[i-1]]
	}
	r := &leafRatchets{
		{secret: s.expandWithLabel(secret, "handshake", nil, s.nh)},
		{secret: s.expandWithLabel(secret, "application", nil, s.nh)},
	}
	store := func() {
		for i := top; i > 0; i-- {
			delete(t.nodes, path[i])
		}
		for x, v := range derived {
			t.nodes[x] = v
		}
		delete(t.nodes, path[0])
		t.ratchets[leaf] = r
	}
	return r, store, nil
}

// step derives the key and nonce of generation g from the ratchet secret
// of that generation, and the secret of generation g+1.
func (s *suite) ratchetStep(secret []byte, g uint32) (keyNonce, []byte) {
	return keyNonce{
		key:   s.deriveTreeSecret(secret, "key", g, s.nk),
		nonce: s.deriveTreeSecret(secret, "nonce", g, s.nn),
	}, s.deriveTreeSecret(secret, "secret", g, s.nh)
}

// send returns the generation and key of the next message this ratchet
// protects, and advances it.
func (r *hashRatchet) send(s *suite) (uint32, keyNonce, error) {
	if r.next == math.MaxUint32 {
		return 0, keyNonce{}, fmt.Errorf("mls: sender ratchet exhausted")
	}
	g := r.next
	kn, next := s.ratchetStep(r.secret, g)
	r.secret, r.next = next, g+1
	return g, kn, nil
}

// receive returns the key of generation g and a function that consumes it
// (deletes it, and stores the secrets and keys derived on the way). It
// refuses a generation more than lim.maxGap ahead, one whose key was
// consumed (ErrDuplicate) or given up (ErrEvicted), and with lim.keep one
// that would give up keys of skipped generations (ErrWouldEvict).
func (r *hashRatchet) receive(s *suite, g uint32, lim limits) (keyNonce, func(), error) {
	if g < r.next {
		i, ok := slices.BinarySearchFunc(r.skipped, g, func(k skippedKey, g uint32) int {
			return cmpU32(k.generation, g)
		})
		if !ok && g < r.evicted {
			return keyNonce{}, nil, ErrEvicted
		}
		if !ok {
			return keyNonce{}, nil, ErrDuplicate
		}
		kn := r.skipped[i].keyNonce
		return kn, func() { r.skipped = slices.Delete(r.skipped, i, i+1) }, nil
	}
	gap := g - r.next
	if lim.keep && (int64(gap) > int64(lim.window) || len(r.skipped)+int(gap) > lim.window) {
		return keyNonce{}, nil, fmt.Errorf("%w: generation %d skips %d with %d kept", ErrWouldEvict, g, gap, len(r.skipped))
	}
	if gap > lim.maxGap {
		return keyNonce{}, nil, fmt.Errorf("%w: generation %d is %d ahead", ErrGeneration, g, gap)
	}
	if g == math.MaxUint32 {
		return keyNonce{}, nil, fmt.Errorf("%w: generation %d", ErrGeneration, g)
	}
	// Keys of the skipped generations; only the last lim.window can be
	// kept, so the others are not even kept in this derivation: they are
	// given up at once.
	secret := r.secret
	var skipped []skippedKey
	evicted := r.evicted
	for gen := r.next; gen < g; gen++ {
		kn, next := s.ratchetStep(secret, gen)
		if int(g-gen) <= lim.window {
			skipped = append(skipped, skippedKey{generation: gen, keyNonce: kn})
		} else {
			evicted = gen + 1
		}
		secret = next
	}
	kn, next := s.ratchetStep(secret, g)
	return kn, func() {
		r.skipped = append(r.skipped, skipped...)
		if over := len(r.skipped) - lim.window; over > 0 {
			evicted = max(evicted, r.skipped[over-1].generation+1)
			r.skipped = slices.Delete(r.skipped, 0, over)
		}
		r.secret, r.next, r.evicted = next, g+1, evicted
	}, nil
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// clone copies the ratchet (secrets are never modified in place).
func (r *hashRatchet) clone() *hashRatchet {
	return &hashRatchet{secret: r.secret, next: r.next, skipped: slices.Clone(r.skipped), evicted: r.evicted}
}

// senderDataKeyNonce derives the key and nonce that protect the sender
// data of a PrivateMessage from the first Nh bytes of its ciphertext.
func (s *suite) senderDataKeyNonce(senderDataSecret, ciphertext []byte) (key, nonce []byte) {
	sample := ciphertext[:min(len(ciphertext), s.nh)]
	return s.expandWithLabel(senderDataSecret, "key", sample, s.nk),
		s.expandWithLabel(senderDataSecret, "nonce", sample, s.nn)
}
