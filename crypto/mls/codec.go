package mls

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The TLS presentation language of RFC 9420 §2.1: big-endian integers,
// vectors with a variable-size length header (RFC 9000's varint, minimal
// encoding required), optional<T> with a presence octet of 0 or 1.

// maxVarint is the largest length a vector header can carry (2^30-1).
const maxVarint = 1<<30 - 1

// errShort and errTrailing are the two ways a decoder runs out of step with
// its input; both surface as ErrMalformed.
var (
	errShort    = errors.New("truncated")
	errTrailing = errors.New("trailing bytes")
)

// writer appends encodings to b. An encoding that cannot be represented (a
// vector longer than 2^30-1 bytes) sets err; later writes are ignored.
type writer struct {
	b   []byte
	err error
}

func (w *writer) u8(v uint8)   { w.b = append(w.b, v) }
func (w *writer) u16(v uint16) { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *writer) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *writer) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }

// bytes appends v without a length (a fixed-size field).
func (w *writer) bytes(v []byte) { w.b = append(w.b, v...) }

// opaque appends v as opaque<V>.
func (w *writer) opaque(v []byte) {
	w.varint(len(v))
	w.b = append(w.b, v...)
}

// varint appends n as a minimal variable-length integer.
func (w *writer) varint(n int) {
	switch {
	case n < 0 || n > maxVarint:
		if w.err == nil {
			w.err = fmt.Errorf("%w: vector of %d bytes", ErrTooLarge, n)
		}
	case n < 1<<6:
		w.b = append(w.b, byte(n))
	case n < 1<<14:
		w.b = append(w.b, 0x40|byte(n>>8), byte(n))
	default:
		w.b = append(w.b, 0x80|byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// vector appends what body writes, prefixed with its length. It writes
// the body after room for the longest header, so a large body (one that
// needs it) is never moved; a shorter header moves the body back.
func (w *writer) vector(body func()) {
	w.b = append(w.b, 0, 0, 0, 0)
	start := len(w.b)
	body()
	n := len(w.b) - start
	var hdr []byte
	switch {
	case n < 1<<6:
		hdr = []byte{byte(n)}
	case n < 1<<14:
		hdr = []byte{0x40 | byte(n>>8), byte(n)}
	case n <= maxVarint:
		binary.BigEndian.PutUint32(w.b[start-4:], 0x80000000|uint32(n))
		return
	default:
		if w.err == nil {
			w.err = fmt.Errorf("%w: vector of %d bytes", ErrTooLarge, n)
		}
		return
	}
	at := start - 4
	copy(w.b[at:], hdr)
	copy(w.b[at+len(hdr):], w.b[start:])
	w.b = w.b[:at+len(hdr)+n]
}

// optional appends the presence octet and, if present, what body writes.
func (w *writer) optional(present bool, body func()) {
	if !present {
		w.u8(0)
		return
	}
	w.u8(1)
	body()
}

// result returns the bytes written, or the first error.
func (w *writer) result() ([]byte, error) {
	if w.err != nil {
		return nil, w.err
	}
	return w.b, nil
}

// reader consumes encodings from b. The first failure sets err and every
// later read returns zero values, so decoders check err once at the end.
// Every length is checked against the bytes left (and against the field's
// own bound) before anything is allocated.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.fail(errShort)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// varint reads a variable-length integer and refuses the "11" prefix and
// non-minimal encodings.
func (r *reader) varint() int {
	first := r.take(1)
	if first == nil {
		return 0
	}
	prefix := first[0] >> 6
	if prefix == 3 {
		r.fail(errors.New("invalid varint prefix"))
		return 0
	}
	n := 1 << prefix
	v := uint32(first[0] & 0x3f)
	rest := r.take(n - 1)
	if rest == nil && n > 1 {
		return 0
	}
	for _, c := range rest {
		v = v<<8 | uint32(c)
	}
	if prefix >= 1 && v < 1<<(8*(n/2)-2) {
		r.fail(errors.New("non-minimal varint"))
		return 0
	}
	return int(v)
}

// length reads a vector header and checks it against max and the input.
func (r *reader) length(max int) int {
	n := r.varint()
	if r.err != nil {
		return 0
	}
	if n > max {
		r.fail(fmt.Errorf("vector of %d bytes exceeds %d", n, max))
		return 0
	}
	if n > len(r.b) {
		r.fail(errShort)
		return 0
	}
	return n
}

// opaque reads opaque<V> of at most max bytes into a fresh slice (never nil
// on success, so a present empty value differs from an absent one).
func (r *reader) opaque(max int) []byte {
	n := r.length(max)
	v := r.take(n)
	if r.err != nil {
		return nil
	}
	return append(make([]byte, 0, n), v...)
}

// opaqueRef is opaque without the copy: the result aliases the input, for
// values used only while the input is.
func (r *reader) opaqueRef(max int) []byte {
	return r.take(r.length(max))
}

// fixed reads exactly n bytes into a fresh slice.
func (r *reader) fixed(n int) []byte {
	v := r.take(n)
	if r.err != nil {
		return nil
	}
	return append(make([]byte, 0, n), v...)
}

// vector returns a reader over the body of a vector of at most max bytes.
// Errors inside the body are reported through r by finish.
func (r *reader) vector(max int) *reader {
	n := r.length(max)
	return &reader{b: r.take(n), err: r.err}
}

// finish folds a sub-reader's result into r; the body must be consumed.
func (r *reader) finish(sub *reader) {
	if sub.err != nil {
		r.fail(sub.err)
	} else if len(sub.b) != 0 {
		r.fail(errTrailing)
	}
}

// more reports whether a vector body has elements left to read.
func (r *reader) more() bool { return r.err == nil && len(r.b) > 0 }

// optional reads a presence octet.
func (r *reader) optional() bool {
	switch r.u8() {
	case 0:
		return false
	case 1:
		return r.err == nil
	default:
		r.fail(errors.New("presence octet not 0 or 1"))
		return false
	}
}

// done returns nil if the whole input was read without error.
func (r *reader) done() error {
	if r.err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, r.err)
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d %v", ErrMalformed, len(r.b), errTrailing)
	}
	return nil
}

// decodeAll decodes b into v with dec and requires that nothing is left.
func decodeAll(b []byte, dec func(*reader)) error {
	r := &reader{b: b}
	dec(r)
	return r.done()
}

// encode runs enc on a fresh writer.
func encode(enc func(*writer)) ([]byte, error) {
	w := &writer{}
	enc(w)
	return w.result()
}

// mustEncode is encode for values the package built itself, whose vectors
// are bounded well below 2^30 bytes by the limits their decoders enforce.
func mustEncode(enc func(*writer)) []byte {
	b, err := encode(enc)
	if err != nil {
		panic("mls: " + err.Error())
	}
	return b
}
