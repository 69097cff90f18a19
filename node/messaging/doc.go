// Package messaging is a node's messaging engine: invites and contacts,
// PQXDH and Double Ratchet sessions, a durable outbox delivered over one
// pipelined stream per peer device (/sealpost/msg/1.0.0) or through the
// contact's relay mailboxes, the receive path with its seen-set, receipts,
// and identity-change safety. docs/PROTOCOL.md §9 is the wire; DESIGN.md
// §9.1 records why the engine works as it does.
//
// node.New builds the Service (New) on the node's host and store and
// closes it; the local API reaches it through node.Node.Messaging. Its
// methods are the API's operations (Invite, AddContact, Send, Messages,
// Conversations, MarkRead, Inbox, WaitState, Verify, Accept, AddRelay,
// ...); each documents the
// sentinel errors of errors.go it returns, and errors.go gives each its API
// code. Events go to Config.Publish: message.received, message.state,
// contact.request, identity.changed. Receive takes ciphertexts that
// arrive by another path than a stream (relay mailboxes).
//
// # Guarantees
//
//   - A message is encrypted once: its Ciphertext, the new session state
//     and the message record commit in one transaction, and every retry
//     sends the same bytes (unless the peer lost the session; then it is
//     encrypted again under the same ID).
//   - Nothing is acknowledged before it is committed, and the seen-set is
//     checked before anything is decrypted, so a message that arrives
//     directly and through relays is stored once.
//   - Cryptographic state changes only inside a job of the one writer
//     goroutine, committed with what it produced.
//   - A contact is pinned to its identity key: until Verify accepts a new
//     one, Send and Accept return ErrUntrustedIdentity.
//   - Nothing a peer sends can make the service panic; frames are bounded
//     before allocation and misbehaving peers are reset and penalised.
//
// # Time and logs
//
// Backoff, prekey rotation, expiry and rate limits use Config.Clock;
// network deadlines use the system clock. Logs carry peer and message IDs
// and error codes, never plaintext, keys or whole ciphertexts.
package messaging
