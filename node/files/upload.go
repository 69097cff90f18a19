package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// sendWork does what an outgoing file has left: its pointer (at once for
// a direct file, once a relay holds every blob otherwise), and the upload
// of its blobs to the recipient's relays, unless the recipient fetched
// them all directly first.
func (s *Service) sendWork(ctx context.Context, id protocol.MessageID) error {
	f, err := s.record(ctx, id)
	if err != nil {
		return err
	}
	group := !f.Group.IsZero()
	if f.Direct && unsent(&f) {
		if err := s.sendPointer(ctx, id); err != nil {
			s.retry(ctx, id, err)
			return err
		}
		f, err = s.record(ctx, id)
		if err != nil {
			return err
		}
	}
	n := len(f.Hashes)
	fetched := store.CountBits(f.Have, n) == n
	uploaded := func(f *store.File) bool {
		for _, r := range f.Relays {
			if store.CountBits(r.Done, n) == n {
				return true
			}
		}
		return false
	}
	relaysDone := func(f *store.File) bool {
		for _, r := range f.Relays {
			if store.CountBits(r.Done, n) < n && !r.Refused {
				return false
			}
		}
		return true
	}
	// A group's file goes to its homes whoever fetched it directly: the
	// device cannot tell which members did.
	if (fetched && !group) || (!unsent(&f) && relaysDone(&f)) {
		_, err := s.update(ctx, id, func(f *store.File) error {
			f.Pending, f.Error = false, ""
			return nil
		})
		return err
	}
	if f.Direct && !group && s.clock.Now().Before(f.CreatedAt.Add(s.opt.RelayFallback)) {
		// The recipient has until then to fetch the blobs directly.
		_, err := s.update(ctx, id, func(f *store.File) error {
			f.NextAttempt = f.CreatedAt.Add(s.opt.RelayFallback)
			return nil
		})
		return err
	}
	uerr := s.uploadAll(ctx, id)
	if f, err = s.record(ctx, id); err != nil {
		return err
	}
	if unsent(&f) && uploaded(&f) {
		if err := s.sendPointer(ctx, id); err != nil {
			s.retry(ctx, id, err)
			return err
		}
	}
	if relaysDone(&f) && (uploaded(&f) || len(f.Relays) == 0) {
		_, err := s.update(ctx, id, func(f *store.File) error {
			f.Pending, f.Error, f.Attempts = false, "", 0
			return nil
		})
		return err
	}
	if uerr == nil {
		uerr = errors.New("files: no relay took the file")
		if relaysDone(&f) {
			// Every relay refused: the file cannot go; say so and stop.
			_, err := s.update(ctx, id, func(f *store.File) error {
				f.Pending, f.Error = false, "every relay refused the file: "+f.Relays[0].Error
				if unsent(f) {
					f.State = store.FileFailed
				}
				return nil
			})
			return err
		}
	}
	s.retry(ctx, id, uerr)
	return uerr
}

// unsent reports whether the pointer of outgoing file f is not yet handed
// to messaging: queued, or failed before it was (a file shows failed
// after Options.FailAfter attempts, and is retried still; see retry).
func unsent(f *store.File) bool {
	return f.State == store.FileQueued || f.State == store.FileFailed
}

// uploadDest is where one relay's uploads go: the relay's addresses and
// the mailbox and its deposit token, or the group log, an epoch of it and
// that epoch's token.
type uploadDest struct {
	addrs   [][]byte
	mailbox protocol.MailboxID
	log     protocol.GroupLogID
	epoch   uint64
	token   []byte
}

// dests returns, per relay of the outgoing file f, where its blobs go now
// (nil for a mailbox the recipient no longer lists, or a relay that is no
// longer one of the group's homes).
func (s *Service) dests(ctx context.Context, f *store.File) ([]*uploadDest, error) {
	if !f.Group.IsZero() {
		return s.groupDests(ctx, f)
	}
	rcpt, err := s.cfg.Messenger.Recipient(ctx, f.Peer.String())
	if err != nil {
		return nil, fmt.Errorf("files: the recipient: %w", err)
	}
	out := make([]*uploadDest, len(f.Relays))
	for i, r := range f.Relays {
		for _, mb := range rcpt.Mailboxes {
			if string(mb.Relay) == string(r.Relay) && mb.ID == r.Mailbox {
				out[i] = &uploadDest{addrs: mb.RelayAddrs, mailbox: mb.ID, token: mb.Token}
			}
		}
	}
	return out, nil
}

// uploadAll uploads the file's blobs to each of its relays that does not
// hold them all, the relays in parallel.
func (s *Service) uploadAll(ctx context.Context, id protocol.MessageID) error {
	f, err := s.record(ctx, id)
	if err != nil {
		return err
	}
	dests, err := s.dests(ctx, &f)
	if err != nil {
		return err
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i, r := range f.Relays {
		if store.CountBits(r.Done, len(f.Hashes)) == len(f.Hashes) || r.Refused {
			continue
		}
		box := dests[i]
		if box == nil {
			s.relayFailed(ctx, id, i, fmt.Errorf("%w: the recipient no longer lists this mailbox (or the group this home)", errRefused))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.upload(ctx, id, i, box); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// errRefused marks a relay's refusal that trying again cannot change
// (see permanent: the others are retried).
var errRefused = errors.New("refused")

// relayFailed records relay i's error; a refusal (errRefused) stops the
// uploads to it.
func (s *Service) relayFailed(ctx context.Context, id protocol.MessageID, i int, cause error) {
	s.update(ctx, id, func(f *store.File) error {
		if i < len(f.Relays) {
			f.Relays[i].Error = reason(cause)
			f.Relays[i].Refused = errors.Is(cause, errRefused)
		}
		return nil
	})
}

// upload sends the blobs relay i of file id does not hold yet, pipelined:
// up to Options.Window uploads wait for their answers at once, and each
// blob the relay acknowledges is recorded before the next answer is read,
// so an acknowledged blob is never sent again.
func (s *Service) upload(ctx context.Context, id protocol.MessageID, i int, box *uploadDest) error {
	f, err := s.record(ctx, id)
	if err != nil {
		return err
	}
	ptr, err := s.pointer(&f)
	if err != nil {
		return err
	}
	l, err := attachment.NewLayout(ptr.Size)
	if err != nil {
		return err
	}
	rel := f.Relays[i]
	relay, err := peer.IDFromBytes(rel.Relay)
	if err != nil {
		s.relayFailed(ctx, id, i, fmt.Errorf("%w: bad relay peer ID", errRefused))
		return err
	}
	loc := (&protocol.FileRelay{Relay: rel.Relay, Mailbox: rel.Mailbox, Log: rel.Log}).Location()
	var todo []int
	var done int64
	for b := range ptr.Blobs {
		if store.HasBit(rel.Done, b) {
			done += l.BlobSize(b)
		} else {
			todo = append(todo, b)
		}
	}
	s.resetProgress(id, "up", done, ptr.Size)
	if s.cfg.Relays == nil {
		return errors.New("files: no relay client")
	}
	str, err := s.cfg.Relays.BlobStream(ctx, relay, parseAddrs(box.addrs), true, box.mailbox)
	if err != nil {
		s.relayFailed(ctx, id, i, err)
		return err
	}
	c := s.newConn(str)
	if c == nil {
		return ErrClosed
	}
	file, err := os.Open(s.path(id))
	if err != nil {
		c.close(false)
		return fmt.Errorf("files: the file's ciphertext: %w", err)
	}
	defer file.Close()
	// A blob another mailbox of the same relay holds is linked, not sent.
	noLink := false
	linked := func(b int) bool {
		if noLink {
			return false
		}
		for j, r := range f.Relays {
			if j != i && string(r.Relay) == string(rel.Relay) && store.HasBit(r.Done, b) {
				return true
			}
		}
		return false
	}
	type sent struct {
		id   uint64
		op   protocol.BlobOp
		blob int
	}
	var inflight []sent
	next := 0
	for next < len(todo) || len(inflight) > 0 {
		for next < len(todo) && len(inflight) < s.opt.Window {
			b := todo[next]
			next++
			h := ptr.Blobs[b]
			wc, err := attachment.WriteCap(attachment.Key(f.Secret), loc, h)
			if err != nil {
				c.close(false)
				return err
			}
			rc, err := ptr.Key.ReadCap(loc, h)
			if err != nil {
				c.close(false)
				return err
			}
			req := &protocol.BlobRequest{Op: protocol.BlobPut, Hash: h, Cap: wc, ReadCapHash: rc.Hash(),
				Mailbox: box.mailbox, Log: box.log, Epoch: box.epoch, Token: box.token, Size: l.BlobSize(b)}
			if linked(b) {
				req.Op = protocol.BlobLink
			}
			if err := c.send(req, io.NewSectionReader(file, l.BlobOffset(b), l.BlobSize(b))); err != nil {
				c.close(false)
				s.relayFailed(ctx, id, i, err)
				return err
			}
			inflight = append(inflight, sent{req.ID, req.Op, b})
		}
		want := inflight[0]
		inflight = inflight[1:]
		resp, err := c.recv(want.id, want.op)
		if err != nil {
			c.close(false)
			s.relayFailed(ctx, id, i, err)
			return err
		}
		switch {
		case resp.Code == protocol.CodeOK:
			until := time.UnixMilli(resp.StoredUntil)
			_, err := s.update(ctx, id, func(f *store.File) error {
				r := &f.Relays[i]
				r.Done = store.SetBit(r.Done, want.blob)
				if r.StoredUntil.IsZero() || until.Before(r.StoredUntil) {
					r.StoredUntil = until
				}
				r.Error = ""
				return nil
			})
			if err != nil {
				c.close(false)
				return err
			}
			s.report(id, "up", l.BlobSize(want.blob), ptr.Size)
		case resp.Code == protocol.CodeNotFound && want.op == protocol.BlobLink:
			// The other mailbox's copy is gone: send the bytes.
			todo = append(todo, want.blob)
			noLink = true
		default:
			c.close(false)
			err := fmt.Errorf("files: relay %s refused blob %d: %w", relay, want.blob, resp.Err())
			if permanent(resp.Code) {
				err = fmt.Errorf("%w: %w", errRefused, err)
			}
			s.relayFailed(ctx, id, i, err)
			return err
		}
	}
	c.close(true)
	return nil
}

// permanent reports the relay codes after which uploading this file to
// that relay again cannot succeed: a blob over the relay's size limit, a
// request it cannot parse. The other refusals can pass and are retried
// with the backoff: quotas (mailbox_quota, store_full, disk_full) free
// up, and a token or mailbox the relay does not know yet (token_refused,
// unknown_mailbox) is one the recipient's node has not registered there
// yet: it does so when it is next online, and a revoked token is
// replaced by the one its next card brings (each attempt takes the
// mailboxes the recipient lists now; one it no longer lists is refused
// for good).
func permanent(c protocol.Code) bool {
	switch c {
	case protocol.CodeTooLarge, protocol.CodeMalformed:
		return true
	}
	return false
}

// parseAddrs parses binary multiaddrs, dropping those that do not parse.
func parseAddrs(bs [][]byte) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, b := range bs {
		if a, err := ma.NewMultiaddrBytes(b); err == nil {
			out = append(out, a)
		}
	}
	return out
}
