package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sealpost/sealpost/node/api"
	"github.com/sealpost/sealpost/node/home"
)

// noPassphraseWarning is printed whenever a home is created without a passphrase.
const noPassphraseWarning = `sealpost: warning: --no-passphrase: the data key is stored unencrypted next to
the database, so it protects nothing against disk theft: whoever copies the
home reads everything.`

// relayStoreNote is printed when a relay home is created without a
// passphrase (the relay profile's default).
const relayStoreNote = `sealpost: relay profile: the store is not encrypted at rest. It holds sealed
envelopes (already encrypted to their recipients), token hashes and the relay's
own libp2p key; give --passphrase-file to encrypt it anyway (docs/OPERATING.md).`

// errNoPassphrase is what the user sees when no passphrase source exists.
var errNoPassphrase = userErrorf("no passphrase: give --passphrase-file FILE, set %s, run on a terminal to be asked, or pass --no-passphrase to store the data key unprotected", home.EnvPassphrase)

type initOptions struct {
	name           string
	profile        string
	passphraseFile string
	noPassphrase   bool
}

// check refuses bad options before anything is asked or created.
func (o *initOptions) check() error {
	if _, err := home.DefaultConfig(o.profile); err != nil {
		return userError(err)
	}
	return nil
}

func (o *initOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.name, "name", "", "your display name")
	f.StringVar(&o.profile, "profile", "", "defaults to write into config.toml: personal, relay or test (default personal)")
	f.StringVar(&o.passphraseFile, "passphrase-file", "", "read the passphrase from this file (else $"+home.EnvPassphrase+", else a prompt on a terminal)")
	f.BoolVar(&o.noPassphrase, "no-passphrase", false, "store the data key unprotected next to the database (no protection against disk theft)")
}

// initResult is what `sealpost init` prints.
type initResult struct {
	Home    string `json:"home"`
	Profile string `json:"profile"`
	UserID  string `json:"user_id"`
	PeerID  string `json:"peer_id"`
	// KeptStore: the home held a store already; init wrote only config.toml.
	KeptStore bool `json:"kept_store,omitempty"`
}

func (c *cli) initCommand() *cobra.Command {
	var o initOptions
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the home: identity, device key, encrypted store, config.toml",
		Long: `Create the home directory (mode 0700) with a new identity and device key in an
encrypted store, a commented config.toml for the profile, and the API token.

The store is protected by a passphrase from --passphrase-file, $` + home.EnvPassphrase + `,
or a prompt when standard input is a terminal; without any of them init stops
with an error rather than wait. --no-passphrase stores the data key next to the
database instead, which protects nothing against disk theft.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(); err != nil {
				return err
			}
			h, err := c.home()
			if err != nil {
				return err
			}
			if h.Initialized() {
				return userErrorf("%s is already initialized", h.Dir)
			}
			if err := h.Create(); err != nil {
				return err
			}
			lock, err := c.lock(h)
			if err != nil {
				return err
			}
			defer lock.Unlock()
			pass, err := c.initPassphrase(h, o)
			if err != nil {
				return err
			}
			st, id, err := h.Init(cmd.Context(), *o.options(pass, nil))
			if err != nil {
				return storeError(h, true, err)
			}
			c.keptStore(h, id)
			res := initResult{Home: h.Dir, Profile: o.profileOrDefault(), UserID: id.UserID, PeerID: id.PeerID, KeptStore: id.Kept}
			if err := st.Close(); err != nil {
				return fmt.Errorf("close store: %w", err)
			}
			return c.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "initialized %s (profile %s)\nuser id: %s\npeer id: %s\n", res.Home, res.Profile, res.UserID, res.PeerID)
			})
		},
	}
	o.addFlags(cmd.Flags())
	cmd.MarkFlagsMutuallyExclusive("passphrase-file", "no-passphrase")
	return cmd
}

// newPassphrase returns the passphrase for a new store, or nil (after the
// warning) with --no-passphrase.
func (c *cli) newPassphrase(o initOptions) ([]byte, error) {
	if o.profile == home.ProfileRelay && (o.noPassphrase || o.passphraseFile == "" && c.getenv(home.EnvPassphrase) == "") {
		// A relay runs unattended and stores only sealed envelopes.
		fmt.Fprintln(c.stderr, relayStoreNote)
		return nil, nil
	}
	if o.noPassphrase {
		fmt.Fprintln(c.stderr, noPassphraseWarning)
		return nil, nil
	}
	return c.passphrase(o.passphraseFile, true)
}

// initPassphrase returns the passphrase for init: the store's own if the
// home holds one already (init keeps it), else a new one.
func (c *cli) initPassphrase(h home.Home, o initOptions) ([]byte, error) {
	if h.HasStore() {
		return c.storePassphrase(h, o)
	}
	return c.newPassphrase(o)
}

// keptStore tells the user that init kept the store it found.
func (c *cli) keptStore(h home.Home, id home.Identity) {
	if id.Kept {
		fmt.Fprintf(c.stderr, "sealpost: %s held a store but no config.toml: kept the store and its identity, wrote a default config.toml\n", h.Dir)
	}
}

// storePassphrase returns the passphrase of the store a home holds, or nil
// if the store has none. --no-passphrase is for a new store: on a
// protected one it is refused, with how to remove a passphrase.
func (c *cli) storePassphrase(h home.Home, o initOptions) ([]byte, error) {
	protected, err := h.Protected()
	if err != nil || !protected {
		return nil, err
	}
	if o.noPassphrase {
		return nil, userErrorf("the store of %s is protected by a passphrase: --no-passphrase is only for a new store (to remove the passphrase, run 'sealpost passphrase --no-passphrase')", h.Dir)
	}
	pass, err := home.Passphrase{File: o.passphraseFile, Getenv: c.getenv, Stdin: c.stdin, Prompt: c.stderr}.Read(false)
	if err != nil {
		return nil, passphraseError(err, fmt.Sprintf("the store of %s is protected: give --passphrase-file FILE, set %s, or run on a terminal to be asked", h.Dir, home.EnvPassphrase))
	}
	return pass, nil
}

// options are the InitOptions of o with the passphrase pass (nil:
// --no-passphrase).
func (o *initOptions) options(pass []byte, log *slog.Logger) *home.InitOptions {
	return &home.InitOptions{
		Name:         o.name,
		Profile:      o.profileOrDefault(),
		Passphrase:   pass,
		NoPassphrase: pass == nil,
		Logger:       log,
	}
}

// profileOrDefault is --profile, personal when not given.
func (o *initOptions) profileOrDefault() string {
	if o.profile == "" {
		return home.ProfilePersonal
	}
	return o.profile
}

// storeError says what went wrong opening (or, if initializing, creating)
// the store of h.
func storeError(h home.Home, initializing bool, err error) error {
	switch {
	case errors.Is(err, home.ErrDamaged):
		return err
	case errors.Is(err, home.ErrDiskFull):
		return &exitError{code: api.ExitLimit, err: err}
	case initializing && errors.Is(err, home.ErrInitialized):
		return userErrorf("%s is already initialized", h.Dir)
	case initializing && errors.Is(err, home.ErrWrongPassphrase):
		return userErrorf("wrong passphrase for the store of %s (init keeps an existing store)", h.Dir)
	case initializing:
		return fmt.Errorf("init %s: %w", h.Dir, err)
	case errors.Is(err, home.ErrWrongPassphrase):
		return userErrorf("wrong passphrase for %s", h.Dir)
	case errors.Is(err, home.ErrSchemaTooNew):
		return userErrorf("%s was written by a newer sealpost; upgrade to open it", h.Dir)
	case errors.Is(err, home.ErrStoreLocked):
		return userErrorf("the store of %s is in use by another process", h.Dir)
	}
	return fmt.Errorf("open store: %w", err)
}

// passphrase reads the passphrase from its sources (home.Passphrase).
func (c *cli) passphrase(file string, confirm bool) ([]byte, error) {
	pass, err := home.Passphrase{File: file, Getenv: c.getenv, Stdin: c.stdin, Prompt: c.stderr}.Read(confirm)
	switch {
	case errors.Is(err, home.ErrNoPassphrase):
		return nil, errNoPassphrase
	case err != nil:
		return nil, userError(err)
	}
	return pass, nil
}

// lock takes the home's daemon lock, refusing when a daemon runs on it.
func (c *cli) lock(h home.Home) (*home.Lock, error) {
	l, err := h.Lock()
	if errors.Is(err, home.ErrLocked) {
		return nil, userErrorf("a daemon is already running on %s%s", h.Dir, strings.TrimPrefix(err.Error(), home.ErrLocked.Error()))
	}
	return l, err
}
