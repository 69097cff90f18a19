package attachment

import (
	"bytes"
	"io"
	"testing"
)

func BenchmarkSealSegment(b *testing.B) {
	c, _ := NewCipher(testKey(1), 1<<20)
	pt := make([]byte, SegmentSize)
	out := make([]byte, 0, SealedSegmentSize)
	b.SetBytes(SegmentSize)
	b.ReportAllocs()
	for b.Loop() {
		out, _ = c.SealSegment(out[:0], 3, pt)
	}
}

func BenchmarkOpenSegment(b *testing.B) {
	c, _ := NewCipher(testKey(1), 1<<20)
	ct, _ := c.SealSegment(nil, 3, make([]byte, SegmentSize))
	out := make([]byte, 0, SegmentSize)
	b.SetBytes(SegmentSize)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if out, err = c.OpenSegment(out[:0], 3, ct); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriter encrypts 16 MiB with hashing (digest and blob hashes).
func BenchmarkWriter(b *testing.B) {
	const size = 16 << 20
	pt := bytes.Repeat([]byte{1}, 1<<20)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		w, _ := NewWriter(io.Discard, testKey(1), size)
		for range size / len(pt) {
			w.Write(pt)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
