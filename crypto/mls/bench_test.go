package mls

import (
	"context"
	"fmt"
	"math/bits"
	"runtime/pprof"
	"slices"
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

// largeGroup is a group of n members whose tree is populated where the
// measured commits touch it, as `sealpost bench` builds it: leaf 0 adds
// everyone, then one member in each subtree on leaf 0's copath and on the
// removed member's copath commits once. admin (leaf 0) commits, receiver
// (leaf 1) processes, remove is the leaf a Remove removes.
type largeGroup struct {
	admin, receiver []byte
	remove          uint32
	joiner          *client
}

func newLargeGroup(b *testing.B, cs CipherSuite, n int) *largeGroup {
	b.Helper()
	admin := newClient(b, cs, "m0", 1)
	var err error
	if admin.g, err = NewGroup(testConfig, []byte("large-group"), admin.cred, admin.key, GroupOptions{}, admin.rand); err != nil {
		b.Fatal(err)
	}
	members := []*client{admin}
	var kps []*KeyPackage
	var privs []*KeyPackagePrivate
	for i := 1; i < n; i++ {
		m := newClient(b, cs, fmt.Sprintf("m%d", i), uint64(1+i))
		members = append(members, m)
		p := m.keyPackage(b)
		privs = append(privs, p)
		kps = append(kps, p.KeyPackage())
	}
	msg, err := admin.g.Commit(CommitOptions{Add: kps}, t0, admin.rand)
	if err != nil {
		b.Fatal(err)
	}
	r := commitAll(b, admin, msg)
	width := 1 << bits.Len(uint(n-1))
	remove := width / 2
	var fill []int
	for l := 1; l <= remove; l *= 2 {
		fill = append(fill, l)
	}
	for d := 1; d < remove; d *= 2 {
		if remove+d < n {
			fill = append(fill, remove+d)
		}
	}
	participants := []*client{admin}
	for _, l := range fill {
		m := members[l]
		if m.g, err = Join(testConfig, r.Commit.Welcome, privs[l-1:l], JoinOptions{}); err != nil {
			b.Fatal(err)
		}
		participants = append(participants, m)
	}
	for _, l := range fill {
		c := members[l]
		msg, err := c.g.Commit(CommitOptions{}, t0, c.rand)
		if err != nil {
			b.Fatal(err)
		}
		commitAll(b, c, msg, slices.DeleteFunc(slices.Clone(participants), func(p *client) bool { return p == c })...)
	}
	return &largeGroup{admin: stateOf(b, admin.g), receiver: stateOf(b, members[1].g), remove: uint32(remove),
		joiner: newClient(b, cs, "joiner", uint64(n+1))}
}

// BenchmarkCommitLarge makes Add, Remove and Update (empty) commits in a
// group of 1000 and processes them as another member. Each operation
// starts from a freshly unmarshalled state (outside the timer), as a node
// that loads the group from its store does. Operations carry the profiler
// label op (-tagfocus op=remove/create).
func BenchmarkCommitLarge(b *testing.B) {
	const n = 1000
	for _, cs := range []CipherSuite{DefaultSuite, MLS128DHKEMX25519AES128GCMSHA256Ed25519} {
		b.Run(fmt.Sprintf("%s/n%d", cs, n), func(b *testing.B) {
			lg := newLargeGroup(b, cs, n)
			for _, op := range []string{"add", "remove", "update"} {
				var opts CommitOptions
				switch op {
				case "add":
					opts.Add = []*KeyPackage{lg.joiner.keyPackage(b).KeyPackage()}
				case "remove":
					opts.Remove = []uint32{lg.remove}
				}
				rnd := testRand(7)
				g, _ := UnmarshalGroup(testConfig, lg.admin)
				msg, err := g.Commit(opts, t0, rnd)
				if err != nil {
					b.Fatal(err)
				}
				timed := func(b *testing.B, state []byte, label string, f func(g *Group) error) {
					b.ReportAllocs()
					pprof.Do(context.Background(), pprof.Labels("op", op+"/"+label), func(context.Context) {
						for b.Loop() {
							b.StopTimer()
							g, err := UnmarshalGroup(testConfig, state)
							if err != nil {
								b.Fatal(err)
							}
							b.StartTimer()
							if err := f(g); err != nil {
								b.Fatal(err)
							}
						}
					})
				}
				b.Run(op+"/create", func(b *testing.B) {
					timed(b, lg.admin, "create", func(g *Group) error { _, err := g.Commit(opts, t0, rnd); return err })
				})
				b.Run(op+"/process", func(b *testing.B) {
					timed(b, lg.receiver, "process", func(g *Group) error { _, err := g.Process(msg, t0); return err })
				})
			}
		})
	}
}
