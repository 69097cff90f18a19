package grouplog_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/node/grouplog"
	"github.com/sealpost/sealpost/protocol"
)

// badRelay is a host that speaks the group log protocol badly: handle
// gets each stream a client opens.
func badRelay(t *testing.T, handle func(network.Stream)) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	h.SetStreamHandler(libp2pproto.ID(protocol.GroupLogProtocol), handle)
	return h
}

func dial(t *testing.T, r host.Host, timeout time.Duration) *grouplog.Conn {
	t.Helper()
	h, err := libp2p.New(libp2p.NoListenAddrs, libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}); err != nil {
		t.Fatal(err)
	}
	str, err := h.NewStream(ctx, r.ID(), libp2pproto.ID(protocol.GroupLogProtocol))
	if err != nil {
		t.Fatal(err)
	}
	c := grouplog.NewConn(str, timeout)
	t.Cleanup(func() { c.Close() })
	return c
}

var (
	log = protocol.GroupLogID{1, 2, 3}
	tok = protocol.GroupToken{4, 5, 6}
)

// TestSilentRelay: a relay that accepts the stream and reads every
// request but never answers fails the request and the Conn (ErrSilent)
// instead of blocking the caller (whose context has no deadline) forever.
func TestSilentRelay(t *testing.T) {
	r := badRelay(t, func(s network.Stream) { io.Copy(io.Discard, s) })
	c := dial(t, r, 300*time.Millisecond)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Fetch(context.Background(), log, 1, tok, 0, 0)
		errc <- err
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, grouplog.ErrSilent) {
			t.Fatalf("fetch from a silent relay: %v, want ErrSilent", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a fetch from a silent relay is still waiting after a minute")
	}
	select {
	case <-c.Done():
	case <-time.After(time.Minute):
		t.Fatal("the Conn to a silent relay did not end")
	}
	if _, err := c.Subscribe(context.Background(), log, 1, tok, 0); err == nil {
		t.Fatal("a subscription on an ended Conn")
	}
}

// TestRelayGoneMidFetch: a relay that goes away after it read a fetch
// (its host closed) fails the fetch, and the Conn ends.
func TestRelayGoneMidFetch(t *testing.T) {
	read := make(chan struct{})
	var r host.Host
	r = badRelay(t, func(s network.Stream) {
		fr := protocol.NewFrameReader(s, protocol.MaxGroupLogFrame)
		var req protocol.GroupLogRequest
		if fr.Read(&req) == nil {
			close(read)
		}
		io.Copy(io.Discard, s)
	})
	c := dial(t, r, time.Minute)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Fetch(context.Background(), log, 1, tok, 0, 0)
		errc <- err
	}()
	select {
	case <-read:
	case err := <-errc:
		t.Fatalf("the fetch ended before the relay read it: %v", err)
	}
	r.Close()
	select {
	case err := <-errc:
		if err == nil || errors.Is(err, grouplog.ErrSilent) {
			t.Fatalf("fetch from a relay that went away: %v, want the Conn closed", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a fetch from a relay that went away is still waiting after a minute")
	}
	<-c.Done()
}

// pushingRelay is a relay that answers a FETCH with n pushes of entry at
// epoch 1, gap apart, and then the FETCH's end (until the client resets
// the stream).
func pushingRelay(t *testing.T, n int, entry []byte, gap time.Duration) host.Host {
	t.Helper()
	return badRelay(t, func(s network.Stream) {
		fr := protocol.NewFrameReader(s, protocol.MaxGroupLogFrame)
		var req protocol.GroupLogRequest
		if fr.Read(&req) != nil {
			return
		}
		for i := range n {
			time.Sleep(gap)
			if protocol.WriteFrame(s, &protocol.GroupLogResponse{Op: protocol.GroupLogPush, ID: req.ID, Code: protocol.CodeOK, Seq: uint64(i + 1), Entry: entry}) != nil {
				return
			}
		}
		protocol.WriteFrame(s, &protocol.GroupLogResponse{Op: protocol.GroupLogFetch, ID: req.ID, Code: protocol.CodeOK, Epoch: 1})
		io.Copy(io.Discard, s)
	})
}

// TestLongFetchIsNotSilent: pushes of a fetch count as answers: a fetch
// whose pushes keep coming for longer than the timeout completes.
func TestLongFetchIsNotSilent(t *testing.T) {
	const n, gap = 6, 100 * time.Millisecond
	entry, err := (&protocol.GroupMessage{Epoch: 1, Kind: protocol.GroupApplication, Body: []byte("body")}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r := pushingRelay(t, n, entry, gap)
	// The timeout is shorter than the fetch, longer than a gap.
	c := dial(t, r, 4*gap)
	f, err := c.Fetch(context.Background(), log, 1, tok, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Entries) != n {
		t.Fatalf("%d entries, want %d", len(f.Entries), n)
	}
}

// TestFetchBytes: a relay whose pushes for one fetch carry more than
// protocol.MaxFetchBytes of entries is a bad relay: the fetch fails (the
// Conn holds no more of the answer) instead of gathering up to
// MaxFetchLimit entries of 2 MiB.
func TestFetchBytes(t *testing.T) {
	entry, err := (&protocol.GroupMessage{Epoch: 1, Kind: protocol.GroupApplication, Body: make([]byte, protocol.MaxGroupBody)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	n := protocol.MaxFetchBytes/len(entry) + 1
	r := pushingRelay(t, n, entry, 0)
	c := dial(t, r, time.Minute)
	f, err := c.Fetch(context.Background(), log, 1, tok, 0, 0)
	if !errors.Is(err, grouplog.ErrBadRelay) {
		t.Fatalf("a fetch answered with %d entries of %d bytes: %d entries, %v; want ErrBadRelay", n, len(entry), len(f.Entries), err)
	}
}
