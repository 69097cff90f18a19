package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench"
	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench/cryptobench"
	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench/deliverybench"
	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench/filebench"
	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench/relaybench"
	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench/storebench"
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
	var dir string
	var only []string
	var mlsSizes []int
	var attachSize int64
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure crypto, storage and delivery figures on this machine (no daemon needed)",
		Long: `Measure the figures that matter to users on this machine, in this process:
crypto (ratchet, sealing), storage (durable and group-committed writes in a
temporary encrypted store, on the disk of the home unless --dir says
otherwise), and delivery: two nodes in this process on loopback, with their
stores on that disk (fsync on), one sending to the other over one stream,
each message encrypted, committed on both sides and acknowledged —
direct_delivery with batched commits, direct_delivery_unbatched with one
commit per message, and the latency from send to delivered (p50, p99);
relay_ingest: deposits of 1 KiB envelopes through a relay's deposit path in
this process (checks, group commit in an unencrypted store on that disk, a
signed custody receipt per envelope), next to the store alone committing the
same batches; and relay_e2e: a relay in this process (its store on that disk, each
envelope durable before its custody receipt) and two mailbox clients on
loopback, the time from a deposit to the subscribed recipient holding it
(p50, p99; the p99's limit is the 5 ms target); and attachment: the file
format's encryption and check next to the AEAD and SHA-256 they are made
of, a libp2p stream's throughput, a file of --attachment-size from one node
to another on loopback (attachment_direct: sent, fetched over the blob
protocol, written, synced and checked, next to the time of encrypting,
carrying and checking it), and the peak heap growth during the transfer of
a file of an eighth of that size and of that size (equal: memory does not
grow with the file), and that file through a relay to an offline recipient
(attachment_relay_upload: until the relay acknowledged every blob, next to
the stream; attachment_relay_download: the recipient fetching it from the
relay, checked, next to carrying and checking it).
Each throughput figure is printed next to the limit computed in the same run
from the primitives it is made of, and their ratio, so the ratio stays
meaningful on a noisy machine. --only crypto,mls,storage,relay_ingest,delivery,relay_e2e,attachment
picks groups.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				dir = os.TempDir()
				if h, err := c.home(); err == nil {
					if fi, err := os.Stat(h.Dir); err == nil && fi.IsDir() {
						dir = h.Dir
					}
				}
			}
			runners := []benchRunner{
				{"crypto", func() ([]bench.Figure, error) { return cryptobench.Run(cryptobench.Options{Duration: duration}) }},
				{"mls", func() ([]bench.Figure, error) {
					return cryptobench.MLS(cryptobench.MLSOptions{Duration: duration, Sizes: mlsSizes})
				}},
				{"storage", func() ([]bench.Figure, error) { return storebench.Run(cmd.Context(), dir, duration) }},
				{"relay_ingest", func() ([]bench.Figure, error) { return relaybench.Ingest(cmd.Context(), dir, duration) }},
				{"delivery", func() ([]bench.Figure, error) {
					return deliverybench.Run(cmd.Context(), deliverybench.Options{Dir: dir, Duration: duration})
				}},
				{"relay_e2e", func() ([]bench.Figure, error) { return relaybench.E2E(cmd.Context(), dir, duration) }},
				{"attachment", func() ([]bench.Figure, error) {
					return filebench.Run(cmd.Context(), filebench.Options{Dir: dir, Size: attachSize})
				}},
			}
			if len(only) > 0 {
				var picked []benchRunner
				for _, name := range only {
					i := slices.IndexFunc(runners, func(r benchRunner) bool { return r.name == name })
					if i < 0 {
						return userErrorf("--only: no group %q (crypto, mls, storage, relay_ingest, delivery, relay_e2e, attachment)", name)
					}
					picked = append(picked, runners[i])
				}
				runners = picked
			}
			report := benchReport{Go: runtime.Version(), CPUs: runtime.NumCPU(), Figures: []bench.Figure{}}
			progress := io.Discard
			if f, ok := c.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				progress = c.stderr
			}
			for _, r := range runners {
				fmt.Fprintf(progress, "measuring %s figures...\n", r.name)
				figs, err := r.run()
				if err != nil {
					return fmt.Errorf("bench %s: %w", r.name, err)
				}
				for _, f := range figs {
					// The delivery runner measures the storage figures its
					// limits use; the storage group's come first.
					if !slices.ContainsFunc(report.Figures, func(g bench.Figure) bool { return g.Name == f.Name }) {
						report.Figures = append(report.Figures, f)
					}
				}
			}
			return c.print(report, func(w io.Writer) { printFigures(w, report) })
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 3*time.Second, "measuring time of each group of figures")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the temporary benchmark stores (default: the home, else the temporary directory)")
	cmd.Flags().IntSliceVar(&mlsSizes, "mls-members", []int{10, 100, 1000}, "group sizes of the mls commit figures (building the 1000-member groups takes the longest)")
	cmd.Flags().StringSliceVar(&only, "only", nil, "measure only these groups: crypto, mls, storage, relay_ingest, delivery, relay_e2e, attachment")
	cmd.Flags().Int64Var(&attachSize, "attachment-size", 64<<20, "file size of the attachment figures, in bytes")
	return cmd
}

func printFigures(w io.Writer, r benchReport) {
	fmt.Fprintf(w, "%s, %d CPUs\n", r.Go, r.CPUs)
	fmt.Fprintf(w, "%-28s %12s %-12s %12s %6s\n", "FIGURE", "VALUE", "UNIT", "LIMIT", "RATIO")
	for _, f := range r.Figures {
		limit, ratio := "-", "-"
		if f.Limit > 0 {
			limit = fmt.Sprintf("%.5g", f.Limit)
			ratio = fmt.Sprintf("%.2f", f.Ratio)
		}
		fmt.Fprintf(w, "%-28s %12.5g %-12s %12s %6s\n", f.Name, f.Value, f.Unit, limit, ratio)
	}
}
