package protocol

import (
	"bytes"
	"testing"
)

// deliver1K is a Deliver of a 1 KiB ratchet message, without a prekey
// message: the common case on a confirmed session.
func deliver1K(b *testing.B) *Deliver {
	c, err := (&Ciphertext{Ratchet: pattern(1024, 1)}).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return &Deliver{ID: 1000, Identity: pattern(MaxIdentity, 1), Device: ed25519Peer(2), Ciphertext: c}
}

func BenchmarkDeliverAppendFrame(b *testing.B) {
	d := deliver1K(b)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendFrame(buf[:0], d); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDeliverReadFrame(b *testing.B) {
	frame, err := AppendFrame(nil, deliver1K(b))
	if err != nil {
		b.Fatal(err)
	}
	fr := NewFrameReader(&repeatReader{b: frame}, MaxMsgFrame)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		var d Deliver
		if err := fr.Read(&d); err != nil {
			b.Fatal(err)
		}
		var c Ciphertext
		if err := c.Unmarshal(d.Ciphertext); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlaintextRoundTrip(b *testing.B) {
	p := sampleText()
	p.Card = nil
	p.Text = string(bytes.Repeat([]byte("a"), 200))
	b.ReportAllocs()
	for b.Loop() {
		enc, err := p.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		var q Plaintext
		if err := q.Unmarshal(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAckFrames(b *testing.B) {
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for id := uint64(1); id <= 64; id++ {
			var err error
			if buf, err = AppendFrame(buf, &Ack{ID: id, Code: CodeOK}); err != nil {
				b.Fatal(err)
			}
		}
	}
}
