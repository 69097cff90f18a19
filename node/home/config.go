package home

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/blobrelay"
	"github.com/sealpost/sealpost/node/files"
	"github.com/sealpost/sealpost/node/relay"
)

// maxConfigSize bounds config.toml.
const maxConfigSize = 1 << 20

// Config is the node's config.toml: settings only, never keys. The comments
// of the fields are written into the file.
type Config struct {
	Profile      string   `toml:"profile" comment:"The profile this home was created with: personal, relay or test. It chooses the\nDHT mode (client on personal nodes until publicly reachable, server on relays\nand test nodes) and the defaults written below."`
	Listen       []string `toml:"listen,multiline" comment:"Addresses to listen on, as multiaddrs (TCP and QUIC). Port 0 picks a free port.\n'sealpost daemon --listen MADDR' (repeatable) replaces this list for one run."`
	Bootstrap    []string `toml:"bootstrap,multiline" comment:"Peers to connect to at start, as full multiaddrs ending in /p2p/<peer ID>\n(what 'sealpost id' prints on that node). 'sealpost daemon --bootstrap MADDR'\nadds to this list for one run."`
	MDNS         bool     `toml:"mdns" comment:"Find peers on the local network with mDNS ('sealpost daemon --no-mdns' turns\nit off for one run)."`
	RelayService bool     `toml:"relay_service" comment:"Serve as a community relay: keep mailboxes of sealed envelopes for others,\nand relay connections (circuit relay v2)."`
	API          string   `toml:"api" comment:"Also serve the local API and the web app on this loopback TCP address from the\nstart, e.g. \"127.0.0.1:7711\" (programs send the bearer token of HOME/api.token).\nEmpty: only the unix socket HOME/api.sock, until 'sealpost ui' starts the\nlistener at [ui] listen."`
	Metrics      string   `toml:"metrics" comment:"Serve Prometheus metrics at /metrics on this address, e.g. \"127.0.0.1:7712\".\nEmpty: metrics only at /metrics of the local API."`
	// Relay is written for the relay profile; without it a relay runs
	// with relay.DefaultResources.
	Relay *RelayConfig `toml:"relay,omitempty" comment:"Limits of the relay service (docs/OPERATING.md); used when relay_service is on."`

	Connections *ConnConfig `toml:"connections,omitempty" comment:"Connection limits (docs/OPERATING.md). Without this section: the profile's,\nor the relay profile's when relay_service is on."`

	UI *UIConfig `toml:"ui,omitempty" comment:"The web app ('sealpost ui'). Without this section: listen on 127.0.0.1:7711."`

	Files *FilesConfig `toml:"files,omitempty" comment:"Attachments ('sealpost send NAME --file PATH', 'sealpost file'). Without this\nsection: the defaults below."`
}

// FilesConfig is the [files] section of config.toml: the attachment
// service's limits (node/files.Options).
type FilesConfig struct {
	MaxSize      string `toml:"max_size" comment:"The largest file this node sends or downloads, e.g. \"100MiB\" or \"2GiB\" (at most\nabout 3.9 GiB, the format's limit). Larger ones are refused with exit code 5."`
	AutoDownload string `toml:"auto_download" comment:"Files from accepted contacts up to this size download as they arrive; larger\nones wait for 'sealpost file save'. \"0\": none download by themselves."`
}

// DefaultFilesConfig returns the defaults of [files].
func DefaultFilesConfig() FilesConfig {
	return FilesConfig{MaxSize: "100MiB", AutoDownload: "16MiB"}
}

// FilesOptions returns the attachment service's options: the [files]
// section over the defaults.
func (c Config) FilesOptions() (files.Options, error) {
	var o files.Options
	if c.Files == nil {
		return o, nil
	}
	if c.Files.MaxSize != "" {
		n, err := ParseSize(c.Files.MaxSize)
		if err != nil {
			return o, fmt.Errorf("home: [files] max_size: %w", err)
		}
		if n <= 0 || n > attachment.MaxSize {
			return o, fmt.Errorf("home: [files] max_size %s: want 1 byte to %d", c.Files.MaxSize, int64(attachment.MaxSize))
		}
		o.MaxSize = n
	}
	if c.Files.AutoDownload != "" {
		n, err := ParseSize(c.Files.AutoDownload)
		if err != nil {
			return o, fmt.Errorf("home: [files] auto_download: %w", err)
		}
		o.AutoDownload = n
		if n == 0 {
			o.AutoDownload = -1 // none
		}
	}
	return o, nil
}

// ParseSize parses a size in bytes: a number with an optional unit, B,
// KiB, MiB, GiB (or KB, MB, GB, as powers of 1000; k, M, G as the binary
// ones).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9') {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (KiB, MiB, GiB)", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	mult := map[string]int64{"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30,
		"kb": 1e3, "mb": 1e6, "gb": 1e9}
	m, ok := mult[strings.ToLower(strings.TrimSpace(t[i:]))]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit (want B, KiB, MiB, GiB, KB, MB or GB)", s)
	}
	if n > (1<<62)/m {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * m, nil
}

// UIConfig is the [ui] section of config.toml.
type UIConfig struct {
	Listen string `toml:"listen" comment:"The loopback address 'sealpost ui' starts the daemon's TCP listener on (the\nweb app and the API), when api above has not started it already. When the\nport is taken, a free one on the same host. Never an address other than\nloopback (127.0.0.1, [::1], localhost)."`
}

// DefaultUIListen is where the web app listens without a [ui] section:
// the API's default port over TCP (node/api.DefaultPort).
const DefaultUIListen = "127.0.0.1:7711"

// UIListen returns [ui] listen, or DefaultUIListen without one.
func (c Config) UIListen() string {
	if c.UI == nil || c.UI.Listen == "" {
		return DefaultUIListen
	}
	return c.UI.Listen
}

// ErrUnknownProfile is returned for a profile name that is not one of
// personal, relay and test.
var ErrUnknownProfile = errors.New("home: unknown profile")

// Profiles are the names accepted by --profile (node.Profile's values).
const (
	ProfilePersonal = string(node.Personal)
	ProfileRelay    = string(node.Relay)
	ProfileTest     = string(node.Test)
)

// DefaultConfig returns the settings `sealpost init --profile` writes: the
// node's defaults for the profile (node.Defaults). The empty profile is
// personal.
func DefaultConfig(profile string) (Config, error) {
	d, err := node.Defaults(node.Profile(profile))
	if err != nil {
		return Config{}, fmt.Errorf("%w %q (want personal, relay or test)", ErrUnknownProfile, profile)
	}
	cfg := Config{
		Profile:      string(d.Profile),
		Listen:       d.Listen,
		Bootstrap:    append([]string{}, d.Bootstrap...),
		MDNS:         d.MDNS,
		RelayService: d.RelayService,
	}
	cfg.UI = &UIConfig{Listen: DefaultUIListen}
	if d.Profile != node.Relay {
		f := DefaultFilesConfig()
		cfg.Files = &f
	}
	if d.Profile == node.Test {
		// Test nodes take random loopback ports, the web app's too.
		cfg.UI.Listen = "127.0.0.1:0"
	}
	if d.Profile == node.Relay {
		r := DefaultRelayConfig()
		cfg.Relay = &r
		k := ConnConfigOf(d)
		cfg.Connections = &k
	}
	return cfg, nil
}

const configHeader = `# sealpost node configuration, written by 'sealpost init'.
# Keys never go here: the identity and device keys are in the encrypted store.
# Flags of 'sealpost daemon' override these settings for one run.

`

// MarshalConfig returns cfg as the commented TOML of config.toml.
func MarshalConfig(cfg Config) ([]byte, error) {
	b, err := toml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("home: %w", err)
	}
	return append([]byte(configHeader), b...), nil
}

// ReadConfig reads HOME/config.toml. Unknown settings are an error, so a
// typo does not silently fall back to a default. It returns
// ErrNotInitialized when the file does not exist.
func (h Home) ReadConfig() (Config, error) {
	f, err := os.Open(h.Path(ConfigFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, ErrNotInitialized
	}
	if err != nil {
		return Config{}, fmt.Errorf("home: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxConfigSize+1)); err != nil {
		return Config{}, fmt.Errorf("home: read config: %w", err)
	}
	if buf.Len() > maxConfigSize {
		return Config{}, fmt.Errorf("home: %s is larger than %d bytes", h.Path(ConfigFile), maxConfigSize)
	}
	var cfg Config
	dec := toml.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return Config{}, fmt.Errorf("home: %s: %s", h.Path(ConfigFile), strict.String())
		}
		return Config{}, fmt.Errorf("home: %s: %w", h.Path(ConfigFile), err)
	}
	if _, err := DefaultConfig(cfg.Profile); err != nil {
		return Config{}, fmt.Errorf("home: %s: %w", h.Path(ConfigFile), err)
	}
	if _, err := cfg.RelayResources(); err != nil {
		return Config{}, fmt.Errorf("home: %s: %w", h.Path(ConfigFile), err)
	}
	if _, err := cfg.NodeConfig(); err != nil {
		return Config{}, fmt.Errorf("home: %s: %w", h.Path(ConfigFile), err)
	}
	if _, err := cfg.FilesOptions(); err != nil {
		return Config{}, fmt.Errorf("home: %s: %w", h.Path(ConfigFile), err)
	}
	if _, err := cfg.BlobResources(); err != nil {
		return Config{}, fmt.Errorf("home: %s: %w", h.Path(ConfigFile), err)
	}
	return cfg, nil
}

// BlobResources returns the limits of the relay's blob service: the blob
// keys of [relay] over blobrelay.DefaultResources (with [relay] ttl).
func (c Config) BlobResources() (blobrelay.Resources, error) {
	if c.Relay == nil {
		return RelayConfig{}.BlobResources()
	}
	return c.Relay.BlobResources()
}

// RelayResources returns the relay service's limits: the [relay] section
// over relay.DefaultResources (all defaults without one).
func (c Config) RelayResources() (relay.Resources, error) {
	if c.Relay == nil {
		return relay.DefaultResources(), nil
	}
	return c.Relay.Resources()
}
