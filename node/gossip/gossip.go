// Package gossip carries group messages between the online members of a
// group: gossipsub (go-libp2p-pubsub) on the node's host, configured for
// private messaging.
//
//   - No author, no sequence number, no signature on the wire
//     (StrictNoSign with WithNoAuthor): who published a message is hidden
//     inside its MLS PrivateMessage, and a message's ID is the SHA-256 of its
//     bytes, so the same bytes published twice (a retry, a copy fetched from
//     a relay and published again) are one message.
//   - Topics are the opaque names of protocol.GroupTopic, one per epoch.
//     Every connected pubsub peer learns the names of the topics a node
//     joins; the name says nothing but "some group".
//   - Only members take part: Config.Allowed (the group engine's list of
//     member devices per topic) filters the peers a topic's messages are
//     forwarded to, gossiped to and accepted from, and the subscriptions
//     that are tracked. Flood publishing is off (it ignores the filter), and
//     floodsub is not spoken (its peers would bypass the filter too).
//   - Validation before any decryption: the forwarding peer must be allowed,
//     the message must decode as a protocol.GroupMessage within its limits,
//     and then the topic's own Check (epoch, kind, seen-set) runs. Each
//     refusal is counted by reason.
//   - Peer scoring is on; the IP-colocation penalty spares loopback
//     addresses, where a test network runs many nodes on one IP.
//   - Queues (each peer's outbound queue, each subscription's buffer, the
//     validation queue) hold DefaultQueue messages, so a burst of hundreds
//     is not dropped; pubsub's defaults of 32 drop most of a burst of 200.
//   - Publish copies the caller's bytes: pubsub keeps the slice it is given
//     in its message cache, so a caller reusing its buffer would change
//     messages already sent.
//
// A Gossip is created by New on a host and closed by Close, which leaves
// every topic and waits for the goroutines it started.
package gossip

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/node/internal/closer"
	"github.com/sealpost/sealpost/protocol"
)

// Errors.
var (
	// ErrClosed: the Gossip or the Topic was closed.
	ErrClosed = errors.New("gossip: closed")
	// ErrIgnore is what a Check returns for a message to drop without
	// penalizing the peer that forwarded it (a message of an epoch the node
	// has left, a duplicate): anything else is a rejection, which lowers the
	// peer's score.
	ErrIgnore = errors.New("gossip: message ignored")
	// ErrJoined: the topic is already joined.
	ErrJoined = errors.New("gossip: topic already joined")
)

// Defaults and limits.
const (
	// DefaultQueue is the default size of each peer's outbound queue, each
	// subscription's buffer and the validation queue. A burst is as long
	// as the group's busiest moment, for example a member catching up
	// publishing what it queued; 1024 messages of a typical 1 KiB are 1 MiB
	// per peer at most, and only while that peer is slow.
	DefaultQueue = 1024
	// MaxTopics bounds the topics a node joins at once: its groups, and
	// each group's previous topic for a moment after an epoch change.
	MaxTopics = 2 * 256
	// maxSubscriptionsPerRPC bounds the subscriptions one RPC from a peer
	// may announce; more is topic spam and the RPC is refused.
	maxSubscriptionsPerRPC = 2 * MaxTopics
	// maxSubscriptionsPerPeer bounds the topics a peer is tracked as
	// subscribed to, over all its RPCs: a node joins at most MaxTopics,
	// and as many again leave room for subscriptions pubsub forgot
	// without telling (an inbound stream that closed while the peer
	// stayed connected). Subscriptions past it are dropped as topic spam.
	maxSubscriptionsPerPeer = 2 * MaxTopics
	// seenTTL is how long a message ID is remembered, so that a copy that
	// arrives later is dropped as a duplicate. The group engine keeps its
	// own seen-set for longer; this only saves it work.
	seenTTL = 10 * time.Minute
)

// Config is what a Gossip needs.
type Config struct {
	// Host is the node's libp2p host. Required.
	Host host.Host
	// Allowed reports whether peer p takes part in topic (a device of a
	// member of the topic's group, in the epoch the topic belongs to). It
	// is called often, from pubsub's goroutines: keep it a map lookup.
	// Nil allows every peer (tests of the transport only).
	Allowed func(topic string, p peer.ID) bool
	// Logger receives pubsub's logs at debug level and the package's own.
	// Nil discards.
	Logger *slog.Logger
	// Registerer receives the metrics. Nil: no metrics.
	Registerer prometheus.Registerer
	// Options tune gossipsub.
	Options Options
}

// Options tune a Gossip; zero values take the defaults.
type Options struct {
	// Queue is the size of each peer's outbound queue, each
	// subscription's buffer and the validation queue (DefaultQueue).
	Queue int
	// ColocationThreshold is how many peers may share one IP before each
	// is penalized (default 8). Peers on loopback addresses, where a test
	// network runs many nodes on one IP, are never penalized.
	ColocationThreshold int
	// D is gossipsub's mesh degree (default 6); DLo and DHi its bounds
	// (defaults 4 and 12).
	D, DLo, DHi int
	// Heartbeat is gossipsub's heartbeat interval (default 700 ms).
	Heartbeat time.Duration
}

func (o Options) withDefaults() Options {
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.ColocationThreshold <= 0 {
		o.ColocationThreshold = 8
	}
	if o.D <= 0 {
		o.D, o.DLo, o.DHi = 6, 4, 12
	}
	if o.DLo <= 0 || o.DLo > o.D {
		o.DLo = max(1, o.D*2/3)
	}
	if o.DHi < o.D {
		o.DHi = 2 * o.D
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 700 * time.Millisecond
	}
	return o
}

// Check looks at a decoded message before it is delivered or forwarded;
// from is the peer that forwarded it (not its author, which nobody sees).
// It must be cheap: no decryption. ErrIgnore drops the message quietly;
// another error rejects it (the forwarder's score drops).
type Check func(from peer.ID, m *protocol.GroupMessage) error

// Deliver receives each message of a topic that passed its Check, once,
// in the order they arrived, on the topic's own goroutine. raw is the
// message's encoding (the bytes on the wire); neither may be kept after
// Deliver returns unless copied.
type Deliver func(from peer.ID, m *protocol.GroupMessage, raw []byte)

// Gossip is the node's gossipsub. Its methods are safe for concurrent use.
type Gossip struct {
	cfg  Config
	opts Options
	log  *slog.Logger
	ps   *pubsub.PubSub
	met  *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	joinMu sync.Mutex // serializes Join and Close
	mu     sync.Mutex // guards topics and closed; never held across a pubsub call
	topics map[string]*Topic
	closed bool

	// subsMu guards subs: the topics each peer is tracked as subscribed
	// to (what the subscription filter let through, less what the peer
	// left), forgotten when the peer disconnects.
	subsMu sync.Mutex
	subs   map[peer.ID]map[string]struct{}

	closing  closer.Once
	notifiee network.Notifiee

	// inspect, if set (tests), sees every RPC that arrives.
	inspect func(from peer.ID, rpc *pubsub.RPC)
}

// Protocols are the pubsub protocol IDs a Gossip speaks: gossipsub v1.2
// under sealpost's own name, so that sealpost's meshes never mix with
// other gossipsub networks on the same hosts, and no floodsub.
var Protocols = []libp2pproto.ID{protocol.GossipProtocol}

func features(feat pubsub.GossipSubFeature, proto libp2pproto.ID) bool {
	if proto != protocol.GossipProtocol {
		return false
	}
	switch feat {
	case pubsub.GossipSubFeatureMesh, pubsub.GossipSubFeatureIdontwant:
		return true
	}
	return false // no peer exchange: members are found through the group
}

// New starts gossipsub on cfg.Host.
func New(cfg Config) (*Gossip, error) {
	return newGossip(cfg, nil)
}

func newGossip(cfg Config, inspect func(peer.ID, *pubsub.RPC)) (*Gossip, error) {
	if cfg.Host == nil {
		return nil, errors.New("gossip: no host")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Allowed == nil {
		cfg.Allowed = func(string, peer.ID) bool { return true }
	}
	opts := cfg.Options.withDefaults()
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	g := &Gossip{cfg: cfg, opts: opts, log: cfg.Logger, met: met, topics: map[string]*Topic{}, inspect: inspect,
		subs: map[peer.ID]map[string]struct{}{}}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	notifiee := &network.NotifyBundle{DisconnectedF: func(n network.Network, c network.Conn) {
		if p := c.RemotePeer(); n.Connectedness(p) != network.Connected {
			g.forgetSubs(p)
		}
	}}
	cfg.Host.Network().Notify(notifiee)

	params := pubsub.DefaultGossipSubParams()
	params.D, params.Dlo, params.Dhi = opts.D, opts.DLo, opts.DHi
	// pubsub takes Dout below Dlo and below D/2 (rounded down).
	params.Dout = max(0, min(params.Dout, opts.DLo-1, opts.D/2-1))
	params.Dscore = min(params.Dscore, opts.D)
	params.HeartbeatInterval = opts.Heartbeat
	// A message's ID is announced (IHAVE) to peers outside the mesh at the
	// first heartbeat after it arrived, not at three as by default: the
	// later announcements come after the group's log has brought the
	// message to a member the mesh missed (the relay pushes the entry's
	// head at once; the member fetches it after its grace), and in a large
	// group the three heartbeats' announcements outnumbered the copies of
	// the message itself four to one.
	params.HistoryGossip = 1
	params.MaxIDontWantMessages = max(params.MaxIDontWantMessages, opts.Queue)

	ps, err := pubsub.NewGossipSub(g.ctx, cfg.Host,
		pubsub.WithGossipSubProtocols(Protocols, features),
		pubsub.WithGossipSubParams(params),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(messageID),
		pubsub.WithFloodPublish(false),
		pubsub.WithPeerExchange(false),
		pubsub.WithPeerFilter(g.allowed),
		pubsub.WithSubscriptionFilter(subscriptionFilter{g}),
		pubsub.WithPeerScore(scoreParams(opts), scoreThresholds()),
		pubsub.WithPeerOutboundQueueSize(opts.Queue),
		pubsub.WithValidateQueueSize(opts.Queue),
		pubsub.WithMaxMessageSize(maxRPC),
		pubsub.WithSeenMessagesTTL(seenTTL),
		pubsub.WithAppSpecificRpcInspector(g.inspectRPC),
		pubsub.WithRawTracer(tracer{g.met}),
		pubsub.WithLogger(cfg.Logger.With("pkg", "pubsub")),
	)
	if err != nil {
		cfg.Host.Network().StopNotify(notifiee)
		g.cancel()
		met.Unregister()
		return nil, fmt.Errorf("gossip: %w", err)
	}
	g.ps = ps
	g.notifiee = notifiee
	return g, nil
}

// maxRPC bounds one pubsub RPC: the largest group message with pubsub's
// framing (topic name, message ID lists of control messages). Larger RPCs
// are refused by pubsub's reader before they are parsed.
const maxRPC = protocol.MaxGroupMessage + 64<<10

// messageID is a message's ID: SHA-256 of its data, so the ID says nothing
// about who published it and equal bytes are one message.
func messageID(m *pubsubpb.Message) string {
	h := sha256.Sum256(m.GetData())
	return string(h[:])
}

// allowed is the peer filter: a peer takes part in a topic if Allowed says
// so. pubsub asks before it grafts a peer to a topic's mesh, sends it
// gossip, answers its IWANT, or picks fanout peers.
func (g *Gossip) allowed(p peer.ID, topic string) bool {
	if !strings.HasPrefix(topic, protocol.GroupTopicPrefix) {
		return false
	}
	return g.cfg.Allowed(topic, p)
}

// inspectRPC refuses an RPC that carries a message with an author, a
// sequence number, a signature or a key (StrictNoSign would drop such a
// message in validation; refusing the RPC keeps it from being parsed
// further) or too many subscriptions.
func (g *Gossip) inspectRPC(from peer.ID, rpc *pubsub.RPC) error {
	if g.inspect != nil {
		g.inspect(from, rpc)
	}
	for _, m := range rpc.GetPublish() {
		if m.From != nil || m.Seqno != nil || m.Signature != nil || m.Key != nil {
			g.met.refused("signed")
			return errors.New("gossip: message with author, sequence number or signature")
		}
	}
	if len(rpc.GetSubscriptions()) > maxSubscriptionsPerRPC {
		g.met.refused("topic_spam")
		return pubsub.ErrTooManySubscriptions
	}
	return nil
}

// subscriptionFilter tracks the subscriptions of group topics only: of
// allowed peers for the topics this node joined, and of any peer for the
// others (a member's subscription to the next epoch's topic may arrive
// before this node has processed the commit that names its members; the
// peer filter still keeps non-members out of the topic's traffic).
type subscriptionFilter struct{ g *Gossip }

func (f subscriptionFilter) CanSubscribe(topic string) bool {
	return strings.HasPrefix(topic, protocol.GroupTopicPrefix)
}

func (f subscriptionFilter) FilterIncomingSubscriptions(p peer.ID, subs []*pubsubpb.RPC_SubOpts) ([]*pubsubpb.RPC_SubOpts, error) {
	if len(subs) > maxSubscriptionsPerRPC {
		f.g.met.refused("topic_spam")
		return nil, pubsub.ErrTooManySubscriptions
	}
	out := subs[:0:0]
	spam := false
	for _, s := range subs {
		topic := s.GetTopicid()
		if !strings.HasPrefix(topic, protocol.GroupTopicPrefix) {
			continue
		}
		if s.GetSubscribe() && f.g.joined(topic) && !f.g.cfg.Allowed(topic, p) {
			f.g.met.refused("not_member")
			continue
		}
		if !f.g.trackSub(p, topic, s.GetSubscribe()) {
			spam = true
			continue
		}
		out = append(out, s)
	}
	if spam {
		f.g.met.refused("topic_spam")
	}
	return out, nil
}

// trackSub notes that p subscribed to topic (or left it), and reports
// whether the subscription may be tracked: false past
// maxSubscriptionsPerPeer.
func (g *Gossip) trackSub(p peer.ID, topic string, subscribe bool) bool {
	g.subsMu.Lock()
	defer g.subsMu.Unlock()
	topics := g.subs[p]
	if !subscribe {
		delete(topics, topic)
		if len(topics) == 0 {
			delete(g.subs, p)
		}
		return true
	}
	if _, ok := topics[topic]; ok {
		return true
	}
	if len(topics) >= maxSubscriptionsPerPeer {
		return false
	}
	if topics == nil {
		topics = map[string]struct{}{}
		g.subs[p] = topics
	}
	topics[topic] = struct{}{}
	return true
}

// subsOf returns how many topics p is tracked as subscribed to.
func (g *Gossip) subsOf(p peer.ID) int {
	g.subsMu.Lock()
	defer g.subsMu.Unlock()
	return len(g.subs[p])
}

// forgetSubs forgets p's subscriptions: it disconnected, and pubsub
// forgets them too.
func (g *Gossip) forgetSubs(p peer.ID) {
	g.subsMu.Lock()
	defer g.subsMu.Unlock()
	delete(g.subs, p)
}

func (g *Gossip) joined(topic string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.topics[topic]
	return ok
}

// Topic is a joined group topic.
type Topic struct {
	g       *Gossip
	name    string
	topic   *pubsub.Topic
	sub     *pubsub.Subscription
	check   Check
	deliver Deliver
	done    chan struct{}

	closing closer.Once
}

// Join subscribes to topic: check runs on every message before it is
// delivered or forwarded, deliver receives the messages that pass. The
// topic lives until its Close or the Gossip's.
func (g *Gossip) Join(topic string, check Check, deliver Deliver) (*Topic, error) {
	if !strings.HasPrefix(topic, protocol.GroupTopicPrefix) {
		return nil, fmt.Errorf("gossip: %q is not a group topic", topic)
	}
	if check == nil || deliver == nil {
		return nil, errors.New("gossip: Join without check or deliver")
	}
	// pubsub's calls wait for its event loop, which may be in the
	// subscription filter waiting for g.mu: hold joinMu (which serializes
	// Join and Close) across them, and g.mu only around the map.
	g.joinMu.Lock()
	defer g.joinMu.Unlock()
	g.mu.Lock()
	switch {
	case g.closed:
		g.mu.Unlock()
		return nil, ErrClosed
	case g.topics[topic] != nil:
		g.mu.Unlock()
		return nil, ErrJoined
	case len(g.topics) >= MaxTopics:
		n := len(g.topics)
		g.mu.Unlock()
		return nil, fmt.Errorf("gossip: %d topics joined, limit %d", n, MaxTopics)
	}
	g.mu.Unlock()
	t := &Topic{g: g, name: topic, check: check, deliver: deliver, done: make(chan struct{})}
	if err := g.ps.RegisterTopicValidator(topic, t.validate, pubsub.WithValidatorInline(true)); err != nil {
		return nil, fmt.Errorf("gossip: validator: %w", err)
	}
	pt, err := g.ps.Join(topic)
	if err != nil {
		_ = g.ps.UnregisterTopicValidator(topic)
		return nil, fmt.Errorf("gossip: join: %w", err)
	}
	if err := pt.SetScoreParams(topicScoreParams()); err != nil {
		_ = pt.Close()
		_ = g.ps.UnregisterTopicValidator(topic)
		return nil, fmt.Errorf("gossip: topic score: %w", err)
	}
	// From here the filter treats the topic as joined.
	g.mu.Lock()
	g.topics[topic] = t
	g.mu.Unlock()
	sub, err := pt.Subscribe(pubsub.WithBufferSize(g.opts.Queue))
	if err != nil {
		g.mu.Lock()
		delete(g.topics, topic)
		g.mu.Unlock()
		_ = pt.Close()
		_ = g.ps.UnregisterTopicValidator(topic)
		return nil, fmt.Errorf("gossip: subscribe: %w", err)
	}
	t.topic, t.sub = pt, sub
	g.mu.Lock()
	g.met.topics.Set(float64(len(g.topics)))
	g.mu.Unlock()
	g.wg.Go(t.run)
	return t, nil
}

// Name returns the topic's name.
func (t *Topic) Name() string { return t.name }

// validate is the topic's pubsub validator: it runs inline on pubsub's
// goroutine for every message, local or received, before it is delivered
// or forwarded. The decoded message goes to Deliver as the validator data.
func (t *Topic) validate(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	local := from == t.g.cfg.Host.ID()
	if !local && !t.g.cfg.Allowed(t.name, from) {
		t.g.met.dropped("not_member")
		return pubsub.ValidationIgnore
	}
	var m protocol.GroupMessage
	if err := m.Unmarshal(msg.GetData()); err != nil {
		t.g.met.dropped("malformed")
		return pubsub.ValidationReject
	}
	if m.Kind == protocol.GroupWelcome {
		t.g.met.dropped("malformed")
		return pubsub.ValidationReject
	}
	if !local {
		if err := t.check(from, &m); err != nil {
			if errors.Is(err, ErrIgnore) {
				t.g.met.dropped("ignored")
				return pubsub.ValidationIgnore
			}
			t.g.met.dropped("rejected")
			return pubsub.ValidationReject
		}
	}
	msg.ValidatorData = &m
	return pubsub.ValidationAccept
}

func (t *Topic) run() {
	defer close(t.done)
	self := t.g.cfg.Host.ID()
	for {
		msg, err := t.sub.Next(t.g.ctx)
		if err != nil {
			return
		}
		if msg.ReceivedFrom == self {
			continue
		}
		m, ok := msg.ValidatorData.(*protocol.GroupMessage)
		if !ok {
			continue
		}
		t.g.met.delivered.Inc()
		t.deliver(msg.ReceivedFrom, m, msg.GetData())
	}
}

// Publish sends data, an encoded protocol.GroupMessage, to the topic's
// members. data is copied: the caller may reuse it when Publish returns.
// Publishing the same bytes again within the seen-TTL is a no-op on the
// network (the message ID is their hash). An error means pubsub refused
// the message (closed, or it failed its own validation); delivery to each
// member is not confirmed here, but by the group's receipts and logs.
func (t *Topic) Publish(ctx context.Context, data []byte) error {
	select {
	case <-t.done:
		return ErrClosed
	default:
	}
	own := append([]byte(nil), data...)
	if err := t.topic.Publish(ctx, own); err != nil {
		if errors.Is(err, pubsub.ErrTopicClosed) || errors.Is(err, context.Canceled) {
			return ErrClosed
		}
		return fmt.Errorf("gossip: publish: %w", err)
	}
	t.g.met.published.Inc()
	return nil
}

// Peers returns the peers known to be subscribed to the topic (allowed
// ones only).
func (t *Topic) Peers() []peer.ID {
	var out []peer.ID
	for _, p := range t.topic.ListPeers() {
		if t.g.cfg.Allowed(t.name, p) {
			out = append(out, p)
		}
	}
	return out
}

// Close leaves the topic and waits for its goroutine. It is idempotent;
// a second call waits for the first.
func (t *Topic) Close() error {
	return t.closing.Do(func() error {
		t.sub.Cancel()
		<-t.done
		err := t.topic.Close()
		if uerr := t.g.ps.UnregisterTopicValidator(t.name); uerr != nil && err == nil {
			err = uerr
		}
		t.g.mu.Lock()
		if t.g.topics[t.name] == t {
			delete(t.g.topics, t.name)
		}
		t.g.met.topics.Set(float64(len(t.g.topics)))
		t.g.mu.Unlock()
		return err
	})
}

// Close leaves every topic, stops gossipsub and waits for the goroutines.
// It is idempotent; a second call waits for the first.
func (g *Gossip) Close() error {
	return g.closing.Do(func() error {
		g.joinMu.Lock()
		defer g.joinMu.Unlock()
		g.mu.Lock()
		g.closed = true
		topics := make([]*Topic, 0, len(g.topics))
		for _, t := range g.topics {
			topics = append(topics, t)
		}
		g.mu.Unlock()
		var errs []error
		for _, t := range topics {
			if err := t.Close(); err != nil && !errors.Is(err, pubsub.ErrTopicClosed) {
				errs = append(errs, err)
			}
		}
		g.cancel()
		g.wg.Wait()
		g.cfg.Host.Network().StopNotify(g.notifiee)
		g.met.Unregister()
		return errors.Join(errs...)
	})
}

// loopback are the networks spared from the IP-colocation penalty.
var loopback = []*net.IPNet{
	{IP: net.IPv4(127, 0, 0, 0), Mask: net.CIDRMask(8, 32)},
	{IP: net.IPv6loopback, Mask: net.CIDRMask(128, 128)},
}

// scoreParams are the peer-score parameters of every topic-independent
// behaviour: a peer that floods IWANT promises or shares an IP with many
// others (outside loopback) loses score; scores decay over minutes.
func scoreParams(o Options) *pubsub.PeerScoreParams {
	return &pubsub.PeerScoreParams{
		Topics:                      map[string]*pubsub.TopicScoreParams{},
		TopicScoreCap:               100,
		AppSpecificScore:            func(peer.ID) float64 { return 0 },
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    -10,
		IPColocationFactorThreshold: o.ColocationThreshold,
		IPColocationFactorWhitelist: loopback,
		BehaviourPenaltyWeight:      -10,
		BehaviourPenaltyThreshold:   6,
		BehaviourPenaltyDecay:       pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:               time.Second,
		DecayToZero:                 0.01,
		RetainScore:                 10 * time.Minute,
	}
}

// scoreThresholds: below -100 a peer gets no gossip, below -200 none of
// our publishes, below -300 its RPCs are ignored.
func scoreThresholds() *pubsub.PeerScoreThresholds {
	return &pubsub.PeerScoreThresholds{
		GossipThreshold:             -100,
		PublishThreshold:            -200,
		GraylistThreshold:           -300,
		AcceptPXThreshold:           100,
		OpportunisticGraftThreshold: 3,
	}
}

// topicScoreParams score a peer in one topic: a little for time in the
// mesh and for first deliveries, much less for each message it forwarded
// that failed validation (a malformed or non-member message). Mesh
// delivery-rate penalties are off: a small group is quiet most of the
// time, which they would punish.
func topicScoreParams() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight:                     1,
		TimeInMeshWeight:                0.01,
		TimeInMeshQuantum:               time.Second,
		TimeInMeshCap:                   300,
		FirstMessageDeliveriesWeight:    1,
		FirstMessageDeliveriesDecay:     pubsub.ScoreParameterDecay(10 * time.Minute),
		FirstMessageDeliveriesCap:       50,
		InvalidMessageDeliveriesWeight:  -100,
		InvalidMessageDeliveriesDecay:   pubsub.ScoreParameterDecay(time.Hour),
		MeshMessageDeliveriesWindow:     0,
		MeshFailurePenaltyWeight:        0,
		MeshMessageDeliveriesActivation: 0,
		SkipAtomicValidation:            true,
	}
}
