package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mdp/qrterminal/v3"
	"github.com/spf13/cobra"
	"rsc.io/qr"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/api"
	"github.com/sealpost/sealpost/node/messaging"
)

// The commands in this file are the messaging contract of DESIGN.md §6:
// invite, contact, send, messages, inbox. They are clients of the daemon's
// API (node/api); the messaging engine is node/messaging.

// defaultWaitTimeout is send --wait's default --timeout.
const defaultWaitTimeout = time.Minute

func (c *cli) inviteCommand() *cobra.Command {
	var (
		qrCode bool
		revoke string
	)
	cmd := &cobra.Command{
		Use:   "invite [--qr] | --revoke LINK",
		Short: "Print a new one-line contact link (sealpost://...), or revoke one",
		Long: `Print a new invite link: a one-line sealpost:// link that another user gives
to 'sealpost contact add'. It holds this node's identity key, its device and
addresses, a hash of its current prekey bundle and a new invite secret; never
a one-time prekey, so a link can be used many times.

Whoever adds the link becomes an accepted contact when their first message
arrives. A link stays valid as long as the node serves the bundle it pins
(between 23 and 30 days with the weekly prekey rotation), or until it is
revoked: with --revoke LINK, a first message that uses the link arrives as a
message request instead ('sealpost contact accept').

With --qr the link is also drawn as a QR code for the terminal. With --json
it prints {"link"}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if qrCode && c.json {
				return userErrorf("--qr draws for a terminal; leave out --json")
			}
			if qrCode && revoke != "" {
				return userErrorf("--qr and --revoke do not go together")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			if revoke != "" {
				res, err := cl.RevokeInvite(cmd.Context(), revoke)
				if err != nil {
					return err
				}
				return c.print(res, func(w io.Writer) {
					fmt.Fprintln(w, "revoked; a first message that uses this link arrives as a message request")
				})
			}
			inv, err := cl.Invite(cmd.Context())
			if err != nil {
				return err
			}
			if c.json {
				return c.print(struct {
					Link string `json:"link"`
				}{inv.Link}, nil)
			}
			fmt.Fprintln(c.stdout, inv.Link)
			if qrCode {
				return drawQR(c.stdout, inv.Link)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&qrCode, "qr", false, "also draw the link as a QR code in the terminal")
	cmd.Flags().StringVar(&revoke, "revoke", "", "revoke the invite LINK instead of making one")
	return cmd
}

// drawQR draws text as a QR code with half blocks (two rows a line), dark
// modules as spaces on a light background, so it scans on dark and light
// terminals alike.
func drawQR(w io.Writer, text string) error {
	if _, err := qr.Encode(text, qr.L); err != nil {
		return fmt.Errorf("draw the QR code: %w", err)
	}
	fmt.Fprintln(w)
	qrterminal.GenerateWithConfig(text, qrterminal.Config{
		Level:          qr.L,
		Writer:         w,
		HalfBlocks:     true,
		BlackChar:      qrterminal.BLACK_BLACK,
		WhiteBlackChar: qrterminal.WHITE_BLACK,
		WhiteChar:      qrterminal.WHITE_WHITE,
		BlackWhiteChar: qrterminal.BLACK_WHITE,
		QuietZone:      2,
	})
	return nil
}

func (c *cli) contactCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "contact",
		Short: "Add, list, show, verify, accept or remove contacts",
		Long: `Manage contacts. A contact is pinned to its identity key: if it ever presents
another key (it reinstalled, or someone impersonates it), sending to it and
accepting it stop with exit code 4 until 'sealpost contact verify' accepts the
new key, after you compared the safety number with the contact in person or
over another channel.

NAME is the contact's name here, or its user ID.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return userErrorf("contact needs a subcommand: add, ls, show, verify, accept or rm")
		},
	}
	var name string
	add := &cobra.Command{
		Use:   "add LINK [--name NAME]",
		Short: "Add a contact from an invite link",
		Long: `Add the user who made the invite LINK (from 'sealpost invite'). The node
fetches the prekey bundle the link pins from the inviter's device, checks it
against the link, and starts an end-to-end encrypted session; the first
message you send tells the inviter who you are.

The contact is named NAME, or the display name in the link (made unique).
A device that belongs to a contact under another identity key is an identity
change: exit code 4, and the contact stays blocked until 'sealpost contact
verify NAME'. A NAME that is a contact's under another identity key is a name
clash (exit 1). Adding a contact again changes nothing, except that a message
request is accepted (and named NAME); another NAME for an accepted contact is
refused (exit 1). An expired invite (ask for a new one) exits 1; an
unreachable inviter exits 3.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (messaging.Contact, error) { return cl.AddContact(cmd.Context(), args[0], name) }, func(w io.Writer, ct messaging.Contact) {
				fmt.Fprintf(w, "added %s (%s)\n", ct.Name, ct.UserID)
			})
		},
	}
	add.Flags().StringVar(&name, "name", "", "the contact's name here (default: the display name in the link)")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List contacts and message requests",
		Long: `List the contacts and message requests by name, with their state (accepted,
request, or key changed), whether you verified them, and their user IDs.
With --json: {"contacts": [...]}, each as 'sealpost contact show' prints it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (api.ContactList, error) {
				list, err := cl.Contacts(cmd.Context())
				return api.ContactList{Contacts: list}, err
			}, func(w io.Writer, l api.ContactList) { printContacts(w, l.Contacts) })
		},
	}
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a contact: user ID, safety number, verified or not",
		Long: `Show the contact NAME (a name or a user ID): its user ID, its state (accepted
or request), whether you verified it, the safety number you and it both see
(compare them to verify), its device and the display name it gives itself.
For a contact whose identity key changed, also the new user ID and the new
safety number that 'sealpost contact verify' would accept.

With --json: name, user_id, state, verified, safety_number, identity_changed,
pending_user_id, pending_safety_number, device_id, display_name, created_at.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (messaging.Contact, error) { return cl.Contact(cmd.Context(), args[0]) }, printContact)
		},
	}
	var safety string
	verify := &cobra.Command{
		Use:   "verify NAME [--safety-number N]",
		Short: "Mark a contact verified, or accept its new identity key",
		Long: `Mark the contact verified. Compare its safety number ('sealpost contact show
NAME') with the one the contact sees, in person or over another channel;
with --safety-number N the node compares it for you (spaces are ignored) and
refuses a mismatch (exit 1).

For a contact whose identity key changed, verify accepts the new key: the
contact keeps its name and history, sending and accepting resume, and the
messages still queued for the old key are marked failed. --safety-number
then takes the new key's safety number.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (messaging.Contact, error) { return cl.Verify(cmd.Context(), args[0], safety) }, func(w io.Writer, ct messaging.Contact) {
				fmt.Fprintf(w, "verified %s (%s)\n", ct.Name, ct.UserID)
			})
		},
	}
	verify.Flags().StringVar(&safety, "safety-number", "", "the safety number the contact sees (60 digits)")
	accept := &cobra.Command{
		Use:   "accept NAME",
		Short: "Accept a message request (by name or user ID)",
		Long: `Accept a message request: a contact that wrote first without a valid invite of
yours. Its messages are shown ('sealpost inbox' marks them as requests), but no
delivery or read receipts go back until you accept it. Accepting an accepted
contact succeeds and changes nothing; a contact whose key changed must be
verified first (exit 4).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (messaging.Contact, error) { return cl.Accept(cmd.Context(), args[0]) }, func(w io.Writer, ct messaging.Contact) {
				fmt.Fprintf(w, "accepted %s (%s)\n", ct.Name, ct.UserID)
			})
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a contact or message request, its sessions and its messages",
		Long: `Remove a contact (or a message request), its encryption sessions and the
conversation with it: every message, with its files; messages still waiting
for delivery are sent no further. Nothing is deleted on its side. If it
writes again, its message arrives as a message request.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(c, func(cl *api.Client) (api.RemoveResult, error) { return cl.RemoveContact(cmd.Context(), args[0]) }, func(w io.Writer, res api.RemoveResult) {
				fmt.Fprintf(w, "removed %s\n", res.Contact)
			})
		},
	}
	cmd.AddCommand(add, ls, show, verify, accept, rm)
	return cmd
}

// contactState is the state column of a contact.
func contactState(ct messaging.Contact) string {
	if ct.IdentityChanged {
		return "key changed"
	}
	return ct.State
}

func printContacts(w io.Writer, list []messaging.Contact) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no contacts")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tVERIFIED\tUSER ID")
	for _, ct := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ct.Name, contactState(ct), yesNo(ct.Verified), ct.UserID)
	}
	tw.Flush()
}

func printContact(w io.Writer, ct messaging.Contact) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name\t%s\n", ct.Name)
	fmt.Fprintf(tw, "user id\t%s\n", ct.UserID)
	fmt.Fprintf(tw, "state\t%s\n", contactState(ct))
	fmt.Fprintf(tw, "verified\t%s\n", yesNo(ct.Verified))
	fmt.Fprintf(tw, "safety number\t%s\n", ct.SafetyNumber)
	if ct.IdentityChanged {
		fmt.Fprintf(tw, "new user id\t%s\n", ct.PendingUserID)
		fmt.Fprintf(tw, "new safety number\t%s\n", ct.PendingSafetyNumber)
	}
	if ct.DisplayName != "" {
		fmt.Fprintf(tw, "display name\t%s\n", ct.DisplayName)
	}
	if ct.DeviceID != "" {
		fmt.Fprintf(tw, "device\t%s\n", ct.DeviceID)
	}
	fmt.Fprintf(tw, "added\t%s\n", ct.CreatedAt.Local().Format(time.DateTime))
	tw.Flush()
	switch {
	case ct.IdentityChanged:
		fmt.Fprintf(w, "\nThe contact's identity key changed: sending stops until you compare the new\nsafety number with %s and run 'sealpost contact verify %s'.\n", ct.Name, ct.Name)
	case !ct.Verified:
		fmt.Fprintf(w, "\nCompare the safety number with %s, then run 'sealpost contact verify %s'.\n", ct.Name, ct.Name)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (c *cli) sendCommand() *cobra.Command {
	var (
		wait    string
		timeout time.Duration
		file    string
		caption string
	)
	cmd := &cobra.Command{
		Use:   "send NAME TEXT|- | send NAME --file PATH [--caption TEXT] [--wait sent|delivered] [--timeout D]",
		Short: "Send a message (TEXT, or - to read it from standard input) or a file",
		Long: fmt.Sprintf(`Send an end-to-end encrypted text message to the contact NAME (a name or a
user ID). The text is encrypted once and committed to the node's durable
outbox; the command prints the message ID and returns while the daemon
delivers it, retrying across restarts until it is delivered. With - the text
is read from standard input (one final line break is dropped); a text that
begins with - goes after -- (sealpost send bob -- "-1 from me"). Texts are 1
to %d bytes of UTF-8.

States: queued (in the outbox), sent (the recipient's node, or a relay it
receives through, stored it), delivered (the recipient's node confirmed it
end to end), read (the recipient opened the conversation), failed (with a
reason; still retried).

--wait sent|delivered|read waits until the message reaches that state (or a
later one), for at most --timeout (default %s; 0 waits without limit), and
exits 7 if the time runs out: the message stays queued.

Exit codes: 1 unknown contact, a message request (accept it first) or empty
text; 3 the contact's device could not be reached to start a session; 4 the
contact's identity key changed (see 'sealpost contact verify'); 5 the text is
too long; 6 no daemon (or it stopped during --wait: the message stays queued);
7 --wait timed out. With --json it prints {"id", "state"}, also after a
timeout.

With --file PATH it sends the file PATH instead (with the text --caption, if
given): the daemon reads it once, encrypts it under a key of its own into
HOME/files and answers (state queued; a progress bar shows the reading on a
terminal). If the contact's device answers, the file goes to it directly and
the pointer (key, digest, where the file is) follows as an ordinary encrypted
message; if not, the file goes to up to two of the contact's relays first.
Its states: queued (encrypted, or being uploaded to the relays), sent,
delivered (the contact has the message; its node downloads the file), failed.
--wait sent|delivered follows the transfer with a progress bar. Files over
[files] max_size in config.toml (default 100 MiB) are refused with exit code
5, as are those the disk has no room for; relays refuse files over their
quotas (the daemon tries the next relay, and again later). The file ID is the
message's: 'sealpost file ls' lists it.`, messaging.MaxText, defaultWaitTimeout),
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
				if _, err := c.sendArgs(cmd, "", wait, timeout, messaging.StateSent, messaging.StateDelivered); err != nil {
					return err
				}
				return c.sendFile(cmd.Context(), args[0], file, caption, wait, timeout, false)
			}
			text, err := c.sendArgs(cmd, args[1], wait, timeout, messaging.StateSent, messaging.StateDelivered, messaging.StateRead)
			if err != nil {
				return err
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			var res messaging.SendResult
			if wait == "" {
				res, err = cl.Send(cmd.Context(), args[0], text)
			} else {
				res, err = sendAndWait(cmd.Context(), cl, args[0], text, wait, timeout)
			}
			if res.ID == "" {
				return err
			}
			perr := c.print(res, func(w io.Writer) { fmt.Fprintf(w, "%s %s\n", res.ID, res.State) })
			if err != nil {
				return err
			}
			return perr
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "send the file PATH instead of a text")
	cmd.Flags().StringVar(&caption, "caption", "", "the text sent with --file")
	cmd.Flags().StringVar(&wait, "wait", "", "wait until the message is sent, delivered or read")
	cmd.Flags().DurationVar(&timeout, "timeout", defaultWaitTimeout, "how long --wait waits (0: without limit); then exit 7")
	return cmd
}

// sendArgs checks a send command's --wait (one of states) and
// --timeout, and returns its text (read from standard input for -).
func (c *cli) sendArgs(cmd *cobra.Command, text, wait string, timeout time.Duration, states ...string) (string, error) {
	if wait != "" && !slices.Contains(states, wait) {
		return "", userErrorf("--wait takes %s, not %q", strings.Join(states, ", "), wait)
	}
	if cmd.Flags().Changed("timeout") && wait == "" {
		return "", userErrorf("--timeout needs --wait")
	}
	if timeout < 0 {
		return "", userErrorf("--timeout must not be negative")
	}
	if text == "-" {
		return c.readText()
	}
	return text, nil
}

// readText reads a message text from standard input: at most
// messaging.MaxText bytes, without one final line break.
func (c *cli) readText() (string, error) {
	if c.stdin == nil {
		return "", userErrorf("no standard input to read the text from")
	}
	// Room for the limit, a final CR LF, and one byte to tell it is over.
	b, err := io.ReadAll(io.LimitReader(c.stdin, messaging.MaxText+3))
	if err != nil {
		return "", fmt.Errorf("read the text from standard input: %w", err)
	}
	s := string(b)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	if len(s) > messaging.MaxText {
		return "", &exitError{code: api.ExitLimit, err: fmt.Errorf("the text on standard input is over %d bytes", messaging.MaxText)}
	}
	if !utf8.ValidString(s) {
		return "", userErrorf("the text on standard input is not valid UTF-8")
	}
	return s, nil
}

// stateRank orders the states --wait compares: a later state satisfies a
// wait for an earlier one.
func stateRank(s string) int {
	switch s {
	case messaging.StateSent:
		return 1
	case messaging.StateDelivered:
		return 2
	case messaging.StateRead:
		return 3
	}
	return 0
}

// sendAndWait sends text and waits on the daemon's event stream until the
// message reaches want or timeout (0: no limit) passes. It subscribes before
// sending, so no change of the new message can be missed; if the stream
// overflows (this process fell behind), it falls back to the daemon's wait
// route for the time left. On a timeout it returns the result so far with
// an exitError of code 7.
func sendAndWait(ctx context.Context, cl *api.Client, to, text, want string, timeout time.Duration) (messaging.SendResult, error) {
	subCtx, cancelSub := context.WithCancel(ctx)
	defer cancelSub()
	es, err := cl.Subscribe(subCtx)
	if err != nil {
		return messaging.SendResult{}, err
	}
	defer es.Close()
	res, err := cl.Send(ctx, to, text)
	if err != nil {
		return res, err
	}
	start := time.Now()
	if timeout > 0 {
		t := time.AfterFunc(timeout, cancelSub)
		defer t.Stop()
	}
	reason := ""
	timedOut := func() error {
		msg := fmt.Sprintf("timed out after %v waiting for message %s to be %s; it is %s", timeout, res.ID, want, res.State)
		if res.State == messaging.StateFailed && reason != "" {
			msg += " (" + reason + ")"
		}
		return &exitError{code: api.ExitWaitTimeout, err: errors.New(msg + " and stays in the outbox")}
	}
	for {
		ev, err := es.Next()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return res, ctx.Err()
		case subCtx.Err() != nil:
			return res, timedOut()
		case errors.Is(err, io.ErrUnexpectedEOF):
			return res, &api.Error{Code: api.CodeNoDaemon, Message: fmt.Sprintf("the daemon stopped while waiting; message %s is %s and stays in the outbox", res.ID, res.State)}
		default:
			return res, err
		}
		switch ev.Type {
		case node.EventMessageState:
			var se messaging.StateEvent
			if json.Unmarshal(ev.Data, &se) != nil || se.ID != res.ID {
				continue
			}
			if stateRank(se.State) > stateRank(res.State) || se.State == messaging.StateFailed {
				res.State, reason = se.State, se.Reason
			}
			if stateRank(res.State) >= stateRank(want) {
				return res, nil
			}
		case node.EventOverflow:
			// Events were dropped: ask the daemon, which compares with
			// the stored state, for the time left.
			for {
				left := api.MaxWait
				if timeout > 0 {
					left = min(timeout-time.Since(start), api.MaxWait)
					if left <= 0 {
						return res, timedOut()
					}
				}
				r, err := cl.WaitState(ctx, res.ID, want, left)
				var ae *api.Error
				if errors.As(err, &ae) && ae.Code == api.CodeTimeout {
					if timeout > 0 {
						return res, timedOut()
					}
					continue
				}
				if err != nil {
					return res, err
				}
				return r, nil
			}
		}
	}
}

func (c *cli) messagesCommand() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "messages NAME [--limit N]",
		Short: "Show the conversation with a contact (and mark it read)",
		Long: `Print the conversation with the contact NAME (a name or a user ID), oldest
first: the last N text messages with --limit, else all. Each sender's
messages are in the order they were sent (their sequence numbers); a gap
(messages not received, or not yet) is shown, not hidden.

Opening the conversation marks it read: the contact gets a read receipt,
unless it is a message request.

With --json: one JSON object a line, with id, from (user ID), from_name,
text, seq, sent_at, received_at, state, outgoing, gap, and for a file
message "file": {id, name, size, mime, state} (its text is the caption;
'sealpost file save ID' writes the file).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return userErrorf("--limit must not be negative")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			out := c.messagePrinter(false)
			return cl.Messages(cmd.Context(), args[0], limit, out)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "show only the last N messages (0: all)")
	var all bool
	rm := &cobra.Command{
		Use:   "rm ID | rm --all NAME",
		Short: "Delete a message, or every message of a conversation, from this node",
		Long: `Delete the message ID (as 'sealpost messages --json' and 'inbox --json' print
it) from this node, or with --all every message of the conversation with the
contact NAME (a name or a user ID); the contact stays ('sealpost contact rm'
removes it and the conversation). Nothing is deleted on the other side. An
outgoing message not delivered yet is sent no further, and a file message's
file goes with it. An unknown ID or NAME exits 1.

With --json: {"id": ID, "deleted": true}, or with --all
{"contact": NAME, "deleted": N}.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all {
				return query(c, func(cl *api.Client) (api.DeleteConversationResult, error) {
					return cl.DeleteConversation(cmd.Context(), args[0])
				}, func(w io.Writer, res api.DeleteConversationResult) {
					fmt.Fprintf(w, "deleted %d messages with %s\n", res.Deleted, res.Contact)
				})
			}
			return query(c, func(cl *api.Client) (api.DeleteMessageResult, error) {
				return cl.DeleteMessage(cmd.Context(), args[0])
			}, func(w io.Writer, res api.DeleteMessageResult) {
				fmt.Fprintf(w, "deleted %s\n", res.ID)
			})
		},
	}
	rm.Flags().BoolVar(&all, "all", false, "delete every message of the conversation with NAME")
	cmd.AddCommand(rm)
	return cmd
}

func (c *cli) inboxCommand() *cobra.Command {
	var (
		follow bool
		after  uint64
	)
	cmd := &cobra.Command{
		Use:   "inbox [--follow]",
		Short: "Print the received messages, in the order they arrived",
		Long: `Print the text and file messages this node received, from every contact, in the order
they arrived; messages from a message request are marked (see 'sealpost
contact accept'). It does not mark anything read ('sealpost messages NAME'
does).

With --follow it keeps running and prints new messages as they arrive, until
interrupted. With --json: one JSON object a line, with id, from (user ID),
from_name, text, seq, sent_at, received_at, state, request, cursor, and for a
file message "file": {id, name, size, mime, state} (state queued,
downloading, saved or failed; 'sealpost file save ID' writes it); --after
CURSOR starts after the message with that cursor.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			out := c.messagePrinter(true)
			if !follow {
				_, err := cl.AllInbox(cmd.Context(), after, out)
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err = followInbox(ctx, cl, after, out)
			if ctx.Err() != nil && cmd.Context().Err() == nil {
				return nil // interrupted: the normal end of --follow
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new messages as they arrive")
	cmd.Flags().Uint64Var(&after, "after", 0, "start after the message with this cursor")
	return cmd
}

// followInbox prints the inbox after cursor and then every message that
// arrives, until ctx ends. It subscribes before it reads, and reads from
// its cursor after each message.received, so nothing between the backlog
// and the subscription is missed and nothing is printed twice; after an
// overflow it subscribes again and reads on from its cursor.
func followInbox(ctx context.Context, cl *api.Client, cursor uint64, out func(messaging.Message) error) error {
	for {
		es, err := cl.Subscribe(ctx)
		if err != nil {
			return err
		}
		cursor, err = cl.AllInbox(ctx, cursor, out)
		if err != nil {
			es.Close()
			return err
		}
		overflow := false
		for !overflow {
			ev, err := es.Next()
			if err != nil {
				es.Close()
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if errors.Is(err, io.ErrUnexpectedEOF) {
					return &api.Error{Code: api.CodeNoDaemon, Message: "the daemon stopped"}
				}
				return err
			}
			switch ev.Type {
			case node.EventMessageReceived:
				var m struct {
					Cursor uint64 `json:"cursor"`
				}
				if json.Unmarshal(ev.Data, &m) == nil && m.Cursor <= cursor {
					continue // printed already
				}
				if cursor, err = cl.AllInbox(ctx, cursor, out); err != nil {
					es.Close()
					return err
				}
			case node.EventOverflow:
				overflow = true
			}
		}
		es.Close()
	}
}

// messagePrinter returns the function that prints one message: one JSON
// object a line with --json, else a line of text (inbox: with the sender
// and the request mark; messages: with the state of outgoing ones).
func (c *cli) messagePrinter(inbox bool) func(messaging.Message) error {
	if c.json {
		enc := json.NewEncoder(c.stdout)
		enc.SetEscapeHTML(false)
		return func(m messaging.Message) error { return enc.Encode(m) }
	}
	return func(m messaging.Message) error {
		var b strings.Builder
		if m.Gap > 0 {
			fmt.Fprintf(&b, "          (%d earlier message(s) from %s missing)\n", m.Gap, m.FromName)
		}
		from := m.FromName
		if m.Outgoing {
			from = "me"
			if inbox {
				from = "me to " + m.PeerName
			}
		}
		if m.Group != "" {
			if from == "" {
				from = m.From
			}
			from += " in " + m.Group
		}
		fmt.Fprintf(&b, "%s  %s: %s", m.SentAt.Local().Format(time.DateTime), from, displayText(m.Text))
		b.WriteString(fileNote(m.Text, m.File))
		switch {
		case m.Request:
			b.WriteString("  [request]")
		case m.Outgoing:
			fmt.Fprintf(&b, "  [%s]", m.State)
			if m.Reason != "" {
				fmt.Fprintf(&b, " (%s)", m.Reason)
			}
		}
		b.WriteByte('\n')
		_, err := io.WriteString(c.stdout, b.String())
		return err
	}
}

// displayText makes a message text safe to print on a terminal: control and
// bidirectional formatting characters are shown escaped (\u001b), and line
// breaks are indented under the first line.
func displayText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString("\n    ")
		case r == '\t':
			b.WriteRune(r)
		case unicode.IsControl(r) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) ||
			r == 0x200E || r == 0x200F || r == 0x061C:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// fileNote describes the file of a message whose text is text (nothing
// for a message without one).
func fileNote(text string, f *messaging.Attachment) string {
	if f == nil {
		return ""
	}
	sep := ""
	if text != "" {
		sep = "  "
	}
	name := f.Name
	if name == "" {
		name = "(no name)"
	}
	return fmt.Sprintf("%s[file %s, %s, %s: %s]", sep, displayText(name), sizeString(f.Size), f.State, f.ID)
}
