package relay_test

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/protocol"
)

// FuzzServe sends arbitrary bytes on a relay stream after the hello: the
// relay must never panic, must answer only with frames that decode and
// validate, and must keep serving. Seeds: valid deposits into a real
// mailbox with a real token, owner requests (whose signatures cannot match
// the stream's challenge), and broken frames. Long runs:
// go test ./node/relay -run '^$' -fuzz '^FuzzServe$' -fuzztime 1m -parallel 1.
func FuzzServe(f *testing.F) {
	res := testResources()
	res.Penalty = 0
	r := newRelay(f, res)
	owner := r.dial(f)
	m := owner.create()
	tok := owner.token(m, 0, 0)

	frames := func(reqs ...*protocol.RelayRequest) []byte {
		var b []byte
		for i, q := range reqs {
			q.ID = uint64(i + 1)
			var err error
			if b, err = protocol.AppendFrame(b, q); err != nil {
				f.Fatal(err)
			}
		}
		return b
	}
	sig := make([]byte, protocol.SignatureSize)
	owned := func(op protocol.RelayOp) *protocol.RelayRequest {
		return &protocol.RelayRequest{Op: op, Mailbox: m.id, Challenge: protocol.Challenge{1}, Signature: sig}
	}
	dep := func(i int) *protocol.RelayRequest {
		return &protocol.RelayRequest{Op: protocol.RelayDeposit, Mailbox: m.id, Token: tok, Envelope: envelope(m.id, 512, i)}
	}
	f.Add(frames(dep(1), dep(2), dep(3)))
	f.Add(frames(&protocol.RelayRequest{Op: protocol.RelayChallenge}, dep(4)))
	f.Add(frames(&protocol.RelayRequest{Op: protocol.RelayGetCard, Mailbox: m.id, Token: tok}, &protocol.RelayRequest{Op: protocol.RelayTakePrekey, Mailbox: m.id, Token: tok}))
	f.Add(frames(&protocol.RelayRequest{Op: protocol.RelayCreate, OwnerKey: protocol.OwnerKey{1}, SealingKey: protocol.SealingKey{2}, Challenge: protocol.Challenge{1}, Signature: sig}))
	fetch := owned(protocol.RelayFetch)
	fetch.Limit = 5
	ack := owned(protocol.RelayAck)
	ack.Seqs = []uint64{1, 2}
	reg := owned(protocol.RelayRegisterToken)
	reg.TokenHash = protocol.HashToken(tok)
	f.Add(frames(fetch, owned(protocol.RelaySubscribe), ack, reg, owned(protocol.RelayDeleteMailbox)))
	f.Add(frames(dep(5), &protocol.RelayRequest{Op: protocol.RelayDeposit, Mailbox: protocol.MailboxID{9}, Token: tok, Envelope: envelope(protocol.MailboxID{9}, 2048, 6)}))
	f.Add(binary.AppendUvarint(nil, protocol.MaxRelayFrame+1))
	f.Add([]byte{0})
	f.Add([]byte{3, 0x08, 0x01, 0x10})
	f.Add(rawDeposit(m.id, make([]byte, 100)))

	f.Fuzz(func(t *testing.T, in []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		str, err := owner.h.NewStream(ctx, peer.ID(owner.relay), libp2pproto.ID(protocol.RelayProtocol))
		if err != nil {
			t.Fatalf("new stream: %v", err)
		}
		defer str.Reset()
		str.SetDeadline(time.Now().Add(10 * time.Second))
		fr := protocol.NewFrameReader(str, protocol.MaxRelayFrame)
		var hello protocol.RelayResponse
		if err := fr.Read(&hello); err != nil {
			t.Fatalf("hello: %v", err)
		}
		if _, err := str.Write(in); err != nil {
			return // the relay reset the stream already
		}
		str.CloseWrite()
		for {
			var resp protocol.RelayResponse
			err := fr.Read(&resp)
			if err == nil {
				continue
			}
			// A frame the relay sent that does not decode is a bug; a
			// reset or the end of the stream is how it ends.
			if isDecodeError(err) {
				t.Fatalf("relay sent a bad frame: %v", err)
			}
			if ctx.Err() != nil {
				t.Fatalf("the relay did not end the stream: %v", err)
			}
			return
		}
	})
}

// isDecodeError reports an error of protocol's decoders (not of the stream).
func isDecodeError(err error) bool {
	return errors.Is(err, protocol.ErrMalformed) && !errors.Is(err, protocol.ErrTruncated) ||
		errors.Is(err, protocol.ErrTooLarge) || errors.Is(err, protocol.ErrUnsupportedVersion)
}
