package messaging

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/node/prekeys"
	"github.com/sealpost/sealpost/protocol"
)

// bundleTimeout bounds one bundle request, on either side.
const bundleTimeout = 20 * time.Second

// handleBundleStream serves /sealpost/bundle/1.0.0: one BundleRequest, one
// BundleResponse with the pinned (or current) bundle version and a
// one-time prekey handed out to this request alone. Requests are
// rate-limited per peer, which also bounds how fast one peer can drain the
// one-time prekeys.
func (s *Service) handleBundleStream(str network.Stream) {
	if !s.track(str) {
		str.Reset()
		return
	}
	defer s.untrack(str)
	remote := str.Conn().RemotePeer()
	if s.bundLim.Refused(remote) || s.bundLim.Take(remote, 1) == 0 {
		s.answerBundle(str, &protocol.BundleResponse{Code: protocol.CodeRateLimited})
		return
	}
	str.SetDeadline(time.Now().Add(bundleTimeout))
	fr := protocol.NewFrameReader(str, protocol.MaxBundleFrame)
	var req protocol.BundleRequest
	if err := fr.Read(&req); err != nil {
		if errors.Is(err, protocol.ErrMalformed) || errors.Is(err, protocol.ErrTooLarge) ||
			errors.Is(err, protocol.ErrUnsupportedVersion) {
			s.bundLim.Penalize(remote)
			s.answerBundle(str, &protocol.BundleResponse{Code: protocol.CodeOf(err)})
			return
		}
		str.Reset()
		return
	}
	var (
		data []byte
		low  bool
	)
	err := s.do(s.ctx, false, func(w *work) error {
		var pin []byte
		if !req.Pin.IsZero() {
			pin = req.Pin[:]
		}
		var err error
		data, err = s.pk.Serve(w.tx, pin, w.now)
		if errors.Is(err, prekeys.ErrExpired) || errors.Is(err, prekeys.ErrNoPrekeys) {
			return refuse(err)
		}
		if err != nil {
			return err
		}
		n, err := s.pk.Available(w.tx)
		low = n < s.pk.Policy().OneTimeLow
		return err
	})
	resp := &protocol.BundleResponse{Code: protocol.CodeOK, Bundle: data}
	switch {
	case errors.Is(err, prekeys.ErrExpired):
		resp = &protocol.BundleResponse{Code: protocol.CodeExpired}
	case errors.Is(err, prekeys.ErrNoPrekeys):
		resp = &protocol.BundleResponse{Code: protocol.CodeNotFound}
	case err != nil:
		resp = &protocol.BundleResponse{Code: protocol.CodeInternal}
	}
	if low {
		s.poke()
	}
	s.answerBundle(str, resp)
}

// answerBundle writes the response and closes the stream.
func (s *Service) answerBundle(str network.Stream, resp *protocol.BundleResponse) {
	str.SetWriteDeadline(time.Now().Add(bundleTimeout))
	if err := protocol.WriteFrame(str, resp); err != nil {
		str.Reset()
		return
	}
	str.Close()
}

// fetchBundle asks device p for its bundle: the version pin names (nil:
// the current one). It returns the bundle bytes unchecked.
func (s *Service) fetchBundle(ctx context.Context, p peer.ID, addrs [][]byte, pin []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, bundleTimeout)
	defer cancel()
	if err := s.connect(ctx, p, addrs); err != nil {
		return nil, err
	}
	str, err := s.host.NewStream(ctx, p, libp2pproto.ID(protocol.BundleProtocol))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, p, err)
	}
	if !s.watch(str) {
		str.Reset()
		return nil, ErrClosed
	}
	defer s.unwatch(str)
	defer str.Close()
	deadline, _ := ctx.Deadline()
	str.SetDeadline(deadline)
	req := &protocol.BundleRequest{}
	copy(req.Pin[:], pin)
	if err := protocol.WriteFrame(str, req); err != nil {
		str.Reset()
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, p, err)
	}
	str.CloseWrite()
	var resp protocol.BundleResponse
	if err := protocol.NewFrameReader(str, protocol.MaxBundleFrame).Read(&resp); err != nil {
		str.Reset()
		if errors.Is(err, protocol.ErrMalformed) || errors.Is(err, protocol.ErrTooLarge) ||
			errors.Is(err, protocol.ErrUnsupportedVersion) {
			return nil, fmt.Errorf("%w: %v", ErrBadBundle, err)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, p, err)
	}
	switch resp.Code {
	case protocol.CodeOK:
		return resp.Bundle, nil
	case protocol.CodeExpired, protocol.CodeNotFound:
		return nil, fmt.Errorf("%w: the device no longer serves this bundle", ErrInviteExpired)
	case protocol.CodeRateLimited:
		return nil, fmt.Errorf("%w: the device refused the bundle request for now", ErrRateLimited)
	}
	return nil, fmt.Errorf("%w: bundle request answered %s", ErrPeerRefused, resp.Code)
}
