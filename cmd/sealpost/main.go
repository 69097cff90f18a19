// Command sealpost is a peer-to-peer, end-to-end encrypted messenger node.
//
// `sealpost daemon` runs the node; every other command is a client of the
// running daemon's local API (node/api), found through the home directory
// (node/home). `init`, `bench`, `version` and `completion` need no daemon.
// The command line, its JSON output and its exit codes are the interface
// contract of docs/DESIGN.md §6.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/sealpost/sealpost/node/api"
	"github.com/sealpost/sealpost/node/home"
)

func main() {
	start := time.Now()
	os.Exit(run(context.Background(), env{
		args:   os.Args[1:],
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
		start:  start,
	}))
}

// env is everything the command reads from and writes to its process.
type env struct {
	args   []string
	stdin  *os.File
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	start  time.Time // when the process started, for the daemon's ready log
}

// cli holds the parsed global flags and the process's env for the commands.
type cli struct {
	env
	homeFlag string
	json     bool
}

// exitError carries an exit code with an error; errors without one are
// internal (exit 2), except those cobra returns for bad usage (exit 1).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// userError marks err as the user's to fix: exit code 1.
func userError(err error) error { return &exitError{code: api.ExitUser, err: err} }

// userErrorf is userError(fmt.Errorf(...)).
func userErrorf(format string, args ...any) error {
	return userError(fmt.Errorf(format, args...))
}

// run is the whole command: it parses args, runs one command, prints an
// error if any, and returns the exit code.
func run(ctx context.Context, e env) int {
	c := &cli{env: e}
	for i, a := range e.args {
		// JSON, and so the API, would carry such text with U+FFFD in
		// place of the bad bytes: refuse it rather than change it.
		if !utf8.ValidString(a) {
			fmt.Fprintf(e.stderr, "sealpost: argument %d is not valid UTF-8\n", i+1)
			return api.ExitUser
		}
	}
	root := c.rootCommand()
	root.SetArgs(e.args)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	// Errors from before a command's RunE are cobra's verdict on the command
	// line: usage errors.
	ran := false
	markRun(root, &ran)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return api.ExitOK
	}
	code := exitCode(err)
	if !ran {
		code = api.ExitUser // cobra refused the command line before running it
	}
	fmt.Fprintf(e.stderr, "sealpost: %s\n", message(err))
	if !ran {
		fmt.Fprintln(e.stderr, "run 'sealpost --help' for usage")
	}
	return code
}

// markRun wraps the RunE of cmd and its subcommands to set *ran.
func markRun(cmd *cobra.Command, ran *bool) {
	if f := cmd.RunE; f != nil {
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			*ran = true
			return f(cmd, args)
		}
	}
	for _, sub := range cmd.Commands() {
		markRun(sub, ran)
	}
}

// exitCode maps an error to the exit code of DESIGN.md §6. API errors carry
// their code (api.Code.ExitCode is the one table); errors of the CLI carry
// theirs; anything else is internal.
func exitCode(err error) int {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Code.ExitCode()
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return api.ExitInternal
}

// message is the error as shown after "sealpost: ": lowercase, without the
// package prefixes of the layers it came through.
func message(err error) string {
	msg := err.Error()
	for _, prefix := range []string{"home: ", "api: ", "node: ", "messaging: ", "files: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	return msg
}

func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "sealpost",
		Short: "A peer-to-peer, end-to-end encrypted messenger node",
		Long: `sealpost is a peer-to-peer, end-to-end encrypted messenger node.

Start a node with 'sealpost daemon --init'; the other commands talk to the
running daemon through its local API (HOME/api.sock).

Exit codes: 0 ok, 1 usage or user error, 2 internal error, 3 network,
4 untrusted identity, 5 refused by a limit or quota or a full disk,
6 no daemon running, 7 --wait timed out.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.PersistentFlags().StringVar(&c.homeFlag, "home", "", "home directory (env "+home.EnvHome+"; default $XDG_DATA_HOME/sealpost or ~/.local/share/sealpost)")
	root.PersistentFlags().BoolVar(&c.json, "json", false, "print the result as JSON: one object (inbox and messages: one object a line)")
	root.AddCommand(
		c.initCommand(),
		c.daemonCommand(),
		c.passphraseCommand(),
		c.idCommand(),
		c.statusCommand(),
		c.peersCommand(),
		c.inviteCommand(),
		c.contactCommand(),
		c.sendCommand(),
		c.messagesCommand(),
		c.inboxCommand(),
		c.groupCommand(),
		c.fileCommand(),
		c.relaysCommand(),
		c.relayCommand(),
		c.uiCommand(),
		c.testnetCommand(),
		c.benchCommand(),
		c.versionCommand(),
	)
	return root
}

// home resolves the home directory from --home and the environment.
func (c *cli) home() (home.Home, error) {
	h, err := home.Resolve(c.homeFlag, c.getenv)
	if err != nil {
		return home.Home{}, userError(err)
	}
	return h, nil
}

// print writes v as one JSON object with --json, or text(v) otherwise.
func (c *cli) print(v any, text func(w io.Writer)) error {
	if c.json {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(c.stdout)
	return nil
}

// client connects to the daemon running on the home.
func (c *cli) client() (*api.Client, error) {
	h, err := c.home()
	if err != nil {
		return nil, err
	}
	return api.Dial(h)
}

// query makes one request of the daemon running on the home (call) and
// prints the answer: one JSON object with --json, else text(w, answer).
func query[T any](c *cli, call func(*api.Client) (T, error), text func(w io.Writer, v T)) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	v, err := call(cl)
	if err != nil {
		return err
	}
	return c.print(v, func(w io.Writer) { text(w, v) })
}
