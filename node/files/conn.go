package files

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/node/internal/deadline"
	"github.com/sealpost/sealpost/protocol"
)

// conn is the client side of one blob stream: requests written in order,
// responses read in the same order (the server answers in order).
type conn struct {
	s       *Service
	str     network.Stream
	fr      *protocol.FrameReader
	timeout time.Duration
	nextID  uint64
	buf     []byte
	copyBuf []byte
}

// newConn starts the client side of str; nil if the service is closing
// (str is then reset).
func (s *Service) newConn(str network.Stream) *conn {
	if !s.clients.Add(str) {
		str.Reset()
		return nil
	}
	return &conn{s: s, str: str, fr: protocol.NewFrameReader(str, protocol.MaxBlobFrame), timeout: s.opt.IOTimeout,
		copyBuf: make([]byte, 64<<10)}
}

// errPeer is a blob stream's peer breaking the protocol: a response that
// does not decode or does not answer the request it should, or a blob of
// another size or other bytes than announced. The source is not used again
// in this attempt.
var errPeer = errors.New("files: the peer broke the blob protocol")

// send writes req, numbered, and for a PUT its body (exactly req.Size
// bytes).
func (c *conn) send(req *protocol.BlobRequest, body io.Reader) error {
	c.nextID++
	req.ID = c.nextID
	var err error
	c.buf, err = protocol.AppendFrame(c.buf[:0], req)
	if err != nil {
		return err
	}
	c.str.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := c.str.Write(c.buf); err != nil {
		return fmt.Errorf("files: write to %s: %w", c.remote(), err)
	}
	if req.Op != protocol.BlobPut {
		return nil
	}
	w := &deadline.Writer{W: c.str, S: c.str, D: c.timeout}
	n, err := io.CopyBuffer(w, io.LimitReader(body, req.Size), c.copyBuf)
	if err == nil && n != req.Size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("files: upload to %s: %w", c.remote(), err)
	}
	return nil
}

// recv reads the response to the request id of op.
func (c *conn) recv(id uint64, op protocol.BlobOp) (*protocol.BlobResponse, error) {
	c.str.SetReadDeadline(time.Now().Add(c.timeout))
	var resp protocol.BlobResponse
	if err := c.fr.Read(&resp); err != nil {
		if errors.Is(err, protocol.ErrMalformed) || errors.Is(err, protocol.ErrTooLarge) || errors.Is(err, protocol.ErrUnsupportedVersion) {
			return nil, fmt.Errorf("%w: %s: %v", errPeer, c.remote(), err)
		}
		return nil, fmt.Errorf("files: read from %s: %w", c.remote(), err)
	}
	if resp.Op == 0 {
		return nil, fmt.Errorf("%w: %s refused a request: %s", errPeer, c.remote(), resp.Code)
	}
	if resp.ID != id || resp.Op != op {
		return nil, fmt.Errorf("%w: %s answered %s %d, want %s %d", errPeer, c.remote(), resp.Op, resp.ID, op, id)
	}
	return &resp, nil
}

// body returns a reader of the n bytes after the last response.
func (c *conn) body(n int64) io.Reader {
	return &deadline.Reader{R: c.fr.Body(n), S: c.str, D: c.timeout}
}

func (c *conn) remote() peer.ID { return c.str.Conn().RemotePeer() }

// close ends the stream: closed after a clean end, reset otherwise.
func (c *conn) close(clean bool) {
	c.s.clients.Release(c.str)
	if clean {
		c.str.Close()
	} else {
		c.str.Reset()
	}
}

func peerString(b []byte) string {
	id, err := peer.IDFromBytes(b)
	if err != nil {
		return fmt.Sprintf("%x", b)
	}
	return id.String()
}
