package files

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// receiveWork does what an incoming file has left: decide whether it is
// downloaded without being asked, download its missing blobs, check the
// whole file against its pointer, and acknowledge the blobs to their
// sources.
func (s *Service) receiveWork(ctx context.Context, id protocol.MessageID) error {
	f, err := s.record(ctx, id)
	if err != nil {
		return err
	}
	if !f.Wanted && f.State == store.FileQueued {
		// The decision is made on the record in the transaction that
		// writes it: a Download committed since the read above stands.
		f, err = s.update(ctx, id, func(f *store.File) error {
			if f.Wanted || f.State != store.FileQueued {
				return nil
			}
			auto := s.opt.AutoDownload >= 0 && int64(f.Size) <= s.opt.AutoDownload && int64(f.Size) <= s.opt.MaxSize
			f.Wanted, f.Pending = auto, auto
			return nil
		})
		if err != nil || !f.Wanted {
			return err
		}
	}
	ptr, err := s.pointer(&f)
	if err != nil {
		// A pointer messaging accepted always decodes; this one never will.
		_, uerr := s.update(ctx, id, func(f *store.File) error {
			f.State, f.Pending, f.Error = store.FileFailed, false, reason(err)
			return nil
		})
		return errors.Join(err, uerr)
	}
	n := len(ptr.Blobs)
	if f.State != store.FileSaved {
		if store.CountBits(f.Have, n) < n {
			if err := s.download(ctx, id, ptr); err != nil {
				s.retry(ctx, id, err)
				return err
			}
		}
		if err := s.verify(ctx, id, ptr); err != nil {
			return err
		}
	}
	if err := s.acknowledge(ctx, id, ptr); err != nil {
		s.retry(ctx, id, err)
		return err
	}
	_, err = s.update(ctx, id, func(f *store.File) error {
		f.Pending, f.Error, f.Attempts = false, "", 0
		return nil
	})
	return err
}

// source is one place to fetch a file's blobs from.
type source struct {
	name  string
	loc   []byte // the location the read capabilities derive from
	open  func(ctx context.Context) (network.Stream, error)
	relay int // index in the pointer's relays, -1 for the peer
}

// sources returns the places the pointer lists: the sender's device first,
// then the relays in the pointer's order.
func (s *Service) sources(ptr *protocol.File) []source {
	var out []source
	if ptr.Peer != nil {
		p, err := peer.IDFromBytes(ptr.Peer.Peer)
		if err == nil && p != s.self {
			addrs := parseAddrs(ptr.Peer.Addrs)
			out = append(out, source{name: "peer " + p.String(), loc: ptr.Peer.Location(), relay: -1,
				open: func(ctx context.Context) (network.Stream, error) {
					if !s.reachable(ctx, p, addrs) {
						return nil, fmt.Errorf("files: the sender's device %s is not reachable", p)
					}
					return s.cfg.Host.NewStream(ctx, p, libp2pproto.ID(protocol.BlobProtocol))
				}})
		}
	}
	for i := range ptr.Relays {
		r := ptr.Relays[i]
		id, err := peer.IDFromBytes(r.Relay)
		if err != nil || s.cfg.Relays == nil {
			continue
		}
		addrs := parseAddrs(r.Addrs)
		out = append(out, source{name: "relay " + id.String(), loc: r.Location(), relay: i,
			open: func(ctx context.Context) (network.Stream, error) {
				return s.cfg.Relays.BlobStream(ctx, id, addrs, false, protocol.MailboxID{})
			}})
	}
	return out
}

// commitEvery is how many bytes a download writes between two commits of
// its progress (a sync of the file, then the blobs marked): a kill loses
// at most this much.
const commitEvery = 4 << 20

// download fetches the file's missing blobs from its sources in turn,
// each blob checked against its hash before it counts. It returns nil
// when every blob is here.
func (s *Service) download(ctx context.Context, id protocol.MessageID, ptr *protocol.File) error {
	if int64(ptr.Size) > s.opt.MaxSize {
		return fmt.Errorf("%w: %d bytes, this node's limit is %d ([files] max_size)", ErrTooLarge, ptr.Size, s.opt.MaxSize)
	}
	l, err := attachment.NewLayout(ptr.Size)
	if err != nil {
		return err
	}
	f, err := s.record(ctx, id)
	if err != nil {
		return err
	}
	if f.State != store.FileDownloading {
		if _, err := s.update(ctx, id, func(f *store.File) error {
			f.State = store.FileDownloading
			return nil
		}); err != nil {
			return err
		}
	}
	path := s.path(id)
	var have int64
	for b := range ptr.Blobs {
		if store.HasBit(f.Have, b) {
			have += l.BlobSize(b)
		}
	}
	if have == 0 {
		if err := s.reserve(l.CiphertextSize()); err != nil {
			return err
		}
	}
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("files: %w", diskErr(err))
	}
	defer file.Close()
	s.resetProgress(id, "down", have, ptr.Size)
	var errs []error
	for _, src := range s.sources(ptr) {
		missing := s.missing(ctx, id, len(ptr.Blobs))
		if len(missing) == 0 {
			return nil
		}
		if err := s.fetch(ctx, id, ptr, l, file, src, missing); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src.name, err))
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	if len(s.missing(ctx, id, len(ptr.Blobs))) == 0 {
		return nil
	}
	if len(errs) == 0 {
		return ErrNoSource
	}
	return fmt.Errorf("%w: %w", ErrNoSource, errors.Join(errs...))
}

// missing returns the blobs of file id not here yet.
func (s *Service) missing(ctx context.Context, id protocol.MessageID, n int) []int {
	f, err := s.record(ctx, id)
	if err != nil {
		return nil
	}
	var out []int
	for b := range n {
		if !store.HasBit(f.Have, b) {
			out = append(out, b)
		}
	}
	return out
}

// fetch gets the blobs want from one source, pipelined, writing each at
// its place in the file as it arrives while hashing it. A blob of another
// size than its layout's, or whose bytes do not hash to its name, ends the
// fetch from this source (nothing of it counts); one the source does not
// have is left for the next source.
func (s *Service) fetch(ctx context.Context, id protocol.MessageID, ptr *protocol.File, l attachment.Layout, file *os.File, src source, want []int) error {
	str, err := src.open(ctx)
	if err != nil {
		return err
	}
	c := s.newConn(str)
	if c == nil {
		return ErrClosed
	}
	clean := false
	defer func() { c.close(clean) }()
	type sent struct {
		id   uint64
		blob int
	}
	var (
		inflight []sent
		next     int
		pending  []int // written, not yet committed
		written  int64
		notFound int
	)
	commit := func() error {
		if len(pending) == 0 {
			return nil
		}
		if err := file.Sync(); err != nil {
			return diskErr(err)
		}
		_, err := s.update(ctx, id, func(f *store.File) error {
			for _, b := range pending {
				f.Have = store.SetBit(f.Have, b)
			}
			return nil
		})
		pending, written = pending[:0], 0
		return err
	}
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for next < len(want) || len(inflight) > 0 {
		for next < len(want) && len(inflight) < s.opt.Window {
			b := want[next]
			next++
			rc, err := ptr.Key.ReadCap(src.loc, ptr.Blobs[b])
			if err != nil {
				return err
			}
			req := &protocol.BlobRequest{Op: protocol.BlobGet, Hash: ptr.Blobs[b], Cap: rc}
			if err := c.send(req, nil); err != nil {
				return errors.Join(err, commit())
			}
			inflight = append(inflight, sent{req.ID, b})
		}
		w := inflight[0]
		inflight = inflight[1:]
		resp, err := c.recv(w.id, protocol.BlobGet)
		if err != nil {
			return errors.Join(err, commit())
		}
		switch resp.Code {
		case protocol.CodeOK:
		case protocol.CodeNotFound:
			notFound++
			continue
		default:
			return errors.Join(fmt.Errorf("files: blob %d: %w", w.blob, resp.Err()), commit())
		}
		if size := l.BlobSize(w.blob); resp.Size != size {
			return errors.Join(fmt.Errorf("%w: blob %d announced as %d bytes, its layout has %d", errPeer, w.blob, resp.Size, size), commit())
		}
		h.Reset()
		dst := io.NewOffsetWriter(file, l.BlobOffset(w.blob))
		n, err := io.CopyBuffer(io.MultiWriter(dst, h), c.body(resp.Size), buf)
		if err != nil {
			if n == resp.Size {
				err = diskErr(err)
			}
			return errors.Join(fmt.Errorf("files: blob %d: %w", w.blob, err), commit())
		}
		var got attachment.Hash
		h.Sum(got[:0])
		if got != ptr.Blobs[w.blob] {
			return errors.Join(fmt.Errorf("%w: blob %d: %w", errPeer, w.blob, attachment.ErrBlobHash), commit())
		}
		s.report(id, "down", resp.Size, ptr.Size)
		pending = append(pending, w.blob)
		if written += resp.Size; written >= commitEvery {
			if err := commit(); err != nil {
				return err
			}
		}
	}
	if err := commit(); err != nil {
		return err
	}
	clean = true
	if notFound > 0 {
		return fmt.Errorf("%w: %d blobs", protocol.ErrNotFound, notFound)
	}
	return nil
}

// errCorrupt begins the error of a file that does not match its pointer.
const errCorrupt = "the file does not match its pointer"

// verify decrypts the whole file and checks it against its pointer's
// digest: the file is saved, or failed for good (its ciphertext removed).
func (s *Service) verify(ctx context.Context, id protocol.MessageID, ptr *protocol.File) error {
	file, err := os.Open(s.path(id))
	if err != nil {
		return fmt.Errorf("files: %w", err)
	}
	r, err := attachment.NewReader(file, ptr.Key, ptr.Size)
	if err == nil {
		err = r.Verify(ptr.Digest)
	}
	file.Close()
	if err != nil {
		s.log.Warn("files: a received file does not match its pointer", "file", id, "err", err)
		os.Remove(s.path(id))
		_, uerr := s.update(ctx, id, func(f *store.File) error {
			f.State, f.Pending, f.Have = store.FileFailed, false, nil
			f.Error = errCorrupt + ": " + err.Error()
			return nil
		})
		return errors.Join(err, uerr)
	}
	_, err = s.update(ctx, id, func(f *store.File) error {
		f.State, f.Error, f.Attempts = store.FileSaved, "", 0
		return nil
	})
	return err
}

// acknowledge tells each source that this node has the file: the sender's
// device (it stops its relay fallback), then each relay (which frees the
// references), but a group's home relay (whose references every member
// reads: they stay until the relay's TTL). A source that cannot be reached
// is skipped; relays are retried until each has answered.
func (s *Service) acknowledge(ctx context.Context, id protocol.MessageID, ptr *protocol.File) error {
	f, err := s.record(ctx, id)
	if err != nil {
		return err
	}
	var errs []error
	for _, src := range s.sources(ptr) {
		n := len(ptr.Blobs)
		if src.relay >= 0 && src.relay < len(f.Relays) && store.CountBits(f.Relays[src.relay].Done, n) == n {
			continue
		}
		if src.relay >= 0 && !ptr.Relays[src.relay].Log.IsZero() {
			continue
		}
		err := s.ackSource(ctx, id, ptr, src)
		if src.relay >= 0 && err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src.name, err))
		}
	}
	return errors.Join(errs...)
}

// ackSource sends an ACK for each blob to one source, and records, for a
// relay, that it answered (ok or not_found: either way it holds nothing
// more for this node).
func (s *Service) ackSource(ctx context.Context, id protocol.MessageID, ptr *protocol.File, src source) error {
	str, err := src.open(ctx)
	if err != nil {
		return err
	}
	c := s.newConn(str)
	if c == nil {
		return ErrClosed
	}
	clean := false
	defer func() { c.close(clean) }()
	type sent struct {
		id   uint64
		blob int
	}
	var inflight []sent
	for b, h := range ptr.Blobs {
		rc, err := ptr.Key.ReadCap(src.loc, h)
		if err != nil {
			return err
		}
		req := &protocol.BlobRequest{Op: protocol.BlobAck, Hash: h, Cap: rc}
		if err := c.send(req, nil); err != nil {
			return err
		}
		inflight = append(inflight, sent{req.ID, b})
		if len(inflight) < 64 && b < len(ptr.Blobs)-1 {
			continue
		}
		var answered []int
		for _, w := range inflight {
			resp, err := c.recv(w.id, protocol.BlobAck)
			if err != nil {
				return err
			}
			if resp.Code != protocol.CodeOK && resp.Code != protocol.CodeNotFound {
				return fmt.Errorf("files: ack of blob %d: %w", w.blob, resp.Err())
			}
			answered = append(answered, w.blob)
		}
		inflight = inflight[:0]
		if src.relay >= 0 {
			_, err := s.update(ctx, id, func(f *store.File) error {
				for len(f.Relays) <= src.relay {
					r := ptr.Relays[len(f.Relays)]
					f.Relays = append(f.Relays, store.FileRelay{Relay: r.Relay, Mailbox: r.Mailbox, Log: r.Log})
				}
				for _, b := range answered {
					f.Relays[src.relay].Done = store.SetBit(f.Relays[src.relay].Done, b)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	clean = true
	return nil
}
