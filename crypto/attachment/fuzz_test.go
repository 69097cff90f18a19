package attachment

import (
	"bytes"
	"io"
	"testing"
)

// The fuzz targets use files of one or two segments, so that inputs stay
// small enough for the fuzzer to mutate and minimize; the multi-blob cases
// are in the tamper tests. Long runs: go test ./crypto/attachment -run '^$'
// -fuzz '^FuzzOpenBlob$' -fuzztime 3m -parallel 1.

// fuzzFile is a file of two segments in one blob: 64 KiB and a short one.
const fuzzSize = SegmentSize + 3000

// FuzzOpenBlob feeds OpenBlob arbitrary bytes as the blob of a small file
// (one segment): it must never panic, and it accepts only the blob that was
// sealed.
func FuzzOpenBlob(f *testing.F) {
	key := testKey(0x30)
	pt := content(3000, 0x31)
	ct, w := encrypt(f, key, pt)
	want := w.Blobs()[0]
	f.Add(ct)
	f.Add(ct[:len(ct)-1])
	f.Add(append(bytes.Clone(ct), 0))
	f.Add([]byte{})
	c, err := NewCipher(key, int64(len(pt)))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, blob []byte) {
		var out bytes.Buffer
		n, err := c.OpenBlob(&out, bytes.NewReader(blob), 0, want)
		if int64(out.Len()) != n {
			t.Fatalf("reported %d bytes, wrote %d", n, out.Len())
		}
		if err == nil && !bytes.Equal(blob[:len(ct)], ct) {
			t.Fatal("a blob that was never sealed opened")
		}
	})
}

// FuzzOpenSegment opens arbitrary bytes as segment 0 or 1 of a two-segment
// file, under any claimed size in its bucket: it must never panic and opens
// only what was sealed there.
func FuzzOpenSegment(f *testing.F) {
	key := testKey(0x40)
	pt := content(fuzzSize, 0x41)
	for i := range pt {
		pt[i] |= 1 // no zero byte: a shorter size must show in the padding
	}
	ct, w := encrypt(f, key, pt)
	l := w.Layout()
	segs := segments(l, ct)
	f.Add(uint8(1), uint16(0), segs[1])
	f.Add(uint8(1), uint16(10), segs[1])
	f.Add(uint8(0), uint16(0), segs[1])
	f.Add(uint8(1), uint16(0), segs[1][:100])
	f.Fuzz(func(t *testing.T, j uint8, less uint16, seg []byte) {
		size := int64(fuzzSize) - int64(less)
		c, err := NewCipher(key, size)
		if err != nil || c.Layout().Segments != l.Segments {
			return
		}
		out, err := c.OpenSegment(nil, int64(j), seg)
		if err != nil {
			if out != nil {
				t.Fatal("content returned with an error")
			}
			return
		}
		if int(j) >= len(segs) || !bytes.Equal(seg, segs[j]) {
			t.Fatal("a segment that was never sealed there opened")
		}
		if size != fuzzSize && j == 1 {
			t.Fatal("a shorter size hid content in the padding")
		}
	})
}

// FuzzReader decrypts an arbitrary small ciphertext under an arbitrary
// size: it must never panic, and verifies only the one that was sealed.
func FuzzReader(f *testing.F) {
	key := testKey(0x50)
	pt := content(2000, 0x51)
	ct, w := encrypt(f, key, pt)
	f.Add(uint16(len(pt)), ct)
	f.Add(uint16(len(pt)-1), ct)
	f.Add(uint16(len(pt)), ct[:len(ct)-1])
	f.Fuzz(func(t *testing.T, size uint16, ciphertext []byte) {
		r, err := NewReader(bytes.NewReader(ciphertext), key, int64(size))
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			return
		}
		if r.Verify(w.Digest()) == nil && (r.Size() != int64(len(pt)) || !bytes.HasPrefix(ciphertext, ct)) {
			t.Fatal("a ciphertext that was never sealed verified")
		}
	})
}
