package mls

import "errors"

// Errors. Every authentication failure of one operation (a signature, a
// membership tag, an AEAD tag, a confirmation tag, a path secret that does
// not match the public key it claims) is ErrAuth, so a forger learns nothing
// from which check failed. After any error the Group is unchanged.
var (
	// ErrAuth means a message or a Welcome failed authentication.
	ErrAuth = errors.New("mls: message authentication failed")
	// ErrMalformed means bytes did not decode as the structure expected,
	// or a decoded value broke a syntactic rule of RFC 9420.
	ErrMalformed = errors.New("mls: malformed input")
	// ErrTooLarge means a value exceeds one of the package's size limits.
	ErrTooLarge = errors.New("mls: value too large")
	// ErrInvalid means an authentic handshake message (or a KeyPackage,
	// GroupInfo or ratchet tree) breaks a rule of the protocol: an invalid
	// proposal list, a leaf node that fails validation, a tree whose
	// hashes do not match. The wrapped text says which rule.
	ErrInvalid = errors.New("mls: invalid group operation")
	// ErrCredential means the credential validator refused a credential.
	// It wraps the validator's error.
	ErrCredential = errors.New("mls: credential refused")
	// ErrUnsupported means a cipher suite, protocol version, extension,
	// proposal or credential type this package does not implement.
	ErrUnsupported = errors.New("mls: unsupported")
	// ErrWrongGroup means a message names another group.
	ErrWrongGroup = errors.New("mls: message for another group")
	// ErrEpochAhead means a message belongs to an epoch this member has
	// not reached yet: keep it and process it again after the next commit.
	ErrEpochAhead = errors.New("mls: message from a future epoch")
	// ErrEpochGone means a message belongs to an epoch whose keys are no
	// longer kept (or a handshake message to any epoch but the current).
	ErrEpochGone = errors.New("mls: message from an epoch no longer kept")
	// ErrGeneration means a message's generation is further ahead of its
	// sender's ratchet than the configured window allows.
	ErrGeneration = errors.New("mls: message generation out of window")
	// ErrDuplicate means an authentic sender-data header names a key that
	// was used already: the message was processed before. No plaintext
	// comes with it.
	ErrDuplicate = errors.New("mls: message key already used")
	// ErrEvicted means an authentic sender-data header names a key that
	// was given up unused: its sender's ratchet had moved more than the
	// out-of-order window past it, so the message arrived too late and
	// cannot be read. (A key used before it would have been given up is
	// indistinguishable from one given up: a replay of a message that old
	// is ErrEvicted too; a seen-set of message hashes tells them apart.)
	ErrEvicted = errors.New("mls: message key evicted before the message arrived")
	// ErrWouldEvict means processing the message would give up the keys
	// of skipped generations (ProcessOptions.KeepSkipped). The Group is
	// unchanged; the message can be processed later, after the ones it
	// skipped.
	ErrWouldEvict = errors.New("mls: message would evict skipped keys")
	// ErrOwnMessage means a message this member sent came back to it.
	ErrOwnMessage = errors.New("mls: own message")
	// ErrUnknownProposal means a commit refers to a proposal this member
	// has not received in the current epoch.
	ErrUnknownProposal = errors.New("mls: commit refers to an unknown proposal")
	// ErrPSK means a pre-shared key the operation needs is not available.
	ErrPSK = errors.New("mls: pre-shared key not available")
	// ErrNoKeyPackage means a Welcome is not addressed to any KeyPackage
	// the caller offered.
	ErrNoKeyPackage = errors.New("mls: welcome is not for this key package")
	// ErrExpired means a KeyPackage or leaf node is outside its lifetime.
	ErrExpired = errors.New("mls: lifetime does not cover the current time")
	// ErrNotMember means this member was removed from the group (or the
	// group was reinitialized): it can no longer send or commit.
	ErrNotMember = errors.New("mls: no longer a member of the group")
	// ErrInvalidState means UnmarshalGroup was given bytes that are not a
	// group state this version can read.
	ErrInvalidState = errors.New("mls: invalid group state")
	// ErrRefused means the application's policy (Config.ValidateProposal)
	// refused a proposal, or a proposal a commit carries. It wraps the
	// policy's error.
	ErrRefused = errors.New("mls: refused by the group's policy")
)
