package mls

import "time"

// CredentialValidator is the Authentication Service (RFC 9420 §5.3.1): it
// returns nil if c is acceptable and binds signatureKey, the member's
// signature public key. prev is the credential of the member this leaf
// replaces (an Update, a commit's own new leaf, an external rejoin), so the
// validator can check the new one is a valid successor; it is nil for a new
// member. The validator sees every credential that enters a group, joined
// or received.
type CredentialValidator func(c Credential, signatureKey []byte, prev *Credential) error

// Config is a member's policy for its groups. It is not part of the group
// state: pass the same Config to NewGroup, Join and UnmarshalGroup. The zero
// value of each field selects its default, except ValidateCredential,
// which is required.
type Config struct {
	// ValidateCredential checks every credential (required).
	ValidateCredential CredentialValidator

	// ExternalPSK returns the external pre-shared key with the given ID, or
	// false. Nil means no external PSKs.
	ExternalPSK func(id []byte) ([]byte, bool)
	// ResumptionPSK returns the resumption PSK of another group's epoch,
	// for reinitialization and branching; the group's own recent epochs
	// are kept in its state. Nil means none.
	ResumptionPSK func(groupID []byte, epoch uint64) ([]byte, bool)

	// PastEpochs is how many epochs before the current one keep the keys
	// to decrypt late application messages. Default 2; negative means
	// none. Keeping them weakens forward secrecy for the messages they
	// could still decrypt.
	PastEpochs int
	// MaxGenerationGap is how far ahead of its sender's ratchet a message
	// may be (messages that sender sent and this member did not get).
	// Default 1000.
	MaxGenerationGap uint32
	// OutOfOrderWindow is how many keys of skipped generations each sender
	// ratchet keeps for messages that arrive late. Default 128; negative
	// means none.
	OutOfOrderWindow int
	// PaddingBlock pads the content of private messages to a multiple of
	// this many bytes. Default 64; 1 means no padding.
	PaddingBlock int
	// PublicHandshake sends proposals and commits as PublicMessages
	// (signed, with a membership tag, not encrypted) so a delivery service
	// can read them. By default they are PrivateMessages.
	PublicHandshake bool
	// MaxLifetime bounds the lifetime of a KeyPackage's leaf node this
	// member accepts. Default 90 days; negative means no bound (for
	// interoperability tests whose KeyPackages never expire).
	MaxLifetime time.Duration
	// ResumptionEpochs is how many past epochs keep their resumption PSK.
	// Default 8.
	ResumptionEpochs int

	// Extensions are the application's own GroupContext extension types
	// (beyond RFC 9420's) this member supports: every leaf node it makes
	// lists them in its capabilities, and a GroupContext may carry them
	// (NewGroup, a GroupContextExtensions proposal, a Welcome). Nil means
	// none: a group with another extension cannot be created or joined.
	Extensions []ExtensionType
	// ValidateProposal, when set, is the application's policy on the
	// proposals of others: it is called for each proposal this member
	// receives, before it is kept, and for each proposal another member's
	// commit carries by value (whose sender is the committer), before the
	// commit is applied. An error refuses the proposal or the whole commit
	// (ErrRefused, wrapping it) and leaves the group unchanged. Proposals
	// a commit names by reference were checked when they arrived. Nil
	// accepts every valid proposal.
	ValidateProposal func(p ProposalCheck) error
}

// ProposalType is the type of a proposal (RFC 9420 §12.1).
type ProposalType uint16

// Proposal types.
const (
	ProposalAdd                    ProposalType = proposalAdd
	ProposalUpdate                 ProposalType = proposalUpdate
	ProposalRemove                 ProposalType = proposalRemove
	ProposalPSK                    ProposalType = proposalPSK
	ProposalReInit                 ProposalType = proposalReInit
	ProposalExternalInit           ProposalType = proposalExternalInit
	ProposalGroupContextExtensions ProposalType = proposalGroupContextExtension
)

// ProposalCheck is what Config.ValidateProposal sees of a proposal.
type ProposalCheck struct {
	Type ProposalType
	// Sender made the proposal (as of the current epoch); SenderExternal
	// is set for an external sender or a joiner, and Sender then has only
	// its index. ByValue is set for a proposal a commit carries: its
	// sender is the committer.
	Sender         Member
	SenderExternal bool
	ByValue        bool
	// Member is the member an Add adds (its KeyPackage's credential and
	// key, no index), the new leaf of an Update, or the member a Remove
	// removes.
	Member Member
	// Extensions are the GroupContext extensions a
	// GroupContextExtensions proposal sets.
	Extensions []Extension
}

// Defaults of Config.
const (
	DefaultPastEpochs       = 2
	DefaultMaxGenerationGap = 1000
	DefaultOutOfOrderWindow = 128
	DefaultPaddingBlock     = 64
	DefaultMaxLifetime      = 90 * 24 * time.Hour
	DefaultResumptionEpochs = 8
)

// withDefaults returns a copy of c with defaults filled in.
func (c Config) withDefaults() Config {
	switch {
	case c.PastEpochs == 0:
		c.PastEpochs = DefaultPastEpochs
	case c.PastEpochs < 0:
		c.PastEpochs = 0
	}
	if c.MaxGenerationGap == 0 {
		c.MaxGenerationGap = DefaultMaxGenerationGap
	}
	switch {
	case c.OutOfOrderWindow == 0:
		c.OutOfOrderWindow = DefaultOutOfOrderWindow
	case c.OutOfOrderWindow < 0:
		c.OutOfOrderWindow = 0
	}
	if c.PaddingBlock <= 0 {
		c.PaddingBlock = DefaultPaddingBlock
	}
	switch {
	case c.MaxLifetime == 0:
		c.MaxLifetime = DefaultMaxLifetime
	case c.MaxLifetime < 0:
		c.MaxLifetime = 0
	}
	if c.ResumptionEpochs <= 0 {
		c.ResumptionEpochs = DefaultResumptionEpochs
	}
	return c
}

func (c *Config) limits() limits {
	return limits{maxGap: c.MaxGenerationGap, window: c.OutOfOrderWindow}
}
