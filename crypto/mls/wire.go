package mls

import (
	"fmt"
	"slices"
)

// The structures of RFC 9420 as Go types, with their encodings. Decoders
// copy every byte string they keep, so a decoded value never aliases its
// input.

// Size limits, checked by the decoders before anything is allocated.
const (
	// MaxMessageSize bounds an encoded MLSMessage, a ratchet tree and a
	// marshalled group state.
	MaxMessageSize = 64 << 20
	// MaxMembers bounds the leaves of a ratchet tree.
	MaxMembers = 1 << 15
	// MaxGroupIDSize bounds a group ID.
	MaxGroupIDSize = 256
	// MaxAuthenticatedDataSize bounds a message's authenticated_data.
	MaxAuthenticatedDataSize = 64 << 10
	// maxKeySize bounds an HPKE public key, KEM output or private key, and
	// a signature public key.
	maxKeySize = 4096
	// maxSignatureSize bounds a signature.
	maxSignatureSize = 1024
	// maxHashSize bounds a hash, MAC, secret, reference or nonce.
	maxHashSize = 255
	// maxCredentialSize bounds an encoded credential.
	maxCredentialSize = 64 << 10
	// maxSmallVector bounds the capability lists and unmerged leaves.
	maxSmallVector = 1 << 20
)

// Protocol constants (RFC 9420 §6, §7, §12, §17).
const (
	protocolVersionMLS10 = 1

	wireFormatPublicMessage  = 1
	wireFormatPrivateMessage = 2
	wireFormatWelcome        = 3
	wireFormatGroupInfo      = 4
	wireFormatKeyPackage     = 5

	contentApplication = 1
	contentProposal    = 2
	contentCommit      = 3

	senderMember            = 1
	senderExternal          = 2
	senderNewMemberProposal = 3
	senderNewMemberCommit   = 4

	leafSourceKeyPackage = 1
	leafSourceUpdate     = 2
	leafSourceCommit     = 3

	proposalAdd                   = 1
	proposalUpdate                = 2
	proposalRemove                = 3
	proposalPSK                   = 4
	proposalReInit                = 5
	proposalExternalInit          = 6
	proposalGroupContextExtension = 7

	extApplicationID        = 1
	extRatchetTree          = 2
	extRequiredCapabilities = 3
	extExternalPub          = 4
	extExternalSenders      = 5

	pskExternal   = 1
	pskResumption = 2

	resumptionApplication = 1
	resumptionReInit      = 2
	resumptionBranch      = 3

	proposalOrRefProposal  = 1
	proposalOrRefReference = 2

	nodeTypeLeaf   = 1
	nodeTypeParent = 2
)

// ExtensionType is the type of an extension (RFC 9420 §13.4).
type ExtensionType uint16

// Extension is an extension of a GroupContext, GroupInfo, KeyPackage or
// leaf node: its type and its encoded data.
type Extension struct {
	Type ExtensionType
	Data []byte
}

func encodeExtensions(w *writer, exts []Extension) {
	w.vector(func() { encodeExtensionList(w, exts) })
}

// encodeExtensionList writes the elements of an extensions vector.
func encodeExtensionList(w *writer, exts []Extension) {
	for _, e := range exts {
		w.u16(uint16(e.Type))
		w.opaque(e.Data)
	}
}

// decodeExtensions reads Extension extensions<V> and refuses two
// extensions of one type (RFC 9420 §13.4).
func decodeExtensions(r *reader) []Extension {
	v := r.vector(MaxMessageSize)
	var exts []Extension
	for v.more() {
		e := Extension{Type: ExtensionType(v.u16()), Data: v.opaque(MaxMessageSize)}
		if slices.ContainsFunc(exts, func(o Extension) bool { return o.Type == e.Type }) {
			v.fail(fmt.Errorf("two extensions of type 0x%04x", e.Type))
		}
		exts = append(exts, e)
	}
	r.finish(v)
	return exts
}

func findExtension(exts []Extension, typ ExtensionType) *Extension {
	for i := range exts {
		if exts[i].Type == typ {
			return &exts[i]
		}
	}
	return nil
}

// CredentialType is a credential's type (RFC 9420 §5.3).
type CredentialType uint16

// Credential types.
const (
	CredentialBasic CredentialType = 1
	CredentialX509  CredentialType = 2
)

// Credential is a member's credential: presented identifiers the
// application binds to the member's signature key (RFC 9420 §5.3).
type Credential struct {
	Type CredentialType
	// Identity is the identity of a basic credential.
	Identity []byte
	// Certificates is the DER certificate chain of an X.509 credential,
	// end-entity certificate first.
	Certificates [][]byte
}

func (c *Credential) encode(w *writer) {
	w.u16(uint16(c.Type))
	switch c.Type {
	case CredentialBasic:
		w.opaque(c.Identity)
	case CredentialX509:
		w.vector(func() {
			for _, cert := range c.Certificates {
				w.opaque(cert)
			}
		})
	}
}

func (c *Credential) decode(r *reader) {
	c.Type = CredentialType(r.u16())
	switch c.Type {
	case CredentialBasic:
		c.Identity = r.opaque(maxCredentialSize)
	case CredentialX509:
		v := r.vector(maxCredentialSize)
		for v.more() {
			c.Certificates = append(c.Certificates, v.opaque(maxCredentialSize))
		}
		r.finish(v)
	default:
		r.fail(fmt.Errorf("%w: credential type 0x%04x", ErrUnsupported, uint16(c.Type)))
	}
}

func (c *Credential) clone() Credential {
	d := Credential{Type: c.Type, Identity: slices.Clone(c.Identity)}
	for _, cert := range c.Certificates {
		d.Certificates = append(d.Certificates, slices.Clone(cert))
	}
	return d
}

// capabilities is a leaf node's Capabilities.
type capabilities struct {
	versions, cipherSuites, extensions, proposals, credentials []uint16
}

func encodeU16s(w *writer, v []uint16) {
	w.vector(func() {
		for _, x := range v {
			w.u16(x)
		}
	})
}

func decodeU16s(r *reader) []uint16 {
	v := r.vector(maxSmallVector)
	if len(v.b)%2 != 0 {
		v.fail(errTrailing)
	}
	out := make([]uint16, 0, len(v.b)/2)
	for v.more() {
		out = append(out, v.u16())
	}
	r.finish(v)
	return out
}

func (c *capabilities) encode(w *writer) {
	encodeU16s(w, c.versions)
	encodeU16s(w, c.cipherSuites)
	encodeU16s(w, c.extensions)
	encodeU16s(w, c.proposals)
	encodeU16s(w, c.credentials)
}

func (c *capabilities) decode(r *reader) {
	c.versions = decodeU16s(r)
	c.cipherSuites = decodeU16s(r)
	c.extensions = decodeU16s(r)
	c.proposals = decodeU16s(r)
	c.credentials = decodeU16s(r)
}

// leafNode is a LeafNode (RFC 9420 §7.2).
type leafNode struct {
	encryptionKey []byte
	signatureKey  []byte
	credential    Credential
	capabilities  capabilities
	source        uint8
	notBefore     uint64 // source key_package
	notAfter      uint64
	parentHash    []byte // source commit
	extensions    []Extension
	signature     []byte
}

// encodeBody writes the fields of the LeafNode before its signature.
func (n *leafNode) encodeBody(w *writer) {
	w.opaque(n.encryptionKey)
	w.opaque(n.signatureKey)
	n.credential.encode(w)
	n.capabilities.encode(w)
	w.u8(n.source)
	switch n.source {
	case leafSourceKeyPackage:
		w.u64(n.notBefore)
		w.u64(n.notAfter)
	case leafSourceCommit:
		w.opaque(n.parentHash)
	}
	encodeExtensions(w, n.extensions)
}

func (n *leafNode) encode(w *writer) {
	n.encodeBody(w)
	w.opaque(n.signature)
}

// tbs returns the LeafNodeTBS: the body, and for the update and commit
// sources the group ID and leaf index.
func (n *leafNode) tbs(groupID []byte, leaf leafIndex) []byte {
	return mustEncode(func(w *writer) {
		n.encodeBody(w)
		if n.source == leafSourceUpdate || n.source == leafSourceCommit {
			w.opaque(groupID)
			w.u32(uint32(leaf))
		}
	})
}

func (n *leafNode) decode(r *reader) {
	n.encryptionKey = r.opaque(maxKeySize)
	n.signatureKey = r.opaque(maxKeySize)
	n.credential.decode(r)
	n.capabilities.decode(r)
	n.source = r.u8()
	switch n.source {
	case leafSourceKeyPackage:
		n.notBefore = r.u64()
		n.notAfter = r.u64()
	case leafSourceUpdate:
	case leafSourceCommit:
		n.parentHash = r.opaque(maxHashSize)
	default:
		r.fail(fmt.Errorf("leaf node source %d", n.source))
	}
	n.extensions = decodeExtensions(r)
	n.signature = r.opaque(maxSignatureSize)
}

func (n *leafNode) bytes() []byte { return mustEncode(n.encode) }

// parentNode is a ParentNode (RFC 9420 §7.1).
type parentNode struct {
	encryptionKey  []byte
	parentHash     []byte
	unmergedLeaves []leafIndex
}

func (p *parentNode) encode(w *writer) {
	w.opaque(p.encryptionKey)
	w.opaque(p.parentHash)
	w.vector(func() {
		for _, l := range p.unmergedLeaves {
			w.u32(uint32(l))
		}
	})
}

func (p *parentNode) decode(r *reader) {
	p.encryptionKey = r.opaque(maxKeySize)
	p.parentHash = r.opaque(maxHashSize)
	v := r.vector(maxSmallVector)
	if len(v.b)%4 != 0 {
		v.fail(errTrailing)
	}
	p.unmergedLeaves = make([]leafIndex, 0, len(v.b)/4)
	for v.more() {
		l := leafIndex(v.u32())
		if n := len(p.unmergedLeaves); n > 0 && l <= p.unmergedLeaves[n-1] {
			v.fail(fmt.Errorf("unmerged leaves not in increasing order"))
		}
		p.unmergedLeaves = append(p.unmergedLeaves, l)
	}
	r.finish(v)
}

// keyPackage is a KeyPackage (RFC 9420 §10).
type keyPackage struct {
	version     uint16
	cipherSuite CipherSuite
	initKey     []byte
	leafNode    leafNode
	extensions  []Extension
	signature   []byte
}

func (k *keyPackage) encodeBody(w *writer) {
	w.u16(k.version)
	w.u16(uint16(k.cipherSuite))
	w.opaque(k.initKey)
	k.leafNode.encode(w)
	encodeExtensions(w, k.extensions)
}

func (k *keyPackage) encode(w *writer) {
	k.encodeBody(w)
	w.opaque(k.signature)
}

func (k *keyPackage) decode(r *reader) {
	k.version = r.u16()
	k.cipherSuite = CipherSuite(r.u16())
	k.initKey = r.opaque(maxKeySize)
	k.leafNode.decode(r)
	k.extensions = decodeExtensions(r)
	k.signature = r.opaque(maxSignatureSize)
}

// hpkeCiphertext is an HPKECiphertext.
type hpkeCiphertext struct {
	kemOutput, ciphertext []byte
}

func (c *hpkeCiphertext) encode(w *writer) {
	w.opaque(c.kemOutput)
	w.opaque(c.ciphertext)
}

func (c *hpkeCiphertext) decode(r *reader) {
	c.kemOutput = r.opaque(maxKeySize)
	c.ciphertext = r.opaque(MaxMessageSize)
}

// updatePathNode and updatePath are UpdatePathNode and UpdatePath
// (RFC 9420 §7.6).
type updatePathNode struct {
	encryptionKey []byte
	secrets       []hpkeCiphertext
}

type updatePath struct {
	leafNode leafNode
	nodes    []updatePathNode
}

func (p *updatePath) encode(w *writer) {
	p.leafNode.encode(w)
	w.vector(func() {
		for i := range p.nodes {
			n := &p.nodes[i]
			w.opaque(n.encryptionKey)
			w.vector(func() {
				for j := range n.secrets {
					n.secrets[j].encode(w)
				}
			})
		}
	})
}

func (p *updatePath) decode(r *reader) {
	p.leafNode.decode(r)
	v := r.vector(MaxMessageSize)
	for v.more() {
		n := updatePathNode{encryptionKey: v.opaque(maxKeySize)}
		s := v.vector(MaxMessageSize)
		for s.more() {
			var c hpkeCiphertext
			c.decode(s)
			n.secrets = append(n.secrets, c)
		}
		v.finish(s)
		p.nodes = append(p.nodes, n)
	}
	r.finish(v)
}

// pskID is a PreSharedKeyID (RFC 9420 §8.4).
type pskID struct {
	typ     uint8
	id      []byte // external
	usage   uint8  // resumption
	groupID []byte
	epoch   uint64
	nonce   []byte
}

func (p *pskID) encode(w *writer) {
	w.u8(p.typ)
	switch p.typ {
	case pskExternal:
		w.opaque(p.id)
	case pskResumption:
		w.u8(p.usage)
		w.opaque(p.groupID)
		w.u64(p.epoch)
	}
	w.opaque(p.nonce)
}

func (p *pskID) decode(r *reader) {
	p.typ = r.u8()
	switch p.typ {
	case pskExternal:
		p.id = r.opaque(MaxGroupIDSize)
	case pskResumption:
		p.usage = r.u8()
		if p.usage < resumptionApplication || p.usage > resumptionBranch {
			r.fail(fmt.Errorf("resumption PSK usage %d", p.usage))
		}
		p.groupID = r.opaque(MaxGroupIDSize)
		p.epoch = r.u64()
	default:
		r.fail(fmt.Errorf("PSK type %d", p.typ))
	}
	p.nonce = r.opaque(maxHashSize)
}

func (p *pskID) bytes() []byte { return mustEncode(p.encode) }
