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

// reInit is a ReInit proposal.
type reInit struct {
	groupID     []byte
	version     uint16
	cipherSuite CipherSuite
	extensions  []Extension
}

// proposal is a Proposal (RFC 9420 §12.1). The field for its type is set.
type proposal struct {
	typ          uint16
	add          *keyPackage
	update       *leafNode
	remove       leafIndex
	psk          *pskID
	reinit       *reInit
	externalInit []byte
	extensions   []Extension // group_context_extensions
}

func (p *proposal) encode(w *writer) {
	w.u16(p.typ)
	p.encodeBody(w)
}

// encodeBody writes the proposal without its type.
func (p *proposal) encodeBody(w *writer) {
	switch p.typ {
	case proposalAdd:
		p.add.encode(w)
	case proposalUpdate:
		p.update.encode(w)
	case proposalRemove:
		w.u32(uint32(p.remove))
	case proposalPSK:
		p.psk.encode(w)
	case proposalReInit:
		w.opaque(p.reinit.groupID)
		w.u16(p.reinit.version)
		w.u16(uint16(p.reinit.cipherSuite))
		encodeExtensions(w, p.reinit.extensions)
	case proposalExternalInit:
		w.opaque(p.externalInit)
	case proposalGroupContextExtension:
		encodeExtensions(w, p.extensions)
	}
}

func (p *proposal) decode(r *reader) {
	p.typ = r.u16()
	p.decodeBody(r)
}

func (p *proposal) decodeBody(r *reader) {
	switch p.typ {
	case proposalAdd:
		p.add = new(keyPackage)
		p.add.decode(r)
	case proposalUpdate:
		p.update = new(leafNode)
		p.update.decode(r)
	case proposalRemove:
		p.remove = leafIndex(r.u32())
	case proposalPSK:
		p.psk = new(pskID)
		p.psk.decode(r)
	case proposalReInit:
		p.reinit = &reInit{
			groupID:     r.opaque(MaxGroupIDSize),
			version:     r.u16(),
			cipherSuite: CipherSuite(r.u16()),
			extensions:  decodeExtensions(r),
		}
	case proposalExternalInit:
		p.externalInit = r.opaque(maxKeySize)
	case proposalGroupContextExtension:
		p.extensions = decodeExtensions(r)
	default:
		r.fail(fmt.Errorf("%w: proposal type 0x%04x", ErrUnsupported, p.typ))
	}
}

// proposalOrRef is a ProposalOrRef.
type proposalOrRef struct {
	proposal *proposal // by value
	ref      []byte    // by reference
}

// commit is a Commit (RFC 9420 §12.4).
type commit struct {
	proposals []proposalOrRef
	path      *updatePath
}

func (c *commit) encode(w *writer) {
	w.vector(func() {
		for _, p := range c.proposals {
			if p.proposal != nil {
				w.u8(proposalOrRefProposal)
				p.proposal.encode(w)
			} else {
				w.u8(proposalOrRefReference)
				w.opaque(p.ref)
			}
		}
	})
	w.optional(c.path != nil, func() { c.path.encode(w) })
}

func (c *commit) decode(r *reader) {
	v := r.vector(MaxMessageSize)
	for v.more() {
		switch v.u8() {
		case proposalOrRefProposal:
			p := new(proposal)
			p.decode(v)
			c.proposals = append(c.proposals, proposalOrRef{proposal: p})
		case proposalOrRefReference:
			c.proposals = append(c.proposals, proposalOrRef{ref: v.opaque(maxHashSize)})
		default:
			v.fail(fmt.Errorf("proposal-or-reference type"))
		}
	}
	r.finish(v)
	if r.optional() {
		c.path = new(updatePath)
		c.path.decode(r)
	}
}

// sender is a Sender.
type sender struct {
	typ   uint8
	index uint32 // leaf index (member) or sender index (external)
}

func (s sender) encode(w *writer) {
	w.u8(s.typ)
	if s.typ == senderMember || s.typ == senderExternal {
		w.u32(s.index)
	}
}

func (s *sender) decode(r *reader) {
	s.typ = r.u8()
	switch s.typ {
	case senderMember, senderExternal:
		s.index = r.u32()
	case senderNewMemberProposal, senderNewMemberCommit:
	default:
		r.fail(fmt.Errorf("sender type %d", s.typ))
	}
}

// framedContent is a FramedContent (RFC 9420 §6).
type framedContent struct {
	groupID           []byte
	epoch             uint64
	sender            sender
	authenticatedData []byte
	contentType       uint8
	applicationData   []byte
	proposal          *proposal
	commit            *commit
}

func (c *framedContent) encode(w *writer) {
	w.opaque(c.groupID)
	w.u64(c.epoch)
	c.sender.encode(w)
	w.opaque(c.authenticatedData)
	w.u8(c.contentType)
	c.encodeBody(w)
}

// encodeBody writes the content selected by the content type.
func (c *framedContent) encodeBody(w *writer) {
	switch c.contentType {
	case contentApplication:
		w.opaque(c.applicationData)
	case contentProposal:
		c.proposal.encode(w)
	case contentCommit:
		c.commit.encode(w)
	}
}

func (c *framedContent) decode(r *reader) {
	c.groupID = r.opaque(MaxGroupIDSize)
	c.epoch = r.u64()
	c.sender.decode(r)
	c.authenticatedData = r.opaque(MaxAuthenticatedDataSize)
	c.contentType = r.u8()
	c.decodeBody(r)
}

func (c *framedContent) decodeBody(r *reader) {
	switch c.contentType {
	case contentApplication:
		c.applicationData = r.opaque(MaxMessageSize)
	case contentProposal:
		c.proposal = new(proposal)
		c.proposal.decode(r)
	case contentCommit:
		c.commit = new(commit)
		c.commit.decode(r)
	default:
		r.fail(fmt.Errorf("content type %d", c.contentType))
	}
}

// authData is a FramedContentAuthData.
type authData struct {
	signature       []byte
	confirmationTag []byte // commits only
}

func (a *authData) encode(w *writer, contentType uint8) {
	w.opaque(a.signature)
	if contentType == contentCommit {
		w.opaque(a.confirmationTag)
	}
}

func (a *authData) decode(r *reader, contentType uint8) {
	a.signature = r.opaque(maxSignatureSize)
	if contentType == contentCommit {
		a.confirmationTag = r.opaque(maxHashSize)
	}
}

// publicMessage is a PublicMessage (RFC 9420 §6.2).
type publicMessage struct {
	content       framedContent
	auth          authData
	membershipTag []byte // member senders only
}

func (m *publicMessage) encode(w *writer) {
	m.content.encode(w)
	m.auth.encode(w, m.content.contentType)
	if m.content.sender.typ == senderMember {
		w.opaque(m.membershipTag)
	}
}

func (m *publicMessage) decode(r *reader) {
	m.content.decode(r)
	m.auth.decode(r, m.content.contentType)
	if m.content.sender.typ == senderMember {
		m.membershipTag = r.opaque(maxHashSize)
	}
}

// privateMessage is a PrivateMessage (RFC 9420 §6.3).
type privateMessage struct {
	groupID             []byte
	epoch               uint64
	contentType         uint8
	authenticatedData   []byte
	encryptedSenderData []byte
	ciphertext          []byte
}

func (m *privateMessage) encode(w *writer) {
	w.opaque(m.groupID)
	w.u64(m.epoch)
	w.u8(m.contentType)
	w.opaque(m.authenticatedData)
	w.opaque(m.encryptedSenderData)
	w.opaque(m.ciphertext)
}

func (m *privateMessage) decode(r *reader) {
	m.groupID = r.opaque(MaxGroupIDSize)
	m.epoch = r.u64()
	m.contentType = r.u8()
	if m.contentType < contentApplication || m.contentType > contentCommit {
		r.fail(fmt.Errorf("content type %d", m.contentType))
	}
	m.authenticatedData = r.opaque(MaxAuthenticatedDataSize)
	m.encryptedSenderData = r.opaque(maxHashSize)
	m.ciphertext = r.opaque(MaxMessageSize)
}

// groupContext is a GroupContext (RFC 9420 §8.1).
type groupContext struct {
	version                 uint16
	cipherSuite             CipherSuite
	groupID                 []byte
	epoch                   uint64
	treeHash                []byte
	confirmedTranscriptHash []byte
	extensions              []Extension
}

func (g *groupContext) encode(w *writer) {
	w.u16(g.version)
	w.u16(uint16(g.cipherSuite))
	w.opaque(g.groupID)
	w.u64(g.epoch)
	w.opaque(g.treeHash)
	w.opaque(g.confirmedTranscriptHash)
	encodeExtensions(w, g.extensions)
}

func (g *groupContext) decode(r *reader) {
	g.version = r.u16()
	g.cipherSuite = CipherSuite(r.u16())
	g.groupID = r.opaque(MaxGroupIDSize)
	g.epoch = r.u64()
	g.treeHash = r.opaque(maxHashSize)
	g.confirmedTranscriptHash = r.opaque(maxHashSize)
	g.extensions = decodeExtensions(r)
}

func (g *groupContext) bytes() []byte { return mustEncode(g.encode) }

// groupInfo is a GroupInfo (RFC 9420 §12.4.3).
type groupInfo struct {
	groupContext groupContext
	// tree, when set, is written as a ratchet_tree extension before the
	// others (without encoding it apart first); decoding leaves it nil.
	tree            *ratchetTree
	extensions      []Extension
	confirmationTag []byte
	signer          leafIndex
	signature       []byte
}

func (g *groupInfo) encodeBody(w *writer) {
	g.groupContext.encode(w)
	w.vector(func() {
		if g.tree != nil {
			w.u16(uint16(extRatchetTree))
			w.vector(func() { g.tree.encode(w) })
		}
		encodeExtensionList(w, g.extensions)
	})
	w.opaque(g.confirmationTag)
	w.u32(uint32(g.signer))
}

func (g *groupInfo) encode(w *writer) {
	g.encodeBody(w)
	w.opaque(g.signature)
}

func (g *groupInfo) decode(r *reader) {
	g.groupContext.decode(r)
	g.extensions = decodeExtensions(r)
	g.confirmationTag = r.opaque(maxHashSize)
	g.signer = leafIndex(r.u32())
	g.signature = r.opaque(maxSignatureSize)
}

// groupSecrets is a GroupSecrets (RFC 9420 §12.4.3.1).
type groupSecrets struct {
	joinerSecret []byte
	pathSecret   []byte // nil when absent
	psks         []pskID
}

func (g *groupSecrets) encode(w *writer) {
	w.opaque(g.joinerSecret)
	w.optional(g.pathSecret != nil, func() { w.opaque(g.pathSecret) })
	w.vector(func() {
		for i := range g.psks {
			g.psks[i].encode(w)
		}
	})
}

func (g *groupSecrets) decode(r *reader) {
	g.joinerSecret = r.opaque(maxHashSize)
	if r.optional() {
		g.pathSecret = r.opaque(maxHashSize)
	}
	v := r.vector(MaxMessageSize)
	for v.more() {
		var p pskID
		p.decode(v)
		g.psks = append(g.psks, p)
	}
	r.finish(v)
}

// encryptedGroupSecrets and welcome are EncryptedGroupSecrets and Welcome.
type encryptedGroupSecrets struct {
	newMember []byte
	secrets   hpkeCiphertext
}

type welcome struct {
	cipherSuite        CipherSuite
	secrets            []encryptedGroupSecrets
	encryptedGroupInfo []byte
}

func (m *welcome) encode(w *writer) {
	w.u16(uint16(m.cipherSuite))
	w.vector(func() {
		for i := range m.secrets {
			w.opaque(m.secrets[i].newMember)
			m.secrets[i].secrets.encode(w)
		}
	})
	w.opaque(m.encryptedGroupInfo)
}

func (m *welcome) decode(r *reader) {
	m.cipherSuite = CipherSuite(r.u16())
	v := r.vector(MaxMessageSize)
	for v.more() {
		s := encryptedGroupSecrets{newMember: v.opaque(maxHashSize)}
		s.secrets.decode(v)
		m.secrets = append(m.secrets, s)
	}
	r.finish(v)
	m.encryptedGroupInfo = r.opaque(MaxMessageSize)
}

// mlsMessage is an MLSMessage: one of its fields is set.
type mlsMessage struct {
	wireFormat     uint16
	publicMessage  *publicMessage
	privateMessage *privateMessage
	welcome        *welcome
	groupInfo      *groupInfo
	keyPackage     *keyPackage
}

func (m *mlsMessage) encode(w *writer) {
	w.u16(protocolVersionMLS10)
	w.u16(m.wireFormat)
	switch m.wireFormat {
	case wireFormatPublicMessage:
		m.publicMessage.encode(w)
	case wireFormatPrivateMessage:
		m.privateMessage.encode(w)
	case wireFormatWelcome:
		m.welcome.encode(w)
	case wireFormatGroupInfo:
		m.groupInfo.encode(w)
	case wireFormatKeyPackage:
		m.keyPackage.encode(w)
	}
}

func (m *mlsMessage) decode(r *reader) {
	if v := r.u16(); v != protocolVersionMLS10 && r.err == nil {
		r.fail(fmt.Errorf("%w: protocol version %d", ErrUnsupported, v))
	}
	m.wireFormat = r.u16()
	switch m.wireFormat {
	case wireFormatPublicMessage:
		m.publicMessage = new(publicMessage)
		m.publicMessage.decode(r)
	case wireFormatPrivateMessage:
		m.privateMessage = new(privateMessage)
		m.privateMessage.decode(r)
	case wireFormatWelcome:
		m.welcome = new(welcome)
		m.welcome.decode(r)
	case wireFormatGroupInfo:
		m.groupInfo = new(groupInfo)
		m.groupInfo.decode(r)
	case wireFormatKeyPackage:
		m.keyPackage = new(keyPackage)
		m.keyPackage.decode(r)
	default:
		r.fail(fmt.Errorf("%w: wire format %d", ErrUnsupported, m.wireFormat))
	}
}

// parseMessage decodes an MLSMessage.
func parseMessage(b []byte) (*mlsMessage, error) {
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("%w: message of %d bytes", ErrTooLarge, len(b))
	}
	m := new(mlsMessage)
	if err := decodeAll(b, m.decode); err != nil {
		return nil, err
	}
	return m, nil
}

// senderData is the SenderData of a PrivateMessage.
type senderData struct {
	leaf       leafIndex
	generation uint32
	reuseGuard [4]byte
}

const senderDataSize = 4 + 4 + 4
