package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

// frameOf returns uvarint(len(payload)) || payload.
func frameOf(payload []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(payload))), payload...)
}

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	msgs := []Message{sampleDeliver(t), &Ack{ID: 7, Code: CodeOK}, &Ack{ID: 8, Code: CodeDecryptFailed}, sampleDeliver(t)}
	for _, m := range msgs {
		if err := WriteFrame(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	fr := NewFrameReader(&buf, MaxMsgFrame)
	for i, want := range msgs {
		got := newLike(want)
		if err := fr.Read(got); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(marshal(t, got), marshal(t, want)) {
			t.Errorf("frame %d differs", i)
		}
	}
	if _, err := fr.Next(); err != io.EOF {
		t.Errorf("after the last frame: got %v, want io.EOF", err)
	}
}

// TestAppendFrame checks the length prefix around the 1-, 2- and 3-byte
// boundaries and that AppendFrame keeps what dst held.
func TestAppendFrame(t *testing.T) {
	for _, n := range []int{1, 100, 120, 121, 122, 16370, 16375, 16380, 16390, 50000} {
		// A ciphertext with an n-byte ratchet message encodes to n+3 to
		// n+6 bytes: enough to cross each boundary.
		c := &Ciphertext{Ratchet: pattern(n, 1)}
		want := marshal(t, c)
		out, err := AppendFrame([]byte("head"), c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, append([]byte("head"), frameOf(want)...)) {
			t.Errorf("ratchet of %d bytes: frame differs", n)
		}
	}
	// On error dst comes back unchanged.
	out, err := AppendFrame([]byte("head"), &Ack{})
	if err == nil || string(out) != "head" {
		t.Errorf("invalid message: got %q, %v", out, err)
	}
}

// payload is a frame payload of exactly n bytes (not a valid message:
// the frame layer does not look inside).
func payload(n int) []byte { return bytes.Repeat([]byte{0xab}, n) }

func TestFrameLimits(t *testing.T) {
	for _, limit := range []int{MaxMsgFrame, MaxBundleFrame, MaxRelayFrame, MaxGroupLogFrame, 127, 128, 1} {
		// At the limit: passes.
		fr := NewFrameReader(bytes.NewReader(frameOf(payload(limit))), limit)
		b, err := fr.Next()
		if err != nil || len(b) != limit {
			t.Errorf("limit %d: frame at the limit: %d bytes, %v", limit, len(b), err)
		}
		// One byte over, with the payload missing: ErrTooLarge, not
		// ErrTruncated, so the payload was not waited for.
		prefix := binary.AppendUvarint(nil, uint64(limit)+1)
		fr = NewFrameReader(bytes.NewReader(prefix), limit)
		if _, err := fr.Next(); !errors.Is(err, ErrTooLarge) {
			t.Errorf("limit %d: one byte over: got %v, want ErrTooLarge", limit, err)
		}
	}
}

// repeatReader returns b over and over.
type repeatReader struct {
	b   []byte
	off int
	n   int64 // bytes read
}

func (r *repeatReader) Read(p []byte) (int, error) {
	k := 0
	for k < len(p) {
		c := copy(p[k:], r.b[r.off:])
		k += c
		r.off = (r.off + c) % len(r.b)
	}
	r.n += int64(k)
	return k, nil
}

// TestOversizedFrameAllocates reads a frame length one over the limit many
// times and checks that nothing near the frame's size was allocated.
func TestOversizedFrameAllocates(t *testing.T) {
	prefix := binary.AppendUvarint(nil, MaxMsgFrame+1)
	fr := NewFrameReader(&repeatReader{b: prefix}, MaxMsgFrame)
	const runs = 100
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		if _, err := fr.Next(); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("got %v, want ErrTooLarge", err)
		}
	}
	runtime.ReadMemStats(&after)
	perRun := (after.TotalAlloc - before.TotalAlloc) / runs
	if perRun > 1024 {
		t.Errorf("an oversized frame allocated %d bytes (limit %d)", perRun, MaxMsgFrame)
	}
	if cap(fr.buf) != 0 {
		t.Errorf("frame buffer grew to %d for oversized frames", cap(fr.buf))
	}
}

// TestFrameBufferReused checks that frames of a steady size are read
// without allocating.
func TestFrameBufferReused(t *testing.T) {
	r := &repeatReader{b: frameOf(payload(10000))}
	fr := NewFrameReader(r, MaxMsgFrame)
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Next allocated %v times per frame", allocs)
	}
	if cap(fr.buf) > MaxMsgFrame {
		t.Errorf("buffer of %d over the limit", cap(fr.buf))
	}
}

func TestFrameBufferBounded(t *testing.T) {
	var in []byte
	for n := 1; n <= MaxBundleFrame; n = n*3 + 1 {
		in = append(in, frameOf(payload(n))...)
	}
	in = append(in, frameOf(payload(MaxBundleFrame))...)
	fr := NewFrameReader(bytes.NewReader(in), MaxBundleFrame)
	for {
		_, err := fr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if cap(fr.buf) > MaxBundleFrame {
			t.Fatalf("buffer grew to %d, limit %d", cap(fr.buf), MaxBundleFrame)
		}
	}
}

func TestFrameErrors(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty stream", nil, io.EOF},
		{"empty frame", []byte{0x00}, ErrMalformed},
		{"non-minimal length", []byte{0x81, 0x00, 0x01}, ErrMalformed},
		{"length too large", binary.AppendUvarint(nil, 1<<40), ErrTooLarge},
		{"length overflows 64 bits", bytes.Repeat([]byte{0xff}, 11), ErrTooLarge},
		{"truncated length", []byte{0x81}, ErrTruncated},
		{"truncated payload", []byte{0x05, 1, 2, 3}, ErrTruncated},
		{"truncated after a frame", append(frameOf([]byte{1}), 0x02, 1), ErrTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fr := NewFrameReader(bytes.NewReader(c.in), MaxMsgFrame)
			var err error
			for err == nil {
				_, err = fr.Next()
			}
			if !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
			if errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
				t.Error("ErrTruncated is not an ErrMalformed")
			}
		})
	}
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

func TestFrameReadError(t *testing.T) {
	reset := errors.New("stream reset")
	fr := NewFrameReader(failingReader{reset}, MaxMsgFrame)
	if _, err := fr.Next(); !errors.Is(err, reset) || errors.Is(err, ErrMalformed) {
		t.Errorf("got %v, want the reader's error", err)
	}
	fr = NewFrameReader(io.MultiReader(bytes.NewReader([]byte{0x05, 1}), failingReader{reset}), MaxMsgFrame)
	if _, err := fr.Next(); !errors.Is(err, reset) {
		t.Errorf("in a payload: got %v, want the reader's error", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestWriteFrameErrors(t *testing.T) {
	if err := WriteFrame(failingWriter{}, &Ack{ID: 1, Code: CodeOK}); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("got %v, want the writer's error", err)
	}
	var buf bytes.Buffer
	if err := WriteFrame(&buf, &Ack{ID: 1}); !errors.Is(err, ErrMalformed) || buf.Len() != 0 {
		t.Errorf("invalid message: got %v and %d bytes written", err, buf.Len())
	}
}

// chunkReader hands out its input in the given chunk sizes, one per Read.
type chunkReader struct {
	in     []byte
	chunks []int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.in) == 0 {
		return 0, io.EOF
	}
	n := len(r.in)
	if len(r.chunks) > 0 {
		n = min(n, r.chunks[0])
		r.chunks = r.chunks[1:]
	}
	n = copy(p, r.in[:n])
	r.in = r.in[n:]
	return n, nil
}

func TestFrameBuffered(t *testing.T) {
	a := frameOf(payload(10))
	b := frameOf(payload(200))
	in := append(append(append([]byte(nil), a...), b...), a...)
	// First read: frame a and half of b; second: the rest.
	r := &chunkReader{in: in, chunks: []int{len(a) + 100, len(in)}}
	fr := NewFrameReader(r, MaxMsgFrame)
	if fr.Buffered() {
		t.Error("Buffered before anything was read")
	}
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	if fr.Buffered() {
		t.Error("Buffered with half a frame in the buffer")
	}
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	if !fr.Buffered() {
		t.Error("not Buffered with a whole frame in the buffer")
	}
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	if fr.Buffered() {
		t.Error("Buffered at the end")
	}

	// A bad length is reported as buffered, so Next reports it at once.
	for _, bad := range [][]byte{
		append(frameOf(payload(1)), binary.AppendUvarint(nil, MaxMsgFrame+1)...),
		append(frameOf(payload(1)), 0xff, 0xff, 0xff, 0xff),
	} {
		fr = NewFrameReader(bytes.NewReader(bad), MaxMsgFrame)
		if _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
		if !fr.Buffered() {
			t.Errorf("% x: bad length not reported", bad)
		}
		if _, err := fr.Next(); !errors.Is(err, ErrTooLarge) {
			t.Errorf("% x: got %v", bad, err)
		}
	}
	// An incomplete length is not.
	fr = NewFrameReader(&chunkReader{in: append(frameOf(payload(1)), 0x81, 0x01), chunks: []int{3}}, MaxMsgFrame)
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	if fr.Buffered() {
		t.Error("half a length reported as a frame")
	}
}

func TestFrameLimitOf(t *testing.T) {
	for id, want := range map[string]int{MsgProtocol: MaxMsgFrame, BundleProtocol: MaxBundleFrame, RelayProtocol: MaxRelayFrame, BlobProtocol: MaxBlobFrame, GroupLogProtocol: MaxGroupLogFrame} {
		if got, ok := FrameLimit(id); !ok || got != want {
			t.Errorf("FrameLimit(%s) = %d, %v", id, got, ok)
		}
	}
	if _, ok := FrameLimit("/sealpost/msg/2.0.0"); ok {
		t.Error("unknown protocol has a limit")
	}
}

func TestFrameReaderRead(t *testing.T) {
	fr := NewFrameReader(bytes.NewReader([]byte{0x02, 0x08, 0x01}), MaxMsgFrame)
	var a Ack
	if err := fr.Read(&a); !errors.Is(err, ErrMalformed) {
		t.Errorf("invalid ack: got %v", err)
	}
	if err := fr.Read(&a); err != io.EOF {
		t.Errorf("at the end: got %v, want io.EOF", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("NewFrameReader with limit 0 did not panic")
		}
	}()
	NewFrameReader(bytes.NewReader(nil), 0)
}

// TestFrameLen: Len returns the next frame's length without reading its
// payload (the bytes after the prefix stay unread until Next), again the
// same until Next, and its errors are Next's; Buffered and Next go on
// from it.
func TestFrameLen(t *testing.T) {
	in := append(frameOf(payload(300)), frameOf(payload(5))...)
	in = append(in, binary.AppendUvarint(nil, MaxMsgFrame+1)...)
	r := bytes.NewReader(in)
	fr := NewFrameReader(r, MaxMsgFrame)
	for range 2 {
		n, err := fr.Len()
		if err != nil || n != 300 {
			t.Fatalf("Len: got %d, %v, want 300", n, err)
		}
	}
	if !fr.Buffered() {
		t.Error("Buffered after Len: false, the frame is there")
	}
	b, err := fr.Next()
	if err != nil || !bytes.Equal(b, payload(300)) {
		t.Fatalf("Next after Len: %d bytes, %v", len(b), err)
	}
	if n, err := fr.Len(); err != nil || n != 5 {
		t.Fatalf("second Len: got %d, %v, want 5", n, err)
	}
	if b, err := fr.Next(); err != nil || !bytes.Equal(b, payload(5)) {
		t.Fatalf("second Next: %d bytes, %v", len(b), err)
	}
	if _, err := fr.Len(); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Len of an oversized frame: got %v, want ErrTooLarge", err)
	}

	// A frame whose payload has not arrived: Len answers from the prefix.
	fr = NewFrameReader(io.MultiReader(bytes.NewReader(binary.AppendUvarint(nil, 4000)), &failReader{}), MaxMsgFrame)
	if n, err := fr.Len(); err != nil || n != 4000 {
		t.Errorf("Len before the payload: got %d, %v, want 4000", n, err)
	}
	if cap(fr.buf) != 0 {
		t.Errorf("Len allocated a buffer of %d", cap(fr.buf))
	}
}

// failReader fails every read.
type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, errors.New("no more") }

// TestFrameKeep: with Keep, a frame over it is read into a buffer the
// reader does not keep; frames up to it reuse the kept one.
func TestFrameKeep(t *testing.T) {
	in := append(frameOf(payload(100)), frameOf(payload(20000))...)
	in = append(in, frameOf(payload(200))...)
	fr := NewFrameReader(bytes.NewReader(in), MaxMsgFrame)
	fr.Keep(1000)
	for i, n := range []int{100, 20000, 200} {
		b, err := fr.Next()
		if err != nil || !bytes.Equal(b, payload(n)) {
			t.Fatalf("frame %d: %d bytes, %v", i, len(b), err)
		}
		if cap(fr.buf) > 1000 {
			t.Fatalf("after a frame of %d: kept a buffer of %d, Keep 1000", n, cap(fr.buf))
		}
	}
}
