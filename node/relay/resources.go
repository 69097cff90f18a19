package relay

import (
	"fmt"
	"time"

	"github.com/sealpost/sealpost/protocol"
)

// Resources are the relay's limits. Each is a key of the [relay] section of
// config.toml (node/home) and is answered, when reached, with its own wire
// code (docs/OPERATING.md lists them). Start from DefaultResources; New
// refuses zero or inconsistent values.
type Resources struct {
	// MaxEnvelope bounds one envelope, in bytes: at most
	// protocol.MaxEnvelope (64 KiB, crypto/seal's largest bucket); a relay
	// may take less. Over it: envelope_too_large.
	MaxEnvelope int
	// MailboxMaxCount and MailboxMaxBytes bound what one mailbox holds at
	// once (envelopes not yet acknowledged or expired). Over it:
	// mailbox_quota.
	MailboxMaxCount uint64
	MailboxMaxBytes uint64
	// TokenMaxCount and TokenMaxBytes bound what one deposit token may have
	// stored at once, and are the quota of a token registered without one;
	// an owner may ask for less, never more. Over it: token_quota.
	TokenMaxCount uint64
	TokenMaxBytes uint64
	// MaxTokens bounds the tokens registered for one mailbox (each may hold
	// a card blob of up to protocol.MaxCardBlob). Over it: mailbox_quota.
	MaxTokens uint64
	// MaxPrekeys bounds the one-time prekey blobs held for one mailbox.
	// Over it: mailbox_quota.
	MaxPrekeys uint64
	// MaxPrekeyTTL bounds how long a prekey batch is handed out: a later
	// expiry asked for is cut to it (the owner learns the expiry granted).
	MaxPrekeyTTL time.Duration
	// StoreMaxBytes bounds everything the relay stores (envelopes and
	// blobs). Over it: store_full.
	StoreMaxBytes uint64
	// TTL is how long an envelope is kept if its owner does not fetch and
	// acknowledge it: the stored-until of its custody receipt. At most
	// protocol.MaxCustody (senders take a longer promise for a relay
	// breaking the protocol).
	TTL time.Duration
	// SweepInterval is how often expired envelopes and prekey batches are
	// removed (on the relay's clock).
	SweepInterval time.Duration
	// DepositRate and DepositBurst are the token bucket of deposits per
	// connection (deposits per second, and the bucket's size). Over it:
	// rate_limited.
	DepositRate  float64
	DepositBurst int
	// MailboxesPerConn bounds the mailboxes one connection may create.
	// Over it: too_many_mailboxes.
	MailboxesPerConn int
	// PeerMaxMailboxes and PeerMaxBytes bound the mailboxes one peer has
	// created (those that still exist) and the bytes of envelopes, card
	// and prekey blobs they hold together; SubnetMaxMailboxes and SubnetMaxBytes bound the same
	// for all the peers of one address range. A mailbox counts against the
	// quotas of the peer and the range it was created from for as long as
	// it exists, so that one client, whatever peer IDs it makes up, cannot
	// fill the relay (store_full) for everybody. Over a count: the create
	// is refused with too_many_mailboxes; over bytes: a deposit, card or
	// prekey batch for any of those mailboxes is refused with
	// mailbox_quota.
	PeerMaxMailboxes   uint64
	PeerMaxBytes       uint64
	SubnetMaxMailboxes uint64
	SubnetMaxBytes     uint64
	// SubnetV4Bits and SubnetV6Bits are the prefix lengths of an address
	// range: an IPv4 address counts in its /24, an IPv6 address in its
	// /56 (a customer's allocation), by default.
	SubnetV4Bits int
	SubnetV6Bits int
	// SubnetLoopback counts clients on loopback addresses in ranges too.
	// Off by default: a relay behind a local proxy or onion service sees
	// every client there on one loopback address, and would make them all
	// share one quota (each still has its peer's).
	SubnetLoopback bool
	// TokenRate and TokenBurst are the token bucket of card and prekey
	// requests per deposit token. Over it: rate_limited.
	TokenRate  float64
	TokenBurst int
	// ChallengeTTL is how long a challenge is accepted after it was issued.
	// After it: expired_challenge.
	ChallengeTTL time.Duration
	// StreamIdle is the read deadline of a stream that has no subscription:
	// a stream quiet for this long is reset.
	StreamIdle time.Duration
	// WriteTimeout bounds each write to a stream.
	WriteTimeout time.Duration
	// MaxStreamsPerPeer bounds the relay streams one peer has open at once;
	// MaxStreams those of all peers.
	MaxStreamsPerPeer int
	MaxStreams        int
	// MaxPending bounds the deposits of one stream waiting for their
	// commit; the relay stops reading the stream while it is full.
	MaxPending int
	// MaxSubscriptions bounds the subscriptions of one stream.
	MaxSubscriptions int
	// MaxBatch bounds the deposits (and other writes) committed in one
	// store transaction (group commit).
	MaxBatch int
	// FetchLimit is the envelopes a fetch returns when it does not say.
	FetchLimit int
	// Penalty is how long a peer that sent a malformed frame is refused
	// (doubled for each repeat, up to 64 times).
	Penalty time.Duration
}

// DefaultResources are the limits of a community relay on a small server:
// a 16 GiB store; 14 days of custody; a mailbox holds up to 10 000
// envelopes or 256 MiB, a token up to 1000 envelopes or 64 MiB (so one
// contact cannot fill a mailbox, and several of them flooding still
// leaves room); deposits at 200 a second per connection with bursts of
// 1000, enough for a node flushing a backlog.
func DefaultResources() Resources {
	return Resources{
		MaxEnvelope:      protocol.MaxEnvelope,
		MailboxMaxCount:  10000,
		MailboxMaxBytes:  256 << 20,
		TokenMaxCount:    1000,
		TokenMaxBytes:    64 << 20,
		MaxTokens:        1000,
		MaxPrekeys:       200,
		MaxPrekeyTTL:     30 * 24 * time.Hour,
		StoreMaxBytes:    16 << 30,
		TTL:              14 * 24 * time.Hour,
		SweepInterval:    time.Minute,
		DepositRate:      200,
		DepositBurst:     1000,
		MailboxesPerConn: 8,
		// A device makes one mailbox per relay it uses, each with a
		// peer of its own; an address range (a household, an office
		// behind one NAT) may hold an eighth of the store.
		PeerMaxMailboxes:   8,
		PeerMaxBytes:       1 << 30,
		SubnetMaxMailboxes: 1024,
		SubnetMaxBytes:     2 << 30,
		SubnetV4Bits:       24,
		SubnetV6Bits:       56,
		TokenRate:          1,
		TokenBurst:         10,
		ChallengeTTL:       2 * time.Minute,
		StreamIdle:         2 * time.Minute,
		WriteTimeout:       30 * time.Second,
		MaxStreamsPerPeer:  16,
		MaxStreams:         8192,
		MaxPending:         256,
		MaxSubscriptions:   protocol.MaxMailboxes * 4,
		MaxBatch:           512,
		FetchLimit:         256,
		Penalty:            10 * time.Second,
	}
}

// Validate reports the first limit that is zero, negative or inconsistent.
func (r Resources) Validate() error {
	bad := func(name string) error { return fmt.Errorf("relay: resources: %s out of range", name) }
	switch {
	case r.MaxEnvelope < 512 || r.MaxEnvelope > protocol.MaxEnvelope:
		return bad("max_envelope (512 to 65536 bytes)")
	case r.MailboxMaxCount == 0, r.MailboxMaxBytes < uint64(r.MaxEnvelope):
		return bad("mailbox quota")
	case r.TokenMaxCount == 0, r.TokenMaxBytes < uint64(r.MaxEnvelope):
		return bad("token quota")
	case r.MaxTokens == 0:
		return bad("max_tokens")
	case r.MaxPrekeys == 0:
		return bad("max_prekeys")
	case r.MaxPrekeyTTL <= 0:
		return bad("max_prekey_ttl")
	case r.StoreMaxBytes < uint64(r.MaxEnvelope):
		return bad("store_max_bytes")
	case r.TTL < time.Minute || r.TTL > protocol.MaxCustody:
		return bad("ttl (a minute to 14 days)")
	case r.SweepInterval <= 0:
		return bad("sweep_interval")
	case r.DepositRate <= 0 || r.DepositBurst < 1:
		return bad("deposit rate")
	case r.MailboxesPerConn < 1:
		return bad("mailboxes_per_connection")
	case r.PeerMaxMailboxes == 0, r.PeerMaxBytes < uint64(r.MaxEnvelope):
		return bad("peer quota")
	case r.SubnetMaxMailboxes == 0, r.SubnetMaxBytes < uint64(r.MaxEnvelope):
		return bad("subnet quota")
	case r.SubnetV4Bits < 8 || r.SubnetV4Bits > 32, r.SubnetV6Bits < 16 || r.SubnetV6Bits > 128:
		return bad("subnet bits (IPv4 8 to 32, IPv6 16 to 128)")
	case r.TokenRate <= 0 || r.TokenBurst < 1:
		return bad("token rate")
	case r.ChallengeTTL <= 0, r.StreamIdle <= 0, r.WriteTimeout <= 0:
		return bad("timeouts")
	case r.MaxStreamsPerPeer < 1, r.MaxStreams < 1, r.MaxPending < 1, r.MaxSubscriptions < 1:
		return bad("stream limits")
	case r.MaxBatch < 1 || r.MaxBatch > 4096:
		return bad("max_batch (1 to 4096)")
	case r.FetchLimit < 1 || r.FetchLimit > protocol.MaxFetchLimit:
		return bad("fetch_limit")
	case r.Penalty < 0:
		return bad("penalty")
	}
	return nil
}
