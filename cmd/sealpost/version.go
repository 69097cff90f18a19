package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionInfo is what `sealpost version` prints, from the build information
// the Go toolchain embeds in the binary.
type versionInfo struct {
	Version  string `json:"version"`
	Go       string `json:"go"`
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
}

func buildVersion() versionInfo {
	v := versionInfo{Version: "(devel)"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Go = bi.GoVersion
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func (c *cli) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, Go version and VCS revision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := buildVersion()
			return c.print(v, func(w io.Writer) {
				fmt.Fprintf(w, "sealpost %s\ngo %s\n", v.Version, v.Go)
				if v.Revision != "" {
					dirty := ""
					if v.Modified {
						dirty = " (modified)"
					}
					fmt.Fprintf(w, "revision %s%s %s\n", v.Revision, dirty, v.Time)
				} else {
					fmt.Fprintln(w, "revision unknown (built without VCS information)")
				}
			})
		},
	}
}
