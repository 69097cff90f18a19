package protocol

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Every decoder has a fuzz target. Their seed corpora (the samples, the
// golden encodings and the files under testdata/fuzz) run in go test; long
// runs: go test ./protocol -run '^$' -fuzz '^FuzzDeliver$' -fuzztime 1m -parallel 1.

// checkDecodeError fails unless err wraps one of the decoders' sentinels.
func checkDecodeError(t *testing.T, err error) {
	if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("decode error wraps no sentinel: %v", err)
	}
}

// fuzzMessage checks the decoder of one type: it never panics, fails only
// with a sentinel, and accepts only canonical encodings — whatever decodes
// encodes back to the same bytes, and decodes again to the same value.
func fuzzMessage(f *testing.F, zero func() Message) {
	kind := zero().kind()
	for _, s := range samples(f) {
		if s.msg.kind() == kind {
			f.Add(marshal(f, s.msg))
		}
	}
	golden, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.hex"))
	for _, g := range golden {
		text, err := os.ReadFile(g)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(mustHex(f, strings.Join(strings.Fields(string(text)), "")))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := zero()
		if err := m.Unmarshal(b); err != nil {
			checkDecodeError(t, err)
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded value does not validate: %v", err)
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("decoded value does not encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("two encodings of one value:\n  in %x\n out %x", b, out)
		}
		again := zero()
		if err := again.Unmarshal(out); err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("re-decoding: %v", err)
		}
	})
}

func FuzzCiphertext(f *testing.F)     { fuzzMessage(f, func() Message { return new(Ciphertext) }) }
func FuzzDeliver(f *testing.F)        { fuzzMessage(f, func() Message { return new(Deliver) }) }
func FuzzAck(f *testing.F)            { fuzzMessage(f, func() Message { return new(Ack) }) }
func FuzzPlaintext(f *testing.F)      { fuzzMessage(f, func() Message { return new(Plaintext) }) }
func FuzzCard(f *testing.F)           { fuzzMessage(f, func() Message { return new(Card) }) }
func FuzzBundleRequest(f *testing.F)  { fuzzMessage(f, func() Message { return new(BundleRequest) }) }
func FuzzBundleResponse(f *testing.F) { fuzzMessage(f, func() Message { return new(BundleResponse) }) }
func FuzzInvite(f *testing.F)         { fuzzMessage(f, func() Message { return new(Invite) }) }
func FuzzGroupMeta(f *testing.F)      { fuzzMessage(f, func() Message { return new(GroupMeta) }) }
func FuzzGroupControl(f *testing.F)   { fuzzMessage(f, func() Message { return new(GroupControl) }) }

// FuzzParseLink: a link that parses is the link of what it parsed to (up
// to white space and the case of the scheme).
func FuzzParseLink(f *testing.F) {
	for _, inv := range []*Invite{sampleInvite(), sampleInviteRelay()} {
		link, err := inv.Link()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(link)
		f.Add(" SEALPOST://" + link[len(InviteScheme):] + "\n")
	}
	f.Add("sealpost://")
	f.Add("sealpost://AAAA")
	f.Fuzz(func(t *testing.T, link string) {
		inv, err := ParseLink(link)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		out, err := inv.Link()
		if err != nil {
			t.Fatalf("parsed invite has no link: %v", err)
		}
		trimmed := strings.TrimSpace(link)
		if out != InviteScheme+trimmed[len(InviteScheme):] {
			t.Fatalf("link %q parsed, gives back %q", link, out)
		}
	})
}

// readEnded checks the end of reading in frame by frame, rebuilt being
// the frames read so far: at io.EOF they are all of in, after another
// error (a documented one) its first bytes. It reports whether reading
// ended (err is not nil).
func readEnded(t *testing.T, in, rebuilt []byte, err error) bool {
	t.Helper()
	switch {
	case err == nil:
		return false
	case err == io.EOF:
		if !bytes.Equal(rebuilt, in) {
			t.Fatal("frames read are not the input")
		}
	default:
		checkDecodeError(t, err)
		if !bytes.HasPrefix(in, rebuilt) {
			t.Fatal("frames read are not the input")
		}
	}
	return true
}

// FuzzFrameReaderLen reads frames as a service that bounds the bytes it
// holds does: each frame's length with Len first (twice: the same), then
// the frame, with a bound on the buffer kept (Keep). Len's length is the
// frame's, its errors are Next's, the buffer kept never grows past the
// bound, and the frames read are the input's own bytes.
func FuzzFrameReaderLen(f *testing.F) {
	var buf bytes.Buffer
	for _, m := range []Message{&Ack{ID: 1, Code: CodeOK}, sampleCiphertext(), &BundleRequest{}} {
		if err := WriteFrame(&buf, m); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(buf.Bytes(), uint16(200), uint16(16))
	f.Add(buf.Bytes(), uint16(1000), uint16(0))
	f.Add([]byte{0x81, 0x00}, uint16(10), uint16(1))
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f}, uint16(1000), uint16(5))
	f.Add([]byte{0x03, 1, 2}, uint16(3), uint16(2))
	f.Fuzz(func(t *testing.T, in []byte, limit, keep uint16) {
		if limit == 0 {
			return
		}
		fr := NewFrameReader(bytes.NewReader(in), int(limit))
		fr.Keep(int(keep))
		var rebuilt []byte
		for {
			n, err := fr.Len()
			if err == nil {
				if n2, err2 := fr.Len(); n2 != n || err2 != nil {
					t.Fatalf("Len again: %d, %v, then %d, %v", n, err, n2, err2)
				}
				if n < 1 || n > int(limit) {
					t.Fatalf("Len %d, limit %d", n, limit)
				}
			}
			var b []byte
			if err == nil {
				b, err = fr.Next()
			}
			if readEnded(t, in, rebuilt, err) {
				return
			}
			if len(b) != n {
				t.Fatalf("Len said %d, the frame has %d bytes", n, len(b))
			}
			if keep > 0 && cap(fr.buf) > int(keep) || cap(fr.buf) > int(limit) {
				t.Fatalf("buffer kept %d, keep %d, limit %d", cap(fr.buf), keep, limit)
			}
			rebuilt = append(rebuilt, frameOf(b)...)
		}
	})
}

// FuzzFrameReader reads frames from arbitrary bytes under a small limit:
// no panic, no frame over the limit, no buffer over the limit, errors are
// the documented ones, frames read are the input's own bytes, and a frame
// Buffered reports is never truncated.
func FuzzFrameReader(f *testing.F) {
	var buf bytes.Buffer
	for _, m := range []Message{&Ack{ID: 1, Code: CodeOK}, sampleCiphertext(), &BundleRequest{}} {
		if err := WriteFrame(&buf, m); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(buf.Bytes(), uint16(200))
	f.Add([]byte{0x81, 0x00}, uint16(10))
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f}, uint16(1000))
	f.Add([]byte{0x03, 1, 2}, uint16(3))
	f.Fuzz(func(t *testing.T, in []byte, limit uint16) {
		if limit == 0 {
			return
		}
		fr := NewFrameReader(bytes.NewReader(in), int(limit))
		var rebuilt []byte
		for {
			buffered := fr.Buffered()
			b, err := fr.Next()
			if buffered && errors.Is(err, ErrTruncated) {
				t.Fatalf("Buffered reported a truncated frame: %v", err)
			}
			if readEnded(t, in, rebuilt, err) {
				return
			}
			if len(b) == 0 || len(b) > int(limit) || cap(fr.buf) > int(limit) {
				t.Fatalf("frame of %d bytes, buffer %d, limit %d", len(b), cap(fr.buf), limit)
			}
			rebuilt = append(rebuilt, frameOf(b)...)
		}
	})
}
