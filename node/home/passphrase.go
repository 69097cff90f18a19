package home

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
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
	fd := int(p.Stdin.Fd())
	fmt.Fprint(w, "passphrase: ")
	pass, err := term.ReadPassword(fd)
	fmt.Fprintln(w)
	if err != nil {
		return nil, fmt.Errorf("home: read passphrase: %w", err)
	}
	if len(pass) == 0 {
		return nil, errors.New("home: empty passphrase")
	}
	if confirm {
		fmt.Fprint(w, "passphrase again: ")
		again, err := term.ReadPassword(fd)
		fmt.Fprintln(w)
		if err != nil {
			return nil, fmt.Errorf("home: read passphrase: %w", err)
		}
		if !bytes.Equal(pass, again) {
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
