package files

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/node/internal/disk"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// FileMeta is what the sender says about a file.
type FileMeta struct {
	// Name is the file's base name (protocol.CheckFileName), optional.
	Name string
	// MIME is its media type; empty: guessed from the name's extension.
	MIME string
	// Thumbnail is a preview image (JPEG or PNG) of at most
	// protocol.MaxThumbnail bytes, optional.
	Thumbnail []byte
}

// Prepared is a file encrypted into the file directory, ready to be
// pointed to: its ID, key, digest and blobs.
type Prepared struct {
	ID     protocol.MessageID
	Key    attachment.Key
	Digest attachment.Hash
	Size   int64
	Blobs  []attachment.Hash
	Meta   FileMeta
}

// check validates meta (and fills in the media type).
func (m *FileMeta) check() error {
	if err := protocol.CheckFileName(m.Name); err != nil {
		return fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if m.MIME == "" && m.Name != "" {
		if t, _, err := mime.ParseMediaType(mime.TypeByExtension(strings.ToLower(filepath.Ext(m.Name)))); err == nil {
			m.MIME = t
		}
		if protocol.CheckMIME(m.MIME) != nil {
			m.MIME = ""
		}
	}
	if err := protocol.CheckMIME(m.MIME); err != nil {
		return fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if len(m.Thumbnail) > protocol.MaxThumbnail {
		return fmt.Errorf("%w: thumbnail of %d bytes, limit %d", ErrBadInput, len(m.Thumbnail), protocol.MaxThumbnail)
	}
	return nil
}

// checkSize refuses a size over the node's limit.
func (s *Service) checkSize(size int64) error {
	switch {
	case size < 0:
		return fmt.Errorf("%w: negative size", ErrBadInput)
	case size > s.opt.MaxSize:
		return fmt.Errorf("%w: %d bytes, this node's limit is %d ([files] max_size)", ErrTooLarge, size, s.opt.MaxSize)
	case size > attachment.MaxSize:
		return fmt.Errorf("%w: %d bytes, the format's limit is %d", ErrTooLarge, size, int64(attachment.MaxSize))
	}
	return nil
}

// diskMargin is the free space a new file's ciphertext must leave.
const diskMargin = 64 << 20

// reserve checks that the file directory has room for n more bytes.
func (s *Service) reserve(n int64) error {
	if free, ok := disk.Free(s.cfg.Dir); ok && free < uint64(n)+diskMargin {
		return fmt.Errorf("%w: %d bytes needed, %d free", ErrNoSpace, n, free)
	}
	return nil
}

// diskErr turns a full disk into ErrNoSpace.
func diskErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: %v", ErrNoSpace, err)
	}
	return err
}

// Prepare reads exactly size bytes of content from body and encrypts them
// into the file directory under a new ID, once, whoever the file goes to.
// progress, if not nil, is called with the bytes read so far. On any
// error nothing is left behind.
func (s *Service) Prepare(ctx context.Context, body io.Reader, size int64, meta FileMeta, progress func(n int64)) (*Prepared, error) {
	if err := s.checkSize(size); err != nil {
		return nil, err
	}
	if err := meta.check(); err != nil {
		return nil, err
	}
	l, err := attachment.NewLayout(size)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTooLarge, err)
	}
	if err := s.reserve(l.CiphertextSize()); err != nil {
		return nil, err
	}
	p := &Prepared{Size: size, Meta: meta}
	s.randMu.Lock()
	p.ID, err = protocol.NewMessageID(s.cfg.Rand)
	if err == nil {
		p.Key, err = attachment.NewKey(s.cfg.Rand)
	}
	s.randMu.Unlock()
	if err != nil {
		return nil, err
	}
	final := s.path(p.ID)
	tmp := strings.TrimSuffix(final, encSuffix) + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 256<<10)
	w, err := attachment.NewWriter(bw, p.Key, size)
	if err != nil {
		return nil, err
	}
	r := &countReader{r: io.LimitReader(body, size+1), ctx: ctx, progress: progress}
	n, err := io.CopyBuffer(w, r, make([]byte, 64<<10))
	switch {
	case errors.Is(err, attachment.ErrLength) || n > size:
		return nil, fmt.Errorf("%w: more than the %d bytes announced", ErrBadInput, size)
	case err != nil:
		return nil, diskErr(err)
	case n < size:
		return nil, fmt.Errorf("%w: %d of the %d bytes announced", ErrBadInput, n, size)
	}
	if err := w.Close(); err != nil {
		return nil, diskErr(err)
	}
	if err := bw.Flush(); err != nil {
		return nil, diskErr(err)
	}
	if err := f.Sync(); err != nil {
		return nil, diskErr(err)
	}
	if err := f.Close(); err != nil {
		return nil, diskErr(err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	ok = true
	if err := syncDir(s.cfg.Dir); err != nil {
		os.Remove(final)
		return nil, err
	}
	p.Digest, p.Blobs = w.Digest(), w.Blobs()
	return p, nil
}

// countReader reports progress and stops when ctx ends.
type countReader struct {
	r        io.Reader
	ctx      context.Context
	n        int64
	progress func(int64)
}

func (c *countReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.progress != nil && n > 0 {
		c.progress(c.n)
	}
	return n, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("files: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("files: sync %s: %w", dir, err)
	}
	return nil
}

// SendRequest is a file to send.
type SendRequest struct {
	// To is the contact's name or user ID.
	To string
	// Body gives exactly Size bytes of content.
	Body io.Reader
	Size int64
	Meta FileMeta
	// Caption is the text sent with the file, at most protocol.MaxCaption
	// bytes of UTF-8.
	Caption string
	// Progress, if not nil, is called with the bytes read from Body.
	Progress func(n int64)
}

// Send encrypts a file for a contact and sends it: if the contact's
// device answers now, its pointer goes at once and the device fetches the
// blobs from this one (the relays get them too if it has not, after
// Options.RelayFallback); otherwise the blobs go to the contact's relays
// first and the pointer follows. It returns once the file and its record
// are durable (state queued); the transfer continues in the background,
// across restarts.
func (s *Service) Send(ctx context.Context, req SendRequest) (Info, error) {
	if s.cfg.Messenger == nil {
		return Info{}, errors.New("files: no messenger")
	}
	if err := s.checkSend(req.Caption, req.Size); err != nil {
		return Info{}, err
	}
	rcpt, err := s.cfg.Messenger.Recipient(ctx, req.To)
	if err != nil {
		return Info{}, err
	}
	return s.send(ctx, req.Body, req.Size, req.Meta, req.Progress, func(p *Prepared) (store.File, error) {
		return s.share(ctx, p, rcpt, req.Caption)
	})
}

// checkSend checks a file's caption and size before anything is read.
func (s *Service) checkSend(caption string, size int64) error {
	if len(caption) > protocol.MaxCaption || !utf8.ValidString(caption) {
		return fmt.Errorf("%w: caption over %d bytes or not UTF-8", ErrBadInput, protocol.MaxCaption)
	}
	return s.checkSize(size)
}

// send encrypts a file, records it with share, hands its pointer over at
// once when the file is direct, and wakes the engine for the rest.
func (s *Service) send(ctx context.Context, body io.Reader, size int64, meta FileMeta, progress func(int64), share func(p *Prepared) (store.File, error)) (Info, error) {
	p, err := s.Prepare(ctx, body, size, meta, progress)
	if err != nil {
		return Info{}, err
	}
	f, err := share(p)
	if err != nil {
		os.Remove(s.path(p.ID))
		return Info{}, err
	}
	if f.Direct {
		if err := s.sendPointer(ctx, p.ID); err != nil {
			s.log.Info("files: pointer not queued yet", "file", p.ID, "err", err)
		}
	}
	s.Wake()
	return s.Get(ctx, p.ID.String())
}

// share records the outgoing file p for rcpt: its pointer (the sending
// device and up to Options.Relays of the recipient's relay mailboxes as
// sources) and its transfer state.
func (s *Service) share(ctx context.Context, p *Prepared, rcpt Recipient, caption string) (store.File, error) {
	ptr := p.pointer()
	if !s.cfg.NoServe {
		ptr.Peer = &protocol.FilePeer{Peer: []byte(s.self), Addrs: s.ownAddrs()}
	}
	f := p.record(caption, s.clock.Now())
	f.Peer = rcpt.UserID
	for _, mb := range rcpt.Mailboxes {
		if len(ptr.Relays) >= min(s.opt.Relays, protocol.MaxFileRelays) {
			break
		}
		fr := protocol.FileRelay{Relay: mb.Relay, Addrs: mb.RelayAddrs, Mailbox: mb.ID}
		ptr.Relays = append(ptr.Relays, fr)
		f.Relays = append(f.Relays, store.FileRelay{Relay: mb.Relay, Mailbox: mb.ID})
	}
	if ptr.Peer == nil && len(ptr.Relays) == 0 {
		return f, fmt.Errorf("%w: the recipient lists no relay, and this node (a relay) does not serve files itself", ErrNoSource)
	}
	// Direct when the device answers now, and when there is no relay to
	// go through (the pointer then waits in messaging's outbox for the
	// device, which fetches the blobs from this one).
	f.Direct = ptr.Peer != nil && (len(ptr.Relays) == 0 || s.reachable(ctx, rcpt.Device, rcpt.Addrs))
	if f.Direct && len(ptr.Relays) > 0 {
		f.NextAttempt = f.CreatedAt.Add(s.opt.RelayFallback)
	}
	return f, s.keep(ctx, &f, ptr)
}

// pointer returns the pointer of p without its sources.
func (p *Prepared) pointer() *protocol.File {
	return &protocol.File{
		Key: p.Key, Digest: p.Digest, Size: p.Size, Blobs: p.Blobs,
		Name: p.Meta.Name, MIME: p.Meta.MIME, Thumbnail: p.Meta.Thumbnail,
	}
}

// record returns the record of p as an outgoing file, queued, without its
// recipient and relays.
func (p *Prepared) record(caption string, now time.Time) store.File {
	f := store.File{
		ID:        p.ID,
		Outgoing:  true,
		Caption:   caption,
		Name:      p.Meta.Name,
		MIME:      p.Meta.MIME,
		Size:      uint64(p.Size),
		State:     store.FileQueued,
		Pending:   true,
		CreatedAt: now,
		UpdatedAt: now,
	}
	for _, h := range p.Blobs {
		f.Hashes = append(f.Hashes, h)
	}
	return f
}

// keep draws the writer's secret of the outgoing file f, sets its pointer
// ptr and stores it.
func (s *Service) keep(ctx context.Context, f *store.File, ptr *protocol.File) error {
	s.randMu.Lock()
	_, err := io.ReadFull(s.cfg.Rand, f.Secret[:])
	s.randMu.Unlock()
	if err != nil {
		return fmt.Errorf("files: read random: %w", err)
	}
	enc, err := ptr.Marshal()
	if err != nil {
		return fmt.Errorf("files: pointer: %w", err)
	}
	f.Pointer = enc
	if err := s.cfg.Store.Update(ctx, func(tx *store.Tx) error { return tx.Files().Put(f) }); err != nil {
		return err
	}
	s.cfg.Publish(EventState, s.info(f, 0))
	return nil
}

// ownAddrs returns the device's addresses for a pointer.
func (s *Service) ownAddrs() [][]byte {
	var out [][]byte
	for _, a := range s.cfg.Host.Addrs() {
		if len(out) >= protocol.MaxFileAddrs {
			break
		}
		if b := a.Bytes(); len(b) <= protocol.MaxAddr {
			out = append(out, b)
		}
	}
	return out
}

// reachable reports whether the device p has (or gets, within
// Options.DirectTimeout) a connection that is not limited: blobs never go
// over a relayed connection.
func (s *Service) reachable(ctx context.Context, p peer.ID, addrs []ma.Multiaddr) bool {
	if p == "" {
		return false
	}
	h := s.cfg.Host
	if direct(h.Network().ConnsToPeer(p)) {
		return true
	}
	if len(addrs) > 0 {
		h.Peerstore().AddAddrs(p, addrs, peerstore.TempAddrTTL)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opt.DirectTimeout)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: p}); err != nil {
		return false
	}
	return direct(h.Network().ConnsToPeer(p))
}

func direct(conns []network.Conn) bool {
	for _, c := range conns {
		if !c.Stat().Limited {
			return true
		}
	}
	return false
}

// sendPointer hands the pointer of outgoing file id to the messenger, if
// it was not yet, and marks the file sent.
func (s *Service) sendPointer(ctx context.Context, id protocol.MessageID) error {
	f, err := s.record(ctx, id)
	if err != nil || !unsent(&f) {
		return err
	}
	ptr, err := s.pointer(&f)
	if err != nil {
		return err
	}
	if !f.Group.IsZero() {
		err = s.cfg.Groups.SendGroupFile(ctx, f.Group, id, f.Caption, ptr)
	} else {
		err = s.cfg.Messenger.SendFile(ctx, f.Peer, id, f.Caption, ptr)
	}
	if err != nil {
		return err
	}
	_, err = s.update(ctx, id, func(f *store.File) error {
		f.State, f.Error, f.Caption = store.FileSent, "", ""
		return nil
	})
	return err
}
