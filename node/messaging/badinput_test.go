package messaging_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
)

// attacker is a bare libp2p host that speaks the message protocol by hand.
type attacker struct {
	t      *testing.T
	h      host.Host
	target peer.ID
	id     []byte // a valid public identity
}

func newAttacker(t *testing.T, target *tnode) *attacker {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.Ping(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	info := target.n.Info()
	a, err := ma.NewMultiaddr(info.Addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(nodetest.Context(t), *ai); err != nil {
		t.Fatal(err)
	}
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := id.Public().MarshalBinary()
	return &attacker{t: t, h: h, target: ai.ID, id: pub}
}

// exchange opens a stream, writes raw, reads want acks, and reports
// whether bob then ended the stream (an error ack is followed by a reset;
// after good frames the stream stays open for more).
func (a *attacker) exchange(raw []byte, want int) ([]protocol.Ack, bool) {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := a.h.NewStream(ctx, a.target, libp2pproto.ID(protocol.MsgProtocol))
	if err != nil {
		a.t.Fatalf("open stream: %v", err)
	}
	defer s.Reset()
	s.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := s.Write(raw); err != nil {
		return nil, true
	}
	fr := protocol.NewFrameReader(s, protocol.MaxMsgFrame)
	var acks []protocol.Ack
	for len(acks) < want {
		var ack protocol.Ack
		if err := fr.Read(&ack); err != nil {
			return acks, true
		}
		acks = append(acks, ack)
	}
	s.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var ack protocol.Ack
	err = fr.Read(&ack)
	var timeout interface{ Timeout() bool }
	if errors.As(err, &timeout) && timeout.Timeout() {
		return acks, false
	}
	if err == nil {
		acks = append(acks, ack)
	}
	return acks, true
}

// deliver is one encoded Deliver frame.
func (a *attacker) deliver(id uint64, device []byte) []byte {
	ct, err := (&protocol.Ciphertext{Ratchet: bytes.Repeat([]byte{7}, 120)}).Marshal()
	if err != nil {
		a.t.Fatal(err)
	}
	f, err := protocol.AppendFrame(nil, &protocol.Deliver{ID: id, Identity: a.id, Device: device, Ciphertext: ct})
	if err != nil {
		a.t.Fatal(err)
	}
	return f
}

func frame(payload []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(payload))), payload...)
}

func TestBadInput(t *testing.T) {
	clk := newFakeClock()
	bob := newPeer(t, "bob", withConfig(func(c *node.Config) {
		tcpOnly(c)
		c.Clock = clk
		c.Messaging = messaging.Options{PeerRate: 10, PeerBurst: 20, Penalty: time.Minute}
	}))
	a := newAttacker(t, bob)
	self := []byte(a.h.ID())
	penalty := 2 * time.Minute // more than any penalty so far

	check := func(what string, raw []byte, want []protocol.Code, reset bool) {
		t.Helper()
		acks, wasReset := a.exchange(raw, len(want))
		var got []protocol.Code
		for _, ack := range acks {
			got = append(got, ack.Code)
		}
		if len(got) != len(want) {
			t.Errorf("%s: acks %v, want %v", what, got, want)
		} else {
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("%s: acks %v, want %v", what, got, want)
					break
				}
			}
		}
		if wasReset != reset {
			t.Errorf("%s: stream reset %v, want %v", what, wasReset, reset)
		}
	}
	// Undecryptable messages from a well-formed stranger: refused one by
	// one, the stream stays usable.
	check("undecryptable", append(a.deliver(1, self), a.deliver(2, self)...),
		[]protocol.Code{protocol.CodeUnknownSession, protocol.CodeUnknownSession}, false)

	// Malformed protobuf: an error ack, a reset, then the peer is refused.
	check("malformed", frame([]byte("not a protobuf message")), []protocol.Code{protocol.CodeMalformed}, true)
	check("while refused", a.deliver(3, self), []protocol.Code{protocol.CodeRateLimited}, true)
	clk.Advance(penalty)

	// A valid frame before a bad one is committed and acknowledged first.
	check("valid then wrong version", append(a.deliver(4, self), frame([]byte{0x08, 0x02, 0x10, 0x01})...),
		[]protocol.Code{protocol.CodeUnknownSession, protocol.CodeUnsupportedVersion}, true)
	clk.Advance(2 * penalty)

	// A frame over the limit is refused before it is read.
	huge := binary.AppendUvarint(nil, protocol.MaxMsgFrame+1)
	check("oversized", append(huge, make([]byte, 1024)...), []protocol.Code{protocol.CodeTooLarge}, true)
	clk.Advance(4 * penalty)

	// Another device's messages on this stream.
	check("wrong sender", a.deliver(5, []byte(bob.n.ID())), []protocol.Code{protocol.CodeWrongSender}, true)
	clk.Advance(8 * penalty)

	// A flood: the bucket (20) is spent, the rest is refused, the stream
	// reset and the peer refused.
	var flood []byte
	for i := range 30 {
		flood = append(flood, a.deliver(uint64(10+i), self)...)
	}
	acks, reset := a.exchange(flood, 30)
	limited := 0
	for _, ack := range acks {
		if ack.Code == protocol.CodeRateLimited {
			limited++
		}
	}
	if !reset || limited == 0 || len(acks) > 30 {
		t.Errorf("flood: %d acks, %d rate limited, reset %v; want some rate limited and a reset", len(acks), limited, reset)
	}
	check("after the flood", a.deliver(50, self), []protocol.Code{protocol.CodeRateLimited}, true)

	// Bob is unharmed: another peer still gets through.
	alice := newPeer(t, "alice", withConfig(tcpOnly))
	befriend(t, alice, bob)
	wait(t, alice, send(t, alice, "bob", "still there?"), messaging.StateSent)
	if s, err := a.h.NewStream(nodetest.Context(t), a.target, libp2pproto.ID(protocol.BundleProtocol)); err == nil {
		// A bundle request with a bad frame is refused too.
		s.Write(frame([]byte{0xff}))
		s.CloseWrite()
		var resp protocol.BundleResponse
		if err := protocol.NewFrameReader(s, protocol.MaxBundleFrame).Read(&resp); err != nil || resp.Code == protocol.CodeOK {
			t.Errorf("bad bundle request: %v, %v", resp.Code, err)
		}
		s.Reset()
	}
}
