package home

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/node/blobrelay"
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

func TestFilesOptions(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		bad  bool
	}{{"100MiB", 100 << 20, false}, {"16 MiB", 16 << 20, false}, {"2GiB", 2 << 30, false}, {"1000", 1000, false},
		{"3MB", 3e6, false}, {"1k", 1024, false}, {"", 0, true}, {"MiB", 0, true}, {"5 parsecs", 0, true}, {"-1", 0, true},
		{"99999999999999999999", 0, true}, {"9999999999GiB", 0, true}} {
		got, err := ParseSize(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v", c.in, got, err)
		}
	}
	cfg, err := DefaultConfig(ProfilePersonal)
	if err != nil {
		t.Fatal(err)
	}
	o, err := cfg.FilesOptions()
	if err != nil || o.MaxSize != 100<<20 || o.AutoDownload != 16<<20 {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	cfg.Files.AutoDownload = "0"
	if o, err := cfg.FilesOptions(); err != nil || o.AutoDownload >= 0 {
		t.Errorf("auto_download 0: %+v, %v", o, err)
	}
	cfg.Files.MaxSize = "8GiB"
	if _, err := cfg.FilesOptions(); err == nil {
		t.Error("max_size over the format's limit accepted")
	}
	r, err := DefaultConfig(ProfileRelay)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.BlobResources()
	if err != nil || b != blobrelay.DefaultResources() {
		t.Errorf("relay blob limits: %+v, %v", b, err)
	}
	r.Relay.BlobStoreMaxBytes = 5 << 30
	r.Relay.BlobPeerMaxBytes, r.Relay.BlobSubnetMaxBytes = 1<<28, 1<<29
	if b, err := r.BlobResources(); err != nil || b.StoreMaxBytes != 5<<30 || b.PeerMaxBytes != 1<<28 || b.SubnetMaxBytes != 1<<29 {
		t.Errorf("blob_store_max_bytes, blob_peer_max_bytes, blob_subnet_max_bytes: %+v, %v", b, err)
	}
	r.Relay.BlobPeerMaxBytes = 1 << 10
	if _, err := r.BlobResources(); err == nil {
		t.Error("blob_peer_max_bytes under the largest blob accepted")
	}
}
