package attachment

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"testing"

	"github.com/sealpost/sealpost/crypto/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files under crypto/testdata")

func testKey(b byte) Key {
	var k Key
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

// content returns n deterministic bytes.
func content(n int, seed byte) []byte {
	r := mrand.NewChaCha8([32]byte{seed})
	b := make([]byte, n)
	r.Read(b)
	return b
}

// encrypt encrypts pt with a Writer, writing it in chunks of odd sizes.
func encrypt(t testing.TB, key Key, pt []byte) (ct []byte, w *Writer) {
	t.Helper()
	var out bytes.Buffer
	w, err := NewWriter(&out, key, int64(len(pt)))
	if err != nil {
		t.Fatal(err)
	}
	rest := pt
	for step := 1; len(rest) > 0; step = step*3 + 7 {
		m := min(step, len(rest))
		if n, err := w.Write(rest[:m]); err != nil || n != m {
			t.Fatalf("Write: %d, %v", n, err)
		}
		rest = rest[m:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), w
}

func TestPaddedSize(t *testing.T) {
	for _, tc := range []struct{ n, want int64 }{
		{-1, -1},
		{0, MinPadded},
		{1, MinPadded},
		{MinPadded, MinPadded},
		{MinPadded + 1, MinPadded + 52},
		{MinPadded + 52, MinPadded + 52},
		{MinPadded + 53, 1076 + 54},
		{MaxSize, MaxSize},
		{MaxSize + 1, -1},
	} {
		if got := PaddedSize(tc.n); got != tc.want {
			t.Errorf("PaddedSize(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
	// Each bucket is at most 5% (and one byte) over the one below, and
	// every size pads to the smallest bucket at or above it.
	b := int64(MinPadded)
	for b < MaxSize {
		next := PaddedSize(b + 1)
		if next <= b || float64(next) > float64(b)*1.05+1 {
			t.Fatalf("bucket after %d is %d", b, next)
		}
		if PaddedSize(next-1) != next || PaddedSize(next) != next {
			t.Fatalf("sizes below bucket %d pad elsewhere", next)
		}
		b = next
	}
}

// TestMaxSize checks that MaxSize is the largest bucket whose layout fits.
func TestMaxSize(t *testing.T) {
	b, last := int64(MinPadded), int64(0)
	for b <= MaxPadded {
		last = b
		b += (b + 19) / 20
	}
	if last != MaxSize {
		t.Fatalf("largest bucket within MaxPadded is %d, MaxSize is %d", last, int64(MaxSize))
	}
	l, err := NewLayout(MaxSize)
	if err != nil || l.Blobs > MaxBlobs || l.BlobSegments > MaxBlobSegments {
		t.Fatalf("layout of MaxSize: %+v, %v", l, err)
	}
	if _, err := NewLayout(MaxSize + 1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("NewLayout(MaxSize+1): %v, want ErrTooLarge", err)
	}
	if _, err := NewLayout(-1); !errors.Is(err, ErrLength) {
		t.Fatalf("NewLayout(-1): %v, want ErrLength", err)
	}
}

func TestLayout(t *testing.T) {
	for _, size := range []int64{0, 1, 1023, 65535, 65536, 65537, 1 << 20, 64 << 20, 100 << 20, 256 << 20, 1 << 30, MaxSize} {
		l, err := NewLayout(size)
		if err != nil {
			t.Fatal(err)
		}
		if l.Blobs < 1 || l.Blobs > MaxBlobs {
			t.Errorf("size %d: %d blobs", size, l.Blobs)
		}
		if s := l.BlobSegments; s < MinBlobSegments || s > MaxBlobSegments || s&(s-1) != 0 {
			t.Errorf("size %d: %d segments per blob", size, s)
		}
		if l.BlobSegments > MinBlobSegments && (l.Segments+l.BlobSegments/2-1)/(l.BlobSegments/2) <= MaxBlobs {
			t.Errorf("size %d: blobs of %d segments where half would do", size, l.BlobSegments)
		}
		var total, plain int64
		for i := range l.Blobs {
			if l.BlobOffset(i) != total {
				t.Errorf("size %d: blob %d at %d, want %d", size, i, l.BlobOffset(i), total)
			}
			total += l.BlobSize(i)
			off, n := l.BlobContent(i)
			if off != plain {
				t.Errorf("size %d: blob %d content at %d, want %d", size, i, off, plain)
			}
			plain += n
		}
		if total != l.CiphertextSize() || plain != size {
			t.Errorf("size %d: blobs hold %d bytes of %d, content %d", size, total, l.CiphertextSize(), plain)
		}
		if l.BlobSize(l.Blobs) != 0 || l.BlobSize(-1) != 0 {
			t.Errorf("size %d: a blob past the end has a size", size)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	key := testKey(1)
	for _, size := range []int{0, 1, 1000, 1024, 1025, SegmentSize - 1, SegmentSize, SegmentSize + 1,
		4*SegmentSize - 3, 4 * SegmentSize, 9*SegmentSize + 5, 2_000_000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			pt := content(size, 2)
			ct, w := encrypt(t, key, pt)
			l := w.Layout()
			if int64(len(ct)) != l.CiphertextSize() {
				t.Fatalf("ciphertext of %d bytes, layout says %d", len(ct), l.CiphertextSize())
			}
			if w.Digest() != sha256.Sum256(pt) {
				t.Fatal("digest is not SHA-256 of the content")
			}
			blobs := w.Blobs()
			if len(blobs) != l.Blobs {
				t.Fatalf("%d blob hashes, layout has %d", len(blobs), l.Blobs)
			}
			c, err := NewCipher(key, int64(size))
			if err != nil {
				t.Fatal(err)
			}
			// Each blob decrypts alone, in any order.
			got := make([]byte, size)
			for _, i := range mrand.Perm(l.Blobs) {
				blob := ct[l.BlobOffset(i) : l.BlobOffset(i)+l.BlobSize(i)]
				if HashBlob(blob) != blobs[i] {
					t.Fatalf("blob %d: hash differs from the Writer's", i)
				}
				off, n := l.BlobContent(i)
				var out bytes.Buffer
				m, err := c.OpenBlob(&out, bytes.NewReader(blob), i, blobs[i])
				if err != nil || m != n || int64(out.Len()) != n {
					t.Fatalf("OpenBlob %d: %d bytes, %v; want %d", i, m, err, n)
				}
				copy(got[off:], out.Bytes())
			}
			if !bytes.Equal(got, pt) {
				t.Fatal("blobs decrypt to other content")
			}
			r, err := NewReader(bytes.NewReader(ct), key, int64(size))
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Verify(w.Digest()); err != nil {
				t.Fatal(err)
			}
			all, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(all, pt) {
				t.Fatalf("Read: %v", err)
			}
			for range 20 {
				off := mrand.IntN(size + 1)
				n := mrand.IntN(size - off + 1)
				buf := make([]byte, n)
				m, err := r.ReadAt(buf, int64(off))
				if m != n || (err != nil && !(err == io.EOF && off+n == size)) || !bytes.Equal(buf, pt[off:off+n]) {
					t.Fatalf("ReadAt(%d, %d): %d, %v", n, off, m, err)
				}
			}
			if _, err := r.ReadAt(make([]byte, 1), int64(size)); err != io.EOF {
				t.Fatalf("ReadAt at the end: %v, want EOF", err)
			}
		})
	}
}

// segments splits a ciphertext into its sealed segments.
func segments(l Layout, ct []byte) [][]byte {
	var s [][]byte
	for j := int64(0); j < l.Segments; j++ {
		s = append(s, ct[j*SealedSegmentSize:j*SealedSegmentSize+int64(l.SegmentPlainSize(j))+TagSize])
	}
	return s
}

func TestTamper(t *testing.T) {
	key := testKey(3)
	const size = 9*SegmentSize + 77 // 10 segments, 3 blobs
	pt := content(size, 4)
	ct, w := encrypt(t, key, pt)
	l := w.Layout()
	c, _ := NewCipher(key, size)
	segs := segments(l, ct)
	open := func(j int64, seg []byte) error {
		_, err := c.OpenSegment(nil, j, seg)
		return err
	}
	for j := range segs {
		if err := open(int64(j), segs[j]); err != nil {
			t.Fatalf("segment %d: %v", j, err)
		}
	}

	t.Run("bit flips", func(t *testing.T) {
		for j, seg := range segs {
			for _, bit := range []int{0, 7, len(seg)*8/2 + 3, len(seg)*8 - 1} {
				bad := bytes.Clone(seg)
				bad[bit/8] ^= 1 << (bit % 8)
				if err := open(int64(j), bad); err != ErrDecrypt {
					t.Fatalf("segment %d bit %d: %v, want ErrDecrypt", j, bit, err)
				}
			}
		}
	})
	t.Run("reordered", func(t *testing.T) {
		if err := open(1, segs[2]); err != ErrDecrypt {
			t.Fatalf("segment 2 as 1: %v", err)
		}
		if err := open(0, segs[1]); err != ErrDecrypt {
			t.Fatalf("segment 1 as 0: %v", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		// Dropping the last segment makes segment 8 the end of a shorter
		// file; it was sealed as not last.
		short, _ := NewCipher(key, 8*SegmentSize+100)
		if short.Layout().Segments != 9 {
			t.Fatal("test layout changed")
		}
		if _, err := short.OpenSegment(nil, 8, segs[8][:len(segs[8])]); !errors.Is(err, ErrLength) && err != ErrDecrypt {
			t.Fatalf("segment 8 as last: %v", err)
		}
		full := ct[:8*SealedSegmentSize]
		r, _ := NewReader(bytes.NewReader(full), key, size)
		if err := r.Verify(w.Digest()); !errors.Is(err, ErrLength) {
			t.Fatalf("Verify of a truncated ciphertext: %v, want ErrLength", err)
		}
	})
	t.Run("last flag", func(t *testing.T) {
		// Padded sizes are never a multiple of SegmentSize in practice, so
		// a length check alone catches truncation at a segment boundary;
		// the flag catches it too. A layout that ends at segment 8 with a
		// full segment: segment 8 of this file was sealed as not last.
		ends := *c
		ends.layout.Segments, ends.layout.Padded = 9, 9*SegmentSize
		if _, err := ends.OpenSegment(nil, 8, segs[8]); err != ErrDecrypt {
			t.Fatalf("non-last segment opened as last: %v", err)
		}
		// And the last segment opened as a middle one.
		longer := *c
		longer.layout.Segments++
		if _, err := longer.OpenSegment(nil, 9, segs[9]); !errors.Is(err, ErrLength) && err != ErrDecrypt {
			t.Fatalf("last segment opened as a middle one: %v", err)
		}
	})
	t.Run("extended", func(t *testing.T) {
		if _, err := c.OpenSegment(nil, l.Segments, segs[0]); !errors.Is(err, ErrLength) {
			t.Fatalf("segment past the end: %v", err)
		}
	})
	t.Run("spliced", func(t *testing.T) {
		other, _ := encrypt(t, testKey(9), pt)
		if err := open(3, segments(l, other)[3]); err != ErrDecrypt {
			t.Fatalf("segment of another file: %v", err)
		}
	})
	t.Run("blob", func(t *testing.T) {
		blobs := w.Blobs()
		blob := func(i int) []byte { return ct[l.BlobOffset(i) : l.BlobOffset(i)+l.BlobSize(i)] }
		var out bytes.Buffer
		// Another blob in its place fails its first segment: nothing is
		// written.
		if _, err := c.OpenBlob(&out, bytes.NewReader(blob(1)), 0, blobs[1]); err != ErrDecrypt || out.Len() != 0 {
			t.Fatalf("blob 1 as blob 0: %v, wrote %d", err, out.Len())
		}
		// The right bytes under a wrong hash are refused at the end.
		if _, err := c.OpenBlob(io.Discard, bytes.NewReader(blob(0)), 0, blobs[1]); err != ErrBlobHash {
			t.Fatalf("blob under the wrong hash: %v", err)
		}
		if _, err := c.OpenBlob(io.Discard, bytes.NewReader(blob(0)[:1000]), 0, blobs[0]); !errors.Is(err, ErrLength) {
			t.Fatalf("truncated blob: %v", err)
		}
		flipped := bytes.Clone(blob(2))
		flipped[len(flipped)-1] ^= 1
		if _, err := c.OpenBlob(io.Discard, bytes.NewReader(flipped), 2, HashBlob(flipped)); err != ErrDecrypt {
			t.Fatalf("flipped blob under its own hash: %v", err)
		}
		if _, err := c.OpenBlob(io.Discard, bytes.NewReader(blob(0)), l.Blobs, blobs[0]); !errors.Is(err, ErrLength) {
			t.Fatalf("blob past the end: %v", err)
		}
	})
	t.Run("size lies", func(t *testing.T) {
		// A smaller size in the same bucket: content sits where padding
		// should be.
		small := int64(size - 10)
		if PaddedSize(small) != PaddedSize(size) {
			t.Fatal("test sizes are in different buckets")
		}
		r, _ := NewReader(bytes.NewReader(ct), key, small)
		if err := r.Verify(sha256.Sum256(pt[:small])); err != ErrPadding {
			t.Fatalf("smaller size: %v, want ErrPadding", err)
		}
		// A larger size in the same bucket: the padding reads as content
		// and the digest differs.
		big := int64(size + 10)
		r, _ = NewReader(bytes.NewReader(ct), key, big)
		if err := r.Verify(w.Digest()); err != ErrDigest {
			t.Fatalf("larger size: %v, want ErrDigest", err)
		}
		// A size in another bucket has another layout.
		r, _ = NewReader(bytes.NewReader(ct), key, 2*size)
		if err := r.Verify(w.Digest()); err == nil {
			t.Fatal("a size of another bucket verified")
		}
	})
	t.Run("digest", func(t *testing.T) {
		r, _ := NewReader(bytes.NewReader(ct), key, size)
		d := w.Digest()
		d[0] ^= 1
		if err := r.Verify(d); err != ErrDigest {
			t.Fatalf("wrong digest: %v", err)
		}
	})
}

func TestWriterLength(t *testing.T) {
	w, err := NewWriter(io.Discard, testKey(5), 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 11)); !errors.Is(err, ErrLength) {
		t.Fatalf("write past the size: %v", err)
	}
	if err := w.Close(); !errors.Is(err, ErrLength) {
		t.Fatalf("Close after a failed write: %v", err)
	}
	w, _ = NewWriter(io.Discard, testKey(5), 10)
	w.Write(make([]byte, 9))
	if err := w.Close(); !errors.Is(err, ErrLength) {
		t.Fatalf("Close short of the size: %v", err)
	}
	if w.Blobs() != nil || !w.Digest().IsZero() {
		t.Fatal("hashes of an unfinished file")
	}
	if _, err := NewWriter(io.Discard, testKey(5), MaxSize+1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("NewWriter over MaxSize: %v", err)
	}
}

func TestCaps(t *testing.T) {
	key, secret := testKey(6), testKey(7)
	h1, h2 := HashBlob([]byte("one")), HashBlob([]byte("two"))
	loc1, loc2 := []byte("relay A"), []byte("relay B")
	seen := map[Cap]string{}
	for _, c := range []struct {
		name string
		f    func() (Cap, error)
	}{
		{"read 1 1", func() (Cap, error) { return key.ReadCap(loc1, h1) }},
		{"read 1 2", func() (Cap, error) { return key.ReadCap(loc1, h2) }},
		{"read 2 1", func() (Cap, error) { return key.ReadCap(loc2, h1) }},
		{"write 1 1", func() (Cap, error) { return WriteCap(secret, loc1, h1) }},
		{"write with the file key", func() (Cap, error) { return WriteCap(key, loc1, h1) }},
	} {
		got, err := c.f()
		if err != nil {
			t.Fatal(err)
		}
		again, _ := c.f()
		if !got.Equal(again) {
			t.Fatalf("%s is not deterministic", c.name)
		}
		if prev, ok := seen[got]; ok {
			t.Fatalf("%s equals %s", c.name, prev)
		}
		seen[got] = c.name
		if got.Hash() != sha256.Sum256(got[:]) {
			t.Fatal("Cap.Hash is not SHA-256")
		}
	}
	if _, err := key.ReadCap(nil, h1); err == nil {
		t.Fatal("empty location accepted")
	}
	if _, err := key.ReadCap(make([]byte, MaxLocation+1), h1); err == nil {
		t.Fatal("long location accepted")
	}
	if _, err := key.ReadCap(make([]byte, MaxLocation), h1); err != nil {
		t.Fatal(err)
	}
}

func TestNewKey(t *testing.T) {
	k, err := NewKey(mrand.NewChaCha8([32]byte{8}))
	if err != nil || k == (Key{}) {
		t.Fatalf("NewKey: %v", err)
	}
	if _, err := NewKey(bytes.NewReader(make([]byte, KeySize))); err == nil {
		t.Fatal("all-zero key accepted")
	}
	if _, err := NewKey(bytes.NewReader(nil)); err == nil {
		t.Fatal("short random source accepted")
	}
}

// TestGolden freezes the format: a small file whole, a file of three blobs
// by its hashes, and capabilities.
func TestGolden(t *testing.T) {
	var f golden.File
	key := testKey(0x10)
	small := []byte("sealpost attachment golden test: a small file padded to 1 KiB")
	ct, w := encrypt(t, key, small)
	f.Hex("small.key", key[:])
	f.Hex("small.content", small)
	f.Hex("small.ciphertext", ct)
	d := w.Digest()
	f.Hex("small.digest", d[:])
	f.Hex("small.blob0", w.Blobs()[0][:])

	const size = 9*SegmentSize + 77
	big := content(size, 0x11)
	ct, w = encrypt(t, key, big)
	f.Text("big.size", fmt.Sprint(size))
	f.Text("big.layout", fmt.Sprintf("%+v", w.Layout()))
	d = w.Digest()
	f.Hex("big.content_sha256", d[:])
	f.Hex("big.ciphertext_head", ct[:64])
	f.Hex("big.ciphertext_tail", ct[len(ct)-64:])
	for i, h := range w.Blobs() {
		f.Hex(fmt.Sprintf("big.blob%d", i), h[:])
	}
	rc, err := key.ReadCap([]byte("location"), w.Blobs()[0])
	if err != nil {
		t.Fatal(err)
	}
	wc, err := WriteCap(testKey(0x20), []byte("location"), w.Blobs()[0])
	if err != nil {
		t.Fatal(err)
	}
	f.Hex("cap.read", rc[:])
	f.Hex("cap.read_hash", func() []byte { h := rc.Hash(); return h[:] }())
	f.Hex("cap.write", wc[:])
	for _, n := range []int64{0, 1025, 1 << 20, 100 << 20} {
		f.Text(fmt.Sprintf("padded.%d", n), fmt.Sprint(PaddedSize(n)))
	}
	f.Check(t, "../testdata/attachment.golden", *update)
}
