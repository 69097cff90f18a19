// Package relay is the relay service of a community relay: it serves
// protocol.RelayProtocol (docs/PROTOCOL.md §10), holds mailboxes for
// anonymous owners in the store's relay tables, and answers each deposit,
// once durable, with a custody receipt signed by the host's key. The
// personal-node side (the client) is node/mailbox.
//
// Shape (after go-libp2p's circuit relay v2): New(host, store, Resources,
// Options) registers the stream handler; Resources (DefaultResources) are
// plain limits, each a config key with its own wire code; Close removes
// the handler, resets the streams and waits for every goroutine.
//
// # Decisions
//
// Streams. Each stream starts with a challenge from the relay. The
// handler sets a read deadline (Resources.StreamIdle; none while the
// stream carries a subscription, whose owner may stay quiet for hours:
// libp2p's keepalive finds dead connections), reads frames with a bounded
// protocol.FrameReader, and on a frame that does not decode answers
// {id 0, code} and resets the stream; the peer is then refused for
// Resources.Penalty, doubled per repeat. Nothing a peer sends can panic
// the relay (FuzzServe).
//
// Group commit. Every write goes through one writer goroutine that
// commits whatever jobs are waiting in one store transaction (up to
// MaxBatch deposits of 1 KiB, fewer of larger ones): one fsync for a batch
// of deposits from any number of streams, and no transaction conflicts on
// the records every deposit changes (the mailbox's counts, the token's,
// the totals). A stream may have MaxPending deposits waiting; its writer
// goroutine answers them in order as their batch becomes durable.
//
// Receipts are signed per envelope, not per batch: Ed25519 signing costs
// about 15 µs on this machine, and each stream's writer goroutine signs
// its own receipts in parallel, outside the store writer, so signing does
// not bound ingest (relay_ingest measures the whole path, receipts
// included). A per-batch signature would need each sender to receive and
// keep the whole batch's list (or a Merkle path) to check its receipt;
// per-envelope receipts stay verifiable alone, which is what a sender
// keeps and what a dispute would show.
//
// Quotas are on what is stored now, not on traffic: a mailbox's and a
// token's count and bytes fall when the owner acknowledges or the TTL
// removes envelopes. The counts live in records next to the data and
// change in the same transaction, so a check reads three records and
// never scans. Deposit checks run in the order mailbox, token, mailbox
// quota, token quota, store quota, so a depositor without a valid token
// learns only whether the mailbox exists.
//
// Time. TTLs, challenges, rate limits and the sweep use the injected
// Clock; expired envelopes are not served and are removed by the sweep
// every SweepInterval; the store's badger runs value-log GC after many
// deletions. Stream deadlines use the system clock, as libp2p does.
//
// Privacy. The relay sees mailbox IDs, padded envelope sizes, token
// hashes, timing and the per-relay peer IDs and addresses of its clients;
// it never logs envelopes, tokens, keys or mailbox IDs, and its metrics
// have no per-mailbox, per-token or per-peer label.
package relay
