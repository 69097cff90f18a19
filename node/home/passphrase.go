package home

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
)

// EnvPassphrase is the environment variable a passphrase may come from.
const EnvPassphrase = "SEALPOST_PASSPHRASE"

// maxPassphrase bounds a passphrase read from a file or the environment.
const maxPassphrase = 4096

// ErrNoPassphrase is returned by Passphrase.Read when no source gives a
// passphrase: no file, no SEALPOST_PASSPHRASE, and standard input is not a
// terminal to ask on. It never waits for input that cannot come.
var ErrNoPassphrase = errors.New("home: no passphrase source")

// ErrPassphraseMismatch is returned when the two passphrases typed at a
// prompt differ.
var ErrPassphraseMismatch = errors.New("home: the passphrases do not match")

// Passphrase says where a passphrase comes from. Read tries, in order, File,
// the environment variable SEALPOST_PASSPHRASE, and a prompt on Stdin when
// Stdin is a terminal.
type Passphrase struct {
	// File is a file whose contents (less one trailing newline) are the
	// passphrase; empty for none.
	File string
	// Getenv reads the environment; nil for no environment.
	Getenv func(string) string
	// Stdin is asked on when it is a terminal; nil for no prompt.
	Stdin *os.File
	// Prompt receives the prompt text (standard error); nil for io.Discard.
	Prompt io.Writer
	// Name is what the prompt asks for ("new passphrase"); empty:
	// "passphrase".
	Name string
}

// Read returns the passphrase. With confirm, a prompt asks twice (for a new
// passphrase). An empty passphrase is an error.
func (p Passphrase) Read(confirm bool) ([]byte, error) {
	if p.File != "" {
		pass, err := readPassphraseFile(p.File)
		if err != nil {
			return nil, err
		}
		return nonEmpty(pass, p.File)
	}
	if p.Getenv != nil {
		if v := p.Getenv(EnvPassphrase); v != "" {
			if len(v) > maxPassphrase {
				return nil, fmt.Errorf("home: %s is longer than %d bytes", EnvPassphrase, maxPassphrase)
			}
			return []byte(v), nil
		}
	}
	if p.Stdin == nil || !term.IsTerminal(int(p.Stdin.Fd())) {
		return nil, ErrNoPassphrase
	}
	w := p.Prompt
	if w == nil {
		w = io.Discard
	}
	name := p.Name
	if name == "" {
		name = "passphrase"
	}
	fd := int(p.Stdin.Fd())
	fmt.Fprintf(w, "%s: ", name)
	pass, err := term.ReadPassword(fd)
	fmt.Fprintln(w)
	if err != nil {
		return nil, fmt.Errorf("home: read passphrase: %w", err)
	}
	if len(pass) == 0 {
		return nil, errors.New("home: empty passphrase")
	}
	if confirm {
		fmt.Fprintf(w, "%s again: ", name)
		again, err := term.ReadPassword(fd)
		fmt.Fprintln(w)
		if err != nil {
			return nil, fmt.Errorf("home: read passphrase: %w", err)
		}
		same := bytes.Equal(pass, again)
		clear(again)
		if !same {
			clear(pass)
			return nil, ErrPassphraseMismatch
		}
	}
	return pass, nil
}

func readPassphraseFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("home: passphrase file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPassphrase+3))
	if err != nil {
		return nil, fmt.Errorf("home: passphrase file: %w", err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) > maxPassphrase {
		return nil, fmt.Errorf("home: passphrase file %s is longer than %d bytes", name, maxPassphrase)
	}
	return b, nil
}

func nonEmpty(pass []byte, from string) ([]byte, error) {
	if len(pass) == 0 {
		return nil, fmt.Errorf("home: passphrase file %s is empty", from)
	}
	return pass, nil
}

// ErrNotEncrypted is returned by ChangePassphrase for a store that is not
// encrypted at all (a relay's default): a passphrase would need the whole
// store encrypted anew.
var ErrNotEncrypted = errors.New("home: the store is not encrypted")

// ChangePassphrase changes the passphrase of the home's store: old unlocks
// it (ignored when the store has none), new protects it from now on, and an
// empty new leaves the data key unprotected next to the database (as
// --no-passphrase does). Nothing is re-encrypted: the data key is wrapped
// anew and the key file replaced atomically, so a process killed at any
// moment leaves either passphrase working, and a running daemon is not
// disturbed. It clears old and new before it returns.
func (h Home) ChangePassphrase(old, new []byte) error {
	defer clear(old)
	defer clear(new)
	err := badgerstore.ChangePassphrase(h.Path(StoreDir), old, new, badgerstore.KDFParams{})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("home: %s holds no store", h.Dir)
	case errors.Is(err, store.ErrInvalid):
		return ErrNotEncrypted
	case err != nil:
		return fmt.Errorf("home: %w", err)
	}
	return nil
}

// ForgetEnvPassphrase removes SEALPOST_PASSPHRASE from the process's
// environment once the passphrase was read: from the runtime's copy, and
// on Linux also from the environment block the kernel shows in
// /proc/PID/environ (to the process's owner and root), whose bytes it
// overwrites. It reports whether the kernel's copy could not be
// overwritten.
func ForgetEnvPassphrase() error {
	v, ok := os.LookupEnv(EnvPassphrase)
	if !ok {
		return nil
	}
	err := scrubEnvBlock(EnvPassphrase)
	os.Unsetenv(EnvPassphrase)
	clearString(v)
	return err
}
