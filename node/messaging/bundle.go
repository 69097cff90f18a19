package messaging

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/prekey"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/node/prekeys"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// bundleTimeout bounds one bundle request, on either side.
const bundleTimeout = 20 * time.Second

// handleBundleStream serves /sealpost/bundle/1.0.0: one BundleRequest, one
// BundleResponse with the pinned (or current) bundle version and a
// one-time prekey handed out to this request alone. Requests are
// rate-limited per peer, and those of peers that are not an accepted
// contact's device also share one bucket (Options.StrangerBundleRate),
// since a fresh peer ID costs nothing: beyond it a request without a pin
// is refused (rate_limited), and one with a pin, which anyone who got
// the bundle once can compute, is served without a one-time prekey (an
// invitee still gets the bundle it needs, on the last-resort KEM key).
// That bounds how fast the one-time prekeys can be drained, whatever the
// number of peer IDs.
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
		c, err := w.contactByDevice([]byte(remote))
		if err != nil {
			return err
		}
		oneTime := true
		if (c == nil || c.c.State != store.ContactAccepted) && s.strangerLim.Take(struct{}{}, 1) == 0 {
			if pin == nil {
				return refuse(errStrangerLimit)
			}
			oneTime = false
		}
		data, err = s.pk.Serve(w.tx, pin, oneTime, w.now)
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
	case errors.Is(err, errStrangerLimit):
		resp = &protocol.BundleResponse{Code: protocol.CodeRateLimited}
	case err != nil:
		resp = &protocol.BundleResponse{Code: protocol.CodeInternal}
	}
	if low {
		s.poke()
	}
	s.answerBundle(str, resp)
}

// errStrangerLimit refuses a bundle request without a pin from a peer
// that is not an accepted contact's device while the bucket those share is
// empty.
var errStrangerLimit = errors.New("messaging: too many bundle requests from unknown peers")

// answerBundle writes the response and closes the stream.
func (s *Service) answerBundle(str network.Stream, resp *protocol.BundleResponse) {
	str.SetWriteDeadline(time.Now().Add(bundleTimeout))
	if err := protocol.WriteFrame(str, resp); err != nil {
		str.Reset()
		return
	}
	str.Close()
}

// relayBundleFunc fetches a bundle from a relay when the device does not
// serve it: the bundle bytes (nil: no relay had one) and the mailbox whose
// relay keeps the one-time prekeys that go with it (nil: none).
type relayBundleFunc func(ctx context.Context) ([]byte, *protocol.Mailbox)

// bundleOf fetches the bundle of device dev of user uid and checks it,
// for AddContact and establish alike: from the device first (addrs, then
// its DHT address record), asking for the version pin names (nil: the
// current one); when the device does not serve it, within
// Options.RelayAfter if relay is set, from relay instead, with a one-time
// prekey from the same relay if it has one left (else the session starts
// on the last-resort KEM key). With a pin, the bundle must be the version
// it names.
func (s *Service) bundleOf(ctx context.Context, uid identity.UserID, dev peer.ID, addrs [][]byte, pin *protocol.BundlePin, relay relayBundleFunc) (*prekey.Bundle, error) {
	bctx, cancel := ctx, context.CancelFunc(func() {})
	if relay != nil {
		bctx, cancel = context.WithTimeout(ctx, s.opt.RelayAfter)
	}
	var want []byte
	if pin != nil {
		want = pin[:]
	}
	data, err := s.fetchBundle(bctx, dev, addrs, want)
	cancel()
	var prekeys *protocol.Mailbox
	if err != nil && relay != nil && ctx.Err() == nil {
		if rdata, rbox := relay(ctx); rdata != nil {
			s.noteDirect(dev, true, false)
			s.log.Info("messaging: the device does not serve its bundle; using the bundle from its relay", "err", err)
			data, err, prekeys = rdata, nil, rbox
		}
	}
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	b, err := checkBundle(data, uid, dev, now)
	if err != nil {
		return nil, err
	}
	b = s.withRelayPrekey(ctx, prekeys, b, now)
	if pin != nil {
		if h := b.Hash(); !pin.Matches(h[:]) {
			return nil, fmt.Errorf("%w: it is not the bundle the invite pins", ErrBadBundle)
		}
	}
	return b, nil
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

// relayBundle fetches a contact's current bundle from the first of its
// mailboxes (those with a prekey key, card version 2) whose relay holds a
// bundle blob under the contact's token that checks against its identity
// uid and device dev. It returns the bundle bytes and the mailbox its
// one-time prekeys are in, or nils.
func (s *Service) relayBundle(ctx context.Context, boxes []protocol.Mailbox, uid identity.UserID, dev peer.ID) ([]byte, *protocol.Mailbox) {
	for i := range boxes {
		m := &boxes[i]
		cctx, cancel := context.WithTimeout(ctx, bundleTimeout)
		blob, err := s.mb.GetCard(cctx, m)
		cancel()
		if err != nil {
			s.log.Info("messaging: no bundle blob from a contact's relay", "relay", peerString(m.Relay), "err", err)
			continue
		}
		data, err := mailbox.OpenBundle(m.PrekeyKey[:], m.ID, blob)
		if err != nil {
			s.log.Info("messaging: a contact's bundle blob does not open", "relay", peerString(m.Relay))
			continue
		}
		if _, err := checkBundle(data, uid, dev, s.clock.Now()); err != nil {
			s.log.Info("messaging: a contact's bundle blob holds a bad bundle", "relay", peerString(m.Relay), "err", err)
			continue
		}
		return data, m
	}
	return nil, nil
}

// withRelayPrekey returns bundle b (from the relay of mailbox r) with a
// one-time prekey taken from r under its token and opened with its prekey
// key, if the relay has one left and the result verifies at now; else b
// itself, and the session starts on the last-resort KEM key. A nil r is
// no relay to ask.
func (s *Service) withRelayPrekey(ctx context.Context, r *protocol.Mailbox, b *prekey.Bundle, now time.Time) *prekey.Bundle {
	if r == nil {
		return b
	}
	otk := s.relayPrekey(ctx, r)
	if otk == nil {
		return b
	}
	withOTK := *b
	withOTK.OneTime = otk
	if withOTK.Verify(now) != nil {
		return b
	}
	return &withOTK
}

// relayPrekey takes one one-time prekey from r's relay, or returns nil.
func (s *Service) relayPrekey(ctx context.Context, r *protocol.Mailbox) *prekey.OneTimePrekey {
	ctx, cancel := context.WithTimeout(ctx, bundleTimeout)
	defer cancel()
	blob, err := s.mb.TakePrekey(ctx, r)
	if err != nil {
		s.log.Info("messaging: no one-time prekey from the relay", "relay", peerString(r.Relay), "err", err)
		return nil
	}
	rec, err := mailbox.OpenPrekey(r.PrekeyKey[:], r.ID, blob)
	if err != nil {
		return nil
	}
	otk, err := prekey.ParseOneTimePrekey(rec)
	if err != nil {
		return nil
	}
	return otk
}
