// Package home is a sealpost node's home directory: where its files live, how
// they are found, and what `sealpost init` puts there.
//
// A home holds
//
//	config.toml   the node's settings (commented; never keys)
//	store/        the encrypted database (store/badgerstore)
//	api.token     the bearer token for the API over TCP (0600)
//	daemon.lock   held (flock) by the running daemon
//	api.sock      the API's unix socket (0600), while a daemon runs
//	api           the socket's path, when HOME/api.sock is too long for a
//	              unix socket and the socket lives in the runtime directory
//
// The home directory itself is created with mode 0700. Package home does no
// networking; the daemon (cmd/sealpost) and the API client (node/api) use it to
// agree on paths.
package home

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Names of the files in a home.
const (
	ConfigFile        = "config.toml"
	StoreDir          = "store"
	TokenFile         = "api.token"
	LockFile          = "daemon.lock"
	SocketFile        = "api.sock"
	SocketPointerFile = "api"
)

// EnvHome is the environment variable that names the home when --home is not given.
const EnvHome = "SEALPOST_HOME"

// ErrNotInitialized is returned when a home has no config.toml yet.
var ErrNotInitialized = errors.New("home: not initialized")

// ErrInitialized is returned by Init when the home already holds a node.
var ErrInitialized = errors.New("home: already initialized")

// Home is a node's home directory.
type Home struct {
	// Dir is the absolute path of the directory.
	Dir string
	// State is the directory for what must stay outside the home: the
	// store's rollback marker (in State/stores), which a restored copy of
	// the home must not bring back along with the store. Empty: none, and a
	// restored copy is not detected.
	State string
}

// Resolve picks the home directory: flag when it is not empty, else the
// SEALPOST_HOME environment variable, else $XDG_DATA_HOME/sealpost, else
// ~/.local/share/sealpost. getenv is os.Getenv outside tests.
func Resolve(flag string, getenv func(string) string) (Home, error) {
	dir := flag
	if dir == "" {
		dir = getenv(EnvHome)
	}
	if dir == "" {
		if x := getenv("XDG_DATA_HOME"); filepath.IsAbs(x) {
			dir = filepath.Join(x, "sealpost")
		}
	}
	if dir == "" {
		h := getenv("HOME")
		if h == "" {
			var err error
			if h, err = os.UserHomeDir(); err != nil {
				return Home{}, fmt.Errorf("home: no home directory: set --home or %s", EnvHome)
			}
		}
		dir = filepath.Join(h, ".local", "share", "sealpost")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Home{}, fmt.Errorf("home: %w", err)
	}
	return Home{Dir: abs, State: stateDir(getenv)}, nil
}

// stateDir is $XDG_STATE_HOME/sealpost, else ~/.local/state/sealpost, else
// empty (no home directory to put it in).
func stateDir(getenv func(string) string) string {
	if x := getenv("XDG_STATE_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "sealpost")
	}
	h := getenv("HOME")
	if h == "" {
		var err error
		if h, err = os.UserHomeDir(); err != nil {
			return ""
		}
	}
	return filepath.Join(h, ".local", "state", "sealpost")
}

// markerDir is where the home's store keeps its rollback marker (see
// badgerstore.Options.MarkerDir); empty without a state directory.
func (h Home) markerDir() string {
	if h.State == "" {
		return ""
	}
	return filepath.Join(h.State, "stores")
}

// Path returns the path of name inside the home.
func (h Home) Path(name string) string { return filepath.Join(h.Dir, name) }

// Initialized reports whether the home holds an initialized node (its
// config.toml exists; Init writes it last).
func (h Home) Initialized() bool {
	_, err := os.Stat(h.Path(ConfigFile))
	return err == nil
}
