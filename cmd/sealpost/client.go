package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/api"
)

// The commands in this file are clients of the running daemon's API.

func (c *cli) idCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "id",
		Short: "Print the user ID, peer ID, addresses (with /p2p/) and relays",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (node.Info, error) { return cl.ID(cmd.Context()) }, func(w io.Writer, info node.Info) {
				if info.Name != "" {
					fmt.Fprintf(w, "name: %s\n", info.Name)
				}
				fmt.Fprintf(w, "user id: %s\npeer id: %s\n", info.UserID, info.PeerID)
				printList(w, "addrs", info.Addrs)
				printList(w, "relays", info.Relays)
				if info.API != "" {
					fmt.Fprintf(w, "api: %s\n", info.API)
				}
			})
		},
	}
}

func printList(w io.Writer, name string, items []string) {
	if len(items) == 0 {
		fmt.Fprintf(w, "%s: none\n", name)
		return
	}
	fmt.Fprintf(w, "%s:\n", name)
	for _, it := range items {
		fmt.Fprintf(w, "  %s\n", it)
	}
}

func (c *cli) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Print the node's state: peers, relays, outbox, sessions, DHT, reachability",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (node.Status, error) { return cl.Status(cmd.Context()) }, func(w io.Writer, st node.Status) {
				serving := "not serving"
				if st.DHTServing {
					serving = "serving"
				}
				record := "not published yet"
				if st.Record.Seq > 0 {
					record = fmt.Sprintf("seq %d, %d addrs, expires %s", st.Record.Seq, st.Record.Addrs, st.Record.Expires.Local().Format(time.DateTime))
				}
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "peers\t%d\n", st.Peers)
				fmt.Fprintf(tw, "relays\t%d\n", st.Relays)
				fmt.Fprintf(tw, "outbox\t%d\n", st.Outbox)
				fmt.Fprintf(tw, "sessions\t%d\n", st.Sessions)
				fmt.Fprintf(tw, "dht\t%s, %s, %d in routing table\n", st.DHTMode, serving, st.RoutingTable)
				fmt.Fprintf(tw, "reachability\t%s\n", st.Reachability)
				fmt.Fprintf(tw, "address record\t%s\n", record)
				if r := st.RolledBack; r != nil {
					fmt.Fprintf(tw, "store\twent back to an older state (a restored copy of the home, or lost writes), found %s: %d sessions with %d contacts ended; each gets a new one with the next message\n",
						r.DetectedAt.Local().Format(time.DateTime), r.Sessions, r.Contacts)
				}
				if st.DiskFull != "" {
					fmt.Fprintf(tw, "disk\tfull: %s; writes are refused until there is room\n", st.DiskFull)
				}
				for _, d := range st.Damaged {
					fmt.Fprintf(tw, "damaged\t%s %s does not decode and is skipped (%s); restore the home from a backup to get it back\n", d.Table, d.Key, d.Err)
				}
				api := "socket only"
				if st.API != "" {
					api = st.API + " and the socket"
				}
				fmt.Fprintf(tw, "api\t%s\n", api)
				tw.Flush()
			})
		},
	}
}

func (c *cli) peersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "peers",
		Short: "List or connect peers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return userErrorf("peers needs a subcommand: ls or connect MADDR")
		},
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the connected peers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (api.PeerList, error) {
				peers, err := cl.Peers(cmd.Context())
				return api.PeerList{Peers: peers}, err
			}, func(w io.Writer, l api.PeerList) { printPeers(w, l.Peers) })
		},
	}
	connect := &cobra.Command{
		Use:   "connect MADDR",
		Short: "Connect the peer at MADDR (a multiaddr ending in /p2p/<peer ID>)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (api.ConnectResult, error) { return cl.Connect(cmd.Context(), args[0]) }, func(w io.Writer, res api.ConnectResult) {
				fmt.Fprintf(w, "connected %s\n", res.PeerID)
			})
		},
	}
	cmd.AddCommand(ls, connect)
	return cmd
}

func printPeers(w io.Writer, peers []node.PeerInfo) {
	if len(peers) == 0 {
		fmt.Fprintln(w, "no peers")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER ID\tDIRECTION\tLATENCY\tADDRS")
	for _, p := range peers {
		latency := "-"
		if p.Latency > 0 {
			latency = p.Latency.Round(10 * time.Microsecond).String()
		}
		dir := p.Direction
		if p.Limited {
			dir += " (relayed)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.PeerID, dir, latency, strings.Join(p.Addrs, " "))
	}
	tw.Flush()
}
