package protocol

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/protocol/internal/pb"
)

// The blob protocol (BlobProtocol, docs/PROTOCOL.md §11.4). The client
// writes BlobRequests, pipelined; the server answers each with one
// BlobResponse of the same ID and Op, in order. A blob's bytes travel
// unframed: exactly Size bytes right after the PUT request that announces
// them, and right after the CodeOK response to a GET. A personal node
// serves GET (of the files it sends) and ACK; a relay serves every op.

// BlobOp names a blob operation.
type BlobOp int32

// The blob operations. Their numbers are the enum values of blob.proto.
const (
	// BlobGet reads a blob with a read capability; its bytes follow the
	// response.
	BlobGet BlobOp = 1
	// BlobPut stores a blob under a new reference (a write capability, the
	// hash of a read capability, a mailbox whose quota it is charged to);
	// its bytes follow the request. Answered once the blob and the
	// reference are durable.
	BlobPut BlobOp = 2
	// BlobLink is a Put without the bytes, for a blob the server already
	// holds (CodeNotFound when it does not).
	BlobLink BlobOp = 3
	// BlobAck tells the server that a reader has the blob: a relay deletes
	// the reference after its last reader's, a node learns that the
	// recipient has it.
	BlobAck BlobOp = 4
	// BlobDelete deletes a reference, with its write capability.
	BlobDelete BlobOp = 5
)

var blobOpNames = [...]string{
	BlobGet:    "get",
	BlobPut:    "put",
	BlobLink:   "link",
	BlobAck:    "ack",
	BlobDelete: "delete",
}

// String returns the op's stable snake_case name, or "op(N)".
func (op BlobOp) String() string {
	if op > 0 && int(op) < len(blobOpNames) {
		return blobOpNames[op]
	}
	return fmt.Sprintf("op(%d)", int32(op))
}

// BlobRequest is one client request on BlobProtocol. Op says which fields
// it uses; every other field must be zero.
type BlobRequest struct {
	// ID numbers the request on its stream, from 1.
	ID uint64
	Op BlobOp
	// Hash is the blob's SHA-256 (every op).
	Hash attachment.Hash
	// Cap is a read capability (Get, Ack) or a write capability (Put,
	// Link, Delete).
	Cap attachment.Cap
	// ReadCapHash is SHA-256 of the reference's read capability (Put,
	// Link, Delete): the reference's name at the server.
	ReadCapHash attachment.Hash
	// Mailbox and Token: the mailbox whose blob quota a Put or Link is
	// charged to, and a deposit token of it. Or, for a group's blobs, Log,
	// Epoch and Token: the group log whose blob quota it is charged to,
	// one of its epochs the relay still keeps, and that epoch's token
	// (exactly one of Mailbox and Log is set).
	Mailbox MailboxID
	Log     GroupLogID
	Epoch   uint64
	Token   []byte
	// Size is the blob's size (Put, Link), 1 to attachment.MaxBlobSize.
	Size int64
	// Readers is how many readers' acks delete the reference (Put, Link),
	// 0 (meaning 1) to MaxBlobReaders.
	Readers uint32
}

type blobFields uint32

const (
	bqCap blobFields = 1 << iota
	bqReadCapHash
	bqMailbox
	bqToken
	bqSize
	bqReaders
	bqLog
	bqEpoch
)

var blobRequestFieldNames = [...]string{"cap", "read_cap_hash", "mailbox", "token", "size", "readers", "log", "epoch"}

// blobRequestFields lists, per op, the fields a request must and may hold
// besides its hash. A Put or Link holds exactly one of mailbox and log
// (Validate checks), and an epoch only with a log.
var blobRequestFields = map[BlobOp]struct{ required, optional blobFields }{
	BlobGet:    {bqCap, 0},
	BlobPut:    {bqCap | bqReadCapHash | bqToken | bqSize, bqReaders | bqMailbox | bqLog | bqEpoch},
	BlobLink:   {bqCap | bqReadCapHash | bqToken | bqSize, bqReaders | bqMailbox | bqLog | bqEpoch},
	BlobAck:    {bqCap, 0},
	BlobDelete: {bqCap | bqReadCapHash, 0},
}

func (r *BlobRequest) present() blobFields {
	var f blobFields
	set := func(b bool, x blobFields) {
		if b {
			f |= x
		}
	}
	set(r.Cap != attachment.Cap{}, bqCap)
	set(!r.ReadCapHash.IsZero(), bqReadCapHash)
	set(!r.Mailbox.IsZero(), bqMailbox)
	set(len(r.Token) > 0, bqToken)
	set(r.Size != 0, bqSize)
	set(r.Readers != 0, bqReaders)
	set(!r.Log.IsZero(), bqLog)
	set(r.Epoch != 0, bqEpoch)
	return f
}

// Validate checks r: a request op, its fields and no other, within limits.
func (r *BlobRequest) Validate() error {
	if r.ID == 0 {
		return fmt.Errorf("%w: blob request: id missing", ErrMalformed)
	}
	row, ok := blobRequestFields[r.Op]
	if !ok {
		return fmt.Errorf("%w: blob request: op %s is not a request", ErrMalformed, r.Op)
	}
	what := "blob " + r.Op.String()
	if r.Hash.IsZero() {
		return fmt.Errorf("%w: %s: hash missing", ErrMalformed, what)
	}
	f := r.present()
	if err := checkFields(f, row.required, row.optional, blobRequestFieldNames[:], what); err != nil {
		return err
	}
	if r.Op == BlobPut || r.Op == BlobLink {
		switch {
		case f&bqMailbox != 0 && f&bqLog != 0:
			return fmt.Errorf("%w: %s: both mailbox and log", ErrMalformed, what)
		case f&(bqMailbox|bqLog) == 0:
			return fmt.Errorf("%w: %s: mailbox or log missing", ErrMalformed, what)
		case f&bqEpoch != 0 && f&bqLog == 0:
			return fmt.Errorf("%w: %s: epoch without a log", ErrMalformed, what)
		}
	}
	if len(r.Token) > 0 {
		if err := checkBytes(r.Token, MinToken, MaxToken, what+": token"); err != nil {
			return err
		}
	}
	if r.Size < 0 || r.Size > attachment.MaxBlobSize {
		return fmt.Errorf("%w: %s: size %d, limit %d", ErrTooLarge, what, r.Size, attachment.MaxBlobSize)
	}
	if r.Readers > MaxBlobReaders {
		return fmt.Errorf("%w: %s: %d readers, limit %d", ErrTooLarge, what, r.Readers, MaxBlobReaders)
	}
	return nil
}

// Marshal returns the canonical encoding of r.
func (r *BlobRequest) Marshal() ([]byte, error) { return encode(nil, r) }

// Unmarshal decodes and validates b into r.
func (r *BlobRequest) Unmarshal(b []byte) error {
	var p pb.BlobRequest
	if err := decode(b, r.limit(), r.kind(), &p); err != nil {
		return err
	}
	if p.Size > attachment.MaxBlobSize {
		return fmt.Errorf("%w: blob request: size %d, limit %d", ErrTooLarge, p.Size, attachment.MaxBlobSize)
	}
	v := BlobRequest{ID: p.Id, Op: BlobOp(p.Op), Token: p.Token, Size: int64(p.Size), Readers: p.Readers, Epoch: p.Epoch}
	for _, f := range []struct {
		dst  []byte
		src  []byte
		what string
	}{
		{v.Hash[:], p.Hash, "hash"},
		{v.Cap[:], p.Cap, "cap"},
		{v.ReadCapHash[:], p.ReadCapHash, "read_cap_hash"},
		{v.Mailbox[:], p.Mailbox, "mailbox"},
		{v.Log[:], p.Log, "log"},
	} {
		if err := fixed(f.dst, f.src, true, "blob request: "+f.what); err != nil {
			return err
		}
	}
	if err := v.Validate(); err != nil {
		return err
	}
	*r = v
	return nil
}

func (r *BlobRequest) wire() proto.Message {
	return &pb.BlobRequest{
		Version:     Version,
		Id:          r.ID,
		Op:          pb.BlobOp(r.Op),
		Hash:        optional(r.Hash[:]),
		Cap:         optional(r.Cap[:]),
		ReadCapHash: optional(r.ReadCapHash[:]),
		Mailbox:     optional(r.Mailbox[:]),
		Token:       r.Token,
		Size:        uint64(max(r.Size, 0)),
		Readers:     r.Readers,
		Log:         optional(r.Log[:]),
		Epoch:       r.Epoch,
	}
}

func (r *BlobRequest) limit() int   { return MaxBlobFrame }
func (r *BlobRequest) kind() string { return "blob request" }

// BlobResponse answers one BlobRequest (same ID and Op), or, with ID and Op
// zero and an error code, a frame that did not decode (the server then
// resets the stream).
type BlobResponse struct {
	ID   uint64
	Op   BlobOp
	Code Code
	// Size is the blob's size (Get, CodeOK): its bytes follow.
	Size int64
	// StoredUntil is when the reference expires (Put, Link, CodeOK), Unix
	// milliseconds.
	StoredUntil int64
}

// Validate checks r: a known code, and the fields of its op and code.
func (r *BlobResponse) Validate() error {
	if err := r.Code.check(); err != nil {
		return fmt.Errorf("blob response: %w", err)
	}
	if r.Op == 0 {
		if r.ID != 0 || r.Code == CodeOK || r.Size != 0 || r.StoredUntil != 0 {
			return fmt.Errorf("%w: blob response: op missing", ErrMalformed)
		}
		return nil
	}
	if _, ok := blobRequestFields[r.Op]; !ok {
		return fmt.Errorf("%w: blob response: unknown op %s", ErrMalformed, r.Op)
	}
	what := "blob " + r.Op.String() + " response"
	if r.ID == 0 {
		return fmt.Errorf("%w: %s: id missing", ErrMalformed, what)
	}
	wantSize := r.Code == CodeOK && r.Op == BlobGet
	wantUntil := r.Code == CodeOK && (r.Op == BlobPut || r.Op == BlobLink)
	switch {
	case wantSize != (r.Size != 0):
		return fmt.Errorf("%w: %s: size %d with code %s", ErrMalformed, what, r.Size, r.Code)
	case wantUntil != (r.StoredUntil != 0):
		return fmt.Errorf("%w: %s: stored_until %d with code %s", ErrMalformed, what, r.StoredUntil, r.Code)
	case r.Size < 0 || r.Size > attachment.MaxBlobSize:
		return fmt.Errorf("%w: %s: size %d, limit %d", ErrTooLarge, what, r.Size, attachment.MaxBlobSize)
	}
	if wantUntil {
		if err := checkTime(r.StoredUntil, what+": stored_until"); err != nil {
			return err
		}
	}
	return nil
}

// Marshal returns the canonical encoding of r.
func (r *BlobResponse) Marshal() ([]byte, error) { return encode(nil, r) }

// Unmarshal decodes and validates b into r.
func (r *BlobResponse) Unmarshal(b []byte) error {
	var p pb.BlobResponse
	if err := decode(b, r.limit(), r.kind(), &p); err != nil {
		return err
	}
	if p.Size > attachment.MaxBlobSize {
		return fmt.Errorf("%w: blob response: size %d, limit %d", ErrTooLarge, p.Size, attachment.MaxBlobSize)
	}
	v := BlobResponse{ID: p.Id, Op: BlobOp(p.Op), Code: Code(p.Code), Size: int64(p.Size), StoredUntil: timeFromWire(p.StoredUntil)}
	if err := v.Validate(); err != nil {
		return err
	}
	*r = v
	return nil
}

func (r *BlobResponse) wire() proto.Message {
	return &pb.BlobResponse{
		Version:     Version,
		Id:          r.ID,
		Op:          pb.BlobOp(r.Op),
		Code:        pb.Code(r.Code),
		Size:        uint64(max(r.Size, 0)),
		StoredUntil: uint64(max(r.StoredUntil, 0)),
	}
}

func (r *BlobResponse) limit() int   { return MaxBlobFrame }
func (r *BlobResponse) kind() string { return "blob response" }

// Err returns nil for CodeOK and the sentinel of r's code otherwise.
func (r *BlobResponse) Err() error { return r.Code.Err() }
