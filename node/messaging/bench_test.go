package messaging_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
)

// benchPair is two befriended nodes with badger stores (fsync on) and a
// confirmed session.
func benchPair(b *testing.B, opts messaging.Options) (*tnode, *tnode) {
	cfg := withConfig(func(c *node.Config) {
		tcpOnly(c)
		c.Messaging = opts
	})
	alice := newPeer(b, "alice", onDisk(), cfg)
	bob := newPeer(b, "bob", onDisk(), cfg)
	befriend(b, alice, bob)
	wait(b, alice, send(b, alice, "bob", "hello"), messaging.StateDelivered)
	return alice, bob
}

// benchDelivery sends b.N messages from 64 concurrent senders and waits
// until every one is acknowledged (committed by both sides).
func benchDelivery(b *testing.B, opts messaging.Options) {
	alice, _ := benchPair(b, opts)
	text := strings.Repeat("x", 100)
	var (
		next atomic.Int64
		mu   sync.Mutex
		ids  []protocol.MessageID
		wg   sync.WaitGroup
	)
	b.ReportAllocs()
	b.ResetTimer()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				r, err := alice.m.Send(nodetest.Context(b), "bob", text)
				if err != nil {
					b.Error(err)
					return
				}
				id, _ := messaging.ParseMessageID(r.ID)
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		wait(b, alice, id, messaging.StateSent)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkDirectDelivery(b *testing.B) { benchDelivery(b, messaging.Options{}) }

func BenchmarkDirectDeliveryUnbatched(b *testing.B) { benchDelivery(b, messaging.Options{MaxBatch: 1}) }

// BenchmarkSendToDelivered times one message at a time from Send until the
// sender committed its delivery receipt.
func BenchmarkSendToDelivered(b *testing.B) {
	alice, _ := benchPair(b, messaging.Options{})
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		wait(b, alice, send(b, alice, "bob", "ping"), messaging.StateDelivered)
	}
}
