package ratchet

import (
	"testing"
)

// BenchmarkRoundTrip encrypts and decrypts a 256-byte message in a running
// chain (no DH step).
func BenchmarkRoundTrip(b *testing.B) {
	p := newPair(b)
	mustDecrypt(b, p.bob, p.encrypt(b, p.alice, "warm up"), "warm up")
	pt := make([]byte, 256)
	msg := make([]byte, 0, 256+Overhead)
	out := make([]byte, 0, 256)
	var err error
	b.ReportAllocs()
	b.SetBytes(256)
	for b.Loop() {
		if msg, err = p.alice.Encrypt(msg[:0], pt, p.rand); err != nil {
			b.Fatal(err)
		}
		if out, err = p.bob.Decrypt(out[:0], msg, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDHStep sends 256-byte messages in alternating directions, so each
// message carries a new ratchet key.
func BenchmarkDHStep(b *testing.B) {
	p := newPair(b)
	mustDecrypt(b, p.bob, p.encrypt(b, p.alice, "warm up"), "warm up")
	pt := make([]byte, 256)
	msg := make([]byte, 0, 256+Overhead)
	out := make([]byte, 0, 256)
	var err error
	from, to := p.bob, p.alice
	b.ReportAllocs()
	for b.Loop() {
		if msg, err = from.Encrypt(msg[:0], pt, p.rand); err != nil {
			b.Fatal(err)
		}
		if out, err = to.Decrypt(out[:0], msg, t0); err != nil {
			b.Fatal(err)
		}
		from, to = to, from
	}
}

func BenchmarkMarshal(b *testing.B) {
	p := newPair(b)
	mustDecrypt(b, p.bob, p.encrypt(b, p.alice, "warm up"), "warm up")
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = p.bob.AppendBinary(buf[:0])
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	p := newPair(b)
	mustDecrypt(b, p.bob, p.encrypt(b, p.alice, "warm up"), "warm up")
	data := marshal(b, p.bob)
	var s State
	b.ReportAllocs()
	for b.Loop() {
		if err := s.UnmarshalBinary(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMessageHash(b *testing.B) {
	msg := make([]byte, 256+Overhead)
	b.ReportAllocs()
	for b.Loop() {
		MessageHash(msg)
	}
}
