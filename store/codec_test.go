package store

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/sealpost/sealpost/protocol"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

// record is what every stored record type implements.
type record interface {
	marshal() []byte
	unmarshal([]byte) error
}

// samples returns, per record type, a constructor and example records.
func samples() map[string]struct {
	new  func() record
	seed []record
} {
	return map[string]struct {
		new  func() record
		seed []record
	}{
		"self": {func() record { return new(Self) }, []record{
			&Self{Name: "alice", Identity: []byte{1, 2}, DeviceKey: []byte{3}, DeviceRecord: []byte{4, 5}, CreatedAt: t0,
				Card: []byte{6}},
			&Self{Identity: []byte{1}, DeviceKey: []byte{2}},
		}},
		"prekey": {func() record { return new(Prekey) }, []record{
			&Prekey{Kind: PrekeyOneTime, ID: math.MaxUint32, CreatedAt: t0, Private: []byte{1}, Public: []byte{2},
				State: PrekeyUploaded, Mailbox: protocol.MailboxID{5}, StateChangedAt: t0.Add(time.Hour)},
			&Prekey{Kind: PrekeySigned, State: PrekeyAvailable},
		}},
		"session": {func() record { return new(Session) }, []record{
			&Session{Peer: [32]byte{1}, Device: []byte("dev"), ID: [16]byte{2}, State: []byte{9, 9},
				CreatedAt: t0, LastDecryptAt: t0, LastUsedAt: t0.Add(time.Second),
				Initiated: true, Confirmed: true, Prekey: []byte{3}, Invite: []byte{4}},
		}},
		"contact": {func() record { return new(Contact) }, []record{
			&Contact{UserID: [32]byte{1}, Name: "bob", Identity: []byte{1}, Card: []byte{2}, State: ContactAccepted,
				Verified: true, IdentityChanged: true, PendingIdentity: []byte{3}, SendSeq: 1 << 40, RecvSeq: 7,
				CreatedAt: t0, UpdatedAt: t0, Device: []byte("dev"), DeviceRecord: []byte{4},
				Addrs: [][]byte{{5}, {6, 7}}, CardSeq: 8, Session: [16]byte{9}, PendingCard: []byte{10}},
			&Contact{State: ContactRequest},
			&Contact{State: ContactRequest, RequestMessages: 3, RequestBytes: 1 << 20},
		}},
		"message": {func() record { return new(Message) }, []record{
			&Message{ID: [16]byte{1}, Peer: [32]byte{2}, Outgoing: true, Seq: 3, Kind: 4, Body: []byte("hello"),
				SentAt: t0, ReceivedAt: t0, State: MessageFailed, Reason: "why", Order: 5},
			&Message{State: MessageReceived, SentAt: time.Unix(1<<40, 0)},
			&Message{ID: [16]byte{1}, Group: [32]byte{7}, Peer: [32]byte{2}, Seq: 3, Kind: 1, Body: []byte("hi all"),
				SentAt: t0, ReceivedAt: t0, State: MessageReceived, Order: 6},
		}},
		"group": {func() record { return new(Group) }, []record{
			&Group{ID: [32]byte{1}, Name: "club", State: GroupLeaving, Inviter: [32]byte{2}, Epoch: 1 << 40, Members: 1000, Admin: true,
				Homes:   []GroupHomeCursor{{Relay: []byte("r1"), Addrs: [][]byte{{4, 1}}, Log: [32]byte{3}, Cursor: 9}, {Relay: []byte("r2"), Addrs: [][]byte{{5}}, Log: [32]byte{4}}},
				SendSeq: 7, Reason: "removed", CreatedAt: t0, UpdatedAt: t0},
			&Group{ID: [32]byte{1}, State: GroupRequest, Homes: []GroupHomeCursor{}},
		}},
		"group inbox entry": {func() record { return new(GroupInboxEntry) }, []record{
			&GroupInboxEntry{From: [32]byte{1}, Accepted: true, Control: []byte{1, 2}, ReceivedAt: t0},
		}},
		"outbox": {func() record { return new(OutboxEntry) }, []record{
			&OutboxEntry{ID: [16]byte{1}, Peer: [32]byte{2}, Device: []byte("dev"), Payload: []byte("ciphertext"),
				CreatedAt: t0, Attempts: 3, NextAttempt: t0.Add(time.Minute), LastError: "refused",
				Receipts: []Receipt{{Relay: "r1", StoredUntil: t0, Signed: []byte("sig")}, {}},
				Session:  [16]byte{7}, Redeposits: 4},
			&OutboxEntry{},
		}},
		"mailbox": {func() record { return new(Mailbox) }, []record{
			&Mailbox{ID: [32]byte{1}, Relay: "relay", Addrs: []string{"/ip4/1.2.3.4/tcp/1", ""},
				AuthKey: []byte{1}, SealingKey: []byte{2}, ClientKey: []byte{3}, CreatedAt: t0},
		}},
		"invite": {func() record { return new(Invite) }, []record{
			&Invite{Secret: [16]byte{1}, Pin: []byte{2, 3}, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
			&Invite{},
		}},
		"token": {func() record { return new(DepositToken) }, []record{
			&DepositToken{Token: [16]byte{1}, Relay: "relay", Mailbox: [32]byte{2}, Contact: [32]byte{3}, CreatedAt: t0, Revoked: true},
			&DepositToken{Token: [16]byte{4}, Relay: "relay", Mailbox: [32]byte{2}, Invite: [16]byte{5}, CreatedAt: t0,
				ExpiresAt: t0.Add(time.Hour), Registered: true, CardSeq: 300},
		}},
		"file": {func() record { return new(File) }, []record{
			&File{ID: [16]byte{1}, Peer: [32]byte{2}, Outgoing: true, Pointer: []byte("pointer"), Caption: "look", Name: "a.jpg",
				MIME: "image/jpeg", Size: 1 << 33, Hashes: [][32]byte{{3}, {4}}, State: FileSent, Error: "why",
				Have: []byte{0x81}, Secret: [32]byte{5}, Relays: []FileRelay{{Relay: []byte("relay"), Mailbox: [32]byte{6},
					Done: []byte{1, 2}, StoredUntil: t0, Error: "full", Refused: true}, {}},
				Wanted: true, Direct: true, Pending: true, Attempts: 7, NextAttempt: t0, CreatedAt: t0, UpdatedAt: t0.Add(time.Second)},
			&File{ID: [16]byte{2}, Group: [32]byte{7}, Outgoing: true, State: FileQueued,
				Relays: []FileRelay{{Relay: []byte("home"), Log: [32]byte{8}, Done: []byte{1}}}},
			&File{State: FileSaved},
		}},
		"relay blob": {func() record { return new(RelayBlob) }, []record{
			&RelayBlob{Size: 262208, Refs: 3, StoredAt: t0},
		}},
		"relay blob ref": {func() record { return new(RelayBlobRef) }, []record{
			&RelayBlobRef{WriteCapHash: [32]byte{1}, Mailbox: [32]byte{2}, Size: 100, StoredUntil: t0, Readers: 2, CreatedAt: t0},
			&RelayBlobRef{WriteCapHash: [32]byte{1}, Log: [32]byte{3}, Size: 100, StoredUntil: t0, Readers: 1, CreatedAt: t0},
		}},
		"blob usage": {func() record { return new(BlobUsage) }, []record{
			&BlobUsage{Count: 1, Bytes: 1 << 40, Quotas: [2]RelayQuotaKey{{1}, {2}}},
			&BlobUsage{Count: 1, Bytes: 1 << 40},
		}},
		"relay blob totals": {func() record { return new(RelayBlobTotals) }, []record{&RelayBlobTotals{Blobs: 1, Bytes: 2, Refs: 3}}},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for name, s := range samples() {
		for _, r := range s.seed {
			b := r.marshal()
			got := s.new()
			if err := got.unmarshal(b); err != nil {
				t.Errorf("%s: unmarshal: %v", name, err)
				continue
			}
			if !bytes.Equal(got.marshal(), b) {
				t.Errorf("%s: re-encoding differs", name)
			}
			if !reflect.DeepEqual(normTimes(got), normTimes(r)) {
				t.Errorf("%s: round trip:\n got %+v\nwant %+v", name, got, r)
			}
			// Every truncation and a trailing byte are refused.
			for i := 0; i < len(b); i++ {
				if err := s.new().unmarshal(b[:i]); !errors.Is(err, ErrCorrupt) {
					t.Errorf("%s truncated to %d: got %v, want ErrCorrupt", name, i, err)
				}
			}
			if err := s.new().unmarshal(append(b, 0)); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s with a trailing byte: got %v, want ErrCorrupt", name, err)
			}
			bad := bytes.Clone(b)
			bad[0] = 99
			if err := s.new().unmarshal(bad); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s with an unknown version: got %v, want ErrCorrupt", name, err)
			}
		}
	}
}

// normTimes re-encodes r through reflection-free means: the records hold
// times in UTC after decoding, so convert the samples' times the same way
// by a round trip through the encoder's time format.
func normTimes(r record) record {
	v := reflect.ValueOf(r).Elem()
	out := reflect.New(v.Type())
	out.Elem().Set(v)
	fixTimes(out.Elem())
	return out.Interface().(record)
}

func fixTimes(v reflect.Value) {
	switch {
	case v.Type() == reflect.TypeOf(time.Time{}):
		v.Set(reflect.ValueOf(v.Interface().(time.Time).UTC()))
	case v.Kind() == reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			fixTimes(v.Field(i))
		}
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(c, v)
		for i := 0; i < c.Len(); i++ {
			fixTimes(c.Index(i))
		}
		v.Set(c)
	}
}

func TestTimeKeyOrder(t *testing.T) {
	times := []time.Time{
		{}, time.Unix(-1<<40, 0), time.Unix(-1, 999999999), time.Unix(0, 0), time.Unix(0, 1),
		t0, t0.Add(1), time.Unix(1<<40, 0), time.Unix(math.MaxInt64/2, 0),
	}
	for i := 1; i < len(times); i++ {
		a, b := timeKey(times[i-1]), timeKey(times[i])
		if bytes.Compare(a[:], b[:]) > 0 {
			t.Errorf("timeKey(%v) > timeKey(%v)", times[i-1], times[i])
		}
	}
}

// fuzzDecode checks that a decoder never panics, and that whatever it
// accepts re-encodes to something it decodes to the same record.
func fuzzDecode(f *testing.F, name string) {
	s := samples()[name]
	for _, r := range s.seed {
		f.Add(r.marshal())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := s.new()
		if err := r.unmarshal(b); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		enc := r.marshal()
		r2 := s.new()
		if err := r2.unmarshal(enc); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !bytes.Equal(r2.marshal(), enc) {
			t.Fatal("encoding is not stable")
		}
	})
}

func FuzzDecodeSelf(f *testing.F)         { fuzzDecode(f, "self") }
func FuzzDecodePrekey(f *testing.F)       { fuzzDecode(f, "prekey") }
func FuzzDecodeSession(f *testing.F)      { fuzzDecode(f, "session") }
func FuzzDecodeContact(f *testing.F)      { fuzzDecode(f, "contact") }
func FuzzDecodeMessage(f *testing.F)      { fuzzDecode(f, "message") }
func FuzzDecodeGroup(f *testing.F)        { fuzzDecode(f, "group") }
func FuzzDecodeOutbox(f *testing.F)       { fuzzDecode(f, "outbox") }
func FuzzDecodeMailbox(f *testing.F)      { fuzzDecode(f, "mailbox") }
func FuzzDecodeDepositToken(f *testing.F) { fuzzDecode(f, "token") }
func FuzzDecodeInvite(f *testing.F)       { fuzzDecode(f, "invite") }
func FuzzDecodeFile(f *testing.F)         { fuzzDecode(f, "file") }
func FuzzDecodeRelayBlobRef(f *testing.F) { fuzzDecode(f, "relay blob ref") }
func FuzzDecodeBlobUsage(f *testing.F)    { fuzzDecode(f, "blob usage") }

// TestVersion1Records checks that records written before a version bump
// still decode, with the added fields zero.
func TestVersion1Records(t *testing.T) {
	v1 := func(fields func(e *enc)) []byte {
		e := newEnc(1, 64)
		fields(e)
		return e.b
	}
	self := v1(func(e *enc) {
		e.str("alice")
		e.bytes([]byte{1})
		e.bytes([]byte{2})
		e.bytes([]byte{3})
		e.time(t0)
	})
	var s Self
	if err := s.unmarshal(self); err != nil || s.Name != "alice" || s.Card != nil {
		t.Errorf("self v1: %+v, %v", s, err)
	}
	session := v1(func(e *enc) {
		e.fixed(make([]byte, 32))
		e.bytes([]byte("dev"))
		e.fixed(make([]byte, 16))
		e.bytes([]byte{9})
		e.time(t0)
		e.time(t0)
		e.time(t0)
	})
	var ses Session
	if err := ses.unmarshal(session); err != nil || string(ses.Device) != "dev" || ses.Initiated || ses.Prekey != nil {
		t.Errorf("session v1: %+v, %v", ses, err)
	}
	contact := v1(func(e *enc) {
		e.fixed(make([]byte, 32))
		e.str("bob")
		e.bytes([]byte{1})
		e.bytes(nil)
		e.u8(uint8(ContactAccepted))
		e.bool(true)
		e.bool(false)
		e.bytes(nil)
		e.uvarint(5)
		e.uvarint(6)
		e.time(t0)
		e.time(t0)
	})
	var c Contact
	if err := c.unmarshal(contact); err != nil || c.Name != "bob" || c.RecvSeq != 6 || c.Device != nil || c.CardSeq != 0 {
		t.Errorf("contact v1: %+v, %v", c, err)
	}
	outbox := v1(func(e *enc) {
		e.fixed(make([]byte, 16))
		e.fixed(make([]byte, 32))
		e.bytes([]byte("dev"))
		e.bytes([]byte("payload"))
		e.time(t0)
		e.uvarint(2)
		e.time(t0)
		e.str("")
		e.uvarint(0)
	})
	var o OutboxEntry
	if err := o.unmarshal(outbox); err != nil || o.Attempts != 2 || o.Session != ([16]byte{}) {
		t.Errorf("outbox v1: %+v, %v", o, err)
	}
	// Version 2: Session, and no Redeposits.
	outbox2 := append(bytes.Clone(outbox), bytes.Repeat([]byte{7}, 16)...)
	outbox2[0] = 2
	o = OutboxEntry{Redeposits: 9}
	if err := o.unmarshal(outbox2); err != nil || o.Session != ([16]byte{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}) || o.Redeposits != 0 {
		t.Errorf("outbox v2: %+v, %v", o, err)
	}
	token := v1(func(e *enc) {
		e.fixed(bytes.Repeat([]byte{7}, 16))
		e.str("relay")
		e.fixed(make([]byte, 32))
		e.fixed(make([]byte, 32))
		e.time(t0)
		e.bool(true)
	})
	var tok DepositToken
	if err := tok.unmarshal(token); err != nil || tok.Relay != "relay" || !tok.Revoked || tok.Registered ||
		!tok.ExpiresAt.IsZero() || tok.CardSeq != 0 || tok.Invite != (protocol.InviteSecret{}) {
		t.Errorf("deposit token v1: %+v, %v", tok, err)
	}
}

// TestFileVersion2 decodes a file record of version 2 (before Group and
// FileRelay.Log).
func TestFileVersion2(t *testing.T) {
	e := newEnc(2, 128)
	e.fixed(make([]byte, 16))
	e.fixed(bytes.Repeat([]byte{2}, 32))
	e.bool(true)
	e.bytes([]byte("pointer"))
	e.str("look")
	e.str("a.jpg")
	e.str("image/jpeg")
	e.uvarint(10)
	e.uvarint(0) // hashes
	e.u8(uint8(FileSent))
	e.str("")
	e.bytes(nil)
	e.fixed(make([]byte, 32))
	e.uvarint(1) // relays
	e.bytes([]byte("relay"))
	e.fixed(bytes.Repeat([]byte{6}, 32))
	e.bytes([]byte{1})
	e.time(t0)
	e.str("err")
	e.bool(true)  // refused
	e.bool(false) // wanted
	e.bool(true)  // direct
	e.bool(true)  // pending
	e.uvarint(3)
	e.time(t0)
	e.time(t0)
	e.time(t0)
	var f File
	if err := f.unmarshal(e.b); err != nil {
		t.Fatal(err)
	}
	if f.Caption != "look" || !f.Direct || !f.Pending || len(f.Relays) != 1 || !f.Relays[0].Refused ||
		f.Relays[0].Mailbox[0] != 6 || !f.Relays[0].Log.IsZero() || !f.Group.IsZero() || f.Peer[0] != 2 {
		t.Fatalf("version 2 file: %+v", f)
	}
}

// TestFileVersion1 decodes a file record of version 1 (before Caption,
// Direct and FileRelay.Refused).
func TestFileVersion1(t *testing.T) {
	e := newEnc(1, 128)
	e.fixed(make([]byte, 16+32))
	e.bool(true)
	e.bytes([]byte("pointer"))
	e.str("a.jpg")
	e.str("image/jpeg")
	e.uvarint(10)
	e.uvarint(0) // hashes
	e.u8(uint8(FileSent))
	e.str("")
	e.bytes(nil)
	e.fixed(make([]byte, 32))
	e.uvarint(1) // relays
	e.bytes([]byte("relay"))
	e.fixed(make([]byte, 32))
	e.bytes([]byte{1})
	e.time(t0)
	e.str("err")
	e.bool(true)  // wanted
	e.bool(false) // pending
	e.uvarint(3)
	e.time(t0)
	e.time(t0)
	e.time(t0)
	var f File
	if err := f.unmarshal(e.b); err != nil {
		t.Fatal(err)
	}
	if !f.Outgoing || string(f.Pointer) != "pointer" || f.Caption != "" || f.Direct || len(f.Relays) != 1 ||
		f.Relays[0].Error != "err" || f.Relays[0].Refused || !f.Wanted || f.Attempts != 3 {
		t.Fatalf("version 1 file: %+v", f)
	}
}
