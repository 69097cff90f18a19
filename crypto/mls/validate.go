package mls

import (
	"bytes"
	"fmt"
	"slices"
	"time"
)

// Validation of leaf nodes (RFC 9420 §7.3), KeyPackages (§10.1) and whole
// ratchet trees (§12.4.3.1).

// isDefaultProposal and isDefaultExtension report the types every client
// implements and never lists in its capabilities (RFC 9420 §7.2).
func isDefaultProposal(t uint16) bool  { return t >= proposalAdd && t <= proposalGroupContextExtension }
func isDefaultExtension(t uint16) bool { return t >= extApplicationID && t <= extExternalSenders }

// requiredCapabilities is the required_capabilities extension.
type requiredCapabilities struct {
	extensions, proposals, credentials []uint16
}

func parseRequiredCapabilities(exts []Extension) (*requiredCapabilities, error) {
	e := findExtension(exts, extRequiredCapabilities)
	if e == nil {
		return nil, nil
	}
	rc := new(requiredCapabilities)
	err := decodeAll(e.Data, func(r *reader) {
		rc.extensions = decodeU16s(r)
		rc.proposals = decodeU16s(r)
		rc.credentials = decodeU16s(r)
	})
	if err != nil {
		return nil, fmt.Errorf("required_capabilities: %w", err)
	}
	return rc, nil
}

// leafCheck is what a leaf node is checked against.
type leafCheck struct {
	source  uint8 // the source the leaf node must have; 0 for any
	groupID []byte
	leaf    leafIndex
	// groupExtensions are the GroupContext extensions the leaf must
	// support.
	groupExtensions []Extension
	// tree is the tree the leaf joins (for credential types and key
	// uniqueness), with replaced set when the leaf takes the place of an
	// existing one; nil skips those checks.
	tree     *ratchetTree
	replaced bool
	// now is checked against a key_package lifetime when checkLifetime is
	// set; maxLifetime bounds the lifetime's span.
	now           time.Time
	checkLifetime bool
	maxLifetime   time.Duration
	// prev is the credential the leaf's replaces, for the validator.
	prev *Credential
}

// validateLeafNode checks n (RFC 9420 §7.3). A bad signature is ErrAuth;
// a refused credential ErrCredential; any other failure ErrInvalid.
func (s *suite) validateLeafNode(n *leafNode, c *leafCheck, validate CredentialValidator) error {
	if c.source != 0 && n.source != c.source {
		return fmt.Errorf("%w: leaf node source %d, want %d", ErrInvalid, n.source, c.source)
	}
	if !s.validSignatureKey(n.signatureKey) {
		return fmt.Errorf("%w: leaf node signature key is malformed", ErrInvalid)
	}
	if !s.validHPKEKey(n.encryptionKey) {
		return fmt.Errorf("%w: leaf node encryption key is malformed", ErrInvalid)
	}
	if !s.verifyWithLabel(n.signatureKey, "LeafNodeTBS", n.tbs(c.groupID, c.leaf), n.signature) {
		return ErrAuth
	}
	if validate == nil {
		return fmt.Errorf("%w: no credential validator configured", ErrCredential)
	}
	if err := validate(n.credential.clone(), slices.Clone(n.signatureKey), c.prev); err != nil {
		return fmt.Errorf("%w: %w", ErrCredential, err)
	}
	caps := &n.capabilities
	if !slices.Contains(caps.credentials, uint16(n.credential.Type)) {
		return fmt.Errorf("%w: leaf node does not list its own credential type", ErrInvalid)
	}
	for _, e := range n.extensions {
		if !isDefaultExtension(uint16(e.Type)) && !slices.Contains(caps.extensions, uint16(e.Type)) {
			return fmt.Errorf("%w: leaf node carries extension 0x%04x it does not list", ErrInvalid, e.Type)
		}
	}
	if err := checkSupports(caps, c.groupExtensions); err != nil {
		return err
	}
	if n.source == leafSourceKeyPackage {
		if n.notAfter < n.notBefore || c.maxLifetime > 0 && n.notAfter-n.notBefore > uint64(c.maxLifetime/time.Second) {
			return fmt.Errorf("%w: leaf node lifetime [%d, %d] exceeds the maximum", ErrInvalid, n.notBefore, n.notAfter)
		}
		if c.checkLifetime {
			now := c.now.Unix()
			if now < 0 || uint64(now) < n.notBefore || uint64(now) > n.notAfter {
				return fmt.Errorf("%w: leaf node lifetime [%d, %d], now %d", ErrExpired, n.notBefore, n.notAfter, now)
			}
		}
	}
	if c.tree == nil {
		return nil
	}
	for i, m := range c.tree.leaves {
		if m == nil || (c.replaced && leafIndex(i) == c.leaf) {
			continue
		}
		if !slices.Contains(m.capabilities.credentials, uint16(n.credential.Type)) {
			return fmt.Errorf("%w: member %d does not support credential type %d", ErrInvalid, i, n.credential.Type)
		}
		if !slices.Contains(caps.credentials, uint16(m.credential.Type)) {
			return fmt.Errorf("%w: leaf node does not support credential type %d of member %d", ErrInvalid, m.credential.Type, i)
		}
		if bytes.Equal(m.signatureKey, n.signatureKey) {
			return fmt.Errorf("%w: signature key already used by member %d", ErrInvalid, i)
		}
		if bytes.Equal(m.encryptionKey, n.encryptionKey) {
			return fmt.Errorf("%w: encryption key already used by member %d", ErrInvalid, i)
		}
	}
	for _, p := range c.tree.parents {
		if p != nil && bytes.Equal(p.encryptionKey, n.encryptionKey) {
			return fmt.Errorf("%w: encryption key already used in the tree", ErrInvalid)
		}
	}
	return nil
}

// checkSupports checks that caps support the group's extensions and its
// required capabilities.
func checkSupports(caps *capabilities, groupExtensions []Extension) error {
	for _, e := range groupExtensions {
		if !isDefaultExtension(uint16(e.Type)) && !slices.Contains(caps.extensions, uint16(e.Type)) {
			return fmt.Errorf("%w: group extension 0x%04x not supported", ErrInvalid, e.Type)
		}
	}
	rc, err := parseRequiredCapabilities(groupExtensions)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if rc == nil {
		return nil
	}
	for _, t := range rc.extensions {
		if !isDefaultExtension(t) && !slices.Contains(caps.extensions, t) {
			return fmt.Errorf("%w: required extension 0x%04x not supported", ErrInvalid, t)
		}
	}
	for _, t := range rc.proposals {
		if !isDefaultProposal(t) && !slices.Contains(caps.proposals, t) {
			return fmt.Errorf("%w: required proposal 0x%04x not supported", ErrInvalid, t)
		}
	}
	for _, t := range rc.credentials {
		if !slices.Contains(caps.credentials, t) {
			return fmt.Errorf("%w: required credential type 0x%04x not supported", ErrInvalid, t)
		}
	}
	return nil
}

// validateKeyPackage checks a KeyPackage's version, suite, keys and
// signature (RFC 9420 §10.1); its leaf node is checked by the caller.
// Unknown KeyPackage extensions are ignored (§13.4).
func (s *suite) validateKeyPackage(kp *keyPackage) error {
	if kp.version != protocolVersionMLS10 {
		return fmt.Errorf("%w: key package version %d", ErrUnsupported, kp.version)
	}
	if kp.cipherSuite != s.id {
		return fmt.Errorf("%w: key package for cipher suite %v, group uses %v", ErrInvalid, kp.cipherSuite, s.id)
	}
	if !s.validHPKEKey(kp.initKey) {
		return fmt.Errorf("%w: key package init key is malformed", ErrInvalid)
	}
	if bytes.Equal(kp.initKey, kp.leafNode.encryptionKey) {
		return fmt.Errorf("%w: key package init key equals its encryption key", ErrInvalid)
	}
	if !s.verifyWithLabel(kp.leafNode.signatureKey, "KeyPackageTBS", mustEncode(kp.encodeBody), kp.signature) {
		return ErrAuth
	}
	return nil
}

// validateTree checks a ratchet tree received when joining (RFC 9420
// §12.4.3.1): every leaf node, the parent hashes, the unmerged leaves and
// the uniqueness of keys. The tree hash is checked by the caller.
func (s *suite) validateTree(t *ratchetTree, groupID []byte, groupExtensions []Extension, validate CredentialValidator, maxLifetime time.Duration) error {
	sigKeys := map[string]bool{}
	encKeys := map[string]bool{}
	var credTypes []uint16
	for i, n := range t.leaves {
		if n == nil {
			continue
		}
		c := &leafCheck{groupID: groupID, leaf: leafIndex(i), groupExtensions: groupExtensions, maxLifetime: maxLifetime}
		if err := s.validateLeafNode(n, c, validate); err != nil {
			return fmt.Errorf("leaf %d: %w", i, err)
		}
		if sigKeys[string(n.signatureKey)] {
			return fmt.Errorf("%w: two leaves with one signature key", ErrInvalid)
		}
		sigKeys[string(n.signatureKey)] = true
		if encKeys[string(n.encryptionKey)] {
			return fmt.Errorf("%w: two nodes with one encryption key", ErrInvalid)
		}
		encKeys[string(n.encryptionKey)] = true
		if !slices.Contains(credTypes, uint16(n.credential.Type)) {
			credTypes = append(credTypes, uint16(n.credential.Type))
		}
	}
	for i, n := range t.leaves {
		for _, ct := range credTypes {
			if n != nil && !slices.Contains(n.capabilities.credentials, ct) {
				return fmt.Errorf("%w: leaf %d does not support credential type %d in use", ErrInvalid, i, ct)
			}
		}
	}
	for i, p := range t.parents {
		if p == nil {
			continue
		}
		x := nodeIndex(2*i + 1)
		if encKeys[string(p.encryptionKey)] {
			return fmt.Errorf("%w: two nodes with one encryption key", ErrInvalid)
		}
		encKeys[string(p.encryptionKey)] = true
		for _, l := range p.unmergedLeaves {
			if t.leaf(l) == nil || !isDescendant(l.node(), x) {
				return fmt.Errorf("%w: node %d lists unmerged leaf %d that is blank or not below it", ErrInvalid, x, l)
			}
			for y := l.node().parent(); y != x; y = y.parent() {
				if q := t.parent(y); q != nil && !slices.Contains(q.unmergedLeaves, l) {
					return fmt.Errorf("%w: node %d does not list unmerged leaf %d of node %d", ErrInvalid, y, l, x)
				}
			}
		}
	}
	return s.verifyParentHashes(t)
}

// verifyParentHashes checks that every non-blank parent node is parent-hash
// valid (RFC 9420 §7.9.2), top down: exactly one node below it carries its
// parent hash and is linked to it by the rules of that section.
func (s *suite) verifyParentHashes(t *ratchetTree) error {
	for i, p := range t.parents {
		if p == nil {
			continue
		}
		x := nodeIndex(2*i + 1)
		matches := 0
		for _, c := range []nodeIndex{x.left(), x.right()} {
			sibling := c.sibling()
			ph := t.parentHash(s, x, sibling)
			res := t.resolution(nil, c)
			var unmerged []nodeIndex
			for _, l := range p.unmergedLeaves {
				if isDescendant(l.node(), c) {
					unmerged = append(unmerged, l.node())
				}
			}
			for _, d := range res {
				var field []byte
				if d.isLeaf() {
					if n := t.leaves[d.leaf()]; n.source == leafSourceCommit {
						field = n.parentHash
					} else {
						continue
					}
				} else {
					field = t.parent(d).parentHash
				}
				if !bytes.Equal(field, ph) {
					continue
				}
				rest := slices.DeleteFunc(slices.Clone(res), func(y nodeIndex) bool { return y == d })
				slices.Sort(rest)
				if slices.Equal(rest, unmerged) {
					matches++
				}
			}
		}
		if matches != 1 {
			return fmt.Errorf("%w: parent node %d is not parent-hash valid", ErrInvalid, x)
		}
	}
	return nil
}
