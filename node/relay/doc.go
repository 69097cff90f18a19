// Package relay is the relay service of a community relay: it serves
// protocol.RelayProtocol (docs/PROTOCOL.md §10), holds mailboxes for
// anonymous owners in the store's relay tables, and answers each deposit,
// once durable, with a custody receipt signed by the host's key. The
// personal-node side (the client) is node/mailbox.
//
// Shape (after go-libp2p's circuit relay v2): New(Config) registers the
// stream handler; Config holds the host, the store and the other
// dependencies, and Resources (DefaultResources), plain limits, each a
// config key with its own wire code; Close removes the handler, resets the
// streams and waits for every goroutine.
//
// DESIGN.md §9.2 records the decisions: group commit through one writer,
// a receipt per envelope, quotas on what is stored now, the order of the
// deposit checks. Nothing a peer sends can panic the relay (FuzzServe); it
// never logs envelopes, tokens, keys or mailbox IDs, and its metrics have
// no per-mailbox, per-token or per-peer label.
package relay
