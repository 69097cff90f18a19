// Package mailbox is a personal node's client of community relays
// (/sealpost/relay/1.0.0, DESIGN.md §4): it creates the node's own
// mailboxes, registers and revokes deposit tokens, uploads card blobs,
// deposits into other people's mailboxes with custody receipts, and
// fetches and subscribes to its own mailboxes. It owns the envelope format
// both ways (envelope.go): Deposit seals each payload to the mailbox as
// the card names it (protocol.Mailbox), and the receive loop opens what
// arrives with the own mailbox's sealing key.
//
// Mailbox work never uses the device's libp2p identity: the client talks
// to each relay through lightweight hosts of its own (host.go), one key
// for the owner's operations (store.Mailbox.ClientKey) and another, made
// in memory, for deposits into other people's mailboxes, so that a relay
// cannot join the node's mailboxes to its device or to the mailboxes it
// deposits into. DESIGN.md §9.3 says why.
package mailbox
