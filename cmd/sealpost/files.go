package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/api"
	"github.com/sealpost/sealpost/node/files"
	"github.com/sealpost/sealpost/node/messaging"
)

// The commands in this file send and save attachments: send --file, file
// save, file ls. The attachment service is node/files, in the daemon.

// bar is a transfer's progress on a terminal: bytes, rate and time left,
// redrawn in place at most ten times a second. A nil *bar shows nothing
// (with --json, or when standard error is not a terminal).
type bar struct {
	mu    sync.Mutex
	w     io.Writer
	label string
	total int64
	n     int64
	start time.Time
	drawn time.Time
	shown bool
}

// newBar returns the progress bar of a transfer of total bytes, or nil.
func (c *cli) newBar(label string, total int64) *bar {
	if c.json {
		return nil
	}
	f, ok := c.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &bar{w: c.stderr, label: label, total: total, start: time.Now()}
}

// relabel starts a new phase of the transfer (its bytes count from zero).
func (b *bar) relabel(label string, total int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.label, b.total, b.n, b.start, b.drawn = label, total, 0, time.Now(), time.Time{}
	b.mu.Unlock()
}

// set shows n bytes done.
func (b *bar) set(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n = n
	now := time.Now()
	if now.Sub(b.drawn) < 100*time.Millisecond && n < b.total {
		return
	}
	b.drawn = now
	const width = 24
	frac := 1.0
	if b.total > 0 {
		frac = min(float64(n)/float64(b.total), 1)
	}
	fill := int(frac * width)
	el := now.Sub(b.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(n) / el
	}
	eta := "--"
	if rate > 0 && n < b.total {
		eta = time.Duration(float64(b.total-n) / rate * float64(time.Second)).Round(time.Second).String()
	} else if n >= b.total {
		eta = "0s"
	}
	fmt.Fprintf(b.w, "\r\x1b[K%s [%s%s] %s / %s  %s/s  ETA %s", b.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
		sizeString(n), sizeString(b.total), sizeString(int64(rate)), eta)
	b.shown = true
}

// add counts n more bytes.
func (b *bar) add(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	m := b.n + n
	b.mu.Unlock()
	b.set(m)
}

// done clears the bar's line.
func (b *bar) done() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.shown {
		fmt.Fprint(b.w, "\r\x1b[K")
		b.shown = false
	}
}

// sizeString is a byte count for people: 512 B, 3.4 KiB, 20.0 MiB.
func sizeString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n)/unit, 0
	for f >= unit && i < 3 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGT"[i])
}

// countingReader counts what is read through it on a bar.
type countingReader struct {
	r io.Reader
	b *bar
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.b.add(int64(n))
	return n, err
}

// sendFile is send NAME --file PATH (group send GROUP --file PATH with
// group set): the file is streamed to the daemon, which encrypts it once
// and records it; with wait (sent or delivered) the command follows the
// transfer until the file's message reaches it.
func (c *cli) sendFile(ctx context.Context, to, path, caption, wait string, timeout time.Duration, group bool) error {
	f, err := os.Open(path)
	if err != nil {
		return userErrorf("%v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return userErrorf("%v", err)
	}
	if !st.Mode().IsRegular() {
		return userErrorf("%s is not a regular file", path)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	// Subscribe first, so no event of the new file is missed.
	var es *api.EventStream
	if wait != "" {
		if es, err = cl.Subscribe(ctx); err != nil {
			return err
		}
		defer es.Close()
	}
	b := c.newBar("encrypting", st.Size())
	send := cl.SendFile
	if group {
		send = cl.SendGroupFile
	}
	info, err := send(ctx, to, filepath.Base(path), "", caption, countingReader{f, b}, st.Size())
	b.done()
	if err != nil {
		return err
	}
	res := messaging.SendResult{ID: info.ID, State: info.State}
	if wait != "" {
		res.State, err = c.followFile(ctx, cl, es, info, wait, timeout)
	}
	perr := c.print(res, func(w io.Writer) { fmt.Fprintf(w, "%s %s\n", res.ID, res.State) })
	if err != nil {
		return err
	}
	return perr
}

// fileRank orders the states a file moves through, for waiting: an
// outgoing file goes queued, sent, delivered; an incoming one queued,
// downloading, saved.
func fileRank(state string) int {
	switch state {
	case "sent", "downloading":
		return 1
	case "delivered", "saved":
		return 2
	}
	return 0
}

// followFile shows the transfer of file info on a bar and waits until it
// reaches the state want (sent or delivered; saved), fails (an incoming
// file: then it returns the error), or timeout (0: no limit) passes (exit
// 7). It reads the file's state again at every event about it, and every
// few seconds.
func (c *cli) followFile(ctx context.Context, cl *api.Client, es *api.EventStream, info files.Info, want string, timeout time.Duration) (string, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	events := make(chan api.Event, 64)
	go func() {
		defer close(events)
		for {
			ev, err := es.Next()
			if err != nil {
				return
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	label := "uploading"
	if !info.Outgoing {
		label = "downloading"
	}
	b := c.newBar(label, 0)
	defer b.done()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	state := info.State
	for {
		if fileRank(state) >= fileRank(want) {
			return state, nil
		}
		if state == "failed" && !info.Outgoing {
			return state, &exitError{code: api.ExitNetwork, err: fmt.Errorf("file %s failed: %s", info.ID, info.Error)}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return state, &exitError{code: api.ExitWaitTimeout, err: fmt.Errorf("timed out after %v waiting for file %s to be %s; it is %s, and the daemon goes on with it", timeout, info.ID, want, state)}
			}
			return state, ctx.Err()
		case ev, ok := <-events:
			if !ok {
				events = nil // the stream ended (overflow, or the daemon stopped): poll
				continue
			}
			switch ev.Type {
			case node.EventFileProgress:
				var p files.Progress
				if json.Unmarshal(ev.Data, &p) == nil && p.ID == info.ID {
					if b != nil && b.total != p.Total {
						b.relabel(label, p.Total)
					}
					b.set(p.Bytes)
				}
				continue
			case node.EventFileState, node.EventMessageState:
				var id struct {
					ID string `json:"id"`
				}
				if json.Unmarshal(ev.Data, &id) != nil || id.ID != info.ID {
					continue
				}
			default:
				continue
			}
		case <-tick.C:
		}
		got, err := cl.File(ctx, info.ID)
		if err != nil {
			if ctx.Err() != nil {
				continue // the loop reports the timeout or the interruption
			}
			return state, err
		}
		info, state = got, got.State
	}
}

func (c *cli) fileCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "file",
		Short: "Save or list attachments",
		Long: `Attachments: files sent with 'sealpost send NAME --file PATH' and received from
contacts. A file is named by the ID of the message that carries it (the id of
'sealpost inbox --json' and 'sealpost messages --json', and of their "file").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return userErrorf("file needs a subcommand: save or ls")
		},
	}
	var force bool
	save := &cobra.Command{
		Use:   "save MESSAGE-ID [PATH]",
		Short: "Write a received (or sent) file to disk",
		Long: `Write the file of message MESSAGE-ID to PATH: into the directory PATH (default:
the current directory) under the sender's file name, or to the file PATH.

A file the daemon has not downloaded yet (larger than [files] auto_download in
config.toml, from a message request, or failed) is downloaded first, with a
progress bar on a terminal. The content is checked against the SHA-256 digest
its sender put in the encrypted message before it gets its final name; until
then it is written to a hidden temporary file in the same directory, removed
on any failure. The sender's file name is reduced to a plain base name (no
directory, no control or direction characters, no leading dot), so the file
never lands outside the directory, and an existing file is never overwritten:
NAME (2).EXT and so on is chosen instead. Only an explicit PATH to a file that
exists is replaced, and only with --force.

Exit codes: 1 unknown message or file, or PATH exists; 3 no source could give
the file; 5 larger than [files] max_size; 2 the content did not match its
digest. With --json: {"id", "path", "size", "digest"}.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			target := ""
			if len(args) == 2 {
				target = args[1]
			}
			return c.saveFile(cmd.Context(), args[0], target, force)
		},
	}
	save.Flags().BoolVar(&force, "force", false, "replace PATH when it is an existing file")
	var limit int
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the files sent and received, newest first",
		Long: `List the files sent and received, newest first: ID (the message's), direction,
state (queued, sent, delivered, downloading, saved, failed), size, name and
contact. With --json: {"files": [...]}, each with id, peer, outgoing, name,
size, mime, state, error, digest, blobs, have, relays, created_at.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return userErrorf("--limit must not be negative")
			}
			return query(c, func(cl *api.Client) (api.FileList, error) {
				list, err := cl.Files(cmd.Context(), limit)
				return api.FileList{Files: list}, err
			}, func(w io.Writer, l api.FileList) { printFiles(w, l.Files) })
		},
	}
	ls.Flags().IntVar(&limit, "limit", 0, "list only the newest N (0: all)")
	cmd.AddCommand(save, ls)
	return cmd
}

func printFiles(w io.Writer, list []files.Info) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no files")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDIR\tSTATE\tSIZE\tNAME\tCONTACT")
	for _, f := range list {
		dir := "in"
		if f.Outgoing {
			dir = "out"
		}
		state := f.State
		if f.Error != "" && f.State != "saved" && f.State != "delivered" {
			state += " (" + displayText(f.Error) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.ID, dir, state, sizeString(f.Size), displayText(f.Name), f.Peer)
	}
	tw.Flush()
}

// SaveResult is what file save prints with --json.
type saveResult struct {
	ID     string `json:"id"`
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	Digest string `json:"digest"`
}

// saveFile is file save.
func (c *cli) saveFile(ctx context.Context, id, target string, force bool) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	info, err := cl.File(ctx, id)
	if err != nil {
		return err
	}
	dir, final, explicit, err := savePath(target, info)
	if err != nil {
		return err
	}
	if explicit && !force {
		if _, err := os.Lstat(final); err == nil {
			return userErrorf("%s exists; give another PATH, a directory, or --force", final)
		}
	}
	if !info.Outgoing && info.State != "saved" {
		es, err := cl.Subscribe(ctx)
		if err != nil {
			return err
		}
		defer es.Close()
		if info.State == "queued" || info.State == "failed" {
			if info, err = cl.DownloadFile(ctx, id); err != nil {
				return err
			}
		}
		if _, err := c.followFile(ctx, cl, es, info, "saved", 0); err != nil {
			return err
		}
		es.Close()
		if info, err = cl.File(ctx, id); err != nil {
			return err
		}
	}
	path, err := c.writeFile(ctx, cl, info, dir, final, explicit)
	if err != nil {
		return err
	}
	return c.print(saveResult{ID: info.ID, Path: path, Size: info.Size, Digest: info.Digest}, func(w io.Writer) {
		fmt.Fprintf(w, "saved %s (%s)\n", path, sizeString(info.Size))
	})
}

// savePath decides where file info goes: into the directory target (or
// the current one) under a safe form of its name, or to the file target.
// explicit is set for the latter.
func savePath(target string, info files.Info) (dir, final string, explicit bool, err error) {
	if target == "" {
		target = "."
	}
	if st, err := os.Stat(target); err == nil && st.IsDir() {
		dir = filepath.Clean(target)
		final = filepath.Join(dir, safeName(info.Name, info.ID))
		if filepath.Dir(final) != dir {
			return "", "", false, fmt.Errorf("the file name %q leaves %s", info.Name, dir)
		}
		return dir, final, false, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", "", false, userErrorf("%v", err)
	}
	if strings.HasSuffix(target, string(filepath.Separator)) {
		return "", "", false, userErrorf("%s: no such directory", target)
	}
	final = filepath.Clean(target)
	dir = filepath.Dir(final)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", "", false, userErrorf("%s: no such directory", dir)
	}
	return dir, final, true, nil
}

// maxSavedName bounds a file name written to disk (most file systems take
// 255 bytes).
const maxSavedName = 200

// safeName makes a file name out of a sender's: its base name, without
// control or bidirectional formatting characters, path separators (which a
// valid pointer never has) or leading dots and spaces, at most
// maxSavedName bytes with its extension kept; "file-" and the start of
// the ID when nothing is left.
func safeName(name, id string) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(name, "") {
		switch {
		case r == '/' || r == '\\' || r == 0:
			b.WriteRune('_')
		case unicode.IsControl(r) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) ||
			r == 0x200E || r == 0x200F || r == 0x061C:
		default:
			b.WriteRune(r)
		}
	}
	s := strings.TrimLeft(strings.TrimSpace(b.String()), ". ")
	if len(s) > maxSavedName {
		ext := filepath.Ext(s)
		if len(ext) > 16 {
			ext = ""
		}
		stem := s[:maxSavedName-len(ext)]
		for !utf8.ValidString(stem) {
			stem = stem[:len(stem)-1]
		}
		s = stem + ext
	}
	if s == "" || s == "." || s == ".." {
		n := min(len(id), 8)
		s = "file-" + id[:n]
	}
	return s
}

// writeFile writes the content of file info into dir, through a temporary
// file whose SHA-256 is checked against the file's digest, and gives it
// its final name (without replacing anything, unless explicit and the
// user said so). It returns the path written.
func (c *cli) writeFile(ctx context.Context, cl *api.Client, info files.Info, dir, final string, explicit bool) (string, error) {
	body, err := cl.FileContent(ctx, info.ID, 0)
	if err != nil {
		return "", err
	}
	defer body.Close()
	tmp, err := os.CreateTemp(dir, ".sealpost-"+info.ID[:min(8, len(info.ID))]+"-*.part")
	if err != nil {
		return "", userErrorf("%v", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	b := c.newBar("saving", info.Size)
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), countingReader{io.LimitReader(body, info.Size+1), b})
	b.done()
	if err != nil {
		return "", fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if n != info.Size {
		return "", fmt.Errorf("the daemon sent %d bytes of a file of %d", n, info.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != info.Digest {
		return "", fmt.Errorf("the content does not match its digest (sha256 %s, want %s); nothing was saved", got, info.Digest)
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	path, err := place(tmp.Name(), final, explicit)
	if err != nil {
		return "", err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return path, nil
}

// place gives the written file tmp its name: final (replaced only if
// explicit), else the first free of "NAME (2).EXT", "NAME (3).EXT", ...
// A hard link makes each attempt fail rather than replace a file that
// appeared meanwhile.
func place(tmp, final string, explicit bool) (string, error) {
	if explicit {
		if err := os.Rename(tmp, final); err != nil {
			return "", userErrorf("%v", err)
		}
		return final, nil
	}
	ext := filepath.Ext(final)
	stem := strings.TrimSuffix(final, ext)
	for i := 1; i <= 1000; i++ {
		p := final
		if i > 1 {
			p = fmt.Sprintf("%s (%d)%s", stem, i, ext)
		}
		err := os.Link(tmp, p)
		if err == nil {
			os.Remove(tmp)
			return p, nil
		}
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		// A file system without hard links: take the name if it is free.
		if _, serr := os.Lstat(p); errors.Is(serr, fs.ErrNotExist) {
			if err := os.Rename(tmp, p); err != nil {
				return "", userErrorf("%v", err)
			}
			return p, nil
		}
	}
	return "", userErrorf("no free name for %s", final)
}
