package grouprelay_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/node/grouplog"
	"github.com/sealpost/sealpost/node/grouprelay"
	"github.com/sealpost/sealpost/node/internal/clock/clocktest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store/badgerstore"
)

// FuzzServe writes arbitrary bytes on a group log stream of a real relay
// (a real host, a real badger store): the relay must never panic, must
// answer only with frames that decode and validate, and must end the
// stream once the client's side is closed. Seeds: pipelined requests on
// a real log with its token (appends, a commit, a fetch, a subscription,
// creates), requests with a wrong token or epoch, and broken frames. Long
// runs: go test ./node/grouprelay -run '^$' -fuzz '^FuzzServe$'
// -fuzztime 1m -parallel 1.
func FuzzServe(f *testing.F) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close() })
	st, err := badgerstore.Create(context.Background(), filepath.Join(f.TempDir(), "store"), badgerstore.ModeUnencrypted, badgerstore.Options{GCInterval: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	srv, err := grouprelay.New(grouprelay.Config{Host: h, Store: st, Resources: testResources(), Clock: clocktest.New(t0)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })

	client, err := libp2p.New(libp2p.NoListenAddrs, libp2p.DisableRelay())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { client.Close() })
	cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := client.Connect(cctx, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}); err != nil {
		f.Fatal(err)
	}
	str, err := client.NewStream(cctx, h.ID(), libp2pproto.ID(protocol.GroupLogProtocol))
	if err != nil {
		f.Fatal(err)
	}
	c := grouplog.NewConn(str, 0)
	f.Cleanup(func() { c.Close() })
	log, err := create(c, 3, tok(3))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := c.Append(cctx, log, 3, tok(3), entry(f, 3, protocol.GroupApplication, "stored"), false, protocol.TokenHash{}); err != nil {
		f.Fatal(err)
	}
	// A log of its own for the commit seed, which closes the epoch.
	closing, err := create(c, 3, tok(3))
	if err != nil {
		f.Fatal(err)
	}

	frames := func(reqs ...*protocol.GroupLogRequest) []byte {
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
	app := func(epoch uint64, token protocol.GroupToken, body string) *protocol.GroupLogRequest {
		return &protocol.GroupLogRequest{Op: protocol.GroupLogAppend, Log: log, Epoch: epoch, Token: token, Entry: entry(f, epoch, protocol.GroupApplication, body)}
	}
	commit := app(3, tok(3), "commit")
	commit.Log, commit.Entry = closing, entry(f, 3, protocol.GroupCommit, "commit")
	commit.Commit, commit.TokenHash = true, tok(4).Hash()
	late := app(3, tok(3), "late")
	late.Log = closing
	fetch := &protocol.GroupLogRequest{Op: protocol.GroupLogFetch, Log: log, Epoch: 3, Token: tok(3), Limit: 5}
	sub := &protocol.GroupLogRequest{Op: protocol.GroupLogSubscribe, Log: log, Epoch: 3, Token: tok(3)}
	f.Add(frames(app(3, tok(3), "a"), app(3, tok(3), "b"), fetch, sub))
	f.Add(frames(app(3, tok(3), "stored"), commit, late))
	f.Add(frames(&protocol.GroupLogRequest{Op: protocol.GroupLogCreate, Log: protocol.GroupLogID{7}, Epoch: 1, TokenHash: tok(1).Hash()},
		&protocol.GroupLogRequest{Op: protocol.GroupLogCreate, Log: log, Epoch: 3, TokenHash: tok(3).Hash()}))
	f.Add(frames(app(3, tok(9), "wrong token"), app(2, tok(2), "wrong epoch"),
		&protocol.GroupLogRequest{Op: protocol.GroupLogFetch, Log: protocol.GroupLogID{8}, Epoch: 0, Token: tok(0)}))
	f.Add(binary.AppendUvarint(nil, protocol.MaxGroupLogFrame+1))
	f.Add([]byte{0})
	f.Add([]byte{3, 0x08, 0x01, 0x10})

	f.Fuzz(func(t *testing.T, in []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		str, err := client.NewStream(ctx, h.ID(), libp2pproto.ID(protocol.GroupLogProtocol))
		if err != nil {
			t.Fatalf("new stream: %v", err)
		}
		defer str.Reset()
		str.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := str.Write(in); err != nil {
			return // the relay reset the stream already
		}
		str.CloseWrite()
		fr := protocol.NewFrameReader(str, protocol.MaxGroupLogFrame)
		for {
			var resp protocol.GroupLogResponse
			err := fr.Read(&resp)
			if err == nil {
				if err := resp.Validate(); err != nil {
					t.Fatalf("relay sent an invalid answer: %v", err)
				}
				continue
			}
			// A frame the relay sent that does not decode is a bug; a
			// reset or the end of the stream is how it ends.
			if isDecodeError(err) {
				t.Fatalf("relay sent a bad frame: %v", err)
			}
			var ne net.Error
			if ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
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
