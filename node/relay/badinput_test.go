package relay_test

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
)

// TestBadFrames: a frame that does not decode is answered {id 0, code} and
// the stream is reset; the peer is refused for the penalty; other peers
// are not affected.
func TestBadFrames(t *testing.T) {
	r := newRelay(t, testResources())
	good := r.dial(t)
	m := good.create()
	cases := []struct {
		name  string
		bytes []byte
		want  protocol.Code
	}{
		{"length over the limit", binary.AppendUvarint(nil, protocol.MaxRelayFrame+1), protocol.CodeTooLarge},
		{"garbage", []byte{5, 0xff, 0xff, 0xff, 0xff, 0xff}, protocol.CodeMalformed},
		{"empty frame", []byte{0}, protocol.CodeMalformed},
		{"version 2", append([]byte{4}, 0x08, 0x02, 0x10, 0x01), protocol.CodeUnsupportedVersion},
		{"request without op", append([]byte{4}, 0x08, 0x01, 0x10, 0x01), protocol.CodeMalformed},
		{"a response sent as a request", frameOf(t, &protocol.RelayResponse{Op: protocol.RelayHello, Code: protocol.CodeOK, Challenge: protocol.Challenge{1}}), protocol.CodeMalformed},
		{"deposit of a non-envelope", rawDeposit(m.id, make([]byte, 100)), protocol.CodeMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := r.dial(t)
			if _, err := c.str.Write(tc.bytes); err != nil {
				t.Fatal(err)
			}
			frames, err := readUntilReset(c)
			if len(frames) != 1 || frames[0].ID != 0 || frames[0].Code != tc.want {
				t.Fatalf("answer: %+v, want {0, %s}", frames, tc.want)
			}
			if err == nil {
				t.Fatal("no end of stream")
			}
			// The relay closes its side, lingers for the answer to be
			// read (until the peer closes its own), then resets and lets
			// go of the stream.
			c.str.CloseWrite()
			nodetest.WaitFor(t, 10*time.Second, "the end of the stream", func() bool { return r.srv.Stats().Streams == 1 })
			// The peer is refused for the penalty.
			if hello, err := openRaw(c); err == nil {
				t.Fatalf("penalized peer got %+v", hello)
			}
			r.clock.Advance(r.res.Penalty << 6)
			if _, err := openRaw(c); err != nil {
				t.Fatalf("after the penalty: %v", err)
			}
		})
	}
	// The relay serves others throughout.
	good.refresh()
	if resp := good.call(&protocol.RelayRequest{Op: protocol.RelayFetch, Mailbox: m.id}, m.key); resp.Code != protocol.CodeOK {
		t.Fatalf("good client: %s", resp.Code)
	}
	if got := r.srv.Stats().Rejections["malformed"]; got < 4 {
		t.Errorf("%d malformed rejections counted", got)
	}
}

// openRaw opens a new relay stream from c's host and reads the hello.
func openRaw(c *client) (*protocol.RelayResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	str, err := c.h.NewStream(ctx, peer.ID(c.relay), libp2pproto.ID(protocol.RelayProtocol))
	if err != nil {
		return nil, err
	}
	defer str.Close()
	str.SetDeadline(time.Now().Add(10 * time.Second))
	var hello protocol.RelayResponse
	if err := protocol.NewFrameReader(str, protocol.MaxRelayFrame).Read(&hello); err != nil {
		return nil, err
	}
	return &hello, nil
}

func frameOf(t testing.TB, m protocol.Message) []byte {
	b, err := protocol.AppendFrame(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawDeposit encodes, by hand, a deposit frame whose envelope is any bytes
// (protocol refuses to encode a bad one): version 1, id 1, op deposit,
// mailbox, a 16-byte token, the envelope.
func rawDeposit(mb protocol.MailboxID, env []byte) []byte {
	var b []byte
	b = append(b, 0x08, 0x01, 0x10, 0x01, 0x18, byte(protocol.RelayDeposit))
	b = append(b, 0x22, 32)
	b = append(b, mb[:]...)
	b = append(b, 0x3a, 16)
	b = append(b, make([]byte, 15)...)
	b = append(b, 1)
	b = append(b, 0x72)
	b = binary.AppendUvarint(b, uint64(len(env)))
	b = append(b, env...)
	return append(binary.AppendUvarint(nil, uint64(len(b))), b...)
}
