package home

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
)

// tokenBytes is the entropy of the API token.
const tokenBytes = 32

// Errors of the store that commands tell apart: those of Init, Open,
// OpenStore and ChangePassphrase a user can act on. They are the store's
// own sentinels under this package's names (errors.Is matches either), as
// package os re-exports io/fs's, so that a caller of home needs no other
// package to tell them apart.
var (
	ErrWrongPassphrase    = store.ErrWrongPassphrase
	ErrPassphraseRequired = store.ErrPassphraseRequired
	ErrSchemaTooNew       = store.ErrSchemaTooNew
	ErrStoreLocked        = store.ErrLocked
	// ErrDiskFull: the disk holding the home has too little room for its
	// store to open (a *DiskFullError) or to write.
	ErrDiskFull = store.ErrDiskFull
)

// Create makes the home directory (mode 0700, parents as needed). An
// existing directory is left as it is.
func (h Home) Create() error {
	if err := os.MkdirAll(h.Dir, 0o700); err != nil {
		return fmt.Errorf("home: %w", err)
	}
	return nil
}

// InitOptions are what Init needs.
type InitOptions struct {
	// Name is the user's display name.
	Name string
	// Profile chooses the settings written to config.toml; empty: personal.
	Profile string
	// Passphrase protects the store; it must be empty with NoPassphrase and
	// not empty without it.
	Passphrase []byte
	// NoPassphrase keeps the data key in a file next to the database
	// (badgerstore.ModeKeyFile): no protection against disk theft. For the
	// relay profile it leaves the store unencrypted
	// (badgerstore.ModeUnencrypted).
	NoPassphrase bool
	// Rand is the source of every key; nil: crypto/rand.
	Rand io.Reader
	// Logger receives the store's messages; nil: discarded.
	Logger *slog.Logger
}

// Identity is who a freshly initialized node is.
type Identity struct {
	UserID string
	PeerID string
	// Kept: the home's store existed already and was kept (Init wrote
	// only the missing config.toml).
	Kept bool
}

// Init initializes the home, which the caller has created (Create) and
// locked (Lock): the API token, the store with the identity and device key
// (node.Provision), and config.toml, written last so that a home is
// initialized only when everything is there. If a step fails, what Init
// created is removed. It returns the store, open. It clears o.Passphrase
// before it returns.
//
// A home that holds a store but no config.toml (lost, or an init that
// stopped before writing it) keeps its store: Init opens it with
// o.Passphrase (the store's own), provisions it if it holds no identity
// yet, and writes a default config.toml for o.Profile.
func (h Home) Init(ctx context.Context, o InitOptions) (_ store.Store, _ Identity, err error) {
	defer clear(o.Passphrase)
	if h.Initialized() {
		return nil, Identity{}, ErrInitialized
	}
	cfg, err := DefaultConfig(o.Profile)
	if err != nil {
		return nil, Identity{}, err
	}
	if h.HasStore() {
		return h.keepStore(ctx, o, cfg)
	}
	if o.NoPassphrase != (len(o.Passphrase) == 0) {
		return nil, Identity{}, errors.New("home: init needs a passphrase or NoPassphrase, not both or neither")
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	config, err := MarshalConfig(cfg)
	if err != nil {
		return nil, Identity{}, err
	}

	if _, serr := os.Stat(h.Path(TokenFile)); errors.Is(serr, fs.ErrNotExist) {
		if err := writeToken(h.Path(TokenFile), o.Rand); err != nil {
			return nil, Identity{}, err
		}
		defer func() {
			if err != nil {
				os.Remove(h.Path(TokenFile))
			}
		}()
	}

	mode := badgerstore.ModePassphrase
	switch {
	case o.NoPassphrase && cfg.Profile == ProfileRelay:
		// A relay's envelopes are sealed already, and a data key in a file
		// next to the data would protect nothing else: no encryption
		// (docs/OPERATING.md).
		mode = badgerstore.ModeUnencrypted
	case o.NoPassphrase:
		mode = badgerstore.ModeKeyFile
	}
	dir := h.Path(StoreDir)
	st, err := badgerstore.Create(ctx, dir, mode, badgerstore.Options{Passphrase: o.Passphrase, Rand: o.Rand, Logger: o.Logger, MarkerDir: h.markerDir()})
	if errors.Is(err, store.ErrExists) {
		// A database without a key file: nothing can open it.
		return nil, Identity{}, &DamagedError{Home: h.Dir, Detail: fmt.Sprintf("%s holds a database but no key file", StoreDir)}
	}
	if err != nil {
		return nil, Identity{}, fmt.Errorf("home: %w", err)
	}
	defer func() {
		if err != nil {
			st.Close()
			os.RemoveAll(dir)
		}
	}()
	if err := node.Provision(ctx, st, o.Name, o.Rand); err != nil {
		return nil, Identity{}, err
	}
	self, err := node.ReadSelf(ctx, st)
	if err != nil {
		return nil, Identity{}, fmt.Errorf("home: read identity: %w", err)
	}
	id := Identity{UserID: self.UserID.String(), PeerID: self.PeerID.String()}
	if err := writeFileAtomic(h.Path(ConfigFile), config, 0o600); err != nil {
		return nil, Identity{}, err
	}
	return st, id, nil
}

// keepStore is Init for a home whose store exists.
func (h Home) keepStore(ctx context.Context, o InitOptions, cfg Config) (_ store.Store, _ Identity, err error) {
	config, err := MarshalConfig(cfg)
	if err != nil {
		return nil, Identity{}, err
	}
	st, err := h.OpenStore(ctx, o.Passphrase, o.Logger)
	if err != nil {
		return nil, Identity{}, err
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	self, err := node.ReadSelf(ctx, st)
	if errors.Is(err, node.ErrNotProvisioned) {
		if err = node.Provision(ctx, st, o.Name, o.Rand); err == nil {
			self, err = node.ReadSelf(ctx, st)
		}
	}
	if err != nil {
		return nil, Identity{}, fmt.Errorf("home: read identity: %w", err)
	}
	if _, serr := os.Stat(h.Path(TokenFile)); errors.Is(serr, fs.ErrNotExist) {
		if err := writeToken(h.Path(TokenFile), o.Rand); err != nil {
			return nil, Identity{}, err
		}
	}
	if err := writeFileAtomic(h.Path(ConfigFile), config, 0o600); err != nil {
		return nil, Identity{}, err
	}
	return st, Identity{UserID: self.UserID.String(), PeerID: self.PeerID.String(), Kept: true}, nil
}

// storeError is err of the store package, as the home reports it: a
// damaged store as a DamagedError, a full disk as a DiskFullError.
func (h Home) storeError(err error) error {
	var d *badgerstore.DamageError
	var df *store.DiskFullError
	switch {
	case errors.As(err, &df):
		return &DiskFullError{Home: h.Dir, Free: df.Free, Need: df.Need}
	case errors.As(err, &d):
		what := d.Path
		if rel, rerr := filepath.Rel(h.Dir, d.Path); rerr == nil && !strings.HasPrefix(rel, "..") {
			what = rel
		}
		return &DamagedError{Home: h.Dir, Detail: what + " " + d.Problem}
	case errors.Is(err, store.ErrCorrupt):
		return &DamagedError{Home: h.Dir, Detail: err.Error()}
	}
	return fmt.Errorf("home: %w", err)
}

// HasStore reports whether the home holds a store (its key file).
func (h Home) HasStore() bool {
	_, err := badgerstore.ReadMode(h.Path(StoreDir))
	return !errors.Is(err, store.ErrNotFound)
}

// ErrDamaged is what a DamagedError matches.
var ErrDamaged = errors.New("home: the store is damaged")

// DamagedError reports a home whose store cannot be opened as it is: a
// file missing or damaged, or no identity in an initialized home. The
// remedy is a backup of the home.
type DamagedError struct {
	Home   string
	Detail string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("home: the store of %s is damaged: %s; restore the home from a backup", e.Home, e.Detail)
}

func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// DiskFullError reports a home whose store cannot open for want of room
// on its disk. It wraps ErrDiskFull.
type DiskFullError struct {
	Home string
	// Free is the room left, Need the room the store needs to open, in
	// bytes.
	Free, Need int64
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf("the disk holding %s is full: %s free, its store needs %s free to open; free some space and start again",
		e.Home, store.MiB(e.Free), store.MiB(e.Need))
}

func (e *DiskFullError) Unwrap() error { return ErrDiskFull }

// writeToken writes a new random API token to path (0600).
func writeToken(path string, rand io.Reader) error {
	var t [tokenBytes]byte
	if _, err := io.ReadFull(rand, t[:]); err != nil {
		return fmt.Errorf("home: token: %w", err)
	}
	return writeFileAtomic(path, []byte(hex.EncodeToString(t[:])+"\n"), 0o600)
}

// Protected reports whether the home's store needs a passphrase to open.
func (h Home) Protected() (bool, error) {
	mode, err := badgerstore.ReadMode(h.Path(StoreDir))
	if errors.Is(err, store.ErrNotFound) {
		return false, fmt.Errorf("home: %s holds no store", h.Dir)
	}
	if err != nil {
		return false, h.storeError(err)
	}
	return mode == badgerstore.ModePassphrase, nil
}

// Open returns the home's store open, as a daemon starts: with init nil,
// an initialized home's, unlocked by passphrase (OpenStore); otherwise a new
// one, initializing the home (Init with *init), and the new identity. The
// caller has locked the home (Lock).
func (h Home) Open(ctx context.Context, passphrase []byte, init *InitOptions, log *slog.Logger) (store.Store, *Identity, error) {
	if init == nil {
		st, err := h.OpenStore(ctx, passphrase, log)
		return st, nil, err
	}
	st, id, err := h.Init(ctx, *init)
	if err != nil {
		return nil, nil, err
	}
	return st, &id, nil
}

// OpenStore opens the home's store; passphrase is needed if Protected. The
// errors wrap ErrWrongPassphrase, ErrPassphraseRequired, ErrStoreLocked and
// ErrSchemaTooNew where they apply. It clears passphrase before it returns:
// the store keeps only the data key.
func (h Home) OpenStore(ctx context.Context, passphrase []byte, log *slog.Logger) (store.Store, error) {
	defer clear(passphrase)
	st, err := badgerstore.Open(ctx, h.Path(StoreDir), badgerstore.Options{Passphrase: passphrase, Logger: log, MarkerDir: h.markerDir()})
	if err != nil {
		return nil, h.storeError(err)
	}
	if h.Initialized() {
		if _, err := node.ReadSelf(ctx, st); errors.Is(err, node.ErrNotProvisioned) {
			st.Close()
			return nil, &DamagedError{Home: h.Dir, Detail: "it holds no identity although the home is initialized"}
		}
	}
	return st, nil
}

// Token returns the API's bearer token from HOME/api.token.
func (h Home) Token() (string, error) {
	b, err := os.ReadFile(h.Path(TokenFile))
	if err != nil {
		return "", fmt.Errorf("home: api token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if len(t) < 2*tokenBytes {
		return "", fmt.Errorf("home: %s is too short to be a token", h.Path(TokenFile))
	}
	return t, nil
}
