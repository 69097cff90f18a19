package testnet

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/node/gossip"
	"github.com/sealpost/sealpost/protocol"
)

// gossipFloor measures what a bare gossipsub network of size hosts does
// on this machine, in this process, at this moment: sealpost's gossip
// transport on libp2p hosts on loopback (QUIC), each dialing connect
// others chosen at random (so that it has about as many peers as a
// group's member), one topic, no decryption, no store, no relay.
// messages are published one after the other, each from the next host in
// turn, each once every host received the one before; the latencies are
// from a publish to each host's delivery. It is the limit of a group
// message's latency: the fan-out alone.
func gossipFloor(ctx context.Context, b *testing.B, size, connect, messages int) []time.Duration {
	b.Helper()
	var (
		mu      sync.Mutex
		got     = map[string][]time.Time{}
		arrived = make(chan struct{}, 1)
	)
	hosts := make([]host.Host, 0, size)
	topics := make([]*gossip.Topic, 0, size)
	var gs []*gossip.Gossip
	defer func() {
		for _, g := range gs {
			_ = g.Close()
		}
		for _, h := range hosts {
			_ = h.Close()
		}
	}()
	name, err := protocol.GroupTopic(bytes.Repeat([]byte{0xf1}, protocol.GroupTopicSecretSize))
	if err != nil {
		b.Fatal(err)
	}
	for range size {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"), libp2p.DisableRelay())
		if err != nil {
			b.Fatal(err)
		}
		hosts = append(hosts, h)
		g, err := gossip.New(gossip.Config{Host: h})
		if err != nil {
			b.Fatal(err)
		}
		gs = append(gs, g)
	}
	for i, h := range hosts {
		for _, j := range rand.Perm(size)[:min(connect+1, size)] {
			if j == i {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := h.Connect(cctx, peer.AddrInfo{ID: hosts[j].ID(), Addrs: hosts[j].Addrs()})
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, g := range gs {
		t, err := g.Join(name, func(peer.ID, *protocol.GroupMessage) error { return nil },
			func(_ peer.ID, m *protocol.GroupMessage, _ []byte) {
				at := time.Now()
				mu.Lock()
				got[string(m.Body)] = append(got[string(m.Body)], at)
				mu.Unlock()
				select {
				case arrived <- struct{}{}:
				default:
				}
			})
		if err != nil {
			b.Fatal(err)
		}
		topics = append(topics, t)
	}
	// publish sends message i and waits until every other host has it (or
	// a bound passes: the meshes may still be forming), returning when it
	// was sent and the deliveries.
	publish := func(i int) (time.Time, []time.Time) {
		body := binary.BigEndian.AppendUint64(make([]byte, 0, 200), uint64(i))
		body = append(body, bytes.Repeat([]byte{0x5a}, 192)...) // about a short text's ciphertext
		raw, err := (&protocol.GroupMessage{Epoch: 1, Kind: protocol.GroupApplication, Body: body, Seqs: []uint64{uint64(i + 1)}}).Marshal()
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := topics[i%size].Publish(ctx, raw); err != nil {
			b.Fatal(err)
		}
		bound := time.NewTimer(5 * time.Second)
		defer bound.Stop()
		for {
			mu.Lock()
			n := len(got[string(body)])
			mu.Unlock()
			if n >= size-1 {
				break
			}
			select {
			case <-arrived:
				continue
			case <-bound.C:
			case <-ctx.Done():
			}
			break
		}
		mu.Lock()
		defer mu.Unlock()
		return t0, got[string(body)]
	}
	// Probes until one reaches every host: the meshes are formed.
	formed := time.Now().Add(time.Minute)
	for i := 1 << 30; ; i++ {
		if _, at := publish(i); len(at) >= size-1 || time.Now().After(formed) {
			break
		}
	}
	var lat []time.Duration
	for i := range messages {
		t0, at := publish(i)
		for _, a := range at {
			lat = append(lat, a.Sub(t0))
		}
	}
	return lat
}
