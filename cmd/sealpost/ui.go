package main

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/sealpost/sealpost/node/api"
)

func (c *cli) uiCommand() *cobra.Command {
	var noOpen bool
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Open the web app: print a one-time login link (and open it in a browser)",
		Long: `Open the web app the daemon serves on loopback. The daemon starts its TCP
listener if it does not run yet (at [ui] listen of config.toml, default
127.0.0.1:7711, or a free port when that one is taken; the same listener
serves the API to programs with the bearer token of HOME/api.token). The
command prints a login link that works once, within 10 minutes: the browser
exchanges it for a session cookie, and the address bar drops it.

On a desktop (a display on Linux, or macOS, or Windows) it also opens the
link in the default browser, unless --no-open. With --json it prints
{"url"} and opens nothing: the link is for the program that asked.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (api.UILogin, error) { return cl.UILogin(cmd.Context()) }, func(w io.Writer, l api.UILogin) {
				fmt.Fprintf(w, "Open this link in your browser (it logs in once, within 10 minutes):\n\n  %s\n\n", l.URL)
				if noOpen {
					return
				}
				if err := openBrowser(c.getenv, l.URL); err != nil && !errors.Is(err, errNoDesktop) {
					fmt.Fprintf(c.stderr, "sealpost: did not open a browser: %v\n", err)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&noOpen, "no-open", false, "only print the link; do not open a browser")
	return cmd
}

// errNoDesktop: there is no display to open a browser on.
var errNoDesktop = errors.New("no desktop (neither DISPLAY nor WAYLAND_DISPLAY is set)")

// openBrowser opens url in the desktop's default browser and returns
// without waiting for it.
func openBrowser(getenv func(string) string, url string) error {
	var name string
	var args []string
	switch runtime.GOOS {
	case "darwin":
		name = "open"
	case "windows":
		name, args = "rundll32", []string{"url.dll,FileProtocolHandler"}
	default:
		if getenv("DISPLAY") == "" && getenv("WAYLAND_DISPLAY") == "" {
			return errNoDesktop
		}
		name = "xdg-open"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return err
	}
	cmd := exec.Command(path, append(args, url)...)
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}
