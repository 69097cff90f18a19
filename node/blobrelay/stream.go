package blobrelay

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/sealpost/sealpost/node/internal/deadline"
	"github.com/sealpost/sealpost/node/internal/disk"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/blobfs"
)

// stream serves one blob stream: its reader (the handler's goroutine)
// reads requests and the bytes of uploads; its worker executes them in
// order and writes the responses (and the bytes of downloads). The queue
// between them bounds what is read ahead of the answers.
type stream struct {
	s   *Server
	str network.Stream
	out chan *item
}

// item is one request read, with what its reader already did.
type item struct {
	req protocol.BlobRequest
	// resp, if set, is the answer decided by the reader (a refused upload).
	resp *protocol.BlobResponse
	// w holds a new blob's bytes (an upload of a blob not stored yet);
	// nil for one already stored, whose bytes were read and dropped.
	w *blobfs.Writer
}

func newStream(s *Server, str network.Stream) *stream {
	return &stream{s: s, str: str, out: make(chan *item, s.res.MaxPending)}
}

// Protocol errors of the reader: the stream is answered (frame errors)
// and reset.
const (
	lingerTimeout = time.Second
	lingerBytes   = 64 << 10
)

func (c *stream) serve() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.work()
	}()
	end, answer := c.read()
	if answer != nil {
		c.out <- &item{resp: answer}
	}
	close(c.out)
	<-done
	switch {
	case end == nil:
		c.str.Close()
	case answer != nil:
		c.str.CloseWrite()
		c.str.SetReadDeadline(time.Now().Add(lingerTimeout))
		io.Copy(io.Discard, io.LimitReader(c.str, lingerBytes))
		c.str.Reset()
	default:
		c.str.Reset()
	}
}

// read reads requests until the stream ends. It returns nil for a clean
// end, or the error and, for bad input, the answer to send before the
// reset.
func (c *stream) read() (error, *protocol.BlobResponse) {
	s := c.s
	fr := protocol.NewFrameReader(c.str, protocol.MaxBlobFrame)
	for {
		c.str.SetReadDeadline(time.Now().Add(s.res.StreamIdle))
		b, err := fr.Next()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil && !isProtocolErr(err) {
			return err, nil
		}
		var req protocol.BlobRequest
		if err == nil {
			err = req.Unmarshal(b)
		}
		if err != nil {
			s.met.reject(protocol.CodeOf(err).String())
			return err, &protocol.BlobResponse{Code: protocol.CodeOf(err)}
		}
		s.met.requests.WithLabelValues(req.Op.String()).Inc()
		it := &item{req: req}
		if req.Op == protocol.BlobPut {
			body := fr.Body(req.Size)
			if err := c.readPut(it, &deadline.Reader{R: body, S: c.str, D: s.res.WriteTimeout}); err != nil {
				return err, nil
			}
		}
		select {
		case c.out <- it:
		case <-s.ctx.Done():
			if it.w != nil {
				it.w.Abort()
			}
			return ErrClosed, nil
		}
	}
}

func isProtocolErr(err error) bool {
	return errors.Is(err, protocol.ErrMalformed) || errors.Is(err, protocol.ErrTooLarge) ||
		errors.Is(err, protocol.ErrUnsupportedVersion)
}

// readPut checks an upload before its bytes are read, then reads them:
// into a new blob file, or (refused, or a blob already stored) to nowhere.
// An error means the stream failed (its bytes did not all arrive).
func (c *stream) readPut(it *item, body io.Reader) error {
	s := c.s
	code, stored := s.precheck(&it.req)
	if code != protocol.CodeOK || stored {
		if code != protocol.CodeOK {
			it.resp = &protocol.BlobResponse{ID: it.req.ID, Op: it.req.Op, Code: code}
			s.met.reject(code.String())
		}
		_, err := io.Copy(io.Discard, body)
		return err
	}
	w, err := s.cfg.Blobs.Create()
	if err != nil {
		it.resp = s.storeFailed(&it.req, err)
		_, err := io.Copy(io.Discard, body)
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				w.Abort()
				it.resp = s.storeFailed(&it.req, werr)
				_, err := io.Copy(io.Discard, body)
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			w.Abort()
			return rerr
		}
	}
	it.w = w
	return nil
}

// storeFailed is the answer to an upload whose bytes could not be written:
// disk_full for a full disk, internal otherwise.
func (s *Server) storeFailed(req *protocol.BlobRequest, err error) *protocol.BlobResponse {
	code := protocol.CodeInternal
	if disk.Full(err) {
		code = protocol.CodeDiskFull
		s.log.Warn("blobrelay: the disk is full", "err", err)
	} else {
		s.log.Error("blobrelay: write blob", "err", err)
	}
	s.met.reject(code.String())
	return &protocol.BlobResponse{ID: req.ID, Op: req.Op, Code: code}
}

// precheck checks a PUT or LINK against the size limit, the mailbox (or
// group log), the token and the quotas as they are now (the commit checks
// the quotas again), and reports whether the blob is already stored.
func (s *Server) precheck(req *protocol.BlobRequest) (protocol.Code, bool) {
	if req.Size > s.res.MaxBlob {
		return protocol.CodeTooLarge, false
	}
	var stored bool
	err := s.cfg.Store.View(s.ctx, func(tx *store.Tx) error {
		if err := checkToken(tx, req); err != nil {
			return err
		}
		_, err := tx.RelayBlobs().Ref(store.BlobRefKey{Hash: req.Hash, ReadCapHash: req.ReadCapHash})
		if err == nil {
			// A reference stored already (an upload whose answer was
			// lost): the commit answers it; its bytes are not needed.
			stored = true
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		var c store.BlobCharge
		if req.Log.IsZero() {
			c, err = tx.RelayBlobs().Charge(req.Mailbox, req.Hash)
		} else {
			c, err = tx.RelayBlobs().LogCharge(req.Log, req.Hash)
		}
		if err != nil {
			return err
		}
		stored = c.Stored
		return s.quota(req, &c, uint64(req.Size))
	})
	if err != nil {
		return codeOf(s, err), stored
	}
	return protocol.CodeOK, stored
}

// checkToken checks the mailbox of an upload and its token, or its group
// log and the token of the epoch it names.
func checkToken(tx *store.Tx, req *protocol.BlobRequest) error {
	if !req.Log.IsZero() {
		return checkLogToken(tx, req)
	}
	mb := req.Mailbox
	m, err := tx.Relay().Mailbox(mb)
	if errors.Is(err, store.ErrNotFound) || (err == nil && m.Deleting) {
		return protocol.ErrUnknownMailbox
	}
	if err != nil {
		return err
	}
	_, err = tx.Relay().Token(mb, protocol.HashToken(req.Token))
	if errors.Is(err, store.ErrNotFound) {
		return protocol.ErrTokenRefused
	}
	return err
}

// checkLogToken checks the group log of an upload and its token: the
// token of req.Epoch, an epoch the log still keeps (the open one, or a
// closed one whose entries have not all expired), as group log appends
// and reads are checked (node/grouprelay). A member who was removed
// holds only the tokens of epochs before its removal: it can upload
// while those are kept, as it could read their entries.
func checkLogToken(tx *store.Tx, req *protocol.BlobRequest) error {
	l, err := tx.RelayGroups().Log(req.Log)
	if errors.Is(err, store.ErrNotFound) || (err == nil && l.Deleting) {
		return protocol.ErrUnknownLog
	}
	if err != nil {
		return err
	}
	e, err := tx.RelayGroups().Epoch(req.Log, req.Epoch)
	if errors.Is(err, store.ErrWrongEpoch) {
		return protocol.ErrWrongEpoch
	}
	if err != nil {
		return err
	}
	h := protocol.HashToken(req.Token)
	if subtle.ConstantTimeCompare(h[:], e.TokenHash[:]) != 1 {
		return protocol.ErrTokenRefused
	}
	return nil
}

// quota checks one more reference of size bytes against the mailbox's
// quota and its creator's quotas (or the group log's quota) and, for a
// blob not stored yet, the relay's total and its disk.
func (s *Server) quota(req *protocol.BlobRequest, c *store.BlobCharge, size uint64) error {
	u := &c.Usage
	if req.Log.IsZero() && (u.Count+1 > s.res.MailboxMaxCount || u.Bytes+size > s.res.MailboxMaxBytes) {
		return protocol.ErrMailboxQuota
	}
	if !req.Log.IsZero() && (u.Count+1 > s.res.LogMaxCount || u.Bytes+size > s.res.LogMaxBytes) {
		return protocol.ErrQuotaExceeded
	}
	for i, k := range c.Usage.Quotas {
		if k == (store.RelayQuotaKey{}) {
			continue
		}
		limit, name, who := s.res.PeerMaxBytes, "blob_peer_bytes", "peer"
		if i == store.RelayQuotaSubnet {
			limit, name, who = s.res.SubnetMaxBytes, "blob_subnet_bytes", "address range"
		}
		if held := c.Creator[i].BlobBytes; held+size > limit {
			return quotaRefusal{fmt.Errorf("%w: the mailboxes made by its %s hold %d bytes of blobs", protocol.ErrMailboxQuota, who, held), name}
		}
	}
	if !c.Stored {
		if t := &c.Totals; t.Bytes+size > s.res.StoreMaxBytes {
			return protocol.ErrStoreFull
		}
		if free, ok := disk.Free(s.cfg.Blobs.Root()); ok && free < size+s.res.MinFreeDisk {
			return protocol.ErrDiskFull
		}
	}
	return nil
}

// quotaRefusal is a refusal for a creator quota, with the quota's name.
type quotaRefusal struct {
	err   error
	quota string
}

func (r quotaRefusal) Error() string { return r.err.Error() }
func (r quotaRefusal) Unwrap() error { return r.err }

// codeOf maps an error of a check or commit to its wire code (counting a
// creator quota's refusal); an error that is none of the protocol's is
// logged and answered internal.
func codeOf(s *Server, err error) protocol.Code {
	if qr, ok := errors.AsType[quotaRefusal](err); ok && s.cfg.QuotaRefused != nil {
		s.cfg.QuotaRefused(qr.quota)
	}
	code := disk.CodeOf(err)
	if code == protocol.CodeInternal && !errors.Is(err, context.Canceled) {
		s.log.Error("blobrelay: request failed", "err", err)
	}
	return code
}

// work executes the queued requests in order and writes their answers.
func (c *stream) work() {
	broken := false
	for it := range c.out {
		if broken {
			if it.w != nil {
				it.w.Abort()
			}
			continue
		}
		resp, blob := c.s.exec(it)
		if err := c.write(resp, blob); err != nil {
			broken = true
			c.str.Reset()
		}
		if blob != nil {
			blob.Close()
		}
	}
}

// exec executes one request; for a GET it returns the open blob too.
func (s *Server) exec(it *item) (*protocol.BlobResponse, *os.File) {
	req := &it.req
	if it.resp != nil {
		return it.resp, nil
	}
	resp := &protocol.BlobResponse{ID: req.ID, Op: req.Op, Code: protocol.CodeOK}
	var err error
	var blob *os.File
	switch req.Op {
	case protocol.BlobPut, protocol.BlobLink:
		resp.StoredUntil, err = s.put(it)
	case protocol.BlobGet:
		blob, resp.Size, err = s.get(req)
	case protocol.BlobAck:
		err = s.ack(req)
	case protocol.BlobDelete:
		err = s.delete(req)
	}
	if errors.Is(err, store.ErrNotFound) {
		err = protocol.ErrNotFound
	}
	if err != nil {
		code := codeOf(s, err)
		s.met.reject(code.String())
		return &protocol.BlobResponse{ID: req.ID, Op: req.Op, Code: code}, nil
	}
	return resp, blob
}

// put commits an upload (or a link): the blob's file, then its reference.
func (s *Server) put(it *item) (int64, error) {
	req := &it.req
	unlock := s.lock(req.Hash)
	defer unlock()
	fresh := false
	if it.w != nil {
		switch err := it.w.Commit(req.Hash); {
		case errors.Is(err, blobfs.ErrHash):
			return 0, fmt.Errorf("%w: the bytes do not match the blob's hash", protocol.ErrMalformed)
		case err != nil:
			return 0, fmt.Errorf("%w: %v", protocol.ErrInternal, err)
		}
		fresh = true
	}
	now := s.clock.Now()
	ref := store.RelayBlobRef{
		Hash:         req.Hash,
		ReadCapHash:  req.ReadCapHash,
		WriteCapHash: req.Cap.Hash(),
		Mailbox:      req.Mailbox,
		Log:          req.Log,
		Size:         uint64(req.Size),
		StoredUntil:  now.Add(s.res.TTL),
		Readers:      uint64(req.Readers),
		CreatedAt:    now,
	}
	var got store.RelayBlobRef
	err := s.cfg.Store.Update(s.ctx, func(tx *store.Tx) error {
		if err := checkToken(tx, req); err != nil {
			return err
		}
		if req.Op == protocol.BlobLink && !fresh {
			ok, err := tx.RelayBlobs().HasBlob(req.Hash)
			if err != nil {
				return err
			}
			if !ok || !s.cfg.Blobs.Has(req.Hash) {
				return protocol.ErrNotFound
			}
		}
		var err error
		got, err = tx.RelayBlobs().AddBlobRef(ref, func(c *store.BlobCharge) error {
			if !c.Stored && !fresh && !s.cfg.Blobs.Has(req.Hash) {
				// Read and dropped as stored, and removed since.
				return protocol.ErrNotFound
			}
			return s.quota(req, c, ref.Size)
		})
		return err
	})
	switch {
	case errors.Is(err, store.ErrExists):
		if subtle.ConstantTimeCompare(got.WriteCapHash[:], ref.WriteCapHash[:]) == 1 {
			return got.StoredUntil.UnixMilli(), nil // an upload whose answer was lost
		}
		err = fmt.Errorf("%w: the reference exists under another write capability", protocol.ErrMalformed)
	case errors.Is(err, store.ErrInvalid):
		err = fmt.Errorf("%w: %v", protocol.ErrMalformed, err)
	case err == nil:
		s.met.stored(fresh, ref.Size)
		return got.StoredUntil.UnixMilli(), nil
	}
	if fresh {
		// The file was made for this upload; drop it unless another
		// reference holds the blob.
		var held bool
		s.cfg.Store.View(context.Background(), func(tx *store.Tx) error {
			held, _ = tx.RelayBlobs().HasBlob(req.Hash)
			return nil
		})
		if !held {
			s.cfg.Blobs.Remove(req.Hash)
		}
	}
	return 0, err
}

// get opens the blob of a GET whose reference exists and has not expired.
func (s *Server) get(req *protocol.BlobRequest) (*os.File, int64, error) {
	ref, err := s.ref(store.BlobRefKey{Hash: req.Hash, ReadCapHash: req.Cap.Hash()})
	if err != nil {
		return nil, 0, err
	}
	if !ref.StoredUntil.After(s.clock.Now()) {
		return nil, 0, protocol.ErrNotFound
	}
	f, size, err := s.cfg.Blobs.Open(req.Hash)
	if err != nil {
		s.log.Error("blobrelay: a referenced blob is missing", "err", err)
		return nil, 0, protocol.ErrNotFound
	}
	if size != int64(ref.Size) {
		f.Close()
		s.log.Error("blobrelay: a blob's file has the wrong size", "size", size, "want", ref.Size)
		return nil, 0, protocol.ErrInternal
	}
	s.met.served(ref.Size)
	return f, size, nil
}

// ref reads reference k.
func (s *Server) ref(k store.BlobRefKey) (store.RelayBlobRef, error) {
	var ref store.RelayBlobRef
	err := s.cfg.Store.View(s.ctx, func(tx *store.Tx) error {
		var err error
		ref, err = tx.RelayBlobs().Ref(k)
		return err
	})
	return ref, err
}

// ack counts a reader's acknowledgement. A group log's reference is read
// by every member with the same read capability, so one member's ack
// cannot tell that the others have the blob: it is answered ok and the
// reference stays until it expires (or its log goes).
func (s *Server) ack(req *protocol.BlobRequest) error {
	k := store.BlobRefKey{Hash: req.Hash, ReadCapHash: req.Cap.Hash()}
	ref, err := s.ref(k)
	if err != nil {
		return err
	}
	if !ref.Log.IsZero() {
		return nil
	}
	return s.remove(s.ctx, k, true)
}

// delete removes the reference of a DELETE whose capability is the
// reference's write capability (not_found otherwise).
func (s *Server) delete(req *protocol.BlobRequest) error {
	k := store.BlobRefKey{Hash: req.Hash, ReadCapHash: req.ReadCapHash}
	ref, err := s.ref(k)
	if err != nil {
		return err
	}
	h := req.Cap.Hash()
	if subtle.ConstantTimeCompare(h[:], ref.WriteCapHash[:]) != 1 {
		return protocol.ErrNotFound
	}
	return s.remove(s.ctx, k, false)
}

// write writes a response, and a GET's blob after it.
func (c *stream) write(resp *protocol.BlobResponse, blob *os.File) error {
	b, err := protocol.AppendFrame(nil, resp)
	if err != nil {
		return err
	}
	w := &deadline.Writer{W: c.str, S: c.str, D: c.s.res.WriteTimeout}
	if _, err := w.Write(b); err != nil {
		return err
	}
	if blob == nil {
		return nil
	}
	n, err := io.CopyBuffer(w, io.LimitReader(blob, resp.Size), make([]byte, 64<<10))
	if err == nil && n != resp.Size {
		err = io.ErrUnexpectedEOF
	}
	return err
}
