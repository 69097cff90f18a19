package relay

import (
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

// TestSubnet: the address range a connection counts in.
func TestSubnet(t *testing.T) {
	res := DefaultResources()
	cases := []struct {
		addr, want string // want "": in no range
	}{
		{"/ip4/203.0.113.77/tcp/4001", "203.0.113.0/24"},
		{"/ip4/203.0.113.200/udp/4001/quic-v1", "203.0.113.0/24"},
		{"/ip6/2001:db8:1234:5678::1/tcp/4001", "2001:db8:1234:5600::/56"},
		{"/ip6/::ffff:198.51.100.9/tcp/4001", "198.51.100.0/24"},
		{"/ip4/127.0.0.1/tcp/4001", ""},
		{"/ip6/::1/tcp/4001", ""},
		{"/dns4/example.com/tcp/4001", ""},
	}
	for _, tc := range cases {
		p, ok := res.subnet(ma.StringCast(tc.addr))
		if got := map[bool]string{true: p.String(), false: ""}[ok]; got != tc.want {
			t.Errorf("%s: %q, want %q", tc.addr, got, tc.want)
		}
	}
	res.SubnetLoopback, res.SubnetV4Bits = true, 16
	if p, ok := res.subnet(ma.StringCast("/ip4/127.0.1.1/tcp/1")); !ok || p.String() != "127.0.0.0/16" {
		t.Errorf("loopback counted, /16: %v %v", p, ok)
	}
	if _, ok := res.subnet(nil); ok {
		t.Error("no address: in a range")
	}
}
