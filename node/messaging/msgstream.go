package messaging

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/protocol"
)

// The message stream: serving /sealpost/msg/1.0.0 and refusing peers.

// handleMsgStream serves /sealpost/msg/1.0.0: it reads the frames already
// buffered (bounded), commits them in one transaction, acknowledges them
// together, and repeats. A bad frame is answered with its code, the stream
// is reset and the peer is refused for a while.
func (s *Service) handleMsgStream(str network.Stream) {
	if !s.track(str) {
		str.Reset()
		return
	}
	defer s.untrack(str)
	remote := str.Conn().RemotePeer()
	if s.msgLim.Refused(remote) || !s.openStream(remote) {
		s.refuse(str, 0, protocol.CodeRateLimited)
		return
	}
	defer s.closeStream(remote)
	via := ViaDirect
	if str.Conn().Stat().Limited {
		via = ViaRelayed
	}
	// A large read-ahead buffer, so that a batch can take every frame that
	// has arrived (FrameReader uses a bufio.Reader it is given as is).
	fr := protocol.NewFrameReader(bufio.NewReaderSize(str, readAhead), protocol.MaxMsgFrame)
	var acks []byte
	for {
		str.SetReadDeadline(time.Now().Add(s.opt.IdleTimeout))
		var (
			batch  []protocol.Deliver
			items  []Incoming
			size   int
			bad    protocol.Code
			badID  uint64
			closed bool
		)
		for len(batch) < s.opt.MaxBatch && size < maxBatchBytes {
			if len(batch) > 0 && !fr.Buffered() {
				break
			}
			b, err := fr.Next()
			if errors.Is(err, io.EOF) {
				closed = true
				break
			}
			if err != nil {
				if len(batch) == 0 && !errors.Is(err, protocol.ErrMalformed) && !errors.Is(err, protocol.ErrTooLarge) {
					// The stream failed (reset, deadline): nothing to answer.
					str.Reset()
					return
				}
				bad = protocol.CodeOf(err)
				break
			}
			var d protocol.Deliver
			if err := d.Unmarshal(b); err != nil {
				bad = protocol.CodeOf(err)
				break
			}
			if !bytes.Equal(d.Device, []byte(remote)) {
				bad, badID = protocol.CodeWrongSender, d.ID
				break
			}
			batch = append(batch, d)
			items = append(items, Incoming{Identity: d.Identity, Device: d.Device, Ciphertext: d.Ciphertext, Via: via})
			size += len(b)
		}
		granted := s.msgLim.Take(remote, len(batch))
		codes, err := s.Receive(s.ctx, items[:granted])
		if err != nil {
			// Nothing committed: no acknowledgement; the sender retries.
			str.Reset()
			return
		}
		acks = acks[:0]
		for i := range batch {
			code := protocol.CodeRateLimited
			if i < granted {
				code = codes[i]
			}
			acks, _ = protocol.AppendFrame(acks, &protocol.Ack{ID: batch[i].ID, Code: code})
		}
		if bad != 0 {
			acks, _ = protocol.AppendFrame(acks, &protocol.Ack{ID: badID, Code: bad})
		}
		str.SetWriteDeadline(time.Now().Add(s.opt.AckTimeout))
		if len(acks) > 0 {
			if _, err := str.Write(acks); err != nil {
				str.Reset()
				return
			}
		}
		if bad != 0 || granted < len(batch) {
			s.log.Info("messaging: refused a peer's frames", "peer_id", remote.String(), "code", bad.String(),
				"rate_limited", len(batch)-granted)
			s.msgLim.Penalize(remote)
			resetAfterWrite(str)
			return
		}
		if closed {
			str.Close()
			return
		}
	}
}

// Bounds of the incoming message streams (each holds up to readAhead plus
// one frame of buffers).
const (
	maxStreamsPerPeer = 4
	maxStreams        = 512
)

// openStream counts an incoming message stream of peer p; false when p or
// the node has too many.
func (s *Service) openStream(p peer.ID) bool {
	s.spawnMu.Lock()
	defer s.spawnMu.Unlock()
	if s.inStreams[p] >= maxStreamsPerPeer || s.inTotal >= maxStreams {
		return false
	}
	s.inStreams[p]++
	s.inTotal++
	return true
}

func (s *Service) closeStream(p peer.ID) {
	s.spawnMu.Lock()
	defer s.spawnMu.Unlock()
	if s.inStreams[p]--; s.inStreams[p] <= 0 {
		delete(s.inStreams, p)
	}
	s.inTotal--
}

// refuse answers a stream with one error acknowledgement and resets it.
func (s *Service) refuse(str network.Stream, id uint64, code protocol.Code) {
	str.SetWriteDeadline(time.Now().Add(time.Second))
	protocol.WriteFrame(str, &protocol.Ack{ID: id, Code: code})
	resetAfterWrite(str)
}

// resetAfterWrite resets a stream after what was written to it: closing
// the write side first makes the peer's muxer keep the data it has
// received (a reset alone may drop it before the peer reads the code).
func resetAfterWrite(str network.Stream) {
	str.CloseWrite()
	str.Reset()
}
