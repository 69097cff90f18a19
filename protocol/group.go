package protocol

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/sealpost/sealpost/protocol/internal/pb"
)

// Groups (docs/PROTOCOL.md §12). A group's members send MLS messages,
// each wrapped in a GroupMessage, to the group's home relays (one to
// MaxHomeRelays community relays, chosen by its creator), which keep them
// in the group's log on GroupLogProtocol, and then publish them on the
// group's gossipsub topic. The relays order commits: per epoch, the first
// commit appended closes the epoch and later ones are refused with
// ErrWrongEpoch; the committer that lost processes the winner and commits
// again.
//
// Capabilities. A log is read and appended to with the token of an epoch
// (GroupToken): members export it from the epoch's MLS key schedule
// (GroupTokenLabel), so every member holds the same one and the relay
// cannot tell which member reads or writes. The relay keeps only the
// token's hash, per epoch: the log is created with the first epoch's hash,
// and the commit that closes an epoch carries the next one's. A token
// reads only the entries of its own epoch, so a removed member, who never
// learns the next epoch's token, reads nothing appended after its
// removal, not even as ciphertext.

// GroupLogOp names a group log operation.
type GroupLogOp int32

// The group log operations. Their numbers are the enum values of
// group.proto.
const (
	// GroupLogCreate creates the log Log, open at Epoch for the token
	// whose hash is TokenHash. The member picks the log's ID (it is in the
	// group's meta, which the epoch's token depends on), and any member
	// can create the log again with the same ID after the relay dropped
	// it. Creating a log that exists with that epoch and token hash is
	// answered ok (a retry); any other existing log, duplicate.
	GroupLogCreate GroupLogOp = 1
	// GroupLogAppend stores an entry in the open epoch (the token holder
	// of that epoch). A commit closes the epoch and opens the next one for
	// the token hash it carries. Appending an entry the log already holds
	// in that epoch is answered like the first append (same sequence
	// number), so a retry after a lost answer is safe.
	GroupLogAppend GroupLogOp = 2
	// GroupLogFetch asks for the entries of an epoch after a sequence
	// number (the token holder of that epoch); they come as GroupLogPush
	// frames before the response.
	GroupLogFetch GroupLogOp = 3
	// GroupLogSubscribe asks to be told of each new entry of an epoch: the
	// response, then a head-only GroupLogPush (sequence number and commit
	// flag, no entry) for each entry above After, until the epoch's commit
	// (the subscription ends with its push).
	GroupLogSubscribe GroupLogOp = 4
	// GroupLogPush is a relay frame: one entry of a fetch, or the head of
	// one entry for a subscription.
	GroupLogPush GroupLogOp = 5
)

var groupLogOpNames = [...]string{
	GroupLogCreate:    "create",
	GroupLogAppend:    "append",
	GroupLogFetch:     "fetch",
	GroupLogSubscribe: "subscribe",
	GroupLogPush:      "push",
}

// String returns the op's stable snake_case name (for logs and metrics), or
// "op(N)" for an unknown op.
func (op GroupLogOp) String() string {
	if op > 0 && int(op) < len(groupLogOpNames) {
		return groupLogOpNames[op]
	}
	return fmt.Sprintf("op(%d)", int32(op))
}

// Sizes of the group log's fixed fields.
const (
	// GroupLogIDSize is the size of a group log ID: 32 random bytes the
	// group's creator picks.
	GroupLogIDSize = 32
	// GroupTokenSize is the size of an epoch's token.
	GroupTokenSize = 32
)

// Labels of values members derive for a group from its MLS epoch
// (MLS-Exporter(label, context, length), docs/PROTOCOL.md §12.1).
const (
	// GroupTokenLabel exports an epoch's log token (GroupTokenSize bytes;
	// the context is empty).
	GroupTokenLabel = "sealpost/v1/group-log-token"
	// GroupTopicLabel exports an epoch's topic secret (GroupTopicSecretSize
	// bytes; the context is empty); GroupTopic names the topic.
	GroupTopicLabel = "sealpost/v1/group-topic"
	// GroupLogResetLabel exports the ID of the log that replaces a home
	// relay's log (GroupLogIDSize bytes; the context is the replaced
	// log's ID) when its epoch was closed by a commit the group's rules
	// refuse: every member that refuses it derives the same one.
	GroupLogResetLabel = "sealpost/v1/group-log-reset"
	// GroupTopicSecretSize is the length of the exported topic secret.
	GroupTopicSecretSize = 16
	// GroupTopicPrefix begins every group topic name.
	GroupTopicPrefix = "/sealpost/g/1/"
)

// GroupLogID names a group log on one relay.
type GroupLogID [GroupLogIDSize]byte

// IsZero reports whether id is all zero (absent).
func (id GroupLogID) IsZero() bool { return id == GroupLogID{} }

// String returns id in lowercase hex.
func (id GroupLogID) String() string { return hex.EncodeToString(id[:]) }

// GroupToken is the capability to read and append to one epoch of a group
// log. It is a secret of the group's members: compare it with Equal, and
// it never prints.
type GroupToken [GroupTokenSize]byte

// IsZero reports whether t is all zero (absent).
func (t GroupToken) IsZero() bool { return t == GroupToken{} }

// Equal compares t and u in constant time.
func (t GroupToken) Equal(u GroupToken) bool { return subtle.ConstantTimeCompare(t[:], u[:]) == 1 }

// Hash returns SHA-256(t): what the relay keeps.
func (t GroupToken) Hash() TokenHash { return sha256.Sum256(t[:]) }

// String hides the token.
func (t GroupToken) String() string { return "GroupToken(hidden)" }

// GoString hides the token from %#v too.
func (t GroupToken) GoString() string { return t.String() }

// GroupTopic returns the gossipsub topic name of a topic secret exported
// from an epoch (GroupTopicLabel): GroupTopicPrefix followed by the secret
// in unpadded base64url. The name is announced to every connected pubsub
// peer, so it says nothing but "some group": it changes with every epoch
// and cannot be linked to the previous one without the epoch's secrets.
func GroupTopic(secret []byte) (string, error) {
	if len(secret) != GroupTopicSecretSize {
		return "", fmt.Errorf("%w: topic secret of %d bytes, want %d", ErrMalformed, len(secret), GroupTopicSecretSize)
	}
	return GroupTopicPrefix + base64.RawURLEncoding.EncodeToString(secret), nil
}

// GroupKind says what a GroupMessage's body is.
type GroupKind uint8

// The kinds of group message.
const (
	// GroupApplication is an MLS PrivateMessage with application content:
	// a group text, receipt or control message.
	GroupApplication GroupKind = 1
	// GroupCommit is an MLS PrivateMessage with a commit.
	GroupCommit GroupKind = 2
	// GroupProposal is an MLS PrivateMessage with a proposal (a member's
	// request to leave, which an admin commits).
	GroupProposal GroupKind = 3
	// GroupWelcome is a piece of an MLS Welcome, kept in the log of the
	// epoch it joins for the new member to fetch (never published).
	GroupWelcome GroupKind = 4
)

var groupKindNames = [...]string{
	GroupApplication: "application",
	GroupCommit:      "commit",
	GroupProposal:    "proposal",
	GroupWelcome:     "welcome",
}

// String returns the kind's name, or "kind(N)".
func (k GroupKind) String() string {
	if k > 0 && int(k) < len(groupKindNames) {
		return groupKindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Known reports whether k is a kind of this version.
func (k GroupKind) Known() bool { return k >= GroupApplication && k <= GroupWelcome }

// GroupMessage is what a group log entry holds and what members publish on
// a group's topic: an MLS message of one epoch.
type GroupMessage struct {
	// Epoch is the MLS epoch the body belongs to (for a commit, the epoch
	// it closes).
	Epoch uint64
	Kind  GroupKind
	// Body is the MLS message (or the piece of a Welcome), 1 to
	// MaxGroupBody bytes.
	Body []byte
	// Seqs are, on a topic only, the entry's sequence number in the log of
	// each home relay, in the group's order of its relays (0: not stored
	// there); at most MaxHomeRelays. A member that sees a number beyond the
	// last it holds fetches what it missed. A log entry has none.
	Seqs []uint64
}

// Validate checks m's fields against their limits.
func (m *GroupMessage) Validate() error {
	if !m.Kind.Known() {
		return fmt.Errorf("%w: group message: unknown kind %d", ErrMalformed, m.Kind)
	}
	if err := checkBytes(m.Body, 1, MaxGroupBody, "group message: body"); err != nil {
		return err
	}
	if len(m.Seqs) > MaxHomeRelays {
		return fmt.Errorf("%w: group message: %d sequence numbers, limit %d", ErrTooLarge, len(m.Seqs), MaxHomeRelays)
	}
	return nil
}

// Hash is the seen-set key of m: SHA-256 of the body, the same for the
// copy on a topic (which has Seqs) and the copies in the logs.
func (m *GroupMessage) Hash() [32]byte { return sha256.Sum256(m.Body) }

// Marshal returns the canonical encoding of m.
func (m *GroupMessage) Marshal() ([]byte, error) { return encode(nil, m) }

// Unmarshal decodes and validates b into m.
func (m *GroupMessage) Unmarshal(b []byte) error {
	var p pb.GroupMessage
	if err := decode(b, m.limit(), m.kind(), &p); err != nil {
		return err
	}
	if p.Kind > 0xff {
		return fmt.Errorf("%w: group message: unknown kind %d", ErrMalformed, p.Kind)
	}
	v := GroupMessage{Epoch: p.Epoch, Kind: GroupKind(p.Kind), Body: p.Body, Seqs: p.Seqs}
	if err := v.Validate(); err != nil {
		return err
	}
	*m = v
	return nil
}

func (m *GroupMessage) wire() proto.Message {
	return &pb.GroupMessage{Version: Version, Epoch: m.Epoch, Kind: uint32(m.Kind), Body: m.Body, Seqs: m.Seqs}
}

func (m *GroupMessage) limit() int   { return MaxGroupMessage }
func (m *GroupMessage) kind() string { return "group message" }

// checkEntry checks that a log entry is a GroupMessage of epoch whose kind
// matches commit, without sequence numbers.
func checkEntry(entry []byte, epoch uint64, commit bool, what string) error {
	if len(entry) > MaxGroupEntry {
		return fmt.Errorf("%w: %s: entry of %d bytes, limit %d", ErrTooLarge, what, len(entry), MaxGroupEntry)
	}
	var m GroupMessage
	if err := m.Unmarshal(entry); err != nil {
		return fmt.Errorf("%s: entry: %w", what, err)
	}
	switch {
	case len(m.Seqs) > 0:
		return fmt.Errorf("%w: %s: entry with sequence numbers", ErrMalformed, what)
	case m.Epoch != epoch:
		return fmt.Errorf("%w: %s: entry of epoch %d, request for %d", ErrMalformed, what, m.Epoch, epoch)
	case (m.Kind == GroupCommit) != commit:
		return fmt.Errorf("%w: %s: %s entry with commit %v", ErrMalformed, what, m.Kind, commit)
	}
	return nil
}

// GroupLogRequest is one client request on GroupLogProtocol. Op says
// which fields it uses (docs/PROTOCOL.md §12.3); every other field must be
// zero.
type GroupLogRequest struct {
	// ID numbers the request on its stream, from 1; the response carries
	// it.
	ID uint64
	Op GroupLogOp
	// Log is the log the request is about.
	Log GroupLogID
	// Epoch is the epoch the log opens at (Create), or the one Token is
	// for (the others).
	Epoch uint64
	// Token is the epoch's token (Append, Fetch, Subscribe).
	Token GroupToken
	// TokenHash is the hash of the token of the epoch the log opens at
	// (Create) or of the epoch a commit opens (Append with Commit).
	TokenHash TokenHash
	// Commit marks an appended entry as the commit that closes the epoch.
	Commit bool
	// Entry is the appended entry: an encoded GroupMessage of Epoch, of
	// kind GroupCommit exactly when Commit is set, without Seqs.
	Entry []byte
	// After selects the entries with a larger sequence number (Fetch,
	// Subscribe); zero is from the start of the epoch.
	After uint64
	// Limit bounds the entries of a Fetch, at most MaxFetchLimit; zero asks
	// for the relay's default.
	Limit uint32
}

const (
	glLog relayFields = 1 << iota
	glEpoch
	glToken
	glTokenHash
	glCommit
	glEntry
	glAfter
	glLimit
)

var groupRequestFieldNames = [...]string{"log", "epoch", "token", "token_hash", "commit", "entry", "after", "limit"}

// groupRequestFields lists, per op, the fields a request must hold and
// those it may hold (epoch is optional everywhere because 0 is a valid
// epoch, which the wire leaves out).
var groupRequestFields = map[GroupLogOp]struct{ required, optional relayFields }{
	GroupLogCreate:    {glLog | glTokenHash, glEpoch},
	GroupLogAppend:    {glLog | glToken | glEntry, glEpoch | glCommit | glTokenHash},
	GroupLogFetch:     {glLog | glToken, glEpoch | glAfter | glLimit},
	GroupLogSubscribe: {glLog | glToken, glEpoch | glAfter},
}

func (r *GroupLogRequest) present() relayFields {
	var f relayFields
	set := func(b bool, x relayFields) {
		if b {
			f |= x
		}
	}
	set(!r.Log.IsZero(), glLog)
	set(r.Epoch != 0, glEpoch)
	set(!r.Token.IsZero(), glToken)
	set(!r.TokenHash.IsZero(), glTokenHash)
	set(r.Commit, glCommit)
	set(len(r.Entry) > 0, glEntry)
	set(r.After != 0, glAfter)
	set(r.Limit != 0, glLimit)
	return f
}

// Validate checks r: an op a client sends, the fields of that op and no
// other, and each field within its limits; an appended entry must be a
// GroupMessage of the request's epoch.
func (r *GroupLogRequest) Validate() error {
	if r.ID == 0 {
		return fmt.Errorf("%w: group log request: id missing", ErrMalformed)
	}
	row, ok := groupRequestFields[r.Op]
	if !ok {
		return fmt.Errorf("%w: group log request: op %s is not a request", ErrMalformed, r.Op)
	}
	what := "group log " + r.Op.String()
	if err := checkFields(r.present(), row.required, row.optional, groupRequestFieldNames[:], what); err != nil {
		return err
	}
	if r.Op == GroupLogAppend && r.Commit != !r.TokenHash.IsZero() {
		return fmt.Errorf("%w: %s: a commit, and only a commit, carries the next epoch's token hash", ErrMalformed, what)
	}
	if r.Op == GroupLogAppend && r.Commit && r.Epoch == maxEpoch {
		return fmt.Errorf("%w: %s: no epoch after %d", ErrMalformed, what, r.Epoch)
	}
	if r.Limit > MaxFetchLimit {
		return fmt.Errorf("%w: %s: limit %d, at most %d", ErrTooLarge, what, r.Limit, MaxFetchLimit)
	}
	if len(r.Entry) > 0 {
		if err := checkEntry(r.Entry, r.Epoch, r.Commit, what); err != nil {
			return err
		}
	}
	return nil
}

// maxEpoch is the last epoch: a commit of it would open none.
const maxEpoch = ^uint64(0)

// Marshal returns the canonical encoding of r.
func (r *GroupLogRequest) Marshal() ([]byte, error) { return encode(nil, r) }

// Unmarshal decodes and validates b into r.
func (r *GroupLogRequest) Unmarshal(b []byte) error {
	var p pb.GroupLogRequest
	if err := decode(b, r.limit(), r.kind(), &p); err != nil {
		return err
	}
	v := GroupLogRequest{
		ID:     p.Id,
		Op:     GroupLogOp(p.Op),
		Epoch:  p.Epoch,
		Commit: p.Commit,
		Entry:  p.Entry,
		After:  p.After,
		Limit:  p.Limit,
	}
	for _, f := range []struct {
		dst  []byte
		src  []byte
		what string
	}{
		{v.Log[:], p.Log, "log"},
		{v.Token[:], p.Token, "token"},
		{v.TokenHash[:], p.TokenHash, "token_hash"},
	} {
		if err := fixed(f.dst, f.src, true, "group log request: "+f.what); err != nil {
			return err
		}
	}
	if err := v.Validate(); err != nil {
		return err
	}
	*r = v
	return nil
}

func (r *GroupLogRequest) wire() proto.Message {
	return &pb.GroupLogRequest{
		Version:   Version,
		Id:        r.ID,
		Op:        pb.GroupLogOp(r.Op),
		Log:       optional(r.Log[:]),
		Epoch:     r.Epoch,
		Token:     optional(r.Token[:]),
		TokenHash: optional(r.TokenHash[:]),
		Commit:    r.Commit,
		Entry:     r.Entry,
		After:     r.After,
		Limit:     r.Limit,
	}
}

func (r *GroupLogRequest) limit() int   { return MaxGroupLogFrame }
func (r *GroupLogRequest) kind() string { return "group log request" }

// GroupLogResponse is one relay frame on GroupLogProtocol: the answer to a
// request (same ID and Op) or a push. Op says which fields it uses
// (docs/PROTOCOL.md §12.3); every other field must be zero.
type GroupLogResponse struct {
	// ID is the request answered; for a GroupLogPush, the fetch or
	// subscription it belongs to; 0 (with Op 0 and an error Code) for the
	// answer to a frame that did not decode, after which the relay resets
	// the stream.
	ID   uint64
	Op   GroupLogOp
	Code Code
	// Log is the new log's ID (Create).
	Log GroupLogID
	// Epoch is the log's open epoch (Create, Append, Fetch, Subscribe, and
	// the ErrWrongEpoch answer to an Append).
	Epoch uint64
	// Seq is the appended entry's sequence number (Append), a pushed
	// entry's (Push), or the last one pushed (Fetch) or already stored when
	// the subscription began (Subscribe); zero if none.
	Seq uint64
	// Commit marks a pushed entry as the epoch's commit (Push).
	Commit bool
	// Entry is a pushed entry (Push of a Fetch; a subscription's pushes
	// carry none).
	Entry []byte
	// StoredUntil is how long the relay keeps an appended entry (Append),
	// Unix milliseconds.
	StoredUntil int64
	// More reports that a Fetch stopped at its limit, or short of it (at
	// MaxFetchBytes, or at the relay's bound of answer bytes queued for
	// the stream), with more entries of the epoch stored after Seq.
	More bool
}

const (
	grLog relayFields = 1 << iota
	grEpoch
	grSeq
	grCommit
	grEntry
	grStoredUntil
	grMore
)

var groupResponseFieldNames = [...]string{"log", "epoch", "seq", "commit", "entry", "stored_until", "more"}

// groupResponseFields lists, per op, the fields of a CodeOK response. An
// error response holds no field but the epoch.
var groupResponseFields = map[GroupLogOp]struct{ required, optional relayFields }{
	GroupLogCreate:    {grLog, grEpoch},
	GroupLogAppend:    {grSeq | grStoredUntil, grEpoch},
	GroupLogFetch:     {0, grEpoch | grSeq | grMore},
	GroupLogSubscribe: {0, grEpoch | grSeq},
	GroupLogPush:      {grSeq, grCommit | grEntry},
}

func (r *GroupLogResponse) present() relayFields {
	var f relayFields
	set := func(b bool, x relayFields) {
		if b {
			f |= x
		}
	}
	set(!r.Log.IsZero(), grLog)
	set(r.Epoch != 0, grEpoch)
	set(r.Seq != 0, grSeq)
	set(r.Commit, grCommit)
	set(len(r.Entry) > 0, grEntry)
	set(r.StoredUntil != 0, grStoredUntil)
	set(r.More, grMore)
	return f
}

// Validate checks r: a known op (or none, for the answer to a frame that
// did not decode), a known code, the fields of the op, and their limits. A
// pushed entry must be a GroupMessage whose kind matches Commit (its epoch
// is the request's, which the client checks).
func (r *GroupLogResponse) Validate() error {
	if err := r.Code.check(); err != nil {
		return fmt.Errorf("group log response: %w", err)
	}
	have := r.present()
	if r.Op == 0 {
		if r.ID != 0 || r.Code == CodeOK || have != 0 {
			return fmt.Errorf("%w: group log response: op missing", ErrMalformed)
		}
		return nil
	}
	row, ok := groupResponseFields[r.Op]
	if !ok {
		return fmt.Errorf("%w: group log response: unknown op %s", ErrMalformed, r.Op)
	}
	what := "group log " + r.Op.String() + " response"
	switch {
	case r.ID == 0:
		return fmt.Errorf("%w: %s: id missing", ErrMalformed, what)
	case r.Op == GroupLogPush && r.Code != CodeOK:
		return fmt.Errorf("%w: %s: push with code %s", ErrMalformed, what, r.Code)
	}
	if r.Code != CodeOK {
		return checkFields(have, 0, grEpoch, groupResponseFieldNames[:], what)
	}
	if err := checkFields(have, row.required, row.optional, groupResponseFieldNames[:], what); err != nil {
		return err
	}
	if len(r.Entry) > MaxGroupEntry {
		return fmt.Errorf("%w: %s: entry of %d bytes, limit %d", ErrTooLarge, what, len(r.Entry), MaxGroupEntry)
	}
	if len(r.Entry) > 0 {
		var m GroupMessage
		if err := m.Unmarshal(r.Entry); err != nil {
			return fmt.Errorf("%s: entry: %w", what, err)
		}
		if (m.Kind == GroupCommit) != r.Commit || len(m.Seqs) > 0 {
			return fmt.Errorf("%w: %s: %s entry with commit %v", ErrMalformed, what, m.Kind, r.Commit)
		}
	}
	if r.StoredUntil != 0 {
		if err := checkTime(r.StoredUntil, what+": stored_until"); err != nil {
			return err
		}
	}
	return nil
}

// Marshal returns the canonical encoding of r.
func (r *GroupLogResponse) Marshal() ([]byte, error) { return encode(nil, r) }

// Unmarshal decodes and validates b into r.
func (r *GroupLogResponse) Unmarshal(b []byte) error {
	var p pb.GroupLogResponse
	if err := decode(b, r.limit(), r.kind(), &p); err != nil {
		return err
	}
	v := GroupLogResponse{
		ID:          p.Id,
		Op:          GroupLogOp(p.Op),
		Code:        Code(p.Code),
		Epoch:       p.Epoch,
		Seq:         p.Seq,
		Commit:      p.Commit,
		Entry:       p.Entry,
		StoredUntil: timeFromWire(p.StoredUntil),
		More:        p.More,
	}
	if err := fixed(v.Log[:], p.Log, true, "group log response: log"); err != nil {
		return err
	}
	if err := v.Validate(); err != nil {
		return err
	}
	*r = v
	return nil
}

func (r *GroupLogResponse) wire() proto.Message {
	return &pb.GroupLogResponse{
		Version:     Version,
		Id:          r.ID,
		Op:          pb.GroupLogOp(r.Op),
		Code:        pb.Code(r.Code),
		Log:         optional(r.Log[:]),
		Epoch:       r.Epoch,
		Seq:         r.Seq,
		Commit:      r.Commit,
		Entry:       r.Entry,
		StoredUntil: uint64(max(r.StoredUntil, 0)),
		More:        r.More,
	}
}

func (r *GroupLogResponse) limit() int   { return MaxGroupLogFrame }
func (r *GroupLogResponse) kind() string { return "group log response" }

// Err returns nil for CodeOK and the sentinel of r's code otherwise.
func (r *GroupLogResponse) Err() error { return r.Code.Err() }

// MaxGroupReceipt bounds an encoded GroupReceipt: MaxReceiptIDs IDs and the
// group ID, with their tags.
const MaxGroupReceipt = MaxReceiptIDs*(len(MessageID{})+2) + 64

// GroupReceipt is a member's delivery receipt for group messages of one
// sender, sent on GroupReceiptProtocol straight to that sender's device:
// the connection names the member (docs/PROTOCOL.md §12.8).
type GroupReceipt struct {
	Group GroupID
	// Covers are the IDs of the sender's messages the member committed,
	// 1 to MaxReceiptIDs.
	Covers []MessageID
}

// Validate checks r's fields.
func (r *GroupReceipt) Validate() error {
	if r.Group.IsZero() {
		return fmt.Errorf("%w: group receipt: no group", ErrMalformed)
	}
	if len(r.Covers) == 0 {
		return fmt.Errorf("%w: group receipt: covers nothing", ErrMalformed)
	}
	if len(r.Covers) > MaxReceiptIDs {
		return fmt.Errorf("%w: group receipt: covers %d, limit %d", ErrTooLarge, len(r.Covers), MaxReceiptIDs)
	}
	for i, id := range r.Covers {
		if id.IsZero() {
			return fmt.Errorf("%w: group receipt: covers[%d] is all zero", ErrMalformed, i)
		}
	}
	return nil
}

// Marshal returns the canonical encoding of r.
func (r *GroupReceipt) Marshal() ([]byte, error) { return encode(nil, r) }

// Unmarshal decodes and validates b into r.
func (r *GroupReceipt) Unmarshal(b []byte) error {
	var w pb.GroupReceipt
	if err := decode(b, r.limit(), r.kind(), &w); err != nil {
		return err
	}
	if len(w.Covers) > MaxReceiptIDs {
		return fmt.Errorf("%w: group receipt: covers %d, limit %d", ErrTooLarge, len(w.Covers), MaxReceiptIDs)
	}
	var v GroupReceipt
	if err := fixed(v.Group[:], w.Group, false, "group receipt: group"); err != nil {
		return err
	}
	v.Covers = make([]MessageID, len(w.Covers))
	for i, id := range w.Covers {
		if err := fixed(v.Covers[i][:], id, false, fmt.Sprintf("group receipt: covers[%d]", i)); err != nil {
			return err
		}
	}
	if err := v.Validate(); err != nil {
		return err
	}
	*r = v
	return nil
}

func (r *GroupReceipt) wire() proto.Message {
	w := &pb.GroupReceipt{Version: Version, Group: r.Group[:]}
	for i := range r.Covers {
		w.Covers = append(w.Covers, r.Covers[i][:])
	}
	return w
}

func (r *GroupReceipt) limit() int   { return MaxGroupReceipt }
func (r *GroupReceipt) kind() string { return "group receipt" }
