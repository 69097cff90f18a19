// Package mailbox is a personal node's client of community relays
// (/sealpost/relay/1.0.0, DESIGN.md §4): it creates the node's own
// mailboxes, registers and revokes deposit tokens, uploads card blobs,
// deposits sealed envelopes into other people's mailboxes with custody
// receipts, and fetches and subscribes to its own mailboxes.
//
// Mailbox work never uses the device's libp2p identity: for each relay the
// client runs a lightweight host of its own (host.go: dial only, no
// listening, no DHT, no relay, small resource limits) under a key used
// towards that relay alone: the client key kept with the node's mailbox
// there (store.Mailbox.ClientKey), or, for a relay where the node only
// deposits, a key made when the client first talks to it and kept in
// memory. So a relay cannot join a mailbox or a deposit to a device
// record, nor mailboxes on two relays to each other by key.
package mailbox
