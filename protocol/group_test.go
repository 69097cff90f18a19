package protocol

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sealpost/sealpost/protocol/internal/pb"
)

var (
	sampleLogID      = GroupLogID(pattern(32, 0xb0))
	sampleGroupToken = GroupToken(pattern(32, 0xb1))
)

// sampleEntry is the encoding of a GroupMessage of epoch and kind with a
// body of n bytes, as a log holds it.
func sampleEntry(t testing.TB, epoch uint64, kind GroupKind, n int) []byte {
	return marshal(t, &GroupMessage{Epoch: epoch, Kind: kind, Body: pattern(n, byte(kind))})
}

// groupSamples are valid group messages: one request per op, the responses
// of each op, and topic messages.
func groupSamples(t testing.TB) []struct {
	name string
	msg  Message
} {
	th := TokenHash(pattern(32, 0xd1))
	req := func(id uint64, op GroupLogOp, f func(r *GroupLogRequest)) *GroupLogRequest {
		r := &GroupLogRequest{ID: id, Op: op}
		r.Log = sampleLogID
		if op != GroupLogCreate {
			r.Token, r.Epoch = sampleGroupToken, 7
		}
		if f != nil {
			f(r)
		}
		return r
	}
	type s = struct {
		name string
		msg  Message
	}
	return []s{
		{"create", req(1, GroupLogCreate, func(r *GroupLogRequest) { r.TokenHash = th })},
		{"create at epoch 5", req(1, GroupLogCreate, func(r *GroupLogRequest) { r.TokenHash, r.Epoch = th, 5 })},
		{"append", req(2, GroupLogAppend, func(r *GroupLogRequest) { r.Entry = sampleEntry(t, 7, GroupApplication, 300) })},
		{"append at epoch 0", req(2, GroupLogAppend, func(r *GroupLogRequest) { r.Epoch, r.Entry = 0, sampleEntry(t, 0, GroupProposal, 300) })},
		{"append commit", req(3, GroupLogAppend, func(r *GroupLogRequest) {
			r.Commit, r.TokenHash, r.Entry = true, th, sampleEntry(t, 7, GroupCommit, 4000)
		})},
		{"append largest", req(1<<40, GroupLogAppend, func(r *GroupLogRequest) {
			r.Epoch = 1 << 60
			r.Entry = sampleEntry(t, r.Epoch, GroupWelcome, MaxGroupBody)
		})},
		{"fetch", req(4, GroupLogFetch, func(r *GroupLogRequest) { r.After, r.Limit = 99, 500 })},
		{"fetch all", req(4, GroupLogFetch, nil)},
		{"subscribe", req(5, GroupLogSubscribe, func(r *GroupLogRequest) { r.After = 100 })},

		{"create response", &GroupLogResponse{ID: 1, Op: GroupLogCreate, Code: CodeOK, Log: sampleLogID, Epoch: 5}},
		{"create refused", &GroupLogResponse{ID: 1, Op: GroupLogCreate, Code: CodeQuotaExceeded}},
		{"append response", &GroupLogResponse{ID: 2, Op: GroupLogAppend, Code: CodeOK, Epoch: 7, Seq: 101, StoredUntil: 1768435200000}},
		{"commit accepted", &GroupLogResponse{ID: 3, Op: GroupLogAppend, Code: CodeOK, Epoch: 8, Seq: 102, StoredUntil: 1768435200000}},
		{"commit refused", &GroupLogResponse{ID: 3, Op: GroupLogAppend, Code: CodeWrongEpoch, Epoch: 8}},
		{"append token refused", &GroupLogResponse{ID: 2, Op: GroupLogAppend, Code: CodeTokenRefused}},
		{"push", &GroupLogResponse{ID: 4, Op: GroupLogPush, Code: CodeOK, Seq: 101, Entry: sampleEntry(t, 7, GroupApplication, 300)}},
		{"push commit", &GroupLogResponse{ID: 4, Op: GroupLogPush, Code: CodeOK, Seq: 102, Commit: true, Entry: sampleEntry(t, 7, GroupCommit, 4000)}},
		{"push largest", &GroupLogResponse{ID: 1 << 62, Op: GroupLogPush, Code: CodeOK, Seq: 1 << 62, Entry: sampleEntry(t, 1<<60, GroupWelcome, MaxGroupBody)}},
		{"push head", &GroupLogResponse{ID: 5, Op: GroupLogPush, Code: CodeOK, Seq: 103}},
		{"push commit head", &GroupLogResponse{ID: 5, Op: GroupLogPush, Code: CodeOK, Seq: 104, Commit: true}},
		{"fetch response", &GroupLogResponse{ID: 4, Op: GroupLogFetch, Code: CodeOK, Epoch: 8, Seq: 102, More: true}},
		{"fetch response empty", &GroupLogResponse{ID: 4, Op: GroupLogFetch, Code: CodeOK}},
		{"fetch of an expired epoch", &GroupLogResponse{ID: 4, Op: GroupLogFetch, Code: CodeWrongEpoch, Epoch: 9}},
		{"subscribe response", &GroupLogResponse{ID: 5, Op: GroupLogSubscribe, Code: CodeOK, Epoch: 7, Seq: 102}},
		{"unknown log", &GroupLogResponse{ID: 5, Op: GroupLogSubscribe, Code: CodeUnknownLog}},
		{"frame error", &GroupLogResponse{Code: CodeTooLarge}},

		{"topic message", &GroupMessage{Epoch: 7, Kind: GroupApplication, Body: pattern(300, 1), Seqs: []uint64{101, 0}}},
		{"topic commit", &GroupMessage{Epoch: 7, Kind: GroupCommit, Body: pattern(4000, 2), Seqs: []uint64{102, 97}}},
		{"topic message largest", &GroupMessage{Epoch: 1 << 63, Kind: GroupProposal, Body: pattern(MaxGroupBody, 3), Seqs: []uint64{1 << 63, 1 << 63}}},

		{"receipt", &GroupReceipt{Group: GroupID(pattern(32, 0xc0)), Covers: []MessageID{MessageID(pattern(16, 1))}}},
		{"receipt largest", &GroupReceipt{Group: GroupID(pattern(32, 0xc0)), Covers: receiptIDs(MaxReceiptIDs)}},
	}
}

// receiptIDs returns n distinct message IDs with all 16 bytes set.
func receiptIDs(n int) []MessageID {
	ids := make([]MessageID, n)
	for i := range ids {
		for j := range ids[i] {
			ids[i][j] = 0xff
		}
		ids[i][0], ids[i][1] = byte(i>>8), byte(i)
	}
	return ids
}

func TestGroupRoundTrip(t *testing.T) {
	for _, s := range groupSamples(t) {
		t.Run(s.name, func(t *testing.T) {
			b := marshal(t, s.msg)
			if _, ok := s.msg.(*GroupReceipt); ok && len(b) > MaxGroupReceipt {
				t.Fatalf("%d bytes, over the receipt limit %d", len(b), MaxGroupReceipt)
			}
			if len(b) > MaxGroupLogFrame {
				t.Fatalf("%d bytes, over the frame limit %d", len(b), MaxGroupLogFrame)
			}
			if m, ok := s.msg.(*GroupMessage); ok && len(m.Seqs) == 0 && len(b) > MaxGroupEntry {
				t.Fatalf("entry of %d bytes, over the limit %d", len(b), MaxGroupEntry)
			}
			got := newLike(s.msg)
			if err := got.Unmarshal(b); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(got, s.msg) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, s.msg)
			}
			for i := range b {
				b[i] ^= 0xff
			}
			if !reflect.DeepEqual(got, s.msg) {
				t.Error("decoded value changed with its input buffer")
			}
		})
	}
}

// TestGroupValidate breaks one rule at a time; the broken value must fail
// Validate and Marshal, and its encoding (made without validation) must
// fail Unmarshal, with the same sentinel.
func TestGroupValidate(t *testing.T) {
	good := func(op GroupLogOp, commit bool) *GroupLogRequest {
		for _, s := range groupSamples(t) {
			if r, ok := s.msg.(*GroupLogRequest); ok && r.Op == op && r.Commit == commit {
				c := *r
				return &c
			}
		}
		t.Fatalf("no sample of %s", op)
		return nil
	}
	type tc struct {
		name string
		msg  Message
		want error
	}
	var cases []tc
	add := func(name string, want error, m Message) { cases = append(cases, tc{name, m, want}) }

	r := good(GroupLogAppend, false)
	r.ID = 0
	add("request id missing", ErrMalformed, r)
	r = good(GroupLogAppend, false)
	r.Op = GroupLogPush
	add("request with a relay op", ErrMalformed, r)
	r = good(GroupLogAppend, false)
	r.Op = 42
	add("unknown op", ErrMalformed, r)
	r = good(GroupLogAppend, false)
	r.Token = GroupToken{}
	add("append without token", ErrMalformed, r)
	r = good(GroupLogAppend, false)
	r.Log = GroupLogID{}
	add("append without log", ErrMalformed, r)
	r = good(GroupLogAppend, false)
	r.Entry = nil
	add("append without entry", ErrMalformed, r)
	r = good(GroupLogAppend, false)
	r.TokenHash = TokenHash(pattern(32, 1))
	add("application with a next token", ErrMalformed, r)
	r = good(GroupLogAppend, true)
	r.TokenHash = TokenHash{}
	add("commit without a next token", ErrMalformed, r)
	r = good(GroupLogAppend, true)
	r.Epoch = ^uint64(0)
	r.Entry = sampleEntry(t, r.Epoch, GroupCommit, 10)
	add("commit of the last epoch", ErrMalformed, r)
	r = good(GroupLogAppend, false)
	r.Epoch = 8
	add("entry of another epoch", ErrMalformed, r)
	r = good(GroupLogAppend, false)
	r.Entry = sampleEntry(t, 7, GroupCommit, 10)
	add("commit entry not marked", ErrMalformed, r)
	r = good(GroupLogAppend, true)
	r.Entry = sampleEntry(t, 7, GroupApplication, 10)
	add("marked entry not a commit", ErrMalformed, r)
	r = good(GroupLogAppend, false)
	r.Entry = marshal(t, &GroupMessage{Epoch: 7, Kind: GroupApplication, Body: []byte{1}, Seqs: []uint64{3}})
	add("entry with sequence numbers", ErrMalformed, r)
	r = good(GroupLogAppend, false)
	r.Entry = pattern(100, 0x42)
	add("entry not a group message", ErrMalformed, r)
	r = good(GroupLogAppend, false)
	r.Entry = make([]byte, MaxGroupEntry+1)
	add("entry too large", ErrTooLarge, r)
	r = good(GroupLogAppend, false)
	r.After = 3
	add("append with after", ErrMalformed, r)
	r = good(GroupLogCreate, false)
	r.TokenHash = TokenHash{}
	add("create without token hash", ErrMalformed, r)
	r = good(GroupLogCreate, false)
	r.Log = GroupLogID{}
	add("create without log", ErrMalformed, r)
	r = good(GroupLogCreate, false)
	r.Token = sampleGroupToken
	add("create with token", ErrMalformed, r)
	r = good(GroupLogFetch, false)
	r.Limit = MaxFetchLimit + 1
	add("fetch limit", ErrTooLarge, r)
	r = good(GroupLogFetch, false)
	r.Token = GroupToken{}
	add("fetch without token", ErrMalformed, r)
	r = good(GroupLogSubscribe, false)
	r.Limit = 5
	add("subscribe with limit", ErrMalformed, r)
	r = good(GroupLogSubscribe, false)
	r.Commit = true
	add("subscribe with commit", ErrMalformed, r)

	entry := sampleEntry(t, 7, GroupApplication, 10)
	add("response code missing", ErrMalformed, &GroupLogResponse{ID: 1, Op: GroupLogFetch})
	add("response unknown code", ErrMalformed, &GroupLogResponse{ID: 1, Op: GroupLogFetch, Code: 79})
	add("response id missing", ErrMalformed, &GroupLogResponse{Op: GroupLogAppend, Code: CodeTokenRefused})
	add("push refused", ErrMalformed, &GroupLogResponse{ID: 1, Op: GroupLogPush, Code: CodeInternal})
	add("push without seq", ErrMalformed, &GroupLogResponse{ID: 1, Op: GroupLogPush, Code: CodeOK, Entry: entry})
	add("push of a non-entry", ErrMalformed, &GroupLogResponse{ID: 1, Op: GroupLogPush, Code: CodeOK, Seq: 1, Entry: pattern(50, 0x42)})
	add("push of a commit not marked", ErrMalformed, &GroupLogResponse{ID: 1, Op: GroupLogPush, Code: CodeOK, Seq: 1, Entry: sampleEntry(t, 7, GroupCommit, 10)})
	add("push marked, not a commit", ErrMalformed, &GroupLogResponse{ID: 1, Op: GroupLogPush, Code: CodeOK, Seq: 1, Commit: true, Entry: entry})
	add("push too large", ErrTooLarge, &GroupLogResponse{ID: 1, Op: GroupLogPush, Code: CodeOK, Seq: 1, Entry: make([]byte, MaxGroupEntry+1)})
	add("append without stored_until", ErrMalformed, &GroupLogResponse{ID: 1, Op: GroupLogAppend, Code: CodeOK, Seq: 1})
	add("append time out of range", ErrMalformed, &GroupLogResponse{ID: 1, Op: GroupLogAppend, Code: CodeOK, Seq: 1, StoredUntil: MaxUnixMilli + 1})
	add("create without log", ErrMalformed, &GroupLogResponse{ID: 1, Op: GroupLogCreate, Code: CodeOK})
	add("error with fields", ErrMalformed, &GroupLogResponse{ID: 1, Op: GroupLogAppend, Code: CodeWrongEpoch, Seq: 3})
	add("frame error with id", ErrMalformed, &GroupLogResponse{ID: 1, Code: CodeMalformed})
	add("frame error ok", ErrMalformed, &GroupLogResponse{Code: CodeOK})
	add("more on a subscribe", ErrMalformed, &GroupLogResponse{ID: 1, Op: GroupLogSubscribe, Code: CodeOK, More: true})

	add("message kind 0", ErrMalformed, &GroupMessage{Epoch: 1, Body: []byte{1}})
	add("message kind 5", ErrMalformed, &GroupMessage{Epoch: 1, Kind: 5, Body: []byte{1}})
	add("message without body", ErrMalformed, &GroupMessage{Epoch: 1, Kind: GroupApplication})
	add("message body too large", ErrTooLarge, &GroupMessage{Epoch: 1, Kind: GroupApplication, Body: make([]byte, MaxGroupBody+1)})
	add("message with three seqs", ErrTooLarge, &GroupMessage{Epoch: 1, Kind: GroupApplication, Body: []byte{1}, Seqs: []uint64{1, 2, 3}})

	gid := GroupID(pattern(32, 0xc0))
	add("receipt without group", ErrMalformed, &GroupReceipt{Covers: receiptIDs(1)})
	add("receipt covering nothing", ErrMalformed, &GroupReceipt{Group: gid})
	add("receipt covering a zero ID", ErrMalformed, &GroupReceipt{Group: gid, Covers: append(receiptIDs(1), MessageID{})})
	add("receipt covering too many", ErrTooLarge, &GroupReceipt{Group: gid, Covers: receiptIDs(MaxReceiptIDs + 1)})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkRefused(t, c.msg, c.want) })
	}
}

// TestGroupDecodeWire covers what only an encoding can break.
func TestGroupDecodeWire(t *testing.T) {
	ap := &GroupLogRequest{ID: 1, Op: GroupLogFetch, Log: sampleLogID, Token: sampleGroupToken}
	w := ap.wire().(*pb.GroupLogRequest)
	short := proto.Clone(w).(*pb.GroupLogRequest)
	short.Token = short.Token[:31]
	zero := proto.Clone(w).(*pb.GroupLogRequest)
	zero.Log = make([]byte, 32)
	cases := []struct {
		name string
		into Message
		b    []byte
		want error
	}{
		{"token short", new(GroupLogRequest), marshalRaw(t, short), ErrMalformed},
		{"log zero", new(GroupLogRequest), marshalRaw(t, zero), ErrMalformed},
		{"version 2", new(GroupLogRequest), marshalRaw(t, &pb.GroupLogRequest{Version: 2, Id: 1}), ErrUnsupportedVersion},
		{"response log short", new(GroupLogResponse), marshalRaw(t, &pb.GroupLogResponse{Version: 1, Id: 1, Op: pb.GroupLogOp_GROUP_LOG_OP_CREATE, Code: 1, Log: pattern(31, 1)}), ErrMalformed},
		{"kind beyond a byte", new(GroupMessage), marshalRaw(t, &pb.GroupMessage{Version: 1, Kind: 257, Body: []byte{1}}), ErrMalformed},
		{"message over its limit", new(GroupMessage), make([]byte, MaxGroupMessage+1), ErrTooLarge},
		{"receipt ID short", new(GroupReceipt), marshalRaw(t, &pb.GroupReceipt{Version: 1, Group: pattern(32, 1), Covers: [][]byte{pattern(15, 1)}}), ErrMalformed},
		{"receipt over its limit", new(GroupReceipt), make([]byte, MaxGroupReceipt+1), ErrTooLarge},
		{"over the frame limit", new(GroupLogRequest), make([]byte, MaxGroupLogFrame+1), ErrTooLarge},
	}
	if err := new(GroupLogRequest).Unmarshal(marshalRaw(t, w)); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.into.Unmarshal(c.b); !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestGroupToken(t *testing.T) {
	tok := sampleGroupToken
	if !tok.Equal(GroupToken(pattern(32, 0xb1))) || tok.Equal(GroupToken(pattern(32, 0xb2))) {
		t.Error("Equal")
	}
	if tok.Hash() != sha256.Sum256(tok[:]) {
		t.Error("Hash is not SHA-256 of the token")
	}
	for _, s := range []string{tok.String(), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok)} {
		if strings.Contains(s, "b1b1") || strings.Contains(s, "177") {
			t.Errorf("token printed: %s", s)
		}
	}
}

func TestGroupTopic(t *testing.T) {
	a, err := GroupTopic(pattern(GroupTopicSecretSize, 1))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GroupTopic(pattern(GroupTopicSecretSize, 2))
	if a == b || !strings.HasPrefix(a, GroupTopicPrefix) {
		t.Errorf("topics %q, %q", a, b)
	}
	if _, err := GroupTopic(pattern(GroupTopicSecretSize+1, 1)); !errors.Is(err, ErrMalformed) {
		t.Errorf("long secret: %v", err)
	}
}

// TestGroupGolden freezes the group messages.
func TestGroupGolden(t *testing.T) {
	cases := []struct {
		file string
		msg  Message
	}{
		{"group-create.hex", &GroupLogRequest{ID: 1, Op: GroupLogCreate, Log: sampleLogID, TokenHash: sampleGroupToken.Hash()}},
		{"group-append-commit.hex", &GroupLogRequest{ID: 3, Op: GroupLogAppend, Log: sampleLogID, Epoch: 7, Token: sampleGroupToken,
			Commit: true, TokenHash: TokenHash(pattern(32, 0xd1)), Entry: sampleEntry(t, 7, GroupCommit, 40)}},
		{"group-wrong-epoch.hex", &GroupLogResponse{ID: 3, Op: GroupLogAppend, Code: CodeWrongEpoch, Epoch: 8}},
		{"group-push.hex", &GroupLogResponse{ID: 4, Op: GroupLogPush, Code: CodeOK, Seq: 101, Entry: sampleEntry(t, 7, GroupApplication, 40)}},
		{"group-message.hex", &GroupMessage{Epoch: 7, Kind: GroupApplication, Body: pattern(40, 1), Seqs: []uint64{101, 0}}},
		{"group-receipt.hex", &GroupReceipt{Group: GroupID(pattern(32, 0xc0)), Covers: []MessageID{MessageID(pattern(16, 1)), MessageID(pattern(16, 2))}}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			b := marshal(t, c.msg)
			path := filepath.Join("testdata", "golden", c.file)
			if *update {
				writeGolden(t, path, hexLines(b))
			}
			if want := readHex(t, path); !bytes.Equal(b, want) {
				t.Fatalf("encoding changed:\n got %x\nwant %x", b, want)
			}
		})
	}
}

func fuzzGroup(f *testing.F, zero func() Message) {
	kind := zero().kind()
	for _, s := range groupSamples(f) {
		if s.msg.kind() == kind {
			f.Add(marshal(f, s.msg))
		}
	}
	fuzzMessage(f, zero)
}

func FuzzGroupLogRequest(f *testing.F) {
	fuzzGroup(f, func() Message { return new(GroupLogRequest) })
}

func FuzzGroupLogResponse(f *testing.F) {
	fuzzGroup(f, func() Message { return new(GroupLogResponse) })
}

func FuzzGroupMessage(f *testing.F) { fuzzGroup(f, func() Message { return new(GroupMessage) }) }
func FuzzGroupReceipt(f *testing.F) { fuzzGroup(f, func() Message { return new(GroupReceipt) }) }
