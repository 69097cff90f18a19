package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sealpost/sealpost/node/api"
	"github.com/sealpost/sealpost/node/messaging"
)

// relaysCommand is `sealpost relays add MADDR | ls | rm ID` (DESIGN.md §6):
// the community relays this node receives through while it is offline.
func (c *cli) relaysCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "relays add MADDR | ls | rm ID",
		Short: "Relays this node receives through",
		Long: `Manage the community relays this node receives through. A relay keeps
sealed messages for the node while it is offline, in a mailbox that is not
linked to the node's identity or device: the node talks to each relay through
a libp2p key of its own.

  relays add MADDR   make a mailbox on the relay (a multiaddr with /p2p/):
                     contacts get a card that lists it, invites made
                     afterwards list it (at most 4 relays)
  relays ls          the relays, with the state of each subscription and
                     the messages the relay holds for this node
  relays rm ID       stop receiving through a relay (its peer ID): the
                     mailbox is deleted there, with what it still holds

With --json: add prints the relay, ls {"relays": [...]}, rm {"id", "removed"}.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "add MADDR",
		Short: "Make a mailbox on a relay and receive through it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (messaging.Relay, error) { return cl.AddRelay(cmd.Context(), args[0]) }, func(w io.Writer, r messaging.Relay) {
				fmt.Fprintf(w, "receiving through %s (mailbox %s)\n", r.ID, r.Mailbox[:16])
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List the relays this node receives through",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (api.RelayList, error) {
				list, err := cl.Relays(cmd.Context())
				return api.RelayList{Relays: list}, err
			}, func(w io.Writer, l api.RelayList) {
				if len(l.Relays) == 0 {
					fmt.Fprintln(w, "no relays (sealpost relays add MADDR)")
					return
				}
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "RELAY\tSTATE\tSTORED\tADDRESS")
				for _, r := range l.Relays {
					state := r.State
					if r.Error != "" {
						state += ": " + r.Error
					}
					addr := ""
					if len(r.Addrs) > 0 {
						addr = r.Addrs[0]
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.ID, state, r.Stored, addr)
				}
				tw.Flush()
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "rm ID",
		Short: "Stop receiving through a relay",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (api.RemoveRelayResult, error) { return cl.RemoveRelay(cmd.Context(), args[0]) }, func(w io.Writer, res api.RemoveRelayResult) {
				fmt.Fprintf(w, "removed %s\n", res.ID)
			})
		},
	})
	return cmd
}
