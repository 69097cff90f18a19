package store

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// Records are encoded as a version byte followed by their fields in a fixed
// order: unsigned integers as uvarints, times as a varint of Unix seconds and
// a uvarint of nanoseconds (so the zero time and times far from now survive),
// byte strings and strings as a uvarint length and the bytes, fixed-size IDs
// as their bytes, booleans as one byte 0 or 1. A decoder accepts exactly the
// versions it knows and no trailing bytes; every length is checked against
// the bytes that remain before anything is allocated.

// enc appends fields to a buffer.
type enc struct{ b []byte }

func newEnc(version byte, sizeHint int) *enc {
	e := &enc{b: make([]byte, 0, 1+sizeHint)}
	e.b = append(e.b, version)
	return e
}

func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) u8(v uint8)       { e.b = append(e.b, v) }
func (e *enc) fixed(p []byte)   { e.b = append(e.b, p...) }

func (e *enc) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *enc) bytes(p []byte) {
	e.uvarint(uint64(len(p)))
	e.b = append(e.b, p...)
}

func (e *enc) str(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *enc) time(t time.Time) {
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
}

// dec reads fields; the first error sticks and later reads return zero
// values, so a decoder checks err once at the end.
type dec struct {
	b   []byte
	err error
}

// newDec checks the version byte of a record named what.
func newDec(what string, b []byte, versions ...byte) (*dec, byte) {
	d := &dec{b: b}
	if len(b) == 0 {
		d.fail(what, "empty")
		return d, 0
	}
	v := b[0]
	d.b = b[1:]
	for _, ok := range versions {
		if v == ok {
			return d, v
		}
	}
	d.fail(what, fmt.Sprintf("unknown version %d", v))
	return d, v
}

func (d *dec) fail(what, why string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %s", ErrCorrupt, what, why)
	}
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("field", "bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("field", "bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) u8() uint8 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail("field", "short")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) u32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail("field", "uint32 out of range")
		return 0
	}
	return uint32(v)
}

func (d *dec) bool() bool {
	switch d.u8() {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("field", "bad bool")
		return false
	}
}

// fixed copies len(dst) bytes into dst.
func (d *dec) fixed(dst []byte) {
	if d.err != nil {
		return
	}
	if len(d.b) < len(dst) {
		d.fail("field", "short")
		return
	}
	copy(dst, d.b)
	d.b = d.b[len(dst):]
}

// bytes returns a copy of a length-prefixed byte string of at most max
// bytes; nil for an empty one.
func (d *dec) bytes(max int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) || n > uint64(max) {
		d.fail("field", "length out of range")
		return nil
	}
	if n == 0 {
		return nil
	}
	p := make([]byte, n)
	copy(p, d.b)
	d.b = d.b[n:]
	return p
}

func (d *dec) str(max int) string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) || n > uint64(max) {
		d.fail("field", "length out of range")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *dec) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= 1e9 {
		d.fail("field", "bad nanoseconds")
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// count reads an element count and checks it against the bytes left,
// given that each element takes at least minSize bytes.
func (d *dec) count(max, minSize int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(max) || n*uint64(minSize) > uint64(len(d.b)) {
		d.fail("field", "count out of range")
		return 0
	}
	return int(n)
}

// finish reports the first error, or trailing bytes, for a record named what.
func (d *dec) finish(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.fail(what, "trailing bytes")
	}
	if d.err != nil {
		return fmt.Errorf("decode %s: %w", what, d.err)
	}
	return nil
}

// timeKey encodes t as 8 bytes that sort like the times: Unix nanoseconds,
// clamped to the int64 range, with the sign bit flipped.
func timeKey(t time.Time) [8]byte {
	var ns int64
	switch {
	case t.Before(minKeyTime):
		ns = math.MinInt64
	case t.After(maxKeyTime):
		ns = math.MaxInt64
	default:
		ns = t.UnixNano()
	}
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(ns)^(1<<63))
	return k
}

var (
	minKeyTime = time.Unix(0, math.MinInt64)
	maxKeyTime = time.Unix(0, math.MaxInt64)
)

func u64Key(v uint64) [8]byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], v)
	return k
}
