package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/node/addrrecord"
)

// Address record timing.
const (
	// RecordTTL is how long a published address record stays valid.
	RecordTTL = time.Hour
	// republishEvery is the period of republishing an unchanged record.
	republishEvery = RecordTTL / 2
	// publishDebounce is the wait after an address change (or a new peer
	// while publishing fails), so that a burst of changes publishes once.
	publishDebounce = time.Second
	// publishTimeout bounds one publication.
	publishTimeout = time.Minute
)

// publishState is what the node last published.
type publishState struct {
	mu        sync.Mutex
	used      uint64 // the highest sequence number signed
	seq       uint64 // the sequence number of the published record
	addrs     []ma.Multiaddr
	published time.Time
	expires   time.Time
	ok        bool // the last attempt succeeded
}

// RecordStatus describes the node's own address record.
type RecordStatus struct {
	// Seq is the sequence number of the last published record (0: none).
	Seq uint64 `json:"seq"`
	// Published and Expires are the time of the last successful
	// publication and its expiry (zero: none yet).
	Published time.Time `json:"published,omitzero"`
	Expires   time.Time `json:"expires,omitzero"`
	// Addrs is the number of addresses in it.
	Addrs int `json:"addrs"`
}

// publishLoop publishes the address record when the node starts, when its
// addresses change, and every republishEvery; failures are retried with
// backoff, and at once (after publishDebounce) when a peer connects.
func (n *Node) publishLoop() {
	t := n.clock.NewTimer(0)
	defer t.Stop()
	backoff := minBackoff
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.wake:
			n.pub.mu.Lock()
			stale := !n.pub.ok || !slices.EqualFunc(n.pub.addrs, n.recordAddrs(), ma.Multiaddr.Equal)
			n.pub.mu.Unlock()
			if stale {
				t.Reset(publishDebounce)
			}
			continue
		case <-t.C():
		}
		if err := n.publishRecord(); err != nil {
			d := n.jitter(backoff)
			n.log.Debug("address record: publish failed", "err", err, "retry_in", d)
			t.Reset(d)
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		t.Reset(republishEvery)
	}
}

// publishRecord signs the current addresses and puts them in the DHT.
func (n *Node) publishRecord() error {
	addrs := n.recordAddrs()
	if len(addrs) == 0 {
		return errors.New("no addresses to publish")
	}
	now := n.clock.Now()
	n.pub.mu.Lock()
	seq := max(uint64(now.UnixMilli()), n.pub.used+1)
	n.pub.used = seq // never reuse a number some peers may hold
	n.pub.mu.Unlock()
	rec := addrrecord.Record{Addrs: addrs, Seq: seq, Expires: now.Add(RecordTTL)}
	data, err := addrrecord.Seal(n.key, rec)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(n.ctx, publishTimeout)
	defer cancel()
	err = n.dht.PutValue(ctx, addrrecord.Key(n.host.ID()), data)
	n.met.publishes.WithLabelValues(result(err)).Inc()
	n.pub.mu.Lock()
	defer n.pub.mu.Unlock()
	n.pub.ok = err == nil
	if err != nil {
		return err
	}
	n.pub.seq, n.pub.addrs, n.pub.published, n.pub.expires = seq, addrs, now, rec.Expires
	n.log.Debug("address record: published", "seq", seq, "addrs", len(addrs))
	return nil
}

// recordAddrs returns the addresses to publish: the host's public and
// relay circuit addresses (private ones only when it has neither, as on a
// LAN without internet; loopback ones only when it has nothing else), at
// most addrrecord.MaxAddrs.
func (n *Node) recordAddrs() []ma.Multiaddr {
	return addrrecord.Select(n.host.Addrs(), addrrecord.MaxAddrs, false)
}

// FindDevice looks up the address record of device p in the DHT and
// returns its addresses (without /p2p/). It returns an error wrapping
// ErrDeviceNotFound when no valid record exists.
func (n *Node) FindDevice(ctx context.Context, p peer.ID) ([]ma.Multiaddr, error) {
	if err := n.ctx.Err(); err != nil {
		return nil, ErrClosed
	}
	data, err := n.dht.GetValue(ctx, addrrecord.Key(p))
	switch {
	case errors.Is(err, routing.ErrNotFound):
		n.met.lookups.WithLabelValues("not_found").Inc()
		return nil, fmt.Errorf("%w: %s", ErrDeviceNotFound, p)
	case err != nil:
		n.met.lookups.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("node: find device %s: %w", p, err)
	}
	rec, err := addrrecord.Open(p, data, n.clock.Now())
	if err != nil {
		n.met.lookups.WithLabelValues("not_found").Inc()
		return nil, fmt.Errorf("%w: %s: %w", ErrDeviceNotFound, p, err)
	}
	n.met.lookups.WithLabelValues("ok").Inc()
	return rec.Addrs, nil
}

// recordStatus returns the state of the node's own record.
func (n *Node) recordStatus() RecordStatus {
	n.pub.mu.Lock()
	defer n.pub.mu.Unlock()
	if n.pub.published.IsZero() {
		return RecordStatus{}
	}
	return RecordStatus{Seq: n.pub.seq, Published: n.pub.published, Expires: n.pub.expires, Addrs: len(n.pub.addrs)}
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}
