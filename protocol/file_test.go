package protocol

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/protocol/internal/pb"
)

func FuzzFile(f *testing.F)         { fuzzMessage(f, func() Message { return new(File) }) }
func FuzzBlobRequest(f *testing.F)  { fuzzMessage(f, func() Message { return new(BlobRequest) }) }
func FuzzBlobResponse(f *testing.F) { fuzzMessage(f, func() Message { return new(BlobResponse) }) }

// TestFileValidate breaks one rule of a pointer at a time: Validate,
// Marshal and Unmarshal of the encoding made without validation all fail
// with the same sentinel.
func TestFileValidate(t *testing.T) {
	type tc struct {
		name string
		want error
		edit func(f *File)
	}
	cases := []tc{
		{"key missing", ErrMalformed, func(f *File) { f.Key = attachment.Key{} }},
		{"digest missing", ErrMalformed, func(f *File) { f.Digest = attachment.Hash{} }},
		{"size over the format's limit", ErrTooLarge, func(f *File) { f.Size = attachment.MaxSize + 1 }},
		{"size lies about the blob count", ErrMalformed, func(f *File) { f.Size = 100 }},
		{"blob missing", ErrMalformed, func(f *File) { f.Blobs = f.Blobs[:2] }},
		{"blob too many", ErrMalformed, func(f *File) { f.Blobs = append(f.Blobs, f.Blobs[0]) }},
		{"blob hash zero", ErrMalformed, func(f *File) { f.Blobs[1] = attachment.Hash{} }},
		{"name with a slash", ErrMalformed, func(f *File) { f.Name = "../../.bashrc" }},
		{"name with a backslash", ErrMalformed, func(f *File) { f.Name = `..\evil.exe` }},
		{"name dot dot", ErrMalformed, func(f *File) { f.Name = ".." }},
		{"name dot", ErrMalformed, func(f *File) { f.Name = "." }},
		{"name with a newline", ErrMalformed, func(f *File) { f.Name = "a\nb.txt" }},
		{"name with NUL", ErrMalformed, func(f *File) { f.Name = "a\x00b" }},
		{"name with escape", ErrMalformed, func(f *File) { f.Name = "\x1b[31mred" }},
		{"name with right-to-left override", ErrMalformed, func(f *File) { f.Name = "photo\u202egpj.exe" }},
		{"name with trailing space", ErrMalformed, func(f *File) { f.Name = "photo.jpg " }},
		{"name not UTF-8", ErrMalformed, func(f *File) { f.Name = "\xff.jpg" }},
		{"name too long", ErrTooLarge, func(f *File) { f.Name = strings.Repeat("a", MaxFileName+1) }},
		{"mime without subtype", ErrMalformed, func(f *File) { f.MIME = "image" }},
		{"mime with parameters", ErrMalformed, func(f *File) { f.MIME = "text/plain; charset=utf-8" }},
		{"mime with a space", ErrMalformed, func(f *File) { f.MIME = "image/ jpeg" }},
		{"mime beginning with a dot", ErrMalformed, func(f *File) { f.MIME = "image/.jpeg" }},
		{"mime too long", ErrTooLarge, func(f *File) { f.MIME = "a/" + strings.Repeat("b", MaxMIME) }},
		{"thumbnail too large", ErrTooLarge, func(f *File) { f.Thumbnail = make([]byte, MaxThumbnail+1) }},
		{"no source", ErrMalformed, func(f *File) { f.Peer, f.Relays = nil, nil }},
		{"peer ID missing", ErrMalformed, func(f *File) { f.Peer.Peer = nil }},
		{"peer ID not a multihash", ErrMalformed, func(f *File) { f.Peer.Peer = []byte{1, 2, 3} }},
		{"peer addrs too many", ErrTooLarge, func(f *File) { f.Peer.Addrs = make([][]byte, MaxFileAddrs+1) }},
		{"relay without addrs", ErrMalformed, func(f *File) { f.Relays[0].Addrs = nil }},
		{"relay without mailbox", ErrMalformed, func(f *File) { f.Relays[0].Mailbox = MailboxID{} }},
		{"relay with mailbox and log", ErrMalformed, func(f *File) { f.Relays[0].Log = GroupLogID(pattern(32, 0xb0)) }},
		{"relay twice", ErrMalformed, func(f *File) { f.Relays = append(f.Relays, f.Relays[0]) }},
		{"relays too many", ErrTooLarge, func(f *File) {
			for i := range MaxFileRelays {
				r := f.Relays[0]
				r.Mailbox = MailboxID(pattern(32, byte(i+1)))
				f.Relays = append(f.Relays, r)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := sampleFile()
			c.edit(f)
			if err := f.Validate(); !errors.Is(err, c.want) {
				t.Fatalf("Validate: %v, want %v", err, c.want)
			}
			if _, err := f.Marshal(); !errors.Is(err, c.want) {
				t.Fatalf("Marshal: %v, want %v", err, c.want)
			}
			if !utf8.ValidString(f.Name) {
				return // protobuf refuses to encode it at all
			}
			raw := marshalRaw(t, f.wire())
			if err := new(File).Unmarshal(raw); !errors.Is(err, c.want) {
				t.Fatalf("Unmarshal: %v, want %v", err, c.want)
			}
			// Inside a plaintext, the same.
			p := sampleFileMessage()
			p.File = f
			if err := new(Plaintext).Unmarshal(marshalRaw(t, p.wire())); !errors.Is(err, c.want) {
				t.Fatalf("plaintext Unmarshal: %v, want %v", err, c.want)
			}
		})
	}
	for _, name := range []string{"", "a", ".bashrc", "résumé 2026.pdf", "写真.jpg", "a b", "..hidden", "x..y"} {
		if err := CheckFileName(name); err != nil {
			t.Errorf("CheckFileName(%q): %v", name, err)
		}
	}
	for _, m := range []string{"", "image/jpeg", "application/vnd.oasis.opendocument.text", "audio/ogg", "text/x-c++"} {
		if err := CheckMIME(m); err != nil {
			t.Errorf("CheckMIME(%q): %v", m, err)
		}
	}
}

func TestFileWire(t *testing.T) {
	for _, c := range []struct {
		name string
		want error
		edit func(w *pb.File)
	}{
		{"version 2", ErrUnsupportedVersion, func(w *pb.File) { w.Version = 2 }},
		{"blob list not a multiple of 32", ErrMalformed, func(w *pb.File) { w.Blobs = w.Blobs[:95] }},
		{"blob list empty", ErrMalformed, func(w *pb.File) { w.Blobs = nil }},
		{"blob list over MaxBlobs", ErrMalformed, func(w *pb.File) { w.Blobs = make([]byte, 32*(attachment.MaxBlobs+1)) }},
		{"empty peer", ErrMalformed, func(w *pb.File) { w.Peer = &pb.FilePeer{} }},
		{"key short", ErrMalformed, func(w *pb.File) { w.Key = w.Key[:31] }},
		{"size over the format's limit", ErrTooLarge, func(w *pb.File) { w.Size = 1 << 40 }},
		{"relay mailbox short", ErrMalformed, func(w *pb.File) { w.Relays[0].Mailbox = []byte{1} }},
	} {
		v := sampleFile().wireFile()
		c.edit(v)
		if err := new(File).Unmarshal(marshalRaw(t, v)); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestPlaintextFileRules(t *testing.T) {
	p := sampleFileMessage()
	p.File = nil
	if err := p.Validate(); !errors.Is(err, ErrMalformed) {
		t.Errorf("file kind without a file: %v", err)
	}
	p = sampleText()
	p.File = sampleFile()
	if err := p.Validate(); !errors.Is(err, ErrMalformed) {
		t.Errorf("text kind with a file: %v", err)
	}
	p = sampleFileMessage()
	p.Text = strings.Repeat("c", MaxCaption+1)
	if err := p.Validate(); !errors.Is(err, ErrTooLarge) {
		t.Errorf("caption over MaxCaption: %v", err)
	}
	p = sampleFileMessage()
	p.Text = "\xff"
	if err := p.Validate(); !errors.Is(err, ErrMalformed) {
		t.Errorf("caption not UTF-8: %v", err)
	}
}

func TestBlobValidate(t *testing.T) {
	h, c := attachment.Hash(pattern(32, 0x40)), attachment.Cap(pattern(32, 0x50))
	put := func() *BlobRequest {
		return &BlobRequest{ID: 1, Op: BlobPut, Hash: h, Cap: c, ReadCapHash: attachment.Hash(pattern(32, 0x60)),
			Mailbox: MailboxID(pattern(32, 0xa0)), Token: pattern(16, 0xe0), Size: 1000}
	}
	for _, tc := range []struct {
		name string
		want error
		m    Message
	}{
		{"request without id", ErrMalformed, &BlobRequest{Op: BlobGet, Hash: h, Cap: c}},
		{"request op unknown", ErrMalformed, &BlobRequest{ID: 1, Op: 9, Hash: h, Cap: c}},
		{"get without hash", ErrMalformed, &BlobRequest{ID: 1, Op: BlobGet, Cap: c}},
		{"get without cap", ErrMalformed, &BlobRequest{ID: 1, Op: BlobGet, Hash: h}},
		{"get with size", ErrMalformed, &BlobRequest{ID: 1, Op: BlobGet, Hash: h, Cap: c, Size: 5}},
		{"put without size", ErrMalformed, func() Message { r := put(); r.Size = 0; return r }()},
		{"put without token", ErrMalformed, func() Message { r := put(); r.Token = nil; return r }()},
		{"put token short", ErrMalformed, func() Message { r := put(); r.Token = pattern(8, 1); return r }()},
		{"put over the largest blob", ErrTooLarge, func() Message { r := put(); r.Size = attachment.MaxBlobSize + 1; return r }()},
		{"put readers over the limit", ErrTooLarge, func() Message { r := put(); r.Readers = MaxBlobReaders + 1; return r }()},
		{"delete without read cap hash", ErrMalformed, &BlobRequest{ID: 1, Op: BlobDelete, Hash: h, Cap: c}},
		{"ack with mailbox", ErrMalformed, &BlobRequest{ID: 1, Op: BlobAck, Hash: h, Cap: c, Mailbox: MailboxID(pattern(32, 1))}},
		{"put without mailbox or log", ErrMalformed, func() Message { r := put(); r.Mailbox = MailboxID{}; return r }()},
		{"put with mailbox and log", ErrMalformed, func() Message { r := put(); r.Log = GroupLogID(pattern(32, 0xb0)); return r }()},
		{"put with epoch and mailbox", ErrMalformed, func() Message { r := put(); r.Epoch = 3; return r }()},
		{"link with mailbox and log", ErrMalformed, func() Message {
			r := put()
			r.Op, r.Log = BlobLink, GroupLogID(pattern(32, 0xb0))
			return r
		}()},
		{"get with log", ErrMalformed, &BlobRequest{ID: 1, Op: BlobGet, Hash: h, Cap: c, Log: GroupLogID(pattern(32, 1))}},
		{"ack with epoch", ErrMalformed, &BlobRequest{ID: 1, Op: BlobAck, Hash: h, Cap: c, Epoch: 2}},
		{"get response without size", ErrMalformed, &BlobResponse{ID: 1, Op: BlobGet, Code: CodeOK}},
		{"get response over the largest blob", ErrTooLarge, &BlobResponse{ID: 1, Op: BlobGet, Code: CodeOK, Size: attachment.MaxBlobSize + 1}},
		{"get error with size", ErrMalformed, &BlobResponse{ID: 1, Op: BlobGet, Code: CodeNotFound, Size: 10}},
		{"put response without stored_until", ErrMalformed, &BlobResponse{ID: 1, Op: BlobPut, Code: CodeOK}},
		{"put error with stored_until", ErrMalformed, &BlobResponse{ID: 1, Op: BlobPut, Code: CodeStoreFull, StoredUntil: 5}},
		{"ack response with size", ErrMalformed, &BlobResponse{ID: 1, Op: BlobAck, Code: CodeOK, Size: 5}},
		{"response without id", ErrMalformed, &BlobResponse{Op: BlobAck, Code: CodeOK}},
		{"response without code", ErrMalformed, &BlobResponse{ID: 1, Op: BlobAck}},
		{"frame error ok", ErrMalformed, &BlobResponse{Code: CodeOK}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.m.Validate(); !errors.Is(err, tc.want) {
				t.Fatalf("Validate: %v, want %v", err, tc.want)
			}
			if _, err := tc.m.Marshal(); !errors.Is(err, tc.want) {
				t.Fatalf("Marshal: %v, want %v", err, tc.want)
			}
			raw := marshalRaw(t, tc.m.wire())
			if err := newLike(tc.m).Unmarshal(raw); !errors.Is(err, tc.want) {
				t.Fatalf("Unmarshal: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestFileGolden freezes the pointer and blob encodings.
func TestFileGolden(t *testing.T) {
	put := &BlobRequest{ID: 1, Op: BlobPut, Hash: attachment.Hash(pattern(32, 0x40)), Cap: attachment.Cap(pattern(32, 0x50)),
		ReadCapHash: attachment.Hash(pattern(32, 0x60)), Mailbox: MailboxID(pattern(32, 0xa0)), Token: pattern(16, 0xe0), Size: 262208}
	for _, c := range []struct {
		file string
		msg  Message
	}{
		{"file.hex", sampleFile()},
		{"plaintext-file.hex", sampleFileMessage()},
		{"blob-put.hex", put},
		{"blob-put-group.hex", &BlobRequest{ID: 2, Op: BlobPut, Hash: attachment.Hash(pattern(32, 0x40)), Cap: attachment.Cap(pattern(32, 0x50)),
			ReadCapHash: attachment.Hash(pattern(32, 0x60)), Log: GroupLogID(pattern(32, 0xb0)), Epoch: 7, Token: pattern(32, 0xe0), Size: 262208}},
		{"file-group.hex", sampleGroupFile()},
		{"blob-get-response.hex", &BlobResponse{ID: 3, Op: BlobGet, Code: CodeOK, Size: 262208}},
	} {
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

// TestFileLimits builds the largest pointer and the largest file message
// with the largest card, and checks they fit their limits.
func TestFileLimits(t *testing.T) {
	f := sampleFile()
	// The size whose layout has the most blobs (MaxBlobs bounds them; the
	// buckets fall where somewhat fewer are the most).
	most := 0
	for s := int64(attachment.MinPadded); ; s = attachment.PaddedSize(s + 1) {
		if l, _ := attachment.NewLayout(s); l.Blobs > most {
			f.Size, most = s, l.Blobs
		}
		if s == attachment.MaxSize {
			break
		}
	}
	f.Blobs = make([]attachment.Hash, most)
	for i := range f.Blobs {
		f.Blobs[i] = attachment.Hash(pattern(32, byte(i+1)))
	}
	f.Name = strings.Repeat("n", MaxFileName)
	f.MIME = "a/" + strings.Repeat("b", MaxMIME-2)
	f.Thumbnail = pattern(MaxThumbnail, 1)
	long := make([][]byte, MaxFileAddrs)
	for i := range long {
		long[i] = pattern(MaxAddr, byte(i))
	}
	f.Peer = &FilePeer{Peer: append([]byte{0x00, maxInlineKey}, pattern(maxInlineKey, 2)...), Addrs: long}
	f.Relays = nil
	for i := range MaxFileRelays {
		f.Relays = append(f.Relays, FileRelay{Relay: append([]byte{0x00, maxInlineKey}, pattern(maxInlineKey, byte(i))...), Addrs: long, Mailbox: MailboxID(pattern(32, byte(i+1)))})
	}
	b, err := f.Marshal()
	if err != nil {
		t.Fatalf("largest pointer: %v", err)
	}
	t.Logf("largest pointer: %d bytes (MaxFile %d)", len(b), MaxFile)
	for _, r := range f.Relays {
		if len(r.Location()) > attachment.MaxLocation {
			t.Fatalf("relay location of %d bytes", len(r.Location()))
		}
	}

	p := sampleFileMessage()
	p.File, p.Text = f, strings.Repeat("é", MaxCaption/2)
	p.Seq, p.SentAt, p.InviteSecret = 1<<63, MaxUnixMilli, InviteSecret(pattern(16, 7))
	p.Card = sampleCard()
	p.Card.Identity, p.Card.Device = pattern(MaxIdentity, 1), pattern(MaxDeviceRecord, 2)
	p.Card.Name = strings.Repeat("n", MaxName)
	for len(p.Card.Mailboxes) < MaxMailboxes {
		p.Card.Mailboxes = append(p.Card.Mailboxes, sampleMailbox())
	}
	for i := range p.Card.Mailboxes {
		p.Card.Mailboxes[i].Token = pattern(MaxToken, 3)
		p.Card.Mailboxes[i].RelayAddrs = long
	}
	for n := MaxAddr; ; n-- {
		p.Card.Addrs = nil
		for range MaxCardAddrs {
			p.Card.Addrs = append(p.Card.Addrs, pattern(n, 4))
		}
		if _, err := p.Card.Marshal(); err == nil {
			break
		}
	}
	pb, err := p.Marshal()
	if err != nil {
		t.Fatalf("largest file message with the largest card: %v", err)
	}
	t.Logf("largest file message with the largest card: %d bytes (MaxPlaintext %d)", len(pb), MaxPlaintext)
	if uvarintLen(MaxFile) > maxFramePrefix || uvarintLen(MaxBlobFrame) > maxFramePrefix {
		t.Fatal("a limit needs a longer frame prefix")
	}
	if l := PeerLocation(f.Peer.Peer); len(l) > attachment.MaxLocation {
		t.Fatalf("peer location of %d bytes", len(l))
	}
}

func TestLocations(t *testing.T) {
	r := sampleFile().Relays[0]
	want := append(append([]byte{0x02, byte(len(r.Relay))}, r.Relay...), r.Mailbox[:]...)
	if !bytes.Equal(r.Location(), want) {
		t.Errorf("relay location %x, want %x", r.Location(), want)
	}
	g := sampleGroupFile().Relays[0]
	want = append(append([]byte{0x03, byte(len(g.Relay))}, g.Relay...), g.Log[:]...)
	if !bytes.Equal(g.Location(), want) {
		t.Errorf("group log location %x, want %x", g.Location(), want)
	}
	same := FileRelay{Relay: g.Relay, Mailbox: MailboxID(g.Log)}
	if bytes.Equal(same.Location(), g.Location()) {
		t.Error("a log and a mailbox of the same ID have the same location")
	}
	p := sampleFile().Peer
	if !bytes.Equal(p.Location(), append([]byte{0x01}, p.Peer...)) || !bytes.Equal(PeerLocation(p.Peer), p.Location()) {
		t.Errorf("peer location %x", p.Location())
	}
}

// TestFrameBody reads a frame, its unframed bytes, and the next frame.
func TestFrameBody(t *testing.T) {
	var s bytes.Buffer
	put := &BlobRequest{ID: 1, Op: BlobGet, Hash: attachment.Hash(pattern(32, 1)), Cap: attachment.Cap(pattern(32, 2))}
	body := pattern(10000, 3)
	if err := WriteFrame(&s, put); err != nil {
		t.Fatal(err)
	}
	s.Write(body)
	put.ID = 2
	if err := WriteFrame(&s, put); err != nil {
		t.Fatal(err)
	}
	fr := NewFrameReader(bytes.NewReader(s.Bytes()), MaxBlobFrame)
	var r BlobRequest
	if err := fr.Read(&r); err != nil || r.ID != 1 {
		t.Fatalf("first frame: %v", err)
	}
	got, err := io.ReadAll(fr.Body(int64(len(body))))
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("body: %d bytes, %v", len(got), err)
	}
	if err := fr.Read(&r); err != nil || r.ID != 2 {
		t.Fatalf("frame after the body: %v", err)
	}
	// A stream that ends inside a body is an unexpected EOF.
	fr = NewFrameReader(bytes.NewReader(s.Bytes()[:100]), MaxBlobFrame)
	if err := fr.Read(&r); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(fr.Body(int64(len(body)))); err != io.ErrUnexpectedEOF {
		t.Fatalf("short body: %v", err)
	}
}
