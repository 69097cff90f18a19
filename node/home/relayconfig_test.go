package home

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/relay"
)

func TestRelayConfig(t *testing.T) {
	cfg, err := DefaultConfig(ProfileRelay)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Relay == nil {
		t.Fatal("relay profile without a [relay] section")
	}
	if p, _ := DefaultConfig(ProfilePersonal); p.Relay != nil {
		t.Error("personal profile with a [relay] section")
	}
	b, err := MarshalConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"[relay]", "ttl = '336h0m0s'", "store_max_bytes =", "deposit_rate =", "mailboxes_per_connection ="} {
		if !strings.Contains(string(b), key) {
			t.Errorf("config.toml lacks %q:\n%s", key, b)
		}
	}
	r, err := cfg.RelayResources()
	if err != nil || r != relay.DefaultResources() {
		t.Errorf("default [relay] gives %+v, %v", r, err)
	}

	h := Home{Dir: t.TempDir()}
	write := func(s string) {
		if err := os.WriteFile(h.Path(ConfigFile), []byte("profile = 'relay'\n[relay]\n"+s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ttl = '72h'\nstore_max_bytes = 1048576\n")
	got, err := h.ReadConfig()
	if err != nil {
		t.Fatal(err)
	}
	r, err = got.RelayResources()
	want := relay.DefaultResources()
	want.TTL, want.StoreMaxBytes = 72*time.Hour, 1<<20
	if err != nil || r != want {
		t.Errorf("partial [relay]: %+v, %v", r, err)
	}
	for _, bad := range []string{"ttl = 'two weeks'\n", "ttl = '720h'\n", "max_envelope_bytes = 100\n", "no_such_key = 1\n"} {
		write(bad)
		if _, err := h.ReadConfig(); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
