package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealpost/sealpost/node/api"
	"github.com/sealpost/sealpost/node/relay"
)

// relayCommand is `sealpost relay stats`: the operator's view of the
// community relay service this node runs (docs/OPERATING.md). Not to be
// confused with `relays`, the relays a personal node receives through.
func (c *cli) relayCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "relay stats|peers",
		Short: "The community relay service this node runs",
		Long: `The operator's view of the community relay service this node runs (started
with --relay-service or --profile relay). 'relay stats' shows its figures;
'relay peers' the peers it served on mailbox streams lately.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "stats",
		Short: "Mailboxes, stored envelopes and bytes, traffic and refusals",
		Long: `Show the figures of the community relay service this node runs: mailboxes
held, envelopes and bytes stored, deposits and fetches in the last minute,
and refused requests by reason since the relay started. Nothing shown names
a mailbox, a token or a peer. With --json: one object (the same as
GET /v1/relay/stats).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (relay.Stats, error) { return cl.RelayStats(cmd.Context()) }, func(w io.Writer, st relay.Stats) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "mailboxes\t%d\n", st.Mailboxes)
				fmt.Fprintf(tw, "envelopes\t%d\n", st.Envelopes)
				fmt.Fprintf(tw, "stored\t%s of %s (envelopes %s, cards and prekeys %s)\n",
					byteSize(st.EnvelopeBytes+st.BlobBytes), byteSize(st.StoreMaxBytes), byteSize(st.EnvelopeBytes), byteSize(st.BlobBytes))
				fmt.Fprintf(tw, "tokens\t%d\n", st.Tokens)
				fmt.Fprintf(tw, "prekeys\t%d\n", st.Prekeys)
				fmt.Fprintf(tw, "deposits/min\t%d\n", st.DepositsPerMinute)
				fmt.Fprintf(tw, "fetches/min\t%d\n", st.FetchesPerMinute)
				fmt.Fprintf(tw, "since start\t%d deposits, %d fetches\n", st.Deposits, st.Fetches)
				fmt.Fprintf(tw, "streams\t%d (%d subscriptions)\n", st.Streams, st.Subscriptions)
				fmt.Fprintf(tw, "ttl\t%s\n", time.Duration(st.TTLSeconds)*time.Second)
				reasons := make([]string, 0, len(st.Rejections))
				for r := range st.Rejections {
					reasons = append(reasons, r)
				}
				slices.Sort(reasons)
				if len(reasons) == 0 {
					fmt.Fprintf(tw, "rejections\tnone\n")
				}
				for i, r := range reasons {
					label := ""
					if i == 0 {
						label = "rejections"
					}
					fmt.Fprintf(tw, "%s\t%s %d\n", label, r, st.Rejections[r])
				}
				quotas := slices.Sorted(maps.Keys(st.QuotaRefusals))
				for i, q := range quotas {
					label := ""
					if i == 0 {
						label = "of which creator quotas"
					}
					fmt.Fprintf(tw, "%s\t%s %d\n", label, q, st.QuotaRefusals[q])
				}
				tw.Flush()
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "peers",
		Short: "The peers served on mailbox streams lately",
		Long: `Show the peer IDs the relay service served on mailbox streams lately,
newest first: every peer that opened one, those that sent mailbox owner
operations, and those that deposited envelopes or asked for a card blob or
a one-time prekey (at most 256 of each, kept in memory only; no mailbox or
token is named). Personal nodes do mailbox work under keys of their own for
each relay, so none of these should be a device's peer ID: a device's peer
ID may appear in 'peers ls' (it bootstraps through the relay), never here.
With --json: one object (the same as GET /v1/relay/peers).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (relay.RecentPeers, error) { return cl.RelayPeers(cmd.Context()) }, func(w io.Writer, p relay.RecentPeers) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				for _, l := range []struct {
					name  string
					peers []relay.SeenPeer
				}{{"stream", p.Streams}, {"owner", p.Owners}, {"depositor", p.Depositors}} {
					for _, sp := range l.peers {
						fmt.Fprintf(tw, "%s\t%s\t%s\n", l.name, sp.PeerID, sp.LastSeen.Local().Format(time.DateTime))
					}
				}
				tw.Flush()
			})
		},
	})
	return cmd
}

// byteSize formats a byte count with a binary unit.
func byteSize(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
