package mls

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Group is one member's state of an MLS group. It is not safe for
// concurrent use. Every method that fails leaves it unchanged; store it
// (MarshalBinary) after every method that changed it, together with what
// the method returned.
type Group struct {
	cfg   Config
	suite *suite
	st    *groupState
	// reinitFrom is the group being reinitialized, while ReInitGroup or
	// Join makes this group from it.
	reinitFrom *Group
}

// Member is a member of a group in the current epoch.
type Member struct {
	// Index is the member's leaf index, valid for this epoch only.
	Index        uint32
	Credential   Credential
	SignatureKey []byte
}

// member statuses.
const (
	statusActive   = 0
	statusRemoved  = 1 // a commit removed this member
	statusReInit   = 2 // a commit reinitialized the group
	statusExternal = 3 // joined by an external commit not yet confirmed
)

// groupState is everything a member keeps about a group.
type groupState struct {
	ctx             groupContext
	tree            *ratchetTree
	priv            *treePrivate
	sigKey          *SignatureKey
	interim         []byte
	confirmationTag []byte
	secrets         *epochSecrets // encryption secret consumed into secretTree
	secretTree      *secretTree
	proposals       []cachedProposal
	pending         *pendingCommit
	past            []*pastEpoch    // oldest first
	resumption      []resumptionPSK // past epochs, oldest first
	status          uint8
	reinit          *reInit // the committed ReInit, when status is statusReInit
	ownUpdates      []ownUpdate
}

// ownUpdate is the private key of the leaf an Update proposal of this
// member proposes.
type ownUpdate struct {
	ref     []byte
	leafKey []byte
}

// cachedProposal is a proposal received (or sent) in the current epoch,
// kept for commits that refer to it.
type cachedProposal struct {
	ref      []byte
	proposal *proposal
	sender   sender
}

// pendingCommit is a commit this member made and sent, waiting for the
// delivery service to confirm it by delivering it back.
type pendingCommit struct {
	message []byte
	welcome []byte // nil when the commit adds nobody
	next    *groupState
	info    *CommitInfo
}

// pastEpoch keeps what decrypts and authenticates late application
// messages of an earlier epoch.
type pastEpoch struct {
	epoch      uint64
	context    []byte // the encoded GroupContext, which signatures cover
	senderData []byte
	secretTree *secretTree
	members    []pastMember
	ownLeaf    leafIndex
}

type pastMember struct {
	leaf         leafIndex
	signatureKey []byte
	credential   Credential
}

type resumptionPSK struct {
	epoch uint64
	psk   []byte
}

// GroupOptions are the parameters of a new group.
type GroupOptions struct {
	// Extensions are the GroupContext extensions.
	Extensions []Extension
}

// NewGroup creates a group with one member, the caller, with credential
// cred and signature key key (RFC 9420 §11). groupID should be random and
// at least 16 bytes.
func NewGroup(cfg Config, groupID []byte, cred Credential, key *SignatureKey, opts GroupOptions, rand io.Reader) (*Group, error) {
	cfg = cfg.withDefaults()
	if cfg.ValidateCredential == nil {
		return nil, fmt.Errorf("%w: no credential validator configured", ErrCredential)
	}
	s := key.suite
	if len(groupID) == 0 || len(groupID) > MaxGroupIDSize {
		return nil, fmt.Errorf("mls: group ID of %d bytes", len(groupID))
	}
	if err := checkCredential(&cred); err != nil {
		return nil, err
	}
	if err := checkExtensions(opts.Extensions); err != nil {
		return nil, err
	}
	for _, e := range opts.Extensions {
		if !cfg.supportsExtension(e.Type) {
			return nil, fmt.Errorf("%w: group context extension 0x%04x", ErrUnsupported, e.Type)
		}
	}
	if _, err := parseRequiredCapabilities(opts.Extensions); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if _, err := parseExternalSenders(opts.Extensions); err != nil {
		return nil, err
	}
	encPriv, encPub, err := s.generateHPKEKey(rand)
	if err != nil {
		return nil, err
	}
	leaf := &leafNode{
		encryptionKey: encPub,
		signatureKey:  key.Public(),
		credential:    cred.clone(),
		capabilities:  s.capabilitiesWith(cfg.Extensions),
		source:        leafSourceCommit,
		parentHash:    []byte{},
		extensions:    []Extension{},
	}
	if leaf.signature, err = s.signWithLabel(key.sg, "LeafNodeTBS", leaf.tbs(groupID, 0)); err != nil {
		return nil, err
	}
	tree := newTree(1)
	tree.setLeaf(0, leaf)
	st := &groupState{
		ctx: groupContext{
			version:                 protocolVersionMLS10,
			cipherSuite:             s.id,
			groupID:                 slices.Clone(groupID),
			epoch:                   0,
			treeHash:                tree.rootHash(s),
			confirmedTranscriptHash: []byte{},
			extensions:              cloneExtensions(opts.Extensions),
		},
		tree:   tree,
		priv:   &treePrivate{leaf: 0, leafKey: encPriv, pathKeys: map[nodeIndex][]byte{}},
		sigKey: key,
	}
	if err := s.validateLeafNode(leaf, &leafCheck{groupID: groupID, groupExtensions: st.ctx.extensions}, cfg.ValidateCredential); err != nil {
		return nil, err
	}
	epochSecret := make([]byte, s.nh)
	if _, err := io.ReadFull(rand, epochSecret); err != nil {
		return nil, err
	}
	// The first epoch's secrets come straight from a random epoch secret;
	// deriving them through a random joiner secret and no PSK is the same.
	es := s.epochFromJoiner(epochSecret, nil, st.ctx.bytes())
	st.setEpoch(s, es)
	st.confirmationTag = s.mac(es.confirmation, st.ctx.confirmedTranscriptHash)
	st.interim = s.interimTranscriptHash(st.ctx.confirmedTranscriptHash, st.confirmationTag)
	return &Group{cfg: cfg, suite: s, st: st}, nil
}

func cloneExtensions(exts []Extension) []Extension {
	out := make([]Extension, len(exts))
	for i, e := range exts {
		out[i] = Extension{Type: e.Type, Data: slices.Clone(e.Data)}
	}
	return out
}

// checkExtensions refuses duplicate extension types.
func checkExtensions(exts []Extension) error {
	for i, e := range exts {
		for _, f := range exts[:i] {
			if f.Type == e.Type {
				return fmt.Errorf("%w: two extensions of type 0x%04x", ErrInvalid, e.Type)
			}
		}
	}
	return nil
}

// setEpoch installs the secrets of a new epoch: its secret tree, and
// drops the encryption secret.
func (st *groupState) setEpoch(s *suite, es *epochSecrets) {
	st.secretTree = newSecretTree(es.encryption, st.tree.size())
	es.encryption = nil
	es.welcome = nil
	es.joiner = nil
	st.secrets = es
}

// GroupID returns the group's ID.
func (g *Group) GroupID() []byte { return slices.Clone(g.st.ctx.groupID) }

// Extensions returns the GroupContext extensions of the current epoch.
func (g *Group) Extensions() []Extension { return cloneExtensions(g.st.ctx.extensions) }

// Epoch returns the current epoch.
func (g *Group) Epoch() uint64 { return g.st.ctx.epoch }

// CipherSuite returns the group's cipher suite.
func (g *Group) CipherSuite() CipherSuite { return g.suite.id }

// LeafIndex returns this member's leaf index in the current epoch.
func (g *Group) LeafIndex() uint32 { return uint32(g.st.priv.leaf) }

// Active reports whether this member can still send in the group: false
// once a commit removed it or reinitialized the group, and while its
// external join is not confirmed.
func (g *Group) Active() bool { return g.st.status == statusActive }

// EpochAuthenticator returns the epoch authenticator (RFC 9420 §8.7): all
// members of an epoch compute the same value.
func (g *Group) EpochAuthenticator() []byte { return slices.Clone(g.st.secrets.authenticator) }

// Members returns the members of the current epoch, by leaf index.
func (g *Group) Members() []Member {
	var ms []Member
	for i, l := range g.st.tree.leaves {
		if l != nil {
			ms = append(ms, memberOf(leafIndex(i), l))
		}
	}
	return ms
}

func memberOf(i leafIndex, l *leafNode) Member {
	return Member{Index: uint32(i), Credential: l.credential.clone(), SignatureKey: slices.Clone(l.signatureKey)}
}

// Export is MLS-Exporter(label, context, length) (RFC 9420 §8.5): a secret
// of the current epoch for use outside MLS, the same for every member.
func (g *Group) Export(label string, context []byte, length int) ([]byte, error) {
	return g.suite.exporter(g.st.secrets.exporter, label, context, length)
}

// ExportPending is Export for the epoch the pending commit starts, before
// it is accepted: what a committer needs to hand the delivery service
// together with its commit (the next epoch's capabilities).
func (g *Group) ExportPending(label string, context []byte, length int) ([]byte, error) {
	pc := g.st.pending
	if pc == nil || pc.next == nil {
		return nil, fmt.Errorf("mls: no pending commit")
	}
	return g.suite.exporter(pc.next.secrets.exporter, label, context, length)
}

// ResumptionPSK returns the resumption PSK of a recent epoch of this group
// (the current one or one of the last Config.ResumptionEpochs).
func (g *Group) ResumptionPSK(epoch uint64) ([]byte, bool) {
	if epoch == g.st.ctx.epoch {
		return slices.Clone(g.st.secrets.resumption), true
	}
	for _, r := range g.st.resumption {
		if r.epoch == epoch {
			return slices.Clone(r.psk), true
		}
	}
	return nil, false
}

// Encrypt protects an application message from this member as a
// PrivateMessage of the current epoch. authenticatedData is sent in the
// clear and authenticated. The reuse guard is read from rand.
func (g *Group) Encrypt(plaintext, authenticatedData []byte, rand io.Reader) ([]byte, error) {
	if g.st.status != statusActive {
		return nil, ErrNotMember
	}
	if len(authenticatedData) > MaxAuthenticatedDataSize {
		return nil, fmt.Errorf("%w: authenticated data of %d bytes", ErrTooLarge, len(authenticatedData))
	}
	if len(plaintext) > MaxMessageSize-64<<10 {
		return nil, fmt.Errorf("%w: plaintext of %d bytes", ErrTooLarge, len(plaintext))
	}
	content := &framedContent{
		groupID:           g.st.ctx.groupID,
		epoch:             g.st.ctx.epoch,
		sender:            sender{typ: senderMember, index: uint32(g.st.priv.leaf)},
		authenticatedData: nonNil(authenticatedData),
		contentType:       contentApplication,
		applicationData:   nonNil(plaintext),
	}
	msg, _, err := g.protect(content, wireFormatPrivateMessage, rand)
	return msg, err
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// protect signs content (a proposal or application data) with the
// current epoch's context and frames it.
func (g *Group) protect(content *framedContent, wireFormat uint16, rand io.Reader) ([]byte, *authData, error) {
	sig, err := g.suite.signContent(g.st.sigKey.sg, wireFormat, content, g.st.ctx.bytes())
	if err != nil {
		return nil, nil, err
	}
	auth := &authData{signature: sig}
	msg, err := g.frame(content, auth, wireFormat, rand)
	if err != nil {
		return nil, nil, err
	}
	return msg, auth, nil
}

// MessageKind says what a processed message carried.
type MessageKind int

// Kinds of processed messages.
const (
	KindApplication MessageKind = iota + 1
	KindProposal
	KindCommit
)

// Received is what Process found in a message.
type Received struct {
	Kind MessageKind
	// Epoch is the epoch the message was sent in (a commit ends it).
	Epoch uint64
	// Sender is the member who sent the message, as of that epoch. For a
	// proposal from outside the group (an external sender or a joiner),
	// SenderExternal is set and Sender has only what the message carries.
	Sender         Member
	SenderExternal bool
	// Data is the application data of an application message.
	Data []byte
	// AuthenticatedData is the sender's authenticated_data.
	AuthenticatedData []byte
	// ProposalRef names a proposal for commits that refer to it.
	ProposalRef []byte
	// Commit describes the epoch change a commit made.
	Commit *CommitInfo
}

// CommitInfo describes a processed commit.
type CommitInfo struct {
	// Added, Removed and Updated list the members the commit added,
	// removed and whose leaves it replaced (with their leaves of the new
	// epoch; removed members with their leaves before removal).
	Added, Removed, Updated []Member
	// Own is set when the commit is the one this member made: Welcome is
	// then the Welcome message for the members it added (nil if none),
	// now safe to deliver.
	Own     bool
	Welcome []byte
	// PendingDiscarded is set when this member had a commit pending for
	// the epoch and another member's commit came first: its commit is
	// void and its proposals must be made again.
	PendingDiscarded bool
	// SelfRemoved is set when the commit removed this member.
	SelfRemoved bool
	// ReInit is set when the commit reinitializes the group: no more
	// messages can be sent in it.
	ReInit bool
	// PathNodes and PathCiphertexts are the size of the commit's
	// UpdatePath: the nodes it sets and the HPKE ciphertexts it carries
	// (what the commit cost its maker in encryptions).
	PathNodes, PathCiphertexts int
}

// ErrConflict means another commit than this member's pending external
// join was accepted for the epoch: the join failed.
var ErrConflict = errors.New("mls: another commit was accepted for the epoch")

// Process processes a message from the group: an application message of
// the current or a recent epoch, or a proposal or commit of the current
// epoch. now is checked against the lifetime of KeyPackages in commits.
// On ErrEpochAhead keep the message and process it again after the next
// commit. On any error the Group is unchanged.
func (g *Group) Process(msg []byte, now time.Time) (*Received, error) {
	return g.ProcessWith(msg, now, ProcessOptions{})
}

// ProcessOptions tune ProcessWith.
type ProcessOptions struct {
	// KeepSkipped refuses (ErrWouldEvict) a PrivateMessage whose
	// generation is so far ahead of its sender's ratchet that the keys of
	// generations it skips would not all fit the out-of-order window
	// with those kept already: processing it would give up keys of
	// messages that may still arrive. Use it for messages that can come
	// out of order (a gossip copy) when the same messages also come in
	// order later (a log).
	KeepSkipped bool
}

// ProcessWith is Process with options.
func (g *Group) ProcessWith(msg []byte, now time.Time, o ProcessOptions) (*Received, error) {
	st := g.st
	lim := g.cfg.limits()
	lim.keep = o.KeepSkipped
	if st.pending != nil && bytes.Equal(msg, st.pending.message) {
		return g.mergePending(), nil
	}
	m, err := parseMessage(msg)
	if err != nil {
		return nil, err
	}
	var groupID []byte
	var epoch uint64
	switch {
	case m.publicMessage != nil:
		groupID, epoch = m.publicMessage.content.groupID, m.publicMessage.content.epoch
	case m.privateMessage != nil:
		groupID, epoch = m.privateMessage.groupID, m.privateMessage.epoch
	default:
		return nil, fmt.Errorf("%w: wire format %d is not a group message", ErrMalformed, m.wireFormat)
	}
	if !bytes.Equal(groupID, st.ctx.groupID) {
		return nil, ErrWrongGroup
	}
	if st.status == statusExternal {
		// Only the confirmation of the join (handled above) can be processed.
		if epoch+1 == st.ctx.epoch && isCommit(m) {
			return nil, ErrConflict
		}
		if epoch >= st.ctx.epoch {
			return nil, ErrEpochAhead
		}
		return nil, ErrEpochGone
	}
	switch {
	case epoch > st.ctx.epoch:
		return nil, ErrEpochAhead
	case epoch < st.ctx.epoch:
		if m.privateMessage != nil && m.privateMessage.contentType == contentApplication {
			return g.processPastApplication(m.privateMessage, lim)
		}
		return nil, ErrEpochGone
	}
	var in *inbound
	if m.publicMessage != nil {
		in, err = g.openPublic(m.publicMessage)
	} else {
		in, err = g.openPrivate(m.privateMessage, lim)
	}
	if err != nil {
		return nil, err
	}
	switch in.content.contentType {
	case contentApplication:
		if in.wireFormat != wireFormatPrivateMessage {
			return nil, fmt.Errorf("%w: application data in a public message", ErrMalformed)
		}
		// A removed member still reads the messages of its last epoch.
		in.consume()
		return &Received{
			Kind: KindApplication, Epoch: epoch, Sender: in.member,
			Data: in.content.applicationData, AuthenticatedData: in.content.authenticatedData,
		}, nil
	case contentProposal:
		if st.status != statusActive {
			return nil, ErrNotMember
		}
		return g.processProposal(in)
	default:
		if st.status != statusActive {
			return nil, ErrNotMember
		}
		return g.processCommit(in, now)
	}
}

func isCommit(m *mlsMessage) bool {
	if m.publicMessage != nil {
		return m.publicMessage.content.contentType == contentCommit
	}
	return m.privateMessage.contentType == contentCommit
}

// inbound is an authenticated message of the current epoch.
type inbound struct {
	wireFormat uint16
	content    *framedContent
	auth       *authData
	member     Member
	external   bool
	consume    func() // consumes the ratchet key of a private message
}

// openPublic verifies a PublicMessage of the current epoch.
func (g *Group) openPublic(pm *publicMessage) (*inbound, error) {
	s, st := g.suite, g.st
	c := &pm.content
	gc := st.ctx.bytes()
	in := &inbound{wireFormat: wireFormatPublicMessage, content: c, auth: &pm.auth, consume: func() {}}
	var key []byte
	switch c.sender.typ {
	case senderMember:
		leaf := st.tree.leaf(leafIndex(c.sender.index))
		if leaf == nil {
			return nil, ErrAuth
		}
		if !s.verifyMAC(st.secrets.membership, mustEncode(func(w *writer) {
			w.bytes(contentTBS(wireFormatPublicMessage, c, gc))
			pm.auth.encode(w, c.contentType)
		}), pm.membershipTag) {
			return nil, ErrAuth
		}
		key = leaf.signatureKey
		in.member = memberOf(leafIndex(c.sender.index), leaf)
	case senderExternal:
		if c.contentType != contentProposal {
			return nil, fmt.Errorf("%w: external sender sent content type %d", ErrMalformed, c.contentType)
		}
		senders, err := parseExternalSenders(st.ctx.extensions)
		if err != nil {
			return nil, err
		}
		if int(c.sender.index) >= len(senders) {
			return nil, ErrAuth
		}
		es := senders[c.sender.index]
		key = es.signatureKey
		in.member = Member{Index: c.sender.index, Credential: es.credential.clone(), SignatureKey: slices.Clone(key)}
		in.external = true
	case senderNewMemberProposal:
		if c.contentType != contentProposal || c.proposal.typ != proposalAdd {
			return nil, fmt.Errorf("%w: new member proposal that is not an Add", ErrMalformed)
		}
		key = c.proposal.add.leafNode.signatureKey
		in.member = memberOf(0, &c.proposal.add.leafNode)
		in.external = true
	case senderNewMemberCommit:
		if c.contentType != contentCommit || c.commit.path == nil {
			return nil, fmt.Errorf("%w: new member commit without a path", ErrMalformed)
		}
		key = c.commit.path.leafNode.signatureKey
		in.member = memberOf(0, &c.commit.path.leafNode)
		in.external = true
	}
	if !s.verifyContent(key, wireFormatPublicMessage, c, gc, pm.auth.signature) {
		return nil, ErrAuth
	}
	if c.sender.typ == senderMember && leafIndex(c.sender.index) == st.priv.leaf {
		return nil, ErrOwnMessage
	}
	return in, nil
}

// openPrivate decrypts and verifies a PrivateMessage of the current epoch.
func (g *Group) openPrivate(pm *privateMessage, lim limits) (*inbound, error) {
	s, st := g.suite, g.st
	sd, err := s.openSenderData(pm, st.secrets.senderData)
	if err != nil {
		return nil, err
	}
	leaf := st.tree.leaf(sd.leaf)
	if leaf == nil {
		return nil, ErrAuth
	}
	if sd.leaf == st.priv.leaf {
		return nil, ErrOwnMessage
	}
	c, auth, consume, err := g.decryptWith(pm, sd, st.secretTree, leaf.signatureKey, st.ctx.bytes(), lim)
	if err != nil {
		return nil, err
	}
	return &inbound{wireFormat: wireFormatPrivateMessage, content: c, auth: auth, member: memberOf(sd.leaf, leaf), consume: consume}, nil
}

// decryptWith decrypts the content of a PrivateMessage with a secret tree
// and checks its signature; consume stores the ratchet's progress.
func (g *Group) decryptWith(pm *privateMessage, sd senderData, t *secretTree, sigKey, gc []byte, lim limits) (*framedContent, *authData, func(), error) {
	s := g.suite
	r, store, err := t.leafRatchets(s, sd.leaf)
	if err != nil {
		return nil, nil, nil, ErrAuth
	}
	kn, use, err := r[ratchetType(pm.contentType)].receive(s, sd.generation, lim)
	if err != nil {
		return nil, nil, nil, err
	}
	c, auth, err := s.openContent(pm, sd, kn)
	if err != nil {
		return nil, nil, nil, err
	}
	if !s.verifyContent(sigKey, wireFormatPrivateMessage, c, gc, auth.signature) {
		return nil, nil, nil, ErrAuth
	}
	return c, auth, func() {
		if store != nil {
			store()
		}
		use()
	}, nil
}

// processPastApplication decrypts an application message of a kept past
// epoch.
func (g *Group) processPastApplication(pm *privateMessage, lim limits) (*Received, error) {
	s := g.suite
	i := slices.IndexFunc(g.st.past, func(p *pastEpoch) bool { return p.epoch == pm.epoch })
	if i < 0 {
		return nil, ErrEpochGone
	}
	p := g.st.past[i]
	sd, err := s.openSenderData(pm, p.senderData)
	if err != nil {
		return nil, err
	}
	j := slices.IndexFunc(p.members, func(m pastMember) bool { return m.leaf == sd.leaf })
	if j < 0 {
		return nil, ErrAuth
	}
	if sd.leaf == p.ownLeaf {
		return nil, ErrOwnMessage
	}
	pmem := p.members[j]
	c, _, consume, err := g.decryptWith(pm, sd, p.secretTree, pmem.signatureKey, p.context, lim)
	if err != nil {
		return nil, err
	}
	consume()
	return &Received{
		Kind: KindApplication, Epoch: pm.epoch,
		Sender: Member{Index: uint32(pmem.leaf), Credential: pmem.credential.clone(), SignatureKey: slices.Clone(pmem.signatureKey)},
		Data:   c.applicationData, AuthenticatedData: c.authenticatedData,
	}, nil
}

// Header is what a group message says in the clear: its group, epoch and
// kind of content (for a PrivateMessage, its content type is not
// encrypted).
type Header struct {
	GroupID []byte
	Epoch   uint64
	Kind    MessageKind
}

// Peek decodes the header of a group message (a PublicMessage or a
// PrivateMessage) without authenticating or decrypting it: a cheap check
// for a transport to drop what cannot belong where it arrived. Nothing it
// returns is authentic until Process accepts the message.
func Peek(msg []byte) (Header, error) {
	m, err := parseMessage(msg)
	if err != nil {
		return Header{}, err
	}
	var h Header
	var ct uint8
	switch {
	case m.publicMessage != nil:
		c := &m.publicMessage.content
		h.GroupID, h.Epoch, ct = c.groupID, c.epoch, c.contentType
	case m.privateMessage != nil:
		p := m.privateMessage
		h.GroupID, h.Epoch, ct = p.groupID, p.epoch, p.contentType
	default:
		return Header{}, fmt.Errorf("%w: wire format %d is not a group message", ErrMalformed, m.wireFormat)
	}
	switch ct {
	case contentApplication:
		h.Kind = KindApplication
	case contentProposal:
		h.Kind = KindProposal
	case contentCommit:
		h.Kind = KindCommit
	default:
		return Header{}, fmt.Errorf("%w: content type %d", ErrMalformed, ct)
	}
	return h, nil
}
