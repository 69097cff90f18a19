package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"testing"

	xhkdf "golang.org/x/crypto/hkdf"
	"google.golang.org/protobuf/proto"

	"github.com/sealpost/sealpost/crypto/seal"
	"github.com/sealpost/sealpost/protocol/internal/pb"
)

// sampleEnvelope is a well-formed envelope header for mailbox in a bucket of
// size n (the relay never looks past the header).
func sampleEnvelope(n int, mailbox MailboxID) []byte {
	env := pattern(n, 0x11)
	env[0] = seal.Version
	copy(env[1:], mailbox[:])
	return env
}

var (
	sampleMailboxID = MailboxID(pattern(32, 0xa0))
	sampleChallenge = Challenge(pattern(32, 0x5c))
	sampleSig       = pattern(64, 0x77)
)

// relaySamples are valid relay messages: one request per op, and the
// responses of each op.
func relaySamples() []struct {
	name string
	msg  Message
} {
	mb := sampleMailboxID
	ch := sampleChallenge
	th := TokenHash(pattern(32, 0xd0))
	req := func(id uint64, op RelayOp, f func(r *RelayRequest)) *RelayRequest {
		r := &RelayRequest{ID: id, Op: op}
		if op.Owner() {
			r.Challenge, r.Signature = ch, sampleSig
		}
		if op != RelayChallenge && op != RelayCreate {
			r.Mailbox = mb
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
		{"challenge", req(1, RelayChallenge, nil)},
		{"create", req(2, RelayCreate, func(r *RelayRequest) {
			r.OwnerKey, r.SealingKey = OwnerKey(pattern(32, 0x01)), SealingKey(pattern(32, 0xc0))
		})},
		{"register token", req(3, RelayRegisterToken, func(r *RelayRequest) { r.TokenHash, r.Count, r.Bytes = th, 100, 1<<20 })},
		{"register token default quota", req(3, RelayRegisterToken, func(r *RelayRequest) { r.TokenHash = th })},
		{"revoke token", req(4, RelayRevokeToken, func(r *RelayRequest) { r.TokenHash = th })},
		{"deposit", req(5, RelayDeposit, func(r *RelayRequest) { r.Token, r.Envelope = pattern(16, 0xe0), sampleEnvelope(512, mb) })},
		{"deposit largest", req(1<<40, RelayDeposit, func(r *RelayRequest) {
			r.Token, r.Envelope = pattern(MaxToken, 0xe0), sampleEnvelope(MaxEnvelope, mb)
		})},
		{"fetch", req(6, RelayFetch, func(r *RelayRequest) { r.After, r.Limit = 41, 100 })},
		{"fetch all", req(6, RelayFetch, nil)},
		{"subscribe", req(7, RelaySubscribe, func(r *RelayRequest) { r.After = 9 })},
		{"ack", req(8, RelayAck, func(r *RelayRequest) { r.Seqs = []uint64{1, 2, 300, 1 << 50} })},
		{"delete mailbox", req(9, RelayDeleteMailbox, nil)},
		{"put card", req(10, RelayPutCard, func(r *RelayRequest) { r.TokenHash, r.Blob = th, pattern(3000, 0x21) })},
		{"get card", req(11, RelayGetCard, func(r *RelayRequest) { r.Token = pattern(16, 0xe0) })},
		{"put prekeys", req(12, RelayPutPrekeys, func(r *RelayRequest) {
			r.Blobs, r.ExpiresAt = [][]byte{pattern(1340, 1), pattern(1340, 2)}, 1767225600000
		})},
		{"put prekeys largest", req(12, RelayPutPrekeys, func(r *RelayRequest) {
			for i := range MaxPrekeyBatch {
				r.Blobs = append(r.Blobs, pattern(MaxPrekeyBlob, byte(i)))
			}
			r.ExpiresAt = MaxUnixMilli
		})},
		{"take prekey", req(13, RelayTakePrekey, func(r *RelayRequest) { r.Token = pattern(16, 0xe0) })},

		{"hello", &RelayResponse{Op: RelayHello, Code: CodeOK, Challenge: ch}},
		{"challenge response", &RelayResponse{ID: 1, Op: RelayChallenge, Code: CodeOK, Challenge: ch}},
		{"create response", &RelayResponse{ID: 2, Op: RelayCreate, Code: CodeOK, Challenge: ch, Mailbox: mb, Count: 10000, Bytes: 64 << 20}},
		{"create refused", &RelayResponse{ID: 2, Op: RelayCreate, Code: CodeTooManyMailboxes, Challenge: ch}},
		{"register token response", &RelayResponse{ID: 3, Op: RelayRegisterToken, Code: CodeOK, Challenge: ch, Count: 100, Bytes: 1 << 20}},
		{"revoke token response", &RelayResponse{ID: 4, Op: RelayRevokeToken, Code: CodeOK, Challenge: ch}},
		{"receipt", &RelayResponse{ID: 5, Op: RelayDeposit, Code: CodeOK, StoredUntil: 1768435200000, Signature: sampleSig}},
		{"deposit refused", &RelayResponse{ID: 5, Op: RelayDeposit, Code: CodeTokenQuota}},
		{"push", &RelayResponse{ID: 6, Op: RelayPush, Code: CodeOK, Seq: 42, Envelope: sampleEnvelope(2048, mb), Prekeys: 7}},
		{"push largest", &RelayResponse{ID: 1 << 62, Op: RelayPush, Code: CodeOK, Seq: 1 << 62, Envelope: sampleEnvelope(MaxEnvelope, mb), Prekeys: 1 << 62}},
		{"fetch response", &RelayResponse{ID: 6, Op: RelayFetch, Code: CodeOK, Challenge: ch, Seq: 42, Count: 3, Bytes: 4096, Prekeys: 7, More: true}},
		{"fetch response empty", &RelayResponse{ID: 6, Op: RelayFetch, Code: CodeOK, Challenge: ch}},
		{"fetch refused", &RelayResponse{ID: 6, Op: RelayFetch, Code: CodeBadSignature, Challenge: ch}},
		{"subscribe response", &RelayResponse{ID: 7, Op: RelaySubscribe, Code: CodeOK, Challenge: ch, Count: 1, Bytes: 512, Prekeys: 3}},
		{"subscription ended", &RelayResponse{ID: 7, Op: RelaySubscribe, Code: CodeSubscriptionEnded}},
		{"ack response", &RelayResponse{ID: 8, Op: RelayAck, Code: CodeOK, Challenge: ch}},
		{"delete mailbox response", &RelayResponse{ID: 9, Op: RelayDeleteMailbox, Code: CodeOK, Challenge: ch}},
		{"put card response", &RelayResponse{ID: 10, Op: RelayPutCard, Code: CodeOK, Challenge: ch}},
		{"get card response", &RelayResponse{ID: 11, Op: RelayGetCard, Code: CodeOK, Blob: pattern(MaxCardBlob, 0x21)}},
		{"get card refused", &RelayResponse{ID: 11, Op: RelayGetCard, Code: CodeTokenRefused}},
		{"put prekeys response", &RelayResponse{ID: 12, Op: RelayPutPrekeys, Code: CodeOK, Challenge: ch, StoredUntil: 1767225600000, Prekeys: 34}},
		{"take prekey response", &RelayResponse{ID: 13, Op: RelayTakePrekey, Code: CodeOK, Blob: pattern(MaxPrekeyBlob, 1)}},
		{"take prekey none left", &RelayResponse{ID: 13, Op: RelayTakePrekey, Code: CodeNotFound}},
		{"frame error", &RelayResponse{Code: CodeTooLarge}},
	}
}

func TestRelayRoundTrip(t *testing.T) {
	for _, s := range relaySamples() {
		t.Run(s.name, func(t *testing.T) {
			b := marshal(t, s.msg)
			if len(b) > MaxRelayFrame {
				t.Fatalf("%d bytes, over the frame limit %d", len(b), MaxRelayFrame)
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

// TestRelayValidate breaks one rule at a time; the broken value must fail
// Validate and Marshal, and its encoding (made without validation) must
// fail Unmarshal, with the same sentinel.
func TestRelayValidate(t *testing.T) {
	mb := sampleMailboxID
	good := func(op RelayOp) *RelayRequest {
		for _, s := range relaySamples() {
			if r, ok := s.msg.(*RelayRequest); ok && r.Op == op {
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

	r := good(RelayDeposit)
	r.ID = 0
	add("request id missing", ErrMalformed, r)
	r = good(RelayDeposit)
	r.Op = RelayPush
	add("request with a relay op", ErrMalformed, r)
	r = good(RelayDeposit)
	r.Op = 99
	add("unknown op", ErrMalformed, r)
	r = good(RelayDeposit)
	r.Token = nil
	add("deposit without token", ErrMalformed, r)
	r = good(RelayDeposit)
	r.Token = pattern(MinToken-1, 1)
	add("short token", ErrMalformed, r)
	r = good(RelayDeposit)
	r.Token = pattern(MaxToken+1, 1)
	add("long token", ErrTooLarge, r)
	r = good(RelayDeposit)
	r.Envelope = sampleEnvelope(513, mb)
	add("envelope not a bucket", ErrMalformed, r)
	r = good(RelayDeposit)
	r.Envelope = sampleEnvelope(512, MailboxID(pattern(32, 1)))
	add("envelope for another mailbox", ErrMalformed, r)
	r = good(RelayDeposit)
	r.Envelope[0] = 2
	add("envelope of another version", ErrMalformed, r)
	r = good(RelayDeposit)
	r.Envelope = sampleEnvelope(MaxEnvelope+512, mb)
	add("envelope too large", ErrTooLarge, r)
	r = good(RelayDeposit)
	r.Challenge = sampleChallenge
	add("deposit with challenge", ErrMalformed, r)
	r = good(RelayDeposit)
	r.Mailbox = MailboxID{}
	add("deposit without mailbox", ErrMalformed, r)
	r = good(RelayFetch)
	r.Signature = nil
	add("owner op without signature", ErrMalformed, r)
	r = good(RelayFetch)
	r.Challenge = Challenge{}
	add("owner op without challenge", ErrMalformed, r)
	r = good(RelayFetch)
	r.Signature = pattern(63, 1)
	add("short signature", ErrMalformed, r)
	r = good(RelayFetch)
	r.Limit = MaxFetchLimit + 1
	add("fetch limit", ErrTooLarge, r)
	r = good(RelayFetch)
	r.Token = pattern(16, 1)
	add("fetch with token", ErrMalformed, r)
	r = good(RelaySubscribe)
	r.Limit = 5
	add("subscribe with limit", ErrMalformed, r)
	r = good(RelayAck)
	r.Seqs = []uint64{3, 3}
	add("ack seqs repeated", ErrMalformed, r)
	r = good(RelayAck)
	r.Seqs = []uint64{0, 3}
	add("ack seq zero", ErrMalformed, r)
	r = good(RelayAck)
	r.Seqs = make([]uint64, MaxAckSeqs+1)
	for i := range r.Seqs {
		r.Seqs[i] = uint64(i + 1)
	}
	add("ack too many", ErrTooLarge, r)
	r = good(RelayCreate)
	r.SealingKey = SealingKey{}
	add("create without sealing key", ErrMalformed, r)
	r = good(RelayCreate)
	r.Mailbox = mb
	add("create with mailbox", ErrMalformed, r)
	r = good(RelayPutCard)
	r.Blob = make([]byte, MaxCardBlob+1)
	add("card blob too large", ErrTooLarge, r)
	r = good(RelayPutPrekeys)
	r.Blobs = append(r.Blobs, nil)
	add("empty prekey blob", ErrMalformed, r)
	r = good(RelayPutPrekeys)
	r.Blobs[0] = make([]byte, MaxPrekeyBlob+1)
	add("prekey blob too large", ErrTooLarge, r)
	r = good(RelayPutPrekeys)
	r.Blobs = make([][]byte, MaxPrekeyBatch+1)
	for i := range r.Blobs {
		r.Blobs[i] = []byte{1}
	}
	add("prekey batch too large", ErrTooLarge, r)
	r = good(RelayPutPrekeys)
	r.ExpiresAt = 0
	add("prekeys without expiry", ErrMalformed, r)
	r = good(RelayPutPrekeys)
	r.ExpiresAt = MaxUnixMilli + 1
	add("prekeys expiry out of range", ErrMalformed, r)
	r = good(RelayTakePrekey)
	r.Blob = []byte{1}
	add("take prekey with blob", ErrMalformed, r)

	ch := sampleChallenge
	add("response code missing", ErrMalformed, &RelayResponse{ID: 1, Op: RelayChallenge, Challenge: ch})
	add("response unknown code", ErrMalformed, &RelayResponse{ID: 1, Op: RelayChallenge, Code: 63, Challenge: ch})
	add("hello with id", ErrMalformed, &RelayResponse{ID: 1, Op: RelayHello, Code: CodeOK, Challenge: ch})
	add("hello without challenge", ErrMalformed, &RelayResponse{Op: RelayHello, Code: CodeOK})
	add("response id missing", ErrMalformed, &RelayResponse{Op: RelayDeposit, Code: CodeTokenRefused})
	add("push refused", ErrMalformed, &RelayResponse{ID: 1, Op: RelayPush, Code: CodeInternal})
	add("push without envelope", ErrMalformed, &RelayResponse{ID: 1, Op: RelayPush, Code: CodeOK, Seq: 1})
	add("push of a non-envelope", ErrMalformed, &RelayResponse{ID: 1, Op: RelayPush, Code: CodeOK, Seq: 1, Envelope: pattern(100, 1)})
	add("push too large", ErrTooLarge, &RelayResponse{ID: 1, Op: RelayPush, Code: CodeOK, Seq: 1, Envelope: sampleEnvelope(MaxEnvelope+512, mb)})
	add("receipt without signature", ErrMalformed, &RelayResponse{ID: 1, Op: RelayDeposit, Code: CodeOK, StoredUntil: 1})
	add("receipt short signature", ErrMalformed, &RelayResponse{ID: 1, Op: RelayDeposit, Code: CodeOK, StoredUntil: 1, Signature: pattern(32, 1)})
	add("receipt time out of range", ErrMalformed, &RelayResponse{ID: 1, Op: RelayDeposit, Code: CodeOK, StoredUntil: MaxUnixMilli + 1, Signature: sampleSig})
	add("error with fields", ErrMalformed, &RelayResponse{ID: 1, Op: RelayDeposit, Code: CodeStoreFull, StoredUntil: 1})
	add("error of a non-owner op with challenge", ErrMalformed, &RelayResponse{ID: 1, Op: RelayDeposit, Code: CodeStoreFull, Challenge: ch})
	add("owner op without challenge", ErrMalformed, &RelayResponse{ID: 1, Op: RelayAck, Code: CodeOK})
	add("create without mailbox", ErrMalformed, &RelayResponse{ID: 1, Op: RelayCreate, Code: CodeOK, Challenge: ch})
	add("frame error with id", ErrMalformed, &RelayResponse{ID: 1, Code: CodeMalformed})
	add("frame error ok", ErrMalformed, &RelayResponse{Code: CodeOK})
	add("prekey blob too large", ErrTooLarge, &RelayResponse{ID: 1, Op: RelayTakePrekey, Code: CodeOK, Blob: make([]byte, MaxPrekeyBlob+1)})
	add("card blob too large", ErrTooLarge, &RelayResponse{ID: 1, Op: RelayGetCard, Code: CodeOK, Blob: make([]byte, MaxCardBlob+1)})
	add("more on a subscribe", ErrMalformed, &RelayResponse{ID: 1, Op: RelaySubscribe, Code: CodeOK, Challenge: ch, More: true})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.msg.Validate(); !errors.Is(err, c.want) {
				t.Fatalf("Validate: %v, want %v", err, c.want)
			}
			if _, err := c.msg.Marshal(); !errors.Is(err, c.want) {
				t.Fatalf("Marshal: %v, want %v", err, c.want)
			}
			b := marshalRaw(t, c.msg.wire())
			if err := newLike(c.msg).Unmarshal(b); !errors.Is(err, c.want) {
				t.Fatalf("Unmarshal: %v, want %v", err, c.want)
			}
		})
	}
}

// TestRelayOwnerSignature: a signature covers the relay, the challenge, the
// op and each of its fields; changing any of them breaks it.
func TestRelayOwnerSignature(t *testing.T) {
	owner := ed25519.NewKeyFromSeed(pattern(32, 0x99))
	var ok OwnerKey
	copy(ok[:], owner.Public().(ed25519.PublicKey))
	relay := ed25519Peer(0x90)
	for _, s := range relaySamples() {
		r0, isReq := s.msg.(*RelayRequest)
		if !isReq || !r0.Op.Owner() {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			r := *r0
			if r.Op == RelayCreate {
				r.OwnerKey = ok
			}
			if err := r.SignOwner(relay, owner); err != nil {
				t.Fatal(err)
			}
			if !r.VerifyOwner(relay, ok) {
				t.Fatal("signature does not verify")
			}
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			if r.VerifyOwner(ed25519Peer(0x91), ok) {
				t.Error("verifies for another relay")
			}
			if r.VerifyOwner(relay, OwnerKey(pattern(32, 3))) {
				t.Error("verifies for another key")
			}
			mutations := map[string]func(*RelayRequest){
				"challenge": func(r *RelayRequest) { r.Challenge[0] ^= 1 },
				"op":        func(r *RelayRequest) { r.Op = RelayDeleteMailbox + RelayFetch - r.Op },
				"mailbox":   func(r *RelayRequest) { r.Mailbox[31] ^= 1 },
				"owner key": func(r *RelayRequest) { r.OwnerKey[0] ^= 1 },
				"sealing":   func(r *RelayRequest) { r.SealingKey[0] ^= 1 },
				"token":     func(r *RelayRequest) { r.TokenHash[5] ^= 1 },
				"count":     func(r *RelayRequest) { r.Count++ },
				"bytes":     func(r *RelayRequest) { r.Bytes++ },
				"after":     func(r *RelayRequest) { r.After++ },
				"limit":     func(r *RelayRequest) { r.Limit++ },
				"seqs":      func(r *RelayRequest) { r.Seqs = append(append([]uint64(nil), r.Seqs...), 1<<60) },
				"blob":      func(r *RelayRequest) { r.Blob = append(append([]byte(nil), r.Blob...), 1) },
				"blobs":     func(r *RelayRequest) { r.Blobs = append(append([][]byte(nil), r.Blobs...), []byte{1}) },
				"expiry":    func(r *RelayRequest) { r.ExpiresAt++ },
			}
			changed := 0
			for name, m := range mutations {
				c := r
				m(&c)
				if err := c.Validate(); err != nil {
					continue // a field this op does not have
				}
				changed++
				if c.VerifyOwner(relay, ok) {
					t.Errorf("still verifies after changing the %s", name)
				}
			}
			if changed < 2 {
				t.Errorf("only %d mutations apply", changed)
			}
		})
	}
	d := &RelayRequest{ID: 1, Op: RelayDeposit}
	if err := d.SignOwner(relay, owner); !errors.Is(err, ErrMalformed) {
		t.Errorf("signing a deposit: %v", err)
	}
}

func TestReceipt(t *testing.T) {
	key := ed25519.NewKeyFromSeed(pattern(32, 0x42))
	relay, err := PeerIDFromEd25519(key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	r := Receipt{Relay: relay, Mailbox: sampleMailboxID, Envelope: EnvelopeHash(sampleEnvelope(512, sampleMailboxID)), StoredUntil: 1768435200000}
	m, err := r.SignedMessage()
	if err != nil {
		t.Fatal(err)
	}
	r.Signature = ed25519.Sign(key, m)
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(*Receipt){
		"mailbox":      func(r *Receipt) { r.Mailbox[0] ^= 1 },
		"envelope":     func(r *Receipt) { r.Envelope[0] ^= 1 },
		"stored until": func(r *Receipt) { r.StoredUntil++ },
		"signature":    func(r *Receipt) { r.Signature = append([]byte{r.Signature[0] ^ 1}, r.Signature[1:]...) },
		"relay":        func(r *Receipt) { r.Relay = ed25519Peer(0x90) },
	} {
		c := r
		f(&c)
		if err := c.Verify(); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s changed: %v", name, err)
		}
	}
	c := r
	c.Relay = sha256Peer(1)
	if err := c.Verify(); !errors.Is(err, ErrMalformed) {
		t.Errorf("non-Ed25519 relay: %v", err)
	}
	c = r
	c.StoredUntil = 0
	if err := c.Verify(); !errors.Is(err, ErrMalformed) {
		t.Errorf("no stored_until: %v", err)
	}
}

// TestInviteToken checks the derivation against golang.org/x/crypto's HKDF
// (TestRelayGolden freezes a value) and that it depends on the mailbox.
func TestInviteToken(t *testing.T) {
	s := InviteSecret(pattern(16, 0x70))
	got := InviteToken(s, sampleMailboxID)
	want := make([]byte, InviteTokenSize)
	info := append([]byte("sealpost/v1/invite-token\x00"), sampleMailboxID[:]...)
	if _, err := io.ReadFull(xhkdf.New(sha256.New, s[:], nil, info), want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("InviteToken = %x, HKDF gives %x", got, want)
	}
	if bytes.Equal(got, InviteToken(s, MailboxID(pattern(32, 0xa1)))) {
		t.Error("same token for two mailboxes")
	}
	if bytes.Equal(got, InviteToken(InviteSecret(pattern(16, 0x71)), sampleMailboxID)) {
		t.Error("same token for two secrets")
	}
	if HashToken(got) == HashToken(InviteToken(s, MailboxID(pattern(32, 0xa1)))) {
		t.Error("hash collision")
	}
}

// TestRelayGolden freezes the relay messages and signed encodings.
func TestRelayGolden(t *testing.T) {
	owner := ed25519.NewKeyFromSeed(pattern(32, 0x99))
	relayKey := ed25519.NewKeyFromSeed(pattern(32, 0x42))
	relay, _ := PeerIDFromEd25519(relayKey.Public().(ed25519.PublicKey))
	ack := &RelayRequest{ID: 8, Op: RelayAck, Mailbox: sampleMailboxID, Seqs: []uint64{1, 2, 300}, Challenge: sampleChallenge}
	if err := ack.SignOwner(relay, owner); err != nil {
		t.Fatal(err)
	}
	ackBody, _ := ack.ownerBody(relay)
	rc := Receipt{Relay: relay, Mailbox: sampleMailboxID, Envelope: EnvelopeHash(sampleEnvelope(512, sampleMailboxID)), StoredUntil: 1768435200000}
	rcMsg, err := rc.SignedMessage()
	if err != nil {
		t.Fatal(err)
	}
	deposit := &RelayRequest{ID: 5, Op: RelayDeposit, Mailbox: sampleMailboxID, Token: pattern(16, 0xe0), Envelope: sampleEnvelope(512, sampleMailboxID)}
	cases := []struct {
		file string
		b    []byte
	}{
		{"relay-ack.hex", marshal(t, ack)},
		{"relay-owner-ack-body.hex", ackBody},
		{"relay-deposit.hex", marshal(t, deposit)},
		{"relay-receipt.hex", marshal(t, &RelayResponse{ID: 5, Op: RelayDeposit, Code: CodeOK, StoredUntil: rc.StoredUntil, Signature: ed25519.Sign(relayKey, rcMsg)})},
		{"relay-receipt-message.hex", rcMsg},
		{"relay-hello.hex", marshal(t, &RelayResponse{Op: RelayHello, Code: CodeOK, Challenge: sampleChallenge})},
		{"relay-invite-token.hex", InviteToken(InviteSecret(pattern(16, 0x70)), sampleMailboxID)},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join("testdata", "golden", c.file)
			if *update {
				writeGolden(t, path, hexLines(c.b))
			}
			if want := readHex(t, path); !bytes.Equal(c.b, want) {
				t.Fatalf("encoding changed:\n got %x\nwant %x", c.b, want)
			}
		})
	}
}

func FuzzRelayRequest(f *testing.F) {
	for _, s := range relaySamples() {
		if _, ok := s.msg.(*RelayRequest); ok {
			f.Add(marshal(f, s.msg))
		}
	}
	fuzzMessage(f, func() Message { return new(RelayRequest) })
}

func FuzzRelayResponse(f *testing.F) {
	for _, s := range relaySamples() {
		if _, ok := s.msg.(*RelayResponse); ok {
			f.Add(marshal(f, s.msg))
		}
	}
	fuzzMessage(f, func() Message { return new(RelayResponse) })
}

// TestRelayDecodeWire covers what only an encoding can break.
func TestRelayDecodeWire(t *testing.T) {
	var dep *RelayRequest
	for _, s := range relaySamples() {
		if r, ok := s.msg.(*RelayRequest); ok && r.Op == RelayDeposit {
			dep = r
			break
		}
	}
	w := dep.wire().(*pb.RelayRequest)
	short := proto.Clone(w).(*pb.RelayRequest)
	short.Mailbox = short.Mailbox[:31]
	zero := proto.Clone(w).(*pb.RelayRequest)
	zero.Mailbox = make([]byte, 32)
	ack := &RelayRequest{ID: 1, Op: RelayAck, Mailbox: sampleMailboxID, Seqs: []uint64{1, 2}, Challenge: sampleChallenge, Signature: sampleSig}
	good := marshalRaw(t, ack.wire())
	// Field 13 unpacked: two varint fields (tag 0x68) instead of one packed
	// run (tag 0x6a); protobuf parsers accept both, this one only the
	// canonical packed form.
	i := bytes.Index(good, []byte{0x6a, 0x02, 0x01, 0x02})
	if i < 0 {
		t.Fatal("packed seqs not found")
	}
	unpacked := append(append(append([]byte(nil), good[:i]...), 0x68, 0x01, 0x68, 0x02), good[i+4:]...)
	cases := []struct {
		name string
		into Message
		b    []byte
		want error
	}{
		{"mailbox short", new(RelayRequest), marshalRaw(t, short), ErrMalformed},
		{"mailbox zero", new(RelayRequest), marshalRaw(t, zero), ErrMalformed},
		{"seqs unpacked", new(RelayRequest), unpacked, ErrMalformed},
		{"version 2", new(RelayRequest), marshalRaw(t, &pb.RelayRequest{Version: 2, Id: 1}), ErrUnsupportedVersion},
		{"response challenge short", new(RelayResponse), marshalRaw(t, &pb.RelayResponse{Version: 1, Op: pb.RelayOp_RELAY_OP_HELLO, Code: 1, Challenge: pattern(31, 1)}), ErrMalformed},
		{"over the frame limit", new(RelayRequest), make([]byte, MaxRelayFrame+1), ErrTooLarge},
	}
	if err := new(RelayRequest).Unmarshal(good); err != nil {
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
