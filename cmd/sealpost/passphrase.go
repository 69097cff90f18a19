package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/sealpost/sealpost/node/home"
)

// passphraseResult is what `sealpost passphrase` prints.
type passphraseResult struct {
	Home      string `json:"home"`
	Protected bool   `json:"protected"`
}

func (c *cli) passphraseCommand() *cobra.Command {
	var (
		oldFile, newFile string
		remove           bool
	)
	cmd := &cobra.Command{
		Use:   "passphrase",
		Short: "Change the passphrase that protects the store",
		Long: `Change the passphrase that protects the home's store. The current passphrase
comes from --passphrase-file, $` + home.EnvPassphrase + ` or a prompt; the new one from
--new-passphrase-file or a prompt (asked twice). --no-passphrase removes the
protection instead: the data key is then kept next to the database, which
protects nothing against disk theft. A home made without a passphrase gets one.

Nothing is re-encrypted: the random data key is wrapped anew and the key file
replaced in one atomic step, so the command may run while the daemon does, and
a crash or kill at any moment leaves either the old or the new passphrase
working. A copy of the home taken before the change still opens with the old
passphrase (docs/THREATS.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := c.home()
			if err != nil {
				return err
			}
			if !h.Initialized() {
				return userErrorf("%s is not initialized: run 'sealpost init' first", h.Dir)
			}
			var old []byte
			if protected, err := h.Protected(); err != nil {
				return err
			} else if protected {
				old, err = home.Passphrase{File: oldFile, Getenv: c.getenv, Stdin: c.stdin, Prompt: c.stderr, Name: "current passphrase"}.Read(false)
				if err != nil {
					return passphraseError(err, "give --passphrase-file FILE, set "+home.EnvPassphrase+", or run on a terminal to be asked")
				}
			} else if remove {
				return userErrorf("%s has no passphrase to remove", h.Dir)
			}
			var new []byte
			if !remove {
				// Never the environment: it holds the current one.
				new, err = home.Passphrase{File: newFile, Stdin: c.stdin, Prompt: c.stderr, Name: "new passphrase"}.Read(true)
				if err != nil {
					clear(old)
					return passphraseError(err, "give --new-passphrase-file FILE or run on a terminal to be asked")
				}
			}
			err = h.ChangePassphrase(old, new)
			switch {
			case errors.Is(err, home.ErrWrongPassphrase):
				return userErrorf("wrong passphrase for %s", h.Dir)
			case errors.Is(err, home.ErrNotEncrypted):
				return userErrorf("the store of %s is not encrypted, so it cannot take a passphrase; make a new home with 'sealpost init --passphrase-file FILE'", h.Dir)
			case err != nil:
				return err
			}
			if remove {
				fmt.Fprintln(c.stderr, noPassphraseWarning)
			}
			res := passphraseResult{Home: h.Dir, Protected: !remove}
			return c.print(res, func(w io.Writer) {
				if remove {
					fmt.Fprintf(w, "removed the passphrase of %s\n", h.Dir)
				} else {
					fmt.Fprintf(w, "changed the passphrase of %s\n", h.Dir)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&oldFile, "passphrase-file", "", "read the current passphrase from this file (else $"+home.EnvPassphrase+", else a prompt on a terminal)")
	f.StringVar(&newFile, "new-passphrase-file", "", "read the new passphrase from this file (else a prompt on a terminal)")
	f.BoolVar(&remove, "no-passphrase", false, "remove the passphrase: keep the data key unprotected next to the database")
	cmd.MarkFlagsMutuallyExclusive("new-passphrase-file", "no-passphrase")
	return cmd
}

// passphraseError is the user's error for a passphrase that could not be
// read; how says where one can come from.
func passphraseError(err error, how string) error {
	if errors.Is(err, home.ErrNoPassphrase) {
		return userErrorf("no passphrase: %s", how)
	}
	return userError(err)
}
