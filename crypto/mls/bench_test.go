package mls

import (
	"testing"
)

// The figures that matter to users are reported by `sealpost bench --only
// mls` next to their limits; these are the same operations for go test
// -bench and profiles.

func BenchmarkEncryptProcess(b *testing.B) {
	for _, cs := range []CipherSuite{DefaultSuite, MLS128DHKEMX25519AES128GCMSHA256Ed25519} {
		b.Run(cs.String(), func(b *testing.B) {
			c := newGroupOf(b, cs, testConfig, "alice", "bob")
			alice, bob := c[0], c[1]
			pt := make([]byte, 256)
			b.ReportAllocs()
			b.SetBytes(int64(len(pt)))
			for b.Loop() {
				m, err := alice.g.Encrypt(pt, nil, alice.rand)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := bob.g.Process(m, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCommit makes an empty commit (a path) in a group of 10 and has
// another member process it; states are restored outside the timer.
func BenchmarkCommit(b *testing.B) {
	for _, cs := range []CipherSuite{DefaultSuite, MLS128DHKEMX25519AES128GCMSHA256Ed25519} {
		c := newGroupOf(b, cs, testConfig, "m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9")
		admin, recv := stateOf(b, c[0].g), stateOf(b, c[1].g)
		b.Run(cs.String()+"/create", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				g, _ := UnmarshalGroup(testConfig, admin)
				b.StartTimer()
				if _, err := g.Commit(CommitOptions{}, t0, c[0].rand); err != nil {
					b.Fatal(err)
				}
			}
		})
		g, _ := UnmarshalGroup(testConfig, admin)
		msg, err := g.Commit(CommitOptions{}, t0, c[0].rand)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(cs.String()+"/process", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				g, _ := UnmarshalGroup(testConfig, recv)
				b.StartTimer()
				if _, err := g.Process(msg, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
