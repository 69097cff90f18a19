package node

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealpost/sealpost/node/files"
	"github.com/sealpost/sealpost/node/messaging"
)

// Event types. The messaging service publishes message.received,
// message.state, contact.request and identity.changed, the attachment
// service file.progress and file.state (constants below; their Data types
// are in packages node/messaging and node/files).
const (
	EventMessageReceived = messaging.EventMessageReceived // Data: messaging.Message
	EventMessageState    = messaging.EventMessageState    // Data: messaging.StateEvent
	EventContactRequest  = messaging.EventContactRequest  // Data: messaging.ContactEvent
	EventIdentityChanged = messaging.EventIdentityChanged // Data: messaging.IdentityEvent
	// The attachment service's (package node/files).
	EventFileProgress = files.EventProgress // Data: files.Progress
	EventFileState    = files.EventState    // Data: files.Info
)

const (
	// EventPeerConnected: the node has its first connection to a peer.
	// Data is a PeerEvent.
	EventPeerConnected = "peer.connected"
	// EventPeerDisconnected: the node's last connection to a peer closed.
	// Data is a PeerEvent.
	EventPeerDisconnected = "peer.disconnected"
	// EventOverflow: the subscriber fell behind and missed events. It is the
	// last event on the channel, which is closed right after it; subscribe
	// again and re-read the state (Peers, Status) to resynchronize.
	EventOverflow = "overflow"
)

// SubscriberBuffer is how many events a subscriber may fall behind before
// it is told (EventOverflow) and dropped.
const SubscriberBuffer = 256

// Event is something that happened in the node, for the API's event stream.
type Event struct {
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	Data any       `json:"data,omitempty"`
}

// PeerEvent is the Data of peer.connected and peer.disconnected.
type PeerEvent struct {
	PeerID string `json:"peer_id"`
	// Direction of the connection that made the peer connected ("inbound"
	// or "outbound"); empty on disconnect.
	Direction string `json:"direction,omitempty"`
	// Limited: the only connection is a relayed (limited) one.
	Limited bool `json:"limited,omitempty"`
}

// bus fans events out to subscribers. Publishing never blocks: a
// subscriber whose buffer is full gets EventOverflow in the slot kept for
// it, and its channel is closed.
type bus struct {
	mu        sync.Mutex
	subs      map[*subscriber]struct{}
	closed    bool
	overflows atomic.Uint64 // subscribers dropped for falling behind
}

type subscriber struct {
	ch   chan Event
	done chan struct{} // closed when the subscription ends
}

func newBus() *bus { return &bus{subs: map[*subscriber]struct{}{}} }

// subscribe adds a subscriber; it returns nil if the bus is closed.
func (b *bus) subscribe() *subscriber {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	// One slot more than SubscriberBuffer, kept for EventOverflow.
	s := &subscriber{ch: make(chan Event, SubscriberBuffer+1), done: make(chan struct{})}
	b.subs[s] = struct{}{}
	return s
}

// unsubscribe ends s: its channel is closed. It is idempotent.
func (b *bus) unsubscribe(s *subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.endLocked(s)
}

func (b *bus) endLocked(s *subscriber) {
	if _, ok := b.subs[s]; !ok {
		return
	}
	delete(b.subs, s)
	close(s.ch)
	close(s.done)
}

// publish delivers e to every subscriber without blocking.
func (b *bus) publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if len(s.ch) < SubscriberBuffer {
			s.ch <- e
			continue
		}
		s.ch <- Event{Type: EventOverflow, Time: e.Time}
		b.endLocked(s)
		b.overflows.Add(1)
	}
}

// count returns the number of subscribers.
func (b *bus) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// close ends every subscription; later subscribe calls return nil.
func (b *bus) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		b.endLocked(s)
	}
}

// Subscribe returns a channel of the node's events from now on. The
// channel is closed when ctx ends, when the node closes, or right after an
// EventOverflow if the caller falls SubscriberBuffer events behind; a slow
// subscriber never blocks the node and never loses events silently.
func (n *Node) Subscribe(ctx context.Context) <-chan Event {
	s := n.events.subscribe()
	if s == nil {
		ch := make(chan Event)
		close(ch)
		return ch
	}
	if !n.spawn(func() {
		select {
		case <-ctx.Done():
			n.events.unsubscribe(s)
		case <-s.done:
		}
	}) {
		n.events.unsubscribe(s)
	}
	return s.ch
}
