package attachment

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Writer encrypts a file as it is written: the content goes in through
// Write, the ciphertext comes out to the destination one sealed segment at a
// time. It computes the content's digest and the blobs' hashes on the way,
// so a file is read once. Memory: two segment buffers.
type Writer struct {
	c      *Cipher
	dst    io.Writer
	buf    []byte // the segment being filled
	out    []byte // its ciphertext
	seg    int64  // index of the segment being filled
	n      int64  // content bytes written
	digest hash.Hash
	blob   hash.Hash
	blobs  []Hash
	err    error
	closed bool
}

// NewWriter returns a Writer of a file of exactly size content bytes under
// key, writing the ciphertext to dst.
func NewWriter(dst io.Writer, key Key, size int64) (*Writer, error) {
	c, err := NewCipher(key, size)
	if err != nil {
		return nil, err
	}
	return &Writer{
		c:      c,
		dst:    dst,
		buf:    make([]byte, 0, SegmentSize),
		out:    make([]byte, 0, SealedSegmentSize),
		digest: sha256.New(),
		blob:   sha256.New(),
		blobs:  make([]Hash, 0, c.layout.Blobs),
	}, nil
}

// Layout returns the file's layout.
func (w *Writer) Layout() Layout { return w.c.layout }

// Write encrypts p. Writing more than the size given to NewWriter fails with
// ErrLength; so does every call after an error.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("attachment: write after Close")
	}
	if int64(len(p)) > w.c.layout.Size-w.n {
		w.err = fmt.Errorf("%w: more than the %d bytes announced", ErrLength, w.c.layout.Size)
		return 0, w.err
	}
	w.digest.Write(p)
	written := 0
	for len(p) > 0 {
		m := min(len(p), SegmentSize-len(w.buf))
		w.buf = append(w.buf, p[:m]...)
		p = p[m:]
		written += m
		w.n += int64(m)
		if len(w.buf) == SegmentSize && w.seg < w.c.layout.Segments-1 {
			if err := w.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// flush seals the buffered segment, writes it out and adds it to its blob's
// hash.
func (w *Writer) flush() error {
	var err error
	w.out, err = w.c.SealSegment(w.out[:0], w.seg, w.buf)
	if err != nil {
		w.err = err
		return err
	}
	if _, err := w.dst.Write(w.out); err != nil {
		w.err = err
		return err
	}
	w.blob.Write(w.out)
	w.seg++
	w.buf = w.buf[:0]
	if w.seg%w.c.layout.BlobSegments == 0 || w.seg == w.c.layout.Segments {
		var h Hash
		w.blob.Sum(h[:0])
		w.blobs = append(w.blobs, h)
		w.blob.Reset()
	}
	return nil
}

// Close pads the content, seals the last segments and writes them out. It
// fails with ErrLength if fewer bytes than the announced size were written.
// It does not close the destination.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	if w.n != w.c.layout.Size {
		w.err = fmt.Errorf("%w: %d of the %d bytes announced", ErrLength, w.n, w.c.layout.Size)
		return w.err
	}
	for w.seg < w.c.layout.Segments {
		size := w.c.layout.SegmentPlainSize(w.seg)
		pad := size - len(w.buf)
		w.buf = append(w.buf, make([]byte, pad)...)
		if err := w.flush(); err != nil {
			return err
		}
	}
	w.closed = true
	return nil
}

// Digest returns SHA-256 of the content, after Close.
func (w *Writer) Digest() Hash {
	var h Hash
	if w.closed {
		w.digest.Sum(h[:0])
	}
	return h
}

// Blobs returns the blobs' hashes in order, after Close.
func (w *Writer) Blobs() []Hash {
	if !w.closed {
		return nil
	}
	return append([]Hash(nil), w.blobs...)
}

// Reader decrypts a whole ciphertext held in an io.ReaderAt, by content
// offset: it is an io.ReadSeeker and an io.ReaderAt over the content (so an
// HTTP server can answer range requests with it). Every segment is
// authenticated before any of its bytes is returned. It keeps one decrypted
// segment. The content's digest is checked only by Verify.
type Reader struct {
	c   *Cipher
	src io.ReaderAt
	off int64 // Read's position

	seg   int64  // the segment in plain, -1 for none
	in    []byte // its ciphertext
	bufs  []byte // plain's buffer
	plain []byte // its content
}

// NewReader returns a Reader of the file of size content bytes whose
// ciphertext src holds from offset 0.
func NewReader(src io.ReaderAt, key Key, size int64) (*Reader, error) {
	c, err := NewCipher(key, size)
	if err != nil {
		return nil, err
	}
	return &Reader{
		c:    c,
		src:  src,
		seg:  -1,
		in:   make([]byte, SealedSegmentSize),
		bufs: make([]byte, 0, SegmentSize),
	}, nil
}

// Size returns the content size.
func (r *Reader) Size() int64 { return r.c.layout.Size }

// segment decrypts segment j into r.plain (its content part).
func (r *Reader) segment(j int64) error {
	if j == r.seg {
		return nil
	}
	r.seg = -1
	in := r.in[:r.c.layout.SegmentPlainSize(j)+TagSize]
	if n, err := r.src.ReadAt(in, j*SealedSegmentSize); n < len(in) {
		if err == nil || errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: ciphertext ends in segment %d", ErrLength, j)
		}
		return err
	}
	pt, err := r.c.OpenSegment(r.bufs[:0], j, in)
	if err != nil {
		return err
	}
	r.plain, r.seg = pt, j
	return nil
}

// ReadAt reads content bytes at off.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("attachment: negative offset")
	}
	n := 0
	for len(p) > 0 {
		if off >= r.c.layout.Size {
			return n, io.EOF
		}
		j := off / SegmentSize
		if err := r.segment(j); err != nil {
			return n, err
		}
		m := copy(p, r.plain[off-j*SegmentSize:])
		p, off, n = p[m:], off+int64(m), n+m
	}
	return n, nil
}

// Read reads content bytes at the current position.
func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.ReadAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Seek sets the position of Read.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.c.layout.Size
	default:
		return 0, errors.New("attachment: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("attachment: negative position")
	}
	r.off = offset
	return offset, nil
}

// Verify decrypts every segment (the padding too, which must be zero) and
// compares the content's SHA-256 with digest: nil, ErrDigest, or the first
// segment's error. It leaves Read's position unchanged.
func (r *Reader) Verify(digest Hash) error {
	h := sha256.New()
	for j := int64(0); j < r.c.layout.Segments; j++ {
		if err := r.segment(j); err != nil {
			return err
		}
		h.Write(r.plain)
	}
	var got Hash
	h.Sum(got[:0])
	if got != digest {
		return ErrDigest
	}
	return nil
}
