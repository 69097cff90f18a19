package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealpost/sealpost/node/api"
	"github.com/sealpost/sealpost/node/groups"
)

// The group commands: clients of the daemon's group routes (node/api);
// the engine is node/groups.

func (c *cli) groupCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "group",
		Short: "Group chats: create, add, rm, promote, leave, ls, show, accept, decline, send, messages",
		Long: `Group chats, end-to-end encrypted with MLS. A group lives on one or two
home relays (community relays its creator picks; the first orders its
membership changes), which keep its ciphertext for members that were
offline; members online also get its messages over gossipsub.

GROUP is a group's ID or its name (when no other group has it).`,
	}
	cmd.AddCommand(c.groupCreateCommand(), c.groupAddCommand(), c.groupMembersCommand("rm"), c.groupMembersCommand("promote"),
		c.groupActionCommand("leave"), c.groupActionCommand("update"), c.groupActionCommand("accept"), c.groupDeclineCommand(),
		c.groupListCommand(), c.groupShowCommand(), c.groupSendCommand(), c.groupMessagesCommand())
	return cmd
}

func (c *cli) groupCreateCommand() *cobra.Command {
	var relays []string
	cmd := &cobra.Command{
		Use:   "create NAME [--relay PEERID]...",
		Short: "Create a group, with this node as its admin",
		Long: `Create the group NAME (1 to 64 bytes, the rules of contact names) with this
node as its only member and admin. --relay names a home relay (a peer ID of
one of the node's relays, or a multiaddr with /p2p/), at most twice; without
it the group lives on the node's own relays ('sealpost relays add').

With --json it prints {"id", "name", "epoch"}.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			info, err := cl.CreateGroup(cmd.Context(), args[0], relays)
			if err != nil {
				return err
			}
			return c.print(info, func(w io.Writer) { fmt.Fprintf(w, "%s %s\n", info.ID, info.Name) })
		},
	}
	cmd.Flags().StringArrayVar(&relays, "relay", nil, "a home relay (peer ID or multiaddr); at most two")
	return cmd
}

func (c *cli) groupAddCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "add GROUP CONTACT...",
		Short: "Invite contacts to a group (admins)",
		Long: `Invite contacts to GROUP. Each joins when its node answers: at once if it
accepted this node as a contact, else when its user accepts the group
request ('sealpost group accept'). 'sealpost group show' lists those who have
not answered yet.

With --json it prints {"invited": [user IDs]}.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.AddToGroup(cmd.Context(), args[0], args[1:])
			if err != nil {
				return err
			}
			return c.print(res, func(w io.Writer) { fmt.Fprintf(w, "invited %d contact(s)\n", len(res.Invited)) })
		},
	}
}

func (c *cli) groupMembersCommand(verb string) *cobra.Command {
	short, long := "Remove members from a group (admins)", `Remove members (contacts by name, or user IDs) from GROUP in one commit. A
removed member reads nothing sent after it.`
	if verb == "promote" {
		short, long = "Make members admins of a group (admins)", `Make members of GROUP admins: they add, remove and promote too.`
	}
	return &cobra.Command{
		Use:   verb + " GROUP MEMBER...",
		Short: short,
		Long:  long + "\n\nWith --json it prints {\"id\", \"name\", \"epoch\"} (the epoch before the commit).",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			op := cl.RemoveFromGroup
			if verb == "promote" {
				op = cl.PromoteInGroup
			}
			info, err := op(cmd.Context(), args[0], args[1:])
			if err != nil {
				return err
			}
			return c.print(info, func(w io.Writer) { fmt.Fprintf(w, "%s: the change is committed in the next epoch\n", info.Name) })
		},
	}
}

func (c *cli) groupActionCommand(action string) *cobra.Command {
	short := map[string]string{
		"leave":  "Leave a group",
		"update": "Commit fresh keys of this member in a group",
		"accept": "Accept a group request",
	}[action]
	texts := map[string]string{
		"leave": `Leave GROUP: this node asks to be removed, and an admin's client commits it
(when an admin is online). The last admin of a group with other members
cannot leave: promote another admin first.`,
		"update": `Commit fresh keys of this member in GROUP (forward secrecy and
post-compromise security for what follows).`,
		"accept": `Accept the invitation to GROUP from a contact not accepted: this node answers
the inviter, and joins when the inviter adds it.`,
	}
	return &cobra.Command{
		Use:   action + " GROUP",
		Short: short,
		Long:  texts[action] + "\n\nWith --json it prints {\"id\", \"name\", \"epoch\"}.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			info, err := cl.GroupAction(cmd.Context(), args[0], action)
			if err != nil {
				return err
			}
			return c.print(info, func(w io.Writer) {
				fmt.Fprintf(w, "%s: %s\n", info.Name, map[string]string{"leave": "leaving", "update": "update queued", "accept": "accepted; joining"}[action])
			})
		},
	}
}

func (c *cli) groupDeclineCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "decline GROUP",
		Short: "Decline a group request",
		Long:  "Decline the invitation to GROUP: the inviter is told and the request goes.\n\nWith --json it prints {\"group\", \"declined\"}.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.DeclineGroup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return c.print(res, func(w io.Writer) { fmt.Fprintln(w, "declined") })
		},
	}
}

func (c *cli) groupListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the groups",
		Long: `List the groups this node is in, was invited to (request: accept or decline
it; joining: waiting to be added) or left.

With --json it prints {"groups": [{"id", "name", "members", "epoch", "state"}]}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			list, err := cl.Groups(cmd.Context())
			if err != nil {
				return err
			}
			return c.print(api.GroupList{Groups: list}, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tMEMBERS\tEPOCH\tSTATE\tID")
				for _, g := range list {
					state := g.State
					if g.Admin {
						state += " (admin)"
					}
					fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", displayText(g.Name), g.Members, g.Epoch, state, g.ID)
				}
				tw.Flush()
			})
		},
	}
}

func (c *cli) groupShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show GROUP",
		Short: "Show a group: members, admins, relays",
		Long:  "Show GROUP: its members (admins marked), contacts invited, home relays and epoch.\n\nWith --json it prints the group object of the API.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			g, err := cl.Group(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return c.print(g, func(w io.Writer) {
				fmt.Fprintf(w, "%s  %s  epoch %d  %s\n", displayText(g.Name), g.ID, g.Epoch, g.State)
				if g.Reason != "" {
					fmt.Fprintf(w, "  %s\n", g.Reason)
				}
				if g.Error != "" {
					fmt.Fprintf(w, "  error: %s\n", g.Error)
				}
				for _, m := range g.Members {
					name := m.Name
					if name == "" {
						name = "(not a contact)"
					}
					var tags []string
					if m.Self {
						tags = append(tags, "me")
					}
					if m.Admin {
						tags = append(tags, "admin")
					}
					if m.IdentityChanged {
						tags = append(tags, "key changed")
					}
					fmt.Fprintf(w, "  %s  %s  %s\n", displayText(name), m.UserID, strings.Join(tags, ", "))
				}
				for _, u := range g.Invited {
					fmt.Fprintf(w, "  invited: %s\n", u)
				}
				for _, r := range g.Relays {
					fmt.Fprintf(w, "  relay: %s\n", r.ID)
				}
			})
		},
	}
}

func (c *cli) groupSendCommand() *cobra.Command {
	var (
		wait    string
		timeout time.Duration
		file    string
		caption string
	)
	cmd := &cobra.Command{
		Use:   "send GROUP TEXT|- [--wait sent|delivered] [--timeout D] | send GROUP --file PATH [--caption TEXT] [--wait sent|delivered] [--timeout D]",
		Short: "Send a message (TEXT, or - to read it from standard input) or a file to a group",
		Long: fmt.Sprintf(`Send a text to GROUP, encrypted once for its members. It goes to the
group's home relays, then over gossipsub to the members online; members
offline get it from a home relay when they are back. With - the text is read
from standard input. Texts are 1 to %d bytes of UTF-8.

States: queued, sent (a home relay stored it and it was published),
delivered (every member it was sent to confirmed it). --wait sent|delivered
waits for at most --timeout (default %s; 0 without limit), and exits 7 if the
time runs out.

Exit codes as for 'sealpost send'; 4: a member's identity key changed (verify
it first). With --json it prints {"id", "state", "members": [{"user_id",
"name", "state", "at"}]}, the members' deliveries after --wait.

With --file PATH it sends the file PATH instead (with the text --caption, if
given), as 'sealpost send --file' does to a contact: the daemon encrypts it
once (a progress bar shows the reading on a terminal); its pointer goes once,
as a group message, to every member, and its blobs once to each of the
group's home relays (never to the members' mailboxes). Members online fetch
the file from this device, the others from the home relays, where it stays
for the relays' message TTL. Its states: queued, sent, delivered (every
member has the message), failed; --wait sent|delivered follows the transfer
with a progress bar. With --json it prints {"id", "state"}. The members'
nodes download it automatically up to [files] auto_download; 'sealpost file
ls' lists it.`, groups.MaxText, defaultWaitTimeout),
		Args: func(cmd *cobra.Command, args []string) error {
			if file != "" {
				return cobra.ExactArgs(1)(cmd, args)
			}
			return cobra.ExactArgs(2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if caption != "" && file == "" {
				return userErrorf("--caption goes with --file")
			}
			if file != "" {
				if _, err := c.sendArgs(cmd, "", wait, timeout, groups.StateSent, groups.StateDelivered); err != nil {
					return err
				}
				return c.sendFile(cmd.Context(), args[0], file, caption, wait, timeout, true)
			}
			text, err := c.sendArgs(cmd, args[1], wait, timeout, groups.StateSent, groups.StateDelivered)
			if err != nil {
				return err
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.SendToGroup(cmd.Context(), args[0], text)
			if err != nil {
				return err
			}
			if wait != "" {
				res, err = waitGroupMessage(cmd.Context(), cl, res, wait, timeout)
			}
			perr := c.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "%s %s\n", res.ID, res.State)
				for _, m := range res.Members {
					fmt.Fprintf(w, "  %s %s\n", displayText(firstOf(m.Name, m.UserID)), m.State)
				}
			})
			if err != nil {
				return err
			}
			return perr
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "send the file PATH instead of a text")
	cmd.Flags().StringVar(&caption, "caption", "", "the text sent with --file")
	cmd.Flags().StringVar(&wait, "wait", "", "wait until the message is sent or delivered")
	cmd.Flags().DurationVar(&timeout, "timeout", defaultWaitTimeout, "how long --wait waits (0: without limit); then exit 7")
	return cmd
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// waitGroupMessage waits through the daemon's wait route, in steps of at
// most api.MaxWait; a timeout returns the result so far with exit code 7.
func waitGroupMessage(ctx context.Context, cl *api.Client, res groups.SendResult, want string, timeout time.Duration) (groups.SendResult, error) {
	start := time.Now()
	for {
		left := api.MaxWait
		if timeout > 0 {
			left = min(timeout-time.Since(start), api.MaxWait)
			if left <= 0 {
				break
			}
		}
		r, err := cl.WaitGroupMessage(ctx, res.ID, want, left)
		var ae *api.Error
		if errors.As(err, &ae) && ae.Code == api.CodeTimeout {
			continue
		}
		if err != nil {
			return res, err
		}
		return r, nil
	}
	return res, &exitError{code: api.ExitWaitTimeout, err: fmt.Errorf("timed out after %v waiting for group message %s to be %s; it is %s", timeout, res.ID, want, res.State)}
}

func (c *cli) groupMessagesCommand() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "messages GROUP [--limit N]",
		Short: "Show a group's messages (and mark them read)",
		Long: `Print GROUP's messages, oldest first: the last N with --limit, else all.
It marks the group read here (groups send no read receipts).

With --json: one JSON object a line, with id, group, group_id, from,
from_name, text, seq, sent_at, received_at, state, outgoing, for an
outgoing message members (each member's delivery), and for a file message
"file": {id, name, size, mime, state} (its text is the caption; 'sealpost
file save ID' saves it).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return userErrorf("--limit must not be negative")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			ms, err := cl.GroupMessages(cmd.Context(), args[0], limit)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(c.stdout)
			enc.SetEscapeHTML(false)
			for _, m := range ms {
				if c.json {
					if err := enc.Encode(m); err != nil {
						return err
					}
					continue
				}
				from := firstOf(m.FromName, m.From)
				if m.Outgoing {
					from = "me"
				}
				line := fmt.Sprintf("%s  %s: %s", m.SentAt.Local().Format(time.DateTime), displayText(from), displayText(m.Text))
				line += fileNote(m.Text, m.File)
				if m.Outgoing {
					line += "  [" + m.State + "]"
				}
				if _, err := fmt.Fprintln(c.stdout, line); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "show only the last N messages (0: all)")
	return cmd
}
