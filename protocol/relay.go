package protocol

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/sealpost/sealpost/crypto/seal"
	"github.com/sealpost/sealpost/protocol/internal/pb"
)

// The relay protocol (RelayProtocol, docs/PROTOCOL.md §10). On each stream
// the relay first sends a RelayResponse{Op: RelayHello} with a fresh
// challenge; then the client sends RelayRequests and the relay answers each
// with one RelayResponse of the same ID and Op (after RelayPush frames, for
// a fetch or subscription). Requests may be pipelined (deposits are); the
// client matches responses by ID. Owner operations carry the stream's
// current challenge and the owner's signature over it (SignOwner); every
// response to an owner operation carries the next challenge, so a client
// sends its owner operations on one stream one at a time.

// RelayOp names a relay operation.
type RelayOp int32

// The relay operations. Their numbers are the enum values of relay.proto.
const (
	// RelayHello is the relay's first frame on a stream: a challenge.
	RelayHello RelayOp = 1
	// RelayChallenge asks for a fresh challenge (the current one is too
	// old, or the client lost track of it).
	RelayChallenge RelayOp = 2
	// RelayCreate creates a mailbox for an owner key and a sealing key,
	// signed by the owner key; the relay picks the mailbox ID.
	RelayCreate RelayOp = 3
	// RelayRegisterToken registers SHA-256 of a deposit token with a quota
	// (owner). Registering a registered hash again changes its quota.
	RelayRegisterToken RelayOp = 4
	// RelayRevokeToken removes a token hash and its card blob (owner).
	RelayRevokeToken RelayOp = 5
	// RelayDeposit stores an envelope in a mailbox (anyone with a token of
	// the mailbox); answered with a custody receipt once durable.
	RelayDeposit RelayOp = 6
	// RelayFetch asks for stored envelopes after a sequence number (owner);
	// they come as RelayPush frames before the response.
	RelayFetch RelayOp = 7
	// RelaySubscribe is a fetch that does not end: after the response, the
	// relay pushes the stored envelopes after the sequence number and then
	// every new one, while the stream lasts (owner).
	RelaySubscribe RelayOp = 8
	// RelayAck deletes envelopes by sequence number (owner), after the
	// owner committed them.
	RelayAck RelayOp = 9
	// RelayDeleteMailbox deletes the mailbox and everything it holds (owner).
	RelayDeleteMailbox RelayOp = 10
	// RelayPutCard stores the card blob of an invite token (owner).
	RelayPutCard RelayOp = 11
	// RelayGetCard returns the card blob of the presented token.
	RelayGetCard RelayOp = 12
	// RelayPutPrekeys stores a batch of encrypted one-time prekeys (owner).
	RelayPutPrekeys RelayOp = 13
	// RelayTakePrekey hands one prekey blob to the requester, who presents
	// a token of the mailbox; each blob is handed out once.
	RelayTakePrekey RelayOp = 14
	// RelayPush is a relay frame holding one stored envelope, for the fetch
	// or subscription whose ID it carries.
	RelayPush RelayOp = 15
)

var relayOpNames = [...]string{
	RelayHello:         "hello",
	RelayChallenge:     "challenge",
	RelayCreate:        "create",
	RelayRegisterToken: "register_token",
	RelayRevokeToken:   "revoke_token",
	RelayDeposit:       "deposit",
	RelayFetch:         "fetch",
	RelaySubscribe:     "subscribe",
	RelayAck:           "ack",
	RelayDeleteMailbox: "delete_mailbox",
	RelayPutCard:       "put_card",
	RelayGetCard:       "get_card",
	RelayPutPrekeys:    "put_prekeys",
	RelayTakePrekey:    "take_prekey",
	RelayPush:          "push",
}

// String returns the op's stable snake_case name (for logs and metrics), or
// "op(N)" for an unknown op.
func (op RelayOp) String() string {
	if op > 0 && int(op) < len(relayOpNames) {
		return relayOpNames[op]
	}
	return fmt.Sprintf("op(%d)", int32(op))
}

// Owner reports whether op needs the mailbox owner's signature.
func (op RelayOp) Owner() bool {
	switch op {
	case RelayCreate, RelayRegisterToken, RelayRevokeToken, RelayFetch, RelaySubscribe,
		RelayAck, RelayDeleteMailbox, RelayPutCard, RelayPutPrekeys:
		return true
	}
	return false
}

// Request reports whether op is one a client sends.
func (op RelayOp) Request() bool { return op >= RelayChallenge && op <= RelayTakePrekey }

// Sizes of the relay protocol's fixed fields.
const (
	// ChallengeSize is the size of a relay challenge: 32 random bytes.
	ChallengeSize = 32
	// TokenHashSize is the size of a token hash (SHA-256).
	TokenHashSize = 32
	// OwnerKeySize is the size of a mailbox owner key (Ed25519).
	OwnerKeySize = 32
	// SignatureSize is the size of an owner or receipt signature (Ed25519).
	SignatureSize = 64
)

// Challenge is a relay challenge: fresh random bytes the relay issues per
// stream, each accepted for one owner operation only.
type Challenge [ChallengeSize]byte

// IsZero reports whether c is all zero (absent).
func (c Challenge) IsZero() bool { return c == Challenge{} }

// OwnerKey is a mailbox's owner authentication key: an Ed25519 public key,
// random per mailbox and unlinked to the owner's identity.
type OwnerKey [OwnerKeySize]byte

// IsZero reports whether k is all zero (absent).
func (k OwnerKey) IsZero() bool { return k == OwnerKey{} }

// RelayRequest is one client request on RelayProtocol. Op says which
// fields it uses (docs/PROTOCOL.md §10.4); every other field must be zero.
type RelayRequest struct {
	// ID numbers the request on its stream, from 1; the response carries
	// it. It is not signed and means nothing on another stream.
	ID uint64
	Op RelayOp
	// Mailbox is the mailbox the request is about (every op but Challenge
	// and Create).
	Mailbox MailboxID
	// OwnerKey and SealingKey are the new mailbox's keys (Create).
	OwnerKey   OwnerKey
	SealingKey SealingKey
	// Token is a deposit token, MinToken to MaxToken bytes (Deposit,
	// GetCard, TakePrekey).
	Token []byte
	// TokenHash is SHA-256 of a token (RegisterToken, RevokeToken,
	// PutCard); see HashToken.
	TokenHash TokenHash
	// Count and Bytes are the quota a RegisterToken asks for: envelopes
	// and bytes stored under the token at once. Zero asks for the relay's
	// per-token limit, and the relay never grants more than it.
	Count, Bytes uint64
	// After selects the envelopes with a larger sequence number (Fetch,
	// Subscribe); zero is from the start.
	After uint64
	// Limit bounds the envelopes of a Fetch, at most MaxFetchLimit; zero
	// asks for the relay's default.
	Limit uint32
	// Seqs are the sequence numbers an Ack deletes: 1 to MaxAckSeqs of
	// them, strictly increasing.
	Seqs []uint64
	// Envelope is a sealed envelope (Deposit): a crypto/seal bucket size,
	// its version, and Mailbox in its header.
	Envelope []byte
	// Blob is the encrypted card of a PutCard, at most MaxCardBlob.
	Blob []byte
	// Blobs are the encrypted one-time prekeys of a PutPrekeys: 1 to
	// MaxPrekeyBatch, each 1 to MaxPrekeyBlob bytes.
	Blobs [][]byte
	// ExpiresAt is when a PutPrekeys batch expires, Unix milliseconds; the
	// relay hands none of it out after that.
	ExpiresAt int64
	// Challenge and Signature authenticate an owner op: the stream's
	// current challenge and the owner key's signature (SignOwner).
	Challenge Challenge
	Signature []byte
}

// Field sets of the relay messages, for the table of which op uses what.
type relayFields uint32

const (
	rqMailbox relayFields = 1 << iota
	rqOwnerKey
	rqSealingKey
	rqToken
	rqTokenHash
	rqCount
	rqBytes
	rqAfter
	rqLimit
	rqSeqs
	rqEnvelope
	rqBlob
	rqBlobs
	rqExpiresAt
	rqChallenge
	rqSignature
)

// requestFields lists, per op, the fields a request must hold and those it
// may hold.
var requestFields = map[RelayOp]struct{ required, optional relayFields }{
	RelayChallenge:     {0, 0},
	RelayCreate:        {rqOwnerKey | rqSealingKey | rqChallenge | rqSignature, 0},
	RelayRegisterToken: {rqMailbox | rqTokenHash | rqChallenge | rqSignature, rqCount | rqBytes},
	RelayRevokeToken:   {rqMailbox | rqTokenHash | rqChallenge | rqSignature, 0},
	RelayDeposit:       {rqMailbox | rqToken | rqEnvelope, 0},
	RelayFetch:         {rqMailbox | rqChallenge | rqSignature, rqAfter | rqLimit},
	RelaySubscribe:     {rqMailbox | rqChallenge | rqSignature, rqAfter},
	RelayAck:           {rqMailbox | rqSeqs | rqChallenge | rqSignature, 0},
	RelayDeleteMailbox: {rqMailbox | rqChallenge | rqSignature, 0},
	RelayPutCard:       {rqMailbox | rqTokenHash | rqBlob | rqChallenge | rqSignature, 0},
	RelayGetCard:       {rqMailbox | rqToken, 0},
	RelayPutPrekeys:    {rqMailbox | rqBlobs | rqExpiresAt | rqChallenge | rqSignature, 0},
	RelayTakePrekey:    {rqMailbox | rqToken, 0},
}

var requestFieldNames = [...]string{
	"mailbox", "owner_key", "sealing_key", "token", "token_hash", "count", "bytes",
	"after", "limit", "seqs", "envelope", "blob", "blobs", "expires_at", "challenge", "signature",
}

func (r *RelayRequest) present() relayFields {
	var f relayFields
	set := func(b bool, x relayFields) {
		if b {
			f |= x
		}
	}
	set(!r.Mailbox.IsZero(), rqMailbox)
	set(!r.OwnerKey.IsZero(), rqOwnerKey)
	set(!r.SealingKey.IsZero(), rqSealingKey)
	set(len(r.Token) > 0, rqToken)
	set(!r.TokenHash.IsZero(), rqTokenHash)
	set(r.Count != 0, rqCount)
	set(r.Bytes != 0, rqBytes)
	set(r.After != 0, rqAfter)
	set(r.Limit != 0, rqLimit)
	set(len(r.Seqs) > 0, rqSeqs)
	set(len(r.Envelope) > 0, rqEnvelope)
	set(len(r.Blob) > 0, rqBlob)
	set(len(r.Blobs) > 0, rqBlobs)
	set(r.ExpiresAt != 0, rqExpiresAt)
	set(!r.Challenge.IsZero(), rqChallenge)
	set(len(r.Signature) > 0, rqSignature)
	return f
}

// checkFields checks the fields present against an op's table row.
func checkFields[F ~uint32](have, required, optional F, names []string, what string) error {
	if missing := required &^ have; missing != 0 {
		return fmt.Errorf("%w: %s: %s missing", ErrMalformed, what, fieldName(missing, names))
	}
	if extra := have &^ (required | optional); extra != 0 {
		return fmt.Errorf("%w: %s: unexpected %s", ErrMalformed, what, fieldName(extra, names))
	}
	return nil
}

func fieldName[F ~uint32](set F, names []string) string {
	for i, n := range names {
		if set&(1<<i) != 0 {
			return n
		}
	}
	return "field"
}

// Validate checks r: an op a client sends, the fields of that op and no
// other, and each field within its limits.
func (r *RelayRequest) Validate() error {
	if r.ID == 0 {
		return fmt.Errorf("%w: relay request: id missing", ErrMalformed)
	}
	row, ok := requestFields[r.Op]
	if !ok {
		return fmt.Errorf("%w: relay request: op %s is not a request", ErrMalformed, r.Op)
	}
	what := "relay " + r.Op.String()
	if err := checkFields(r.present(), row.required, row.optional, requestFieldNames[:], what); err != nil {
		return err
	}
	if len(r.Token) > 0 {
		if err := checkBytes(r.Token, MinToken, MaxToken, what+": token"); err != nil {
			return err
		}
	}
	if len(r.Signature) > 0 && len(r.Signature) != SignatureSize {
		return fmt.Errorf("%w: %s: signature of %d bytes, want %d", ErrMalformed, what, len(r.Signature), SignatureSize)
	}
	if r.Limit > MaxFetchLimit {
		return fmt.Errorf("%w: %s: limit %d, at most %d", ErrTooLarge, what, r.Limit, MaxFetchLimit)
	}
	if len(r.Seqs) > 0 {
		if len(r.Seqs) > MaxAckSeqs {
			return fmt.Errorf("%w: %s: %d sequence numbers, limit %d", ErrTooLarge, what, len(r.Seqs), MaxAckSeqs)
		}
		for i, s := range r.Seqs {
			if s == 0 || (i > 0 && s <= r.Seqs[i-1]) {
				return fmt.Errorf("%w: %s: sequence numbers not strictly increasing from 1", ErrMalformed, what)
			}
		}
	}
	if len(r.Envelope) > 0 {
		if len(r.Envelope) > MaxEnvelope {
			return fmt.Errorf("%w: %s: envelope of %d bytes, limit %d", ErrTooLarge, what, len(r.Envelope), MaxEnvelope)
		}
		id, err := seal.PeekMailbox(r.Envelope)
		if err != nil {
			return fmt.Errorf("%w: %s: envelope of %d bytes is not a sealed envelope", ErrMalformed, what, len(r.Envelope))
		}
		if id != r.Mailbox {
			return fmt.Errorf("%w: %s: envelope is for another mailbox", ErrMalformed, what)
		}
	}
	if len(r.Blob) > MaxCardBlob {
		return fmt.Errorf("%w: %s: blob of %d bytes, limit %d", ErrTooLarge, what, len(r.Blob), MaxCardBlob)
	}
	if len(r.Blobs) > 0 {
		if len(r.Blobs) > MaxPrekeyBatch {
			return fmt.Errorf("%w: %s: %d prekeys, limit %d", ErrTooLarge, what, len(r.Blobs), MaxPrekeyBatch)
		}
		for i, b := range r.Blobs {
			if err := checkBytes(b, 1, MaxPrekeyBlob, fmt.Sprintf("%s: blobs[%d]", what, i)); err != nil {
				return err
			}
		}
	}
	if r.ExpiresAt != 0 {
		if err := checkTime(r.ExpiresAt, what+": expires_at"); err != nil {
			return err
		}
	}
	return nil
}

// Marshal returns the canonical encoding of r.
func (r *RelayRequest) Marshal() ([]byte, error) { return encode(nil, r) }

// Unmarshal decodes and validates b into r.
func (r *RelayRequest) Unmarshal(b []byte) error {
	var p pb.RelayRequest
	if err := decode(b, r.limit(), r.kind(), &p); err != nil {
		return err
	}
	v := RelayRequest{
		ID:        p.Id,
		Op:        RelayOp(p.Op),
		Token:     p.Token,
		Count:     p.Count,
		Bytes:     p.Bytes,
		After:     p.After,
		Limit:     p.Limit,
		Seqs:      p.Seqs,
		Envelope:  p.Envelope,
		Blob:      p.Blob,
		Blobs:     p.Blobs,
		ExpiresAt: timeFromWire(p.ExpiresAt),
		Signature: p.Signature,
	}
	for _, f := range []struct {
		dst  []byte
		src  []byte
		what string
	}{
		{v.Mailbox[:], p.Mailbox, "mailbox"},
		{v.OwnerKey[:], p.OwnerKey, "owner_key"},
		{v.SealingKey[:], p.SealingKey, "sealing_key"},
		{v.TokenHash[:], p.TokenHash, "token_hash"},
		{v.Challenge[:], p.Challenge, "challenge"},
	} {
		if err := fixed(f.dst, f.src, true, "relay request: "+f.what); err != nil {
			return err
		}
	}
	if err := v.Validate(); err != nil {
		return err
	}
	*r = v
	return nil
}

func (r *RelayRequest) wire() proto.Message {
	return &pb.RelayRequest{
		Version:    Version,
		Id:         r.ID,
		Op:         pb.RelayOp(r.Op),
		Mailbox:    optional(r.Mailbox[:]),
		OwnerKey:   optional(r.OwnerKey[:]),
		SealingKey: optional(r.SealingKey[:]),
		Token:      r.Token,
		TokenHash:  optional(r.TokenHash[:]),
		Count:      r.Count,
		Bytes:      r.Bytes,
		After:      r.After,
		Limit:      r.Limit,
		Seqs:       r.Seqs,
		Envelope:   r.Envelope,
		Blob:       r.Blob,
		Blobs:      r.Blobs,
		ExpiresAt:  uint64(max(r.ExpiresAt, 0)),
		Challenge:  optional(r.Challenge[:]),
		Signature:  r.Signature,
	}
}

func (r *RelayRequest) limit() int   { return MaxRelayFrame }
func (r *RelayRequest) kind() string { return "relay request" }

// RelayResponse is one relay frame on RelayProtocol: the hello, the answer
// to a request (same ID and Op), or a pushed envelope. Op says which fields
// it uses (docs/PROTOCOL.md §10.4); every other field must be zero.
type RelayResponse struct {
	// ID is the request answered; for a RelayPush, the fetch or
	// subscription it belongs to; 0 for the hello, and for the answer to a
	// frame that did not decode (whose Op is then zero and whose Code is an
	// error; the relay resets the stream after it).
	ID   uint64
	Op   RelayOp
	Code Code
	// Challenge is the stream's next challenge: in the hello, the answer to
	// RelayChallenge, and the answer to every owner op (whatever its code).
	Challenge Challenge
	// Mailbox is the new mailbox's ID (Create).
	Mailbox MailboxID
	// Seq is a pushed envelope's sequence number (Push), or the last one a
	// Fetch pushed (zero if none).
	Seq uint64
	// Envelope is a pushed envelope (Push).
	Envelope []byte
	// StoredUntil is how long the relay keeps a deposit (Deposit) or a
	// prekey batch (PutPrekeys), Unix milliseconds.
	StoredUntil int64
	// Signature is the relay's custody receipt signature (Deposit): see
	// Receipt.
	Signature []byte
	// Count and Bytes are the envelopes and bytes the mailbox holds (Fetch,
	// Subscribe, Ack), or the quota granted (Create: the mailbox's;
	// RegisterToken: the token's).
	Count, Bytes uint64
	// Prekeys is how many one-time prekeys the relay still holds for the
	// mailbox (Fetch, Subscribe, PutPrekeys, Push).
	Prekeys uint64
	// More reports that a Fetch stopped at its limit with more envelopes
	// stored after Seq.
	More bool
	// Blob is the card blob (GetCard) or one prekey blob (TakePrekey).
	Blob []byte
}

const (
	rsChallenge relayFields = 1 << iota
	rsMailbox
	rsSeq
	rsEnvelope
	rsStoredUntil
	rsSignature
	rsCount
	rsBytes
	rsPrekeys
	rsMore
	rsBlob
)

var responseFieldNames = [...]string{
	"challenge", "mailbox", "seq", "envelope", "stored_until", "signature", "count", "bytes",
	"prekeys", "more", "blob",
}

// responseFields lists, per op, the fields of a CodeOK response. An error
// response holds no field but the challenge (which every owner op's
// response may carry).
var responseFields = map[RelayOp]struct{ required, optional relayFields }{
	RelayHello:         {rsChallenge, 0},
	RelayChallenge:     {rsChallenge, 0},
	RelayCreate:        {rsChallenge | rsMailbox, rsCount | rsBytes},
	RelayRegisterToken: {rsChallenge, rsCount | rsBytes},
	RelayRevokeToken:   {rsChallenge, 0},
	RelayDeposit:       {rsStoredUntil | rsSignature, 0},
	RelayFetch:         {rsChallenge, rsSeq | rsCount | rsBytes | rsPrekeys | rsMore},
	RelaySubscribe:     {rsChallenge, rsCount | rsBytes | rsPrekeys},
	RelayAck:           {rsChallenge, rsCount | rsBytes},
	RelayDeleteMailbox: {rsChallenge, 0},
	RelayPutCard:       {rsChallenge, 0},
	RelayGetCard:       {rsBlob, 0},
	RelayPutPrekeys:    {rsChallenge | rsStoredUntil, rsPrekeys},
	RelayTakePrekey:    {rsBlob, 0},
	RelayPush:          {rsSeq | rsEnvelope, rsPrekeys},
}

func (r *RelayResponse) present() relayFields {
	var f relayFields
	set := func(b bool, x relayFields) {
		if b {
			f |= x
		}
	}
	set(!r.Challenge.IsZero(), rsChallenge)
	set(!r.Mailbox.IsZero(), rsMailbox)
	set(r.Seq != 0, rsSeq)
	set(len(r.Envelope) > 0, rsEnvelope)
	set(r.StoredUntil != 0, rsStoredUntil)
	set(len(r.Signature) > 0, rsSignature)
	set(r.Count != 0, rsCount)
	set(r.Bytes != 0, rsBytes)
	set(r.Prekeys != 0, rsPrekeys)
	set(r.More, rsMore)
	set(len(r.Blob) > 0, rsBlob)
	return f
}

// Validate checks r: a known op (or none, for the answer to a frame that
// did not decode), a known code, the fields of the op, and their limits.
func (r *RelayResponse) Validate() error {
	if err := r.Code.check(); err != nil {
		return fmt.Errorf("relay response: %w", err)
	}
	have := r.present()
	if r.Op == 0 {
		// The answer to a frame that did not decode.
		if r.ID != 0 || r.Code == CodeOK || have != 0 {
			return fmt.Errorf("%w: relay response: op missing", ErrMalformed)
		}
		return nil
	}
	row, ok := responseFields[r.Op]
	if !ok {
		return fmt.Errorf("%w: relay response: unknown op %s", ErrMalformed, r.Op)
	}
	what := "relay " + r.Op.String() + " response"
	switch {
	case r.Op == RelayHello && (r.ID != 0 || r.Code != CodeOK):
		return fmt.Errorf("%w: %s: hello with id %d, code %s", ErrMalformed, what, r.ID, r.Code)
	case r.Op == RelayPush && r.Code != CodeOK:
		return fmt.Errorf("%w: %s: push with code %s", ErrMalformed, what, r.Code)
	case r.Op != RelayHello && r.ID == 0:
		return fmt.Errorf("%w: %s: id missing", ErrMalformed, what)
	}
	if r.Code != CodeOK {
		var allowed relayFields
		if r.Op.Owner() || r.Op == RelayChallenge {
			allowed = rsChallenge
		}
		if err := checkFields(have, 0, allowed, responseFieldNames[:], what); err != nil {
			return err
		}
		return nil
	}
	if err := checkFields(have, row.required, row.optional, responseFieldNames[:], what); err != nil {
		return err
	}
	if len(r.Envelope) > 0 {
		if len(r.Envelope) > MaxEnvelope {
			return fmt.Errorf("%w: %s: envelope of %d bytes, limit %d", ErrTooLarge, what, len(r.Envelope), MaxEnvelope)
		}
		if _, err := seal.PeekMailbox(r.Envelope); err != nil {
			return fmt.Errorf("%w: %s: envelope of %d bytes is not a sealed envelope", ErrMalformed, what, len(r.Envelope))
		}
	}
	if r.StoredUntil != 0 {
		if err := checkTime(r.StoredUntil, what+": stored_until"); err != nil {
			return err
		}
	}
	if len(r.Signature) > 0 && len(r.Signature) != SignatureSize {
		return fmt.Errorf("%w: %s: signature of %d bytes, want %d", ErrMalformed, what, len(r.Signature), SignatureSize)
	}
	limit := MaxCardBlob
	if r.Op == RelayTakePrekey {
		limit = MaxPrekeyBlob
	}
	if len(r.Blob) > limit {
		return fmt.Errorf("%w: %s: blob of %d bytes, limit %d", ErrTooLarge, what, len(r.Blob), limit)
	}
	return nil
}

// Marshal returns the canonical encoding of r.
func (r *RelayResponse) Marshal() ([]byte, error) { return encode(nil, r) }

// Unmarshal decodes and validates b into r.
func (r *RelayResponse) Unmarshal(b []byte) error {
	var p pb.RelayResponse
	if err := decode(b, r.limit(), r.kind(), &p); err != nil {
		return err
	}
	v := RelayResponse{
		ID:          p.Id,
		Op:          RelayOp(p.Op),
		Code:        Code(p.Code),
		Seq:         p.Seq,
		Envelope:    p.Envelope,
		StoredUntil: timeFromWire(p.StoredUntil),
		Signature:   p.Signature,
		Count:       p.Count,
		Bytes:       p.Bytes,
		Prekeys:     p.Prekeys,
		More:        p.More,
		Blob:        p.Blob,
	}
	if err := fixed(v.Challenge[:], p.Challenge, true, "relay response: challenge"); err != nil {
		return err
	}
	if err := fixed(v.Mailbox[:], p.Mailbox, true, "relay response: mailbox"); err != nil {
		return err
	}
	if err := v.Validate(); err != nil {
		return err
	}
	*r = v
	return nil
}

func (r *RelayResponse) wire() proto.Message {
	return &pb.RelayResponse{
		Version:     Version,
		Id:          r.ID,
		Op:          pb.RelayOp(r.Op),
		Code:        pb.Code(r.Code),
		Challenge:   optional(r.Challenge[:]),
		Mailbox:     optional(r.Mailbox[:]),
		Seq:         r.Seq,
		Envelope:    r.Envelope,
		StoredUntil: uint64(max(r.StoredUntil, 0)),
		Signature:   r.Signature,
		Count:       r.Count,
		Bytes:       r.Bytes,
		Prekeys:     r.Prekeys,
		More:        r.More,
		Blob:        r.Blob,
	}
}

func (r *RelayResponse) limit() int   { return MaxRelayFrame }
func (r *RelayResponse) kind() string { return "relay response" }

// Err returns nil for CodeOK and the sentinel of r's code otherwise, so a
// client can test a response with errors.Is.
func (r *RelayResponse) Err() error { return r.Code.Err() }
