package protocol

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A frame is uvarint(n) || n bytes of one encoded message. n is at least 1
// (every message has a version) and at most the protocol's frame limit; the
// uvarint is minimal (no trailing 0x80 groups).

// AppendFrame appends m as one frame to dst: its canonical encoding with its
// length in front. It fails with ErrTooLarge when the encoding is over m's
// limit. A caller that keeps dst between calls writes frames without
// allocating, and can put several frames (a batch of Acks) in one Write.
func AppendFrame(dst []byte, m Message) ([]byte, error) {
	start := len(dst)
	// Reserve the largest prefix a frame can have, encode after it, then
	// move the encoding next to its real prefix.
	dst = append(dst, make([]byte, maxFramePrefix)...)
	out, err := encode(dst, m)
	if err != nil {
		return dst[:start], err
	}
	n := len(out) - start - maxFramePrefix
	p := binary.PutUvarint(out[start:start+maxFramePrefix], uint64(n))
	if p < maxFramePrefix {
		copy(out[start+p:], out[start+maxFramePrefix:])
	}
	return out[:start+p+n], nil
}

// maxFramePrefix is the longest length prefix of any frame this package
// writes: every message's limit is below 2^28 (a group log frame holds
// an entry of 2 MiB).
const maxFramePrefix = 4

// WriteFrame writes m to w as one frame, in a single Write.
func WriteFrame(w io.Writer, m Message) error {
	b, err := AppendFrame(nil, m)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("protocol: write %s frame: %w", m.kind(), err)
	}
	return nil
}

// FrameReader reads frames of one protocol from a stream. It checks each
// frame's length against its limit before reading or allocating anything
// for it, and reuses one buffer, which grows to at most the limit. Not safe
// for concurrent use.
type FrameReader struct {
	r      *bufio.Reader
	limit  int
	prefix int // longest minimal prefix of a length <= limit
	buf    []byte
	next   int // the next frame's length, read by Len; 0: not read yet
	keep   int // the largest buffer kept between frames (Keep); 0: limit
}

// frameReadBuffer is the size of the FrameReader's read-ahead buffer: the
// small frames of a pipelined stream (Acks, short messages) are read with
// few system calls, and Buffered can tell whether the next frame is already
// there. Larger frames are read straight into the frame buffer.
const frameReadBuffer = 4 << 10

// NewFrameReader returns a reader of frames of at most limit bytes (one of
// the Max...Frame constants; see FrameLimit).
func NewFrameReader(r io.Reader, limit int) *FrameReader {
	if limit < 1 {
		panic("protocol: frame limit below 1")
	}
	return &FrameReader{
		r:      bufio.NewReaderSize(r, frameReadBuffer),
		limit:  limit,
		prefix: uvarintLen(uint64(limit)),
	}
}

// Next reads the next frame and returns its payload, valid until the next
// call. It returns io.EOF when the stream ends between frames; ErrTruncated
// when it ends inside one; ErrTooLarge when the length is over the limit
// (nothing of the payload has been read then); ErrMalformed for a zero or
// non-minimal length. After an error the stream is out of step: reset it.
func (fr *FrameReader) Next() ([]byte, error) {
	n, err := fr.Len()
	if err != nil {
		return nil, err
	}
	fr.next = 0
	var b []byte
	if fr.keep > 0 && n > fr.keep {
		b = make([]byte, n) // not kept: see Keep
	} else {
		if cap(fr.buf) < n {
			fr.buf = make([]byte, n, fr.grow(n))
		}
		b = fr.buf[:n]
	}
	if k, err := io.ReadFull(fr.r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: stream ended after %d of %d bytes", ErrTruncated, k, n)
		}
		return nil, fmt.Errorf("protocol: read frame: %w", err)
	}
	return b, nil
}

// Len reads the next frame's length prefix and returns the length, checked
// as Next checks it (with the same errors), without reading or allocating
// anything for the payload; the next Next or Read returns that frame, and
// Len called again before it returns the same length. A service that
// bounds the bytes of the requests it holds across streams reserves them
// with it before the frame is read.
func (fr *FrameReader) Len() (int, error) {
	if fr.next > 0 {
		return fr.next, nil
	}
	var n uint64
	for i := 0; ; i++ {
		c, err := fr.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if i == 0 {
					return 0, io.EOF
				}
				return 0, fmt.Errorf("%w: stream ended in a length prefix", ErrTruncated)
			}
			return 0, fmt.Errorf("protocol: read frame: %w", err)
		}
		n |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, fmt.Errorf("%w: frame length not minimally encoded", ErrMalformed)
			}
			break
		}
		if i+1 == fr.prefix {
			// A minimal prefix longer than this holds a length over the
			// limit: refuse without waiting for more.
			return 0, fmt.Errorf("%w: frame length prefix longer than %d bytes, limit %d", ErrTooLarge, fr.prefix, fr.limit)
		}
	}
	if n > uint64(fr.limit) {
		return 0, fmt.Errorf("%w: frame of %d bytes, limit %d", ErrTooLarge, n, fr.limit)
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	fr.next = int(n)
	return fr.next, nil
}

// Keep bounds the buffer the reader keeps between frames to n bytes: a
// frame larger than n is read into a buffer of its own, which the reader
// forgets once Next returns it. So a stream that carried one large frame
// does not hold that much memory for as long as it stays open. Zero (the
// default) keeps a buffer of up to the limit.
func (fr *FrameReader) Keep(n int) { fr.keep = max(n, 0) }

// grow picks the new capacity of the frame buffer: double the old one, so a
// stream of slowly growing frames does not allocate each time, but never
// over the limit, nor over the buffer kept (Keep; n is at most that).
func (fr *FrameReader) grow(n int) int {
	c := min(max(2*cap(fr.buf), 512, n), fr.limit)
	if fr.keep > 0 {
		c = min(c, fr.keep)
	}
	return c
}

// Read reads the next frame into m (see Next for the errors; m's Unmarshal
// errors are returned as they are).
func (fr *FrameReader) Read(m Message) error {
	b, err := fr.Next()
	if err != nil {
		return err
	}
	return m.Unmarshal(b)
}

// Buffered reports whether a whole frame has already arrived, so that Next
// will not block. A receiver batches with it: it reads one frame (blocking),
// then more while Buffered is true (up to its batch size), commits the batch
// and acknowledges it. A frame larger than the read-ahead buffer is never
// reported; it simply ends the batch.
func (fr *FrameReader) Buffered() bool {
	have := fr.r.Buffered()
	if fr.next > 0 {
		return have >= fr.next // its length was read by Len
	}
	if have == 0 {
		return false
	}
	head, _ := fr.r.Peek(min(have, fr.prefix))
	n, k := binary.Uvarint(head)
	if k <= 0 {
		// Incomplete prefix (false), or a bad one: let Next report it.
		return k < 0 || len(head) == fr.prefix
	}
	return n > uint64(fr.limit) || uint64(have-k) >= n
}

// Body returns a reader of the n unframed bytes that follow the last frame
// (BlobProtocol sends a blob's bytes so, after the frame that announces
// them), read through the same buffer as the frames. The caller reads all n
// bytes before the next Next; a stream that ends sooner gives
// io.ErrUnexpectedEOF.
func (fr *FrameReader) Body(n int64) io.Reader {
	return &rawBody{r: fr.r, n: n}
}

// rawBody is an io.LimitedReader that reports a short stream as
// io.ErrUnexpectedEOF instead of a clean end.
type rawBody struct {
	r io.Reader
	n int64
}

func (b *rawBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	k, err := b.r.Read(p)
	b.n -= int64(k)
	if errors.Is(err, io.EOF) {
		if b.n > 0 {
			return k, io.ErrUnexpectedEOF
		}
		err = nil
	}
	return k, err
}
