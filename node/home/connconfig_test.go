package home

import (
	"os"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/node"
)

// TestConnConfig: the connection limits come from the profile, from the
// relay profile when the relay service runs on another profile's home,
// and from [connections]; bad values are refused when the file is read.
func TestConnConfig(t *testing.T) {
	defaults := func(p node.Profile) node.Config {
		t.Helper()
		c, err := node.Defaults(p)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	limits := func(c node.Config) [4]int64 {
		return [4]int64{int64(c.ConnLow), int64(c.ConnHigh), int64(c.MaxFDs), c.MaxMemory}
	}
	personal, relayProfile := defaults(node.Personal), defaults(node.Relay)

	cfg, err := DefaultConfig(ProfilePersonal)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Connections != nil {
		t.Error("personal profile with a [connections] section")
	}
	if nc, err := cfg.NodeConfig(); err != nil || limits(nc) != limits(personal) || nc.RelayService {
		t.Errorf("personal home: %v %v, want %v", limits(nc), err, limits(personal))
	}
	cfg.RelayService = true // daemon --relay-service
	if nc, err := cfg.NodeConfig(); err != nil || limits(nc) != limits(relayProfile) || !nc.RelayService {
		t.Errorf("personal home with the relay service: %v %v, want the relay profile's %v", limits(nc), err, limits(relayProfile))
	}

	rc, err := DefaultConfig(ProfileRelay)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Connections == nil {
		t.Fatal("relay profile without a [connections] section")
	}
	b, err := MarshalConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"[connections]", "high = 1024", "max_open_files = 4096", "max_streams = "} {
		if !strings.Contains(string(b), key) {
			t.Errorf("config.toml lacks %q:\n%s", key, b)
		}
	}
	if strings.Contains(string(b), `\n`) {
		t.Errorf("a comment of config.toml shows a \\n:\n%s", b)
	}

	h := Home{Dir: t.TempDir()}
	write := func(s string) {
		if err := os.WriteFile(h.Path(ConfigFile), []byte("profile = 'relay'\nrelay_service = true\n[connections]\n"+s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("high = 5000\nlow = 4000\nmax_open_files = 20000\n")
	got, err := h.ReadConfig()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := got.NodeConfig()
	want := [4]int64{4000, 5000, 20000, relayProfile.MaxMemory}
	if err != nil || limits(nc) != want {
		t.Errorf("[connections]: %v %v, want %v", limits(nc), err, want)
	}
	for _, bad := range []string{"low = 2000\n", "high = -1\n", "low = 10\nhigh = 10\n", "max_fds = 1\n"} {
		write(bad)
		if _, err := h.ReadConfig(); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
