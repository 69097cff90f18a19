package home

import (
	"fmt"
	"time"

	"github.com/sealpost/sealpost/node/blobrelay"
	"github.com/sealpost/sealpost/node/relay"
)

// RelayConfig is the [relay] section of config.toml: the limits of the
// relay service (node/relay.Resources), each answered with its own wire
// code when reached (docs/OPERATING.md). Durations are Go durations
// ("336h", "90s"). 'sealpost init --profile relay' writes the defaults; a
// key left out keeps its default.
type RelayConfig struct {
	MaxEnvelopeBytes       int     `toml:"max_envelope_bytes" comment:"Largest envelope accepted, in bytes (512 to 65536). Over it: envelope_too_large."`
	MailboxMaxEnvelopes    uint64  `toml:"mailbox_max_envelopes" comment:"Envelopes one mailbox may hold at once (unacknowledged, unexpired). Over it: mailbox_quota."`
	MailboxMaxBytes        uint64  `toml:"mailbox_max_bytes" comment:"Bytes one mailbox may hold at once. Over it: mailbox_quota."`
	TokenMaxEnvelopes      uint64  `toml:"token_max_envelopes" comment:"Envelopes stored at once under one deposit token (one per contact or invite);\nan owner may register a token with less. Over it: token_quota."`
	TokenMaxBytes          uint64  `toml:"token_max_bytes" comment:"Bytes stored at once under one deposit token. Over it: token_quota."`
	MaxTokensPerMailbox    uint64  `toml:"max_tokens_per_mailbox" comment:"Deposit tokens one mailbox may register. Over it: mailbox_quota."`
	MaxPrekeysPerMailbox   uint64  `toml:"max_prekeys_per_mailbox" comment:"One-time prekey blobs held for one mailbox. Over it: mailbox_quota."`
	MaxPrekeyTTL           string  `toml:"max_prekey_ttl" comment:"Longest time a prekey batch is handed out; a later expiry is cut to it."`
	StoreMaxBytes          uint64  `toml:"store_max_bytes" comment:"Everything the relay stores (envelopes, card and prekey blobs), in bytes.\nOver it: store_full."`
	TTL                    string  `toml:"ttl" comment:"How long an envelope is kept unless its owner acknowledges it first: the\nstored-until of its custody receipt."`
	SweepInterval          string  `toml:"sweep_interval" comment:"How often expired envelopes and prekey batches are removed."`
	DepositRate            float64 `toml:"deposit_rate" comment:"Deposits per second one connection may make, on average. Over it: rate_limited."`
	DepositBurst           int     `toml:"deposit_burst" comment:"Deposits one connection may make at once, above the rate."`
	MailboxesPerConnection int     `toml:"mailboxes_per_connection" comment:"Mailboxes one connection may create. Over it: too_many_mailboxes."`
	PeerMaxMailboxes       uint64  `toml:"peer_max_mailboxes" comment:"Mailboxes one peer may have made that still exist. Over it: too_many_mailboxes."`
	PeerMaxBytes           uint64  `toml:"peer_max_bytes" comment:"Bytes of envelopes, cards and prekeys the mailboxes one peer made may hold\ntogether. Over it: mailbox_quota."`
	SubnetMaxMailboxes     uint64  `toml:"subnet_max_mailboxes" comment:"Mailboxes the peers of one address range may have made that still exist.\nOver it: too_many_mailboxes."`
	SubnetMaxBytes         uint64  `toml:"subnet_max_bytes" comment:"Bytes of envelopes, cards and prekeys the mailboxes made from one address\nrange may hold together. Over it: mailbox_quota."`
	SubnetV4Bits           int     `toml:"subnet_v4_bits" comment:"Prefix length of an IPv4 address range (8 to 32)."`
	SubnetV6Bits           int     `toml:"subnet_v6_bits" comment:"Prefix length of an IPv6 address range (16 to 128)."`
	SubnetLoopback         bool    `toml:"subnet_loopback" comment:"Count clients on loopback addresses in an address range too (leave it off\nbehind a local proxy or onion service, where every client has one address)."`
	TokenRate              float64 `toml:"token_rate" comment:"Card and prekey requests per second per deposit token. Over it: rate_limited."`
	TokenBurst             int     `toml:"token_burst" comment:"Card and prekey requests one token may make at once, above the rate."`
	ChallengeTTL           string  `toml:"challenge_ttl" comment:"How long an owner's challenge stays valid. After it: expired_challenge."`
	StreamIdle             string  `toml:"stream_idle" comment:"A relay stream without a subscription that is quiet this long is reset."`
	MaxStreams             int     `toml:"max_streams" comment:"Relay streams open at once, of all clients (a subscribed user keeps one or two).\nOver it: new streams are reset. Raise it together with [connections] for more users."`

	BlobMailboxMaxBytes uint64 `toml:"blob_mailbox_max_bytes" comment:"Attachment blobs one mailbox may hold at once, in bytes (each upload counts\nits blob's size, even when the blob is stored once for several). Over it:\nmailbox_quota."`
	BlobMailboxMaxCount uint64 `toml:"blob_mailbox_max_count" comment:"Attachment blobs one mailbox may hold at once. Over it: mailbox_quota."`
	BlobPeerMaxBytes    uint64 `toml:"blob_peer_max_bytes" comment:"Attachment blob bytes the mailboxes one peer made may hold together. Over it:\nmailbox_quota."`
	BlobSubnetMaxBytes  uint64 `toml:"blob_subnet_max_bytes" comment:"Attachment blob bytes the mailboxes made from one address range may hold\ntogether. Over it: mailbox_quota."`
	BlobLogMaxBytes     uint64 `toml:"blob_log_max_bytes" comment:"Attachment blobs one group log may hold at once, in bytes (the files sent to\na group, uploaded once for all its members). Over it: quota_exceeded."`
	BlobLogMaxCount     uint64 `toml:"blob_log_max_count" comment:"Attachment blobs one group log may hold at once. Over it: quota_exceeded."`
	BlobStoreMaxBytes   uint64 `toml:"blob_store_max_bytes" comment:"All attachment blobs the relay keeps (HOME/blobs, each blob once), in bytes.\nOver it: store_full."`
	BlobMinFreeDisk     uint64 `toml:"blob_min_free_disk" comment:"Free bytes the disk of HOME/blobs keeps: an upload that would leave less is\nrefused with store_full before anything is written."`
}

// DefaultRelayConfig returns relay.DefaultResources as a [relay] section.
func DefaultRelayConfig() RelayConfig {
	c := RelayConfigOf(relay.DefaultResources())
	c.setBlobs(blobrelay.DefaultResources())
	return c
}

// RelayConfigOf returns r as a [relay] section.
func RelayConfigOf(r relay.Resources) RelayConfig {
	return RelayConfig{
		MaxEnvelopeBytes:       r.MaxEnvelope,
		MailboxMaxEnvelopes:    r.MailboxMaxCount,
		MailboxMaxBytes:        r.MailboxMaxBytes,
		TokenMaxEnvelopes:      r.TokenMaxCount,
		TokenMaxBytes:          r.TokenMaxBytes,
		MaxTokensPerMailbox:    r.MaxTokens,
		MaxPrekeysPerMailbox:   r.MaxPrekeys,
		MaxPrekeyTTL:           r.MaxPrekeyTTL.String(),
		StoreMaxBytes:          r.StoreMaxBytes,
		TTL:                    r.TTL.String(),
		SweepInterval:          r.SweepInterval.String(),
		DepositRate:            r.DepositRate,
		DepositBurst:           r.DepositBurst,
		MailboxesPerConnection: r.MailboxesPerConn,
		PeerMaxMailboxes:       r.PeerMaxMailboxes,
		PeerMaxBytes:           r.PeerMaxBytes,
		SubnetMaxMailboxes:     r.SubnetMaxMailboxes,
		SubnetMaxBytes:         r.SubnetMaxBytes,
		SubnetV4Bits:           r.SubnetV4Bits,
		SubnetV6Bits:           r.SubnetV6Bits,
		SubnetLoopback:         r.SubnetLoopback,
		TokenRate:              r.TokenRate,
		TokenBurst:             r.TokenBurst,
		ChallengeTTL:           r.ChallengeTTL.String(),
		StreamIdle:             r.StreamIdle.String(),
		MaxStreams:             r.MaxStreams,
	}
}

// setBlobs sets the blob keys of c from b.
func (c *RelayConfig) setBlobs(b blobrelay.Resources) {
	c.BlobMailboxMaxBytes, c.BlobMailboxMaxCount = b.MailboxMaxBytes, b.MailboxMaxCount
	c.BlobPeerMaxBytes, c.BlobSubnetMaxBytes = b.PeerMaxBytes, b.SubnetMaxBytes
	c.BlobLogMaxBytes, c.BlobLogMaxCount = b.LogMaxBytes, b.LogMaxCount
	c.BlobStoreMaxBytes, c.BlobMinFreeDisk = b.StoreMaxBytes, b.MinFreeDisk
}

// BlobResources returns the limits of the relay's attachment blob service:
// blobrelay.DefaultResources with the relay's TTL and the blob keys that
// are set.
func (c RelayConfig) BlobResources() (blobrelay.Resources, error) {
	b := blobrelay.DefaultResources()
	r, err := c.Resources()
	if err != nil {
		return b, err
	}
	b.TTL = r.TTL
	setNonZero(&b.MailboxMaxBytes, c.BlobMailboxMaxBytes)
	setNonZero(&b.MailboxMaxCount, c.BlobMailboxMaxCount)
	setNonZero(&b.PeerMaxBytes, c.BlobPeerMaxBytes)
	setNonZero(&b.SubnetMaxBytes, c.BlobSubnetMaxBytes)
	setNonZero(&b.LogMaxBytes, c.BlobLogMaxBytes)
	setNonZero(&b.LogMaxCount, c.BlobLogMaxCount)
	setNonZero(&b.StoreMaxBytes, c.BlobStoreMaxBytes)
	setNonZero(&b.MinFreeDisk, c.BlobMinFreeDisk)
	if err := b.Validate(); err != nil {
		return b, fmt.Errorf("home: [relay]: %w", err)
	}
	return b, nil
}

// Resources returns the relay's limits: relay.DefaultResources with the
// keys that are set (non-zero) replaced, checked by Resources.Validate.
func (c RelayConfig) Resources() (relay.Resources, error) {
	r := relay.DefaultResources()
	var err error
	setD := func(dst *time.Duration, v, key string) {
		if v == "" || err != nil {
			return
		}
		d, perr := time.ParseDuration(v)
		if perr != nil {
			err = fmt.Errorf("home: [relay] %s: %w", key, perr)
			return
		}
		*dst = d
	}
	setNonZero(&r.MaxEnvelope, c.MaxEnvelopeBytes)
	setNonZero(&r.MailboxMaxCount, c.MailboxMaxEnvelopes)
	setNonZero(&r.MailboxMaxBytes, c.MailboxMaxBytes)
	setNonZero(&r.TokenMaxCount, c.TokenMaxEnvelopes)
	setNonZero(&r.TokenMaxBytes, c.TokenMaxBytes)
	setNonZero(&r.MaxTokens, c.MaxTokensPerMailbox)
	setNonZero(&r.MaxPrekeys, c.MaxPrekeysPerMailbox)
	setD(&r.MaxPrekeyTTL, c.MaxPrekeyTTL, "max_prekey_ttl")
	setNonZero(&r.StoreMaxBytes, c.StoreMaxBytes)
	setD(&r.TTL, c.TTL, "ttl")
	setD(&r.SweepInterval, c.SweepInterval, "sweep_interval")
	setNonZero(&r.DepositRate, c.DepositRate)
	setNonZero(&r.DepositBurst, c.DepositBurst)
	setNonZero(&r.MailboxesPerConn, c.MailboxesPerConnection)
	setNonZero(&r.PeerMaxMailboxes, c.PeerMaxMailboxes)
	setNonZero(&r.PeerMaxBytes, c.PeerMaxBytes)
	setNonZero(&r.SubnetMaxMailboxes, c.SubnetMaxMailboxes)
	setNonZero(&r.SubnetMaxBytes, c.SubnetMaxBytes)
	setNonZero(&r.SubnetV4Bits, c.SubnetV4Bits)
	setNonZero(&r.SubnetV6Bits, c.SubnetV6Bits)
	setNonZero(&r.SubnetLoopback, c.SubnetLoopback)
	setNonZero(&r.TokenRate, c.TokenRate)
	setNonZero(&r.TokenBurst, c.TokenBurst)
	setD(&r.ChallengeTTL, c.ChallengeTTL, "challenge_ttl")
	setD(&r.StreamIdle, c.StreamIdle, "stream_idle")
	setNonZero(&r.MaxStreams, c.MaxStreams)
	if err != nil {
		return r, err
	}
	if err := r.Validate(); err != nil {
		return r, fmt.Errorf("home: [relay]: %w", err)
	}
	return r, nil
}

// setNonZero sets *dst to v unless v is zero: a key of config.toml left out
// (or zero) keeps the default.
func setNonZero[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}
