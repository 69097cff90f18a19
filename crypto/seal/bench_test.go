package seal

import "testing"

// payload is a 256-byte ratchet message: 353 bytes, a 2 KiB envelope.
const benchPayload = 256 + 97

func BenchmarkSeal(b *testing.B) {
	f := newFixture(b)
	payload := make([]byte, benchPayload)
	buf := make([]byte, 0, 2048)
	key := f.sealing.PublicKey().Bytes()
	b.ReportAllocs()
	b.SetBytes(benchPayload)
	for b.Loop() {
		if _, err := Seal(buf[:0], f.mailbox, key, f.sender.Public(), f.device, payload, f.rand); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	f := newFixture(b)
	env := f.seal(b, make([]byte, benchPayload))
	b.ReportAllocs()
	b.SetBytes(benchPayload)
	for b.Loop() {
		if _, err := Open(env, f.sealing); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPeekMailbox(b *testing.B) {
	f := newFixture(b)
	env := f.seal(b, make([]byte, benchPayload))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PeekMailbox(env); err != nil {
			b.Fatal(err)
		}
	}
}
