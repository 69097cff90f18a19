package mls

import "fmt"

// The message structures of RFC 9420 with their encodings: proposals,
// commits, framed content, group context and info, Welcome and MLSMessage.
// wire.go has the rest (extensions, credentials, tree nodes, key packages).

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
