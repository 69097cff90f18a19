package addrrecord_test

import (
	"slices"
	"testing"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/node/addrrecord"
)

func TestSelect(t *testing.T) {
	const relay = "/ip4/203.0.114.7/tcp/7710/p2p/12D3KooWQddJygUyDtG9W3pe4HC3S42Dyg14vCHgyUuLvmRxdmaG/p2p-circuit"
	addrs := func(ss ...string) []ma.Multiaddr {
		var out []ma.Multiaddr
		for _, s := range ss {
			out = append(out, ma.StringCast(s))
		}
		return out
	}
	for _, c := range []struct {
		name string
		all  []string
		n    int
		lan  bool
		want []string
	}{
		{"behind a NAT: circuits, not the LAN", []string{"/ip4/127.0.0.1/tcp/7710", "/ip4/192.168.1.20/tcp/7710", relay}, 8, false,
			[]string{relay}},
		{"behind a NAT, for contacts: circuits, then the LAN", []string{"/ip4/192.168.1.20/tcp/7710", "/ip4/10.0.0.3/udp/7710/quic-v1", relay}, 8, true,
			[]string{relay, "/ip4/192.168.1.20/tcp/7710", "/ip4/10.0.0.3/udp/7710/quic-v1"}},
		{"public first", []string{"/ip4/192.168.1.20/tcp/7710", relay, "/ip4/1.2.3.4/tcp/7710"}, 8, true,
			[]string{"/ip4/1.2.3.4/tcp/7710", relay, "/ip4/192.168.1.20/tcp/7710"}},
		{"the limit keeps the best", []string{"/ip4/192.168.1.20/tcp/7710", "/ip4/192.168.1.20/udp/7710/quic-v1", relay}, 1, true,
			[]string{relay}},
		{"a LAN without internet", []string{"/ip4/127.0.0.1/tcp/7710", "/ip4/192.168.1.20/tcp/7710"}, 8, false,
			[]string{"/ip4/192.168.1.20/tcp/7710"}},
		{"benchmarking range is not public", []string{"/ip4/198.18.1.1/tcp/7710", relay}, 8, false,
			[]string{relay}},
		{"loopback only", []string{"/ip4/127.0.0.1/tcp/7710"}, 8, false,
			[]string{"/ip4/127.0.0.1/tcp/7710"}},
		{"nothing", nil, 8, true, nil},
	} {
		got := addrrecord.Select(addrs(c.all...), c.n, c.lan)
		if !slices.EqualFunc(got, addrs(c.want...), ma.Multiaddr.Equal) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}
