package main

import (
	"fmt"
	"io"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sealpost/sealpost/crypto/bench"
)

// benchReport is what `sealpost bench --json` prints.
type benchReport struct {
	Go      string         `json:"go"`
	CPUs    int            `json:"cpus"`
	Figures []bench.Figure `json:"figures"`
}

// benchRunner is one group of figures.
type benchRunner struct {
	name string
	run  func() ([]bench.Figure, error)
}

func (c *cli) benchCommand() *cobra.Command {
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure crypto and storage figures on this machine (no daemon needed)",
		Long: `Measure the figures that matter to users on this machine, in this process:
crypto (ratchet, sealing) and storage. Each throughput figure is printed next to
the limit computed in the same run from the primitives it is made of, and their
ratio, so the ratio stays meaningful on a noisy machine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			runners := []benchRunner{
				{"crypto", func() ([]bench.Figure, error) { return bench.Crypto(bench.Options{Duration: duration}) }},
			}
			report := benchReport{Go: runtime.Version(), CPUs: runtime.NumCPU(), Figures: []bench.Figure{}}
			progress := io.Discard
			if term.IsTerminal(int(c.stdin.Fd())) {
				progress = c.stderr
			}
			for _, r := range runners {
				fmt.Fprintf(progress, "measuring %s figures...\n", r.name)
				figs, err := r.run()
				if err != nil {
					return fmt.Errorf("bench %s: %w", r.name, err)
				}
				report.Figures = append(report.Figures, figs...)
			}
			return c.print(report, func(w io.Writer) { printFigures(w, report) })
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 3*time.Second, "measuring time of each group of figures")
	return cmd
}

func printFigures(w io.Writer, r benchReport) {
	fmt.Fprintf(w, "%s, %d CPUs\n", r.Go, r.CPUs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "FIGURE\tVALUE\tUNIT\tLIMIT\tRATIO\t")
	for _, f := range r.Figures {
		limit, ratio := "-", "-"
		if f.Limit > 0 {
			limit = fmt.Sprintf("%.4g", f.Limit)
			ratio = fmt.Sprintf("%.2f", f.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%.4g\t%s\t%s\t%s\t\n", f.Name, f.Value, f.Unit, limit, ratio)
	}
	tw.Flush()
}
