package nodetest

import (
	"crypto/ed25519"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/protocol"
)

// Tamper changes a response of a relay before it leaves: req is the
// request it answers (nil for the hello; a fetch's or a subscription's
// for its pushes).
type Tamper func(req *protocol.RelayRequest, resp *protocol.RelayResponse)

// SignReceipt signs rc with h's key, as the relay on h signs its custody
// receipts: what a Tamper needs to tell a lie that verifies.
func SignReceipt(t testing.TB, h host.Host, rc protocol.Receipt) []byte {
	raw, err := h.Peerstore().PrivKey(h.ID()).Raw()
	if err != nil {
		t.Error(err)
		return nil
	}
	m, err := rc.SignedMessage()
	if err != nil {
		t.Error(err)
		return nil
	}
	return ed25519.Sign(ed25519.PrivateKey(raw), m)
}

// tamperHost is a relay's host whose relay streams pass every response
// the server writes through tamper before it leaves (nil: as it is), and
// every request it reads to watch (nil: not called).
type tamperHost struct {
	host.Host
	tamper Tamper
	watch  func(peer.ID, *protocol.RelayRequest)
}

// SetStreamHandler wraps the relay protocol's handler; others pass.
func (h *tamperHost) SetStreamHandler(pid libp2pproto.ID, handler network.StreamHandler) {
	if pid != libp2pproto.ID(protocol.RelayProtocol) {
		h.Host.SetStreamHandler(pid, handler)
		return
	}
	h.Host.SetStreamHandler(pid, func(s network.Stream) {
		handler(&tamperStream{Stream: s, tamper: h.tamper, watch: h.watch, reqs: map[uint64]*protocol.RelayRequest{}})
	})
}

// tamperStream decodes the requests the server reads and rewrites the
// responses it writes: each whole frame is decoded, tampered with, and
// encoded again.
type tamperStream struct {
	network.Stream
	tamper Tamper
	watch  func(peer.ID, *protocol.RelayRequest)

	mu   sync.Mutex
	in   []byte // read, not yet a whole frame
	out  []byte // written, not yet a whole frame
	reqs map[uint64]*protocol.RelayRequest
}

// maxTampered bounds the requests a tamperStream remembers.
const maxTampered = 4096

// frames calls f for each whole frame at the start of *buf and removes
// them.
func frames(buf *[]byte, f func(body []byte)) {
	for {
		n, k := binary.Uvarint(*buf)
		if k <= 0 || uint64(len(*buf)-k) < n {
			return
		}
		f((*buf)[k : k+int(n)])
		*buf = (*buf)[k+int(n):]
	}
}

func (s *tamperStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.in = append(s.in, p[:n]...)
	frames(&s.in, func(body []byte) {
		req := new(protocol.RelayRequest)
		if req.Unmarshal(body) != nil {
			return
		}
		if s.watch != nil {
			s.watch(s.Conn().RemotePeer(), req)
		}
		if len(s.reqs) < maxTampered {
			s.reqs[req.ID] = req
		}
	})
	return n, err
}

func (s *tamperStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out = append(s.out, p...)
	var out []byte
	var failed error
	frames(&s.out, func(body []byte) {
		var resp protocol.RelayResponse
		if resp.Unmarshal(body) != nil {
			out = binary.AppendUvarint(out, uint64(len(body)))
			out = append(out, body...)
			return
		}
		req := s.reqs[resp.ID]
		if resp.Op != protocol.RelayPush && resp.Op != protocol.RelaySubscribe {
			delete(s.reqs, resp.ID)
		}
		if s.tamper != nil {
			s.tamper(req, &resp)
		}
		var err error
		if out, err = protocol.AppendFrame(out, &resp); err != nil && failed == nil {
			failed = err
		}
	})
	if failed != nil {
		return 0, failed
	}
	if len(out) > 0 {
		if _, err := s.Stream.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}
