package mailbox

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/protocol"
)

// readAhead is the read buffer of a relay stream: pushes that have arrived
// up to this size are taken into one batch.
const readAhead = 64 << 10

// relayStream is one open /sealpost/relay/1.0.0 stream with the state the
// protocol keeps per stream: the current challenge and the next request
// ID.
type relayStream struct {
	s         network.Stream
	fr        *protocol.FrameReader
	challenge protocol.Challenge
	nextID    uint64
	buf       []byte
}

// openStream opens a stream to the relay and reads its hello.
func (r *relayConn) openStream(ctx context.Context) (*relayStream, error) {
	if err := r.connect(ctx); err != nil {
		return nil, err
	}
	h, err := r.host()
	if err != nil {
		return nil, err
	}
	s, err := h.NewStream(ctx, r.id, libp2pproto.ID(protocol.RelayProtocol))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, r.id, err)
	}
	rs := &relayStream{s: s, fr: protocol.NewFrameReader(bufio.NewReaderSize(s, readAhead), protocol.MaxRelayFrame)}
	deadline(s, ctx)
	var hello protocol.RelayResponse
	if err := rs.fr.Read(&hello); err != nil {
		s.Reset()
		return nil, rs.readErr(r, err)
	}
	if hello.Op != protocol.RelayHello {
		s.Reset()
		return nil, fmt.Errorf("%w: %s: the stream began with %s (%s)", ErrBadRelay, r.id, hello.Op, hello.Code)
	}
	rs.challenge = hello.Challenge
	return rs, nil
}

// readErr classifies a failed read: a frame that does not decode is the
// relay's fault, anything else a failed stream.
func (rs *relayStream) readErr(r *relayConn, err error) error {
	if errors.Is(err, protocol.ErrMalformed) || errors.Is(err, protocol.ErrTooLarge) ||
		errors.Is(err, protocol.ErrUnsupportedVersion) {
		return fmt.Errorf("%w: %s: %v", ErrBadRelay, r.id, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrUnreachable, r.id, err)
}

// deadline sets s's deadline from ctx's.
func deadline(s network.Stream, ctx context.Context) {
	if d, ok := ctx.Deadline(); ok {
		s.SetDeadline(d)
	} else {
		s.SetDeadline(time.Time{})
	}
}

// prepare numbers req and, for an owner op, signs it with key over the
// stream's current challenge.
func (rs *relayStream) prepare(relay []byte, req *protocol.RelayRequest, key ed25519.PrivateKey) error {
	rs.nextID++
	req.ID = rs.nextID
	if req.Op.Owner() {
		req.Challenge = rs.challenge
		if err := req.SignOwner(relay, key); err != nil {
			return err
		}
	}
	return nil
}

// streamSlot holds at most one open stream of a kind and serializes its
// users.
type streamSlot struct {
	mu    sync.Mutex
	rs    *relayStream
	users atomic.Int32
}

// with runs f with the slot's stream, opening one if needed; a stream f
// reports broken (err != nil and not a refusal) is reset and dropped.
func (sl *streamSlot) with(ctx context.Context, r *relayConn, f func(rs *relayStream) error) error {
	sl.users.Add(1)
	defer sl.users.Add(-1)
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.rs == nil {
		rs, err := r.openStream(ctx)
		if err != nil {
			return err
		}
		sl.rs = rs
	}
	deadline(sl.rs.s, ctx)
	err := f(sl.rs)
	var ref *refusal
	if err != nil && !errors.As(err, &ref) {
		sl.rs.s.Reset()
		sl.rs = nil
	}
	return err
}

func (sl *streamSlot) busy() bool { return sl.users.Load() > 0 }

// drop resets the slot's stream, waiting for its user.
func (sl *streamSlot) drop() {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.rs != nil {
		sl.rs.s.Reset()
		sl.rs = nil
	}
}

// refusal is a relay's answer with an error code to one request: the
// stream stays usable.
type refusal struct {
	op   protocol.RelayOp
	code protocol.Code
}

func (e *refusal) Error() string {
	return fmt.Sprintf("mailbox: the relay refused %s: %s", e.op, e.code)
}

// Unwrap returns the protocol sentinel of the code (protocol.ErrTokenRefused,
// protocol.ErrMailboxQuota, ...), so callers test with errors.Is.
func (e *refusal) Unwrap() error { return e.code.Err() }

// Code returns the wire code of a relay's refusal wrapped in err, and
// false if err is not one.
func Code(err error) (protocol.Code, bool) {
	var ref *refusal
	if errors.As(err, &ref) {
		return ref.code, true
	}
	return 0, false
}

// call sends one request on the control stream and reads until its
// response; pushes for it go to push. An owner op is signed with key.
// A refusal comes back as an error wrapping the code's sentinel; an
// expired challenge is renewed and the request sent again, once.
func (r *relayConn) call(ctx context.Context, req *protocol.RelayRequest, key ed25519.PrivateKey, push func(*protocol.RelayResponse) error) (*protocol.RelayResponse, error) {
	ctx, cancel := r.c.timeout(ctx)
	defer cancel()
	var resp *protocol.RelayResponse
	err := r.ctl.with(ctx, r, func(rs *relayStream) error {
		for attempt := 0; ; attempt++ {
			var err error
			resp, err = rs.roundTrip(r, req, key, push)
			if err != nil {
				return err
			}
			if resp.Code == protocol.CodeExpiredChallenge && attempt == 0 {
				continue // the response carried a fresh challenge
			}
			if resp.Code != protocol.CodeOK {
				return &refusal{op: req.Op, code: resp.Code}
			}
			return nil
		}
	})
	r.touch()
	return resp, err
}

// roundTrip writes req and reads frames until its response.
func (rs *relayStream) roundTrip(r *relayConn, req *protocol.RelayRequest, key ed25519.PrivateKey, push func(*protocol.RelayResponse) error) (*protocol.RelayResponse, error) {
	if err := rs.prepare([]byte(r.id), req, key); err != nil {
		return nil, err
	}
	if err := protocol.WriteFrame(rs.s, req); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, r.id, err)
	}
	for {
		resp := new(protocol.RelayResponse)
		if err := rs.fr.Read(resp); err != nil {
			return nil, rs.readErr(r, err)
		}
		switch {
		case resp.Op == 0:
			return nil, fmt.Errorf("%w: %s: the relay refused the stream: %s", ErrBadRelay, r.id, resp.Code)
		case resp.ID != req.ID:
			return nil, fmt.Errorf("%w: %s: answer to request %d while %d was outstanding", ErrBadRelay, r.id, resp.ID, req.ID)
		case resp.Op == protocol.RelayPush && (req.Op == protocol.RelayFetch || req.Op == protocol.RelaySubscribe):
			if push == nil {
				continue
			}
			if err := push(resp); err != nil {
				return nil, err
			}
			continue
		case resp.Op != req.Op:
			return nil, fmt.Errorf("%w: %s: %s answered with %s", ErrBadRelay, r.id, req.Op, resp.Op)
		}
		if !resp.Challenge.IsZero() {
			rs.challenge = resp.Challenge
		}
		return resp, nil
	}
}
