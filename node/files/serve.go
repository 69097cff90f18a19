package files

import (
	"errors"
	"io"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/node/internal/deadline"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Limits of the blob streams this node serves (its outgoing files'
// recipients fetching them).
const (
	maxServeStreams        = 64
	maxServeStreamsPerPeer = 4
	serveIdle              = 2 * time.Minute
)

// serve answers a blob stream on the device's host: GET of the blobs of
// the files this node sends, with the read capability of this device's
// location, and ACK, the recipient's word that it has a blob. Requests are
// answered one at a time, in order.
func (s *Service) serve(str network.Stream) {
	if !s.served.Add(str) {
		str.Reset()
		return
	}
	defer s.served.Release(str)
	fr := protocol.NewFrameReader(str, protocol.MaxBlobFrame)
	var buf []byte
	copyBuf := make([]byte, 64<<10)
	for {
		str.SetReadDeadline(time.Now().Add(serveIdle))
		var req protocol.BlobRequest
		err := fr.Read(&req)
		if errors.Is(err, io.EOF) {
			str.Close()
			return
		}
		if err != nil {
			if errors.Is(err, protocol.ErrMalformed) || errors.Is(err, protocol.ErrTooLarge) || errors.Is(err, protocol.ErrUnsupportedVersion) {
				b, _ := protocol.AppendFrame(nil, &protocol.BlobResponse{Code: protocol.CodeOf(err)})
				str.SetWriteDeadline(time.Now().Add(s.opt.IOTimeout))
				str.Write(b)
			}
			str.Reset()
			return
		}
		resp := protocol.BlobResponse{ID: req.ID, Op: req.Op, Code: protocol.CodeNotFound}
		var (
			blob *io.SectionReader
			file *os.File
			id   protocol.MessageID
			ptr  *protocol.File
		)
		switch req.Op {
		case protocol.BlobGet, protocol.BlobAck:
			var i int
			id, i, ptr = s.lookup(req.Hash, req.Cap)
			if ptr == nil {
				break
			}
			if req.Op == protocol.BlobAck {
				if err := s.acked(id, i); err != nil {
					resp.Code = protocol.CodeInternal
					break
				}
				resp.Code = protocol.CodeOK
				break
			}
			l, _ := attachment.NewLayout(ptr.Size)
			file, err = os.Open(s.path(id))
			if err != nil {
				s.log.Error("files: a sent file's ciphertext is missing", "file", id, "err", err)
				resp.Code = protocol.CodeInternal
				break
			}
			blob = io.NewSectionReader(file, l.BlobOffset(i), l.BlobSize(i))
			resp.Code, resp.Size = protocol.CodeOK, l.BlobSize(i)
		}
		buf, _ = protocol.AppendFrame(buf[:0], &resp)
		w := &deadline.Writer{W: str, S: str, D: s.opt.IOTimeout}
		_, err = w.Write(buf)
		if err == nil && blob != nil {
			var n int64
			n, err = io.CopyBuffer(w, blob, copyBuf)
			if err == nil && n != resp.Size {
				err = io.ErrUnexpectedEOF
			}
			if err == nil {
				s.report(id, "up", resp.Size, ptr.Size)
			}
		}
		if file != nil {
			file.Close()
		}
		if err != nil {
			str.Reset()
			return
		}
	}
}

// lookup finds the outgoing file that has blob h and whose read capability
// at this device is c; nil if none.
func (s *Service) lookup(h attachment.Hash, c attachment.Cap) (protocol.MessageID, int, *protocol.File) {
	var ids []protocol.MessageID
	err := s.cfg.Store.View(s.ctx, func(tx *store.Tx) error {
		var err error
		ids, err = tx.Files().ByBlob(h)
		return err
	})
	if err != nil {
		return protocol.MessageID{}, 0, nil
	}
	loc := protocol.PeerLocation([]byte(s.self))
	for _, id := range ids {
		f, err := s.record(s.ctx, id)
		if err != nil || !f.Outgoing {
			continue
		}
		ptr, err := s.pointer(&f)
		if err != nil {
			continue
		}
		want, err := ptr.Key.ReadCap(loc, h)
		if err != nil || !want.Equal(c) {
			continue
		}
		for i, b := range ptr.Blobs {
			if b == h {
				return id, i, ptr
			}
		}
	}
	return protocol.MessageID{}, 0, nil
}

// acked records that the recipient has blob i of file id; once it has all
// of them, the engine stops the relay fallback.
func (s *Service) acked(id protocol.MessageID, i int) error {
	all := false
	_, err := s.update(s.ctx, id, func(f *store.File) error {
		f.Have = store.SetBit(f.Have, i)
		all = store.CountBits(f.Have, len(f.Hashes)) == len(f.Hashes)
		return nil
	})
	if all {
		s.Wake()
	}
	return err
}
