package home

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestConfigRoundTrip(t *testing.T) {
	for _, p := range []string{ProfilePersonal, ProfileRelay, ProfileTest} {
		t.Run(p, func(t *testing.T) {
			cfg, err := DefaultConfig(p)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Bootstrap = []string{"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWExample"}
			b, err := MarshalConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(b), "# sealpost node configuration") || strings.Count(string(b), "\n#") < 10 {
				t.Errorf("config.toml is not commented:\n%s", b)
			}
			h := Home{Dir: t.TempDir()}
			if err := os.WriteFile(h.Path(ConfigFile), b, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := h.ReadConfig()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, cfg) {
				t.Errorf("got %+v, want %+v", got, cfg)
			}
		})
	}
}

func TestProfiles(t *testing.T) {
	personal, _ := DefaultConfig(ProfilePersonal)
	relay, _ := DefaultConfig(ProfileRelay)
	test, _ := DefaultConfig(ProfileTest)
	if !personal.MDNS || personal.RelayService {
		t.Errorf("personal: %+v, want mDNS on and no relay service", personal)
	}
	if !relay.RelayService {
		t.Errorf("relay: %+v, want the relay service", relay)
	}
	if test.MDNS || len(test.Bootstrap) != 0 {
		t.Errorf("test: %+v, want no mDNS and no bootstrap", test)
	}
	for _, a := range test.Listen {
		if !strings.HasPrefix(a, "/ip4/127.0.0.1/") || !strings.Contains(a, "/0") {
			t.Errorf("test profile listens on %s, want random loopback ports", a)
		}
	}
	if personal.UIListen() != DefaultUIListen || relay.UIListen() != DefaultUIListen || test.UIListen() != "127.0.0.1:0" {
		t.Errorf("ui.listen: personal %s, relay %s, test %s", personal.UIListen(), relay.UIListen(), test.UIListen())
	}
	if (Config{}).UIListen() != DefaultUIListen {
		t.Errorf("ui.listen without a [ui] section: %s, want %s", (Config{}).UIListen(), DefaultUIListen)
	}
	if def, _ := DefaultConfig(""); def.Profile != ProfilePersonal {
		t.Errorf("default profile %q, want personal", def.Profile)
	}
	if _, err := DefaultConfig("server"); !errors.Is(err, ErrUnknownProfile) {
		t.Error("DefaultConfig accepted an unknown profile")
	}
}

func TestReadConfigErrors(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	if _, err := h.ReadConfig(); err != ErrNotInitialized {
		t.Errorf("missing config: got %v, want ErrNotInitialized", err)
	}
	for name, body := range map[string]string{
		"unknown key":     "profile = 'test'\nlisen = []\n",
		"unknown profile": "profile = 'server'\n",
		"not toml":        "profile = \n",
		"too large":       strings.Repeat("#", maxConfigSize+1),
	} {
		os.WriteFile(h.Path(ConfigFile), []byte(body), 0o600)
		if _, err := h.ReadConfig(); err == nil {
			t.Errorf("%s: ReadConfig accepted it", name)
		}
	}
}
