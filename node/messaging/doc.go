// Package messaging is a node's messaging engine: invites and contacts,
// prekeys served on /sealpost/bundle/1.0.0, PQXDH and Double Ratchet
// sessions, a durable outbox delivered over one pipelined stream per peer
// on /sealpost/msg/1.0.0, the receive path with its seen-set, receipts, and
// identity-change safety (DESIGN.md §3, §4, §6, §7).
//
// node.New constructs the Service (New) on the node's host and store and
// closes it in node.Close; the local API reaches it through
// node.Node.Messaging. Its methods are the API's operations: Invite,
// RevokeInvite, AddContact, Contacts, Contact, Verify, Accept, Remove,
// Send, Messages, Inbox, WaitState; each documents the sentinel errors of
// errors.go it returns (and errors.go the API code of each). Events go to
// Config.Publish: message.received, message.state, contact.request,
// identity.changed. Receive is the entry point for ciphertexts that arrive
// by another path (relay mailboxes, issue 5).
//
// # How it works
//
// Every change goes through one writer goroutine that commits the jobs
// waiting at that moment in one store transaction (commit.go): sends,
// received batches, acknowledgements and receipts share fsyncs, and the
// service's own transactions never conflict. Cryptographic state is
// changed only inside a job, and the job's transaction commits it together
// with what it produced.
//
// Sending: Send encrypts once and commits the ciphertext (protocol
// Ciphertext), the new session state and the message record (queued) in
// one transaction. The delivery loop of the peer's device (deliver.go)
// keeps one stream open while it has work and writes Deliver frames
// pipelined; an OK acknowledgement, which the peer sends only after it
// committed the message, deletes the outbox entry and moves the message to
// sent. A failed connection or stream, or a refusal, gives the entry a
// later attempt (exponential backoff with jitter, on the service's clock)
// and, after Options.FailAfter attempts or a refusal that will not go away
// by itself, the state failed with the reason; it is still retried until
// the user removes the contact. Retries send the same bytes, across
// restarts (the scheduler reads every entry when the service starts),
// with one exception: when the peer answers unknown_session or
// decrypt_failed it holds no session that decrypts the message (it removed
// us, or lost state), so the session is dropped here too and the message
// encrypted again, under the same ID, in another session or a new one made
// from the peer's current bundle. Whenever a connection to a device opens,
// everything waiting for it goes at once, in sequence order. Finding a
// device: the addresses from its card (or invite), then its DHT address
// record.
//
// Receiving (receive.go): a stream handler reads every frame that has
// arrived (up to Options.MaxBatch and 4 MiB), processes the batch in one
// transaction and writes the acknowledgements together. Per ciphertext:
// the seen-set (the ratchet message's hash, kept Options.SeenRetention) is
// checked before anything is decrypted, and a duplicate is acknowledged as
// OK; a message with a PQXDH initial message is matched to its session by
// the session ID (the first 16 bytes of the initial message's replay hash,
// which both sides compute), and if that session does not exist here, the
// replay hash must not be in the seen-set (it is kept for the signed
// prekey's lifetime, so a replay never creates or replaces a session);
// then the message is decrypted, and the session state, the plaintext and
// the seen-entry (and the deletion of a one-time prekey) are committed
// together before the acknowledgement. A plaintext that does not decode is
// refused with the session state left as it was. A message whose ID is
// already stored (the same message encrypted again) is acknowledged and
// not stored twice. Received receipts and cards are recorded as messages
// without a body, so that sequence numbers of every kind count: Messages
// reports Gap, the sender's sequence numbers missing before a message, and
// message.received reports the gap at arrival.
//
// # Relays
//
// With Config.Mailbox (node/mailbox) the service receives through the
// node's mailboxes on community relays and deposits into its contacts'
// (relay.go has the details). AddRelay makes a mailbox; each live invite
// and each accepted contact gets a deposit token on it (an invite's is
// derived from its secret, protocol.InviteToken, and the relay keeps the
// invite's encrypted card blob under it); the card a contact gets lists
// the mailboxes with that contact's tokens and each mailbox's prekey key
// K_pk (card version 2). Invite lists up to three relays; AddContact
// fetches the card blob from them (and uses its bundle when the device is
// offline, with a one-time prekey from the relay if one is left, else on
// the last-resort KEM key). Under each accepted contact's token the relay
// keeps the current bundle, encrypted under K_pk (mailbox.SealBundle,
// uploaded again after each signed-prekey rotation), so a contact that
// must start a new session (establish: Send, AddContact, or a peer that
// lost its session) while this device is offline starts it from there,
// with a one-time prekey from the same relay. A delivery loop whose direct connection
// fails within Options.RelayAfter deposits what it holds, in sequence
// order, sealed per mailbox, on every relay the contact lists: a custody
// receipt makes a message sent; it stays in the outbox until its delivery
// receipt and is deposited again when a receipt's stored-until passes.
// What arrives from a relay goes through Receive (seen-set first) and is
// deleted on the relay only after the commit; a relayed message refused
// for good (it does not decode or decrypt) is deleted too. The sealed
// sender's identity and device are claims that only the session which
// decrypts the payload confirms (sessions are looked up by them).
//
// A relayed message that can never be decrypted. On a direct stream the
// sender learns from the Ack (unknown_session, decrypt_failed) that the
// peer lost the session, and encrypts again; through a relay no answer
// goes back. Decision: nothing new on the wire, and two rules. First, the
// recipient: a relayed message that decrypts in no session and claims an
// accepted contact's identity and device makes this node start a new
// session with that contact (from its device, or from its bundle blob on
// its relays while it is offline) and send its card in it, at most once
// per Options.RenewEvery per contact (renewSession). Second, the sender:
// when a new session started by the peer replaces a session the sender
// had confirmed (or another one the peer had started), the peer has lost
// that session, so every outbox entry for the peer encrypted in another
// session is encrypted again, under the same message ID, in the new one
// (requeueLost; the peer drops copies by ID); a delivery loop that still
// held the old bytes gives the entry back due at once. The new session is
// authenticated like any other, so a forged claim can make a node start
// sessions only at that rate, and the sender re-encrypts only for a
// session that decrypted. What this cannot fix (a first message whose
// prekeys the recipient lost, and both sides then keep the session of the
// lower user ID; or a recipient that removed the sender) the backstop
// shows: an entry deposited again Options.FailAfterRedeposits times (each
// time a relay's receipt ran out before the delivery receipt came) is
// shown failed, with the reason ("no delivery receipt after N deposits on
// the recipient's relays"), and is still deposited again until delivered
// (then delivered) or removed, as DESIGN.md §4 asks.
//
// # Sessions
//
// One session per peer device is active (the contact's Session); up to
// Options.KeptSessions are kept, so late messages in older ones still
// decrypt. An initiator attaches the initial message (and, if it used an
// invite, the invite secret) to its messages until the session is
// confirmed: for the initiator, when a message from the peer decrypted in
// it; for the responder, when a message arrives in it without the initial
// message. The session in which a message just decrypted becomes active,
// except (prefer in session.go) that of two sessions started one by each
// side, both keep the one started by the lower user ID, so simultaneous
// initiation converges at once; a new session from the peer replaces one
// the peer had already confirmed (the peer lost it). If the peer lost the
// session kept by that rule, its refusal makes the sender re-encrypt, as
// above.
//
// # Contacts, invites and requests
//
// Invite stores a new 16-byte secret with the pinned bundle's expiry: an
// invite is valid until the signed prekey it pins is prekey.MaxAge old,
// that is between 23 and 30 days with weekly rotation; RevokeInvite
// deletes the secret. AddContact fetches the pinned bundle from the
// inviter's device, checks its hash against the pin and its identity and
// device against the link, starts a session and makes the contact
// (accepted, not verified). A first message that presents a valid invite
// secret of ours makes an accepted contact named after the card's display
// name (made unique: "alice", "alice-2"); without one it makes a contact in
// state request (event contact.request), whose messages are stored and
// shown (Request) but get no receipts until Accept, which then sends the
// receipts held back. Remove deletes a contact and its sessions; its
// history stays (and shows again if the same identity is added again);
// messages still queued for it are marked failed.
//
// Cards: the own card (identity, device record, display name, up to 8
// addresses) is attached to messages while the session is not confirmed,
// and sent as a card message to every accepted contact when it changes
// (for example the addresses). A card is taken only from the session of
// its identity and device, and only if its sequence number is higher than
// the last one's; a device record is replaced only by an update of the
// same identity (identity.CheckUpdate). v1 keeps one device per identity.
//
// # Identity changes
//
// A contact is pinned to its identity key. AddContact with a name or a
// device that is a contact's under another key, or a first message from a
// contact's device under another key, marks the contact (IdentityChanged,
// with the new identity and what it presented) and publishes
// identity.changed; the message is refused with untrusted_identity and
// stays with its sender, who retries. Until Verify accepts the new key,
// Send and Accept return ErrUntrustedIdentity (exit code 4). Verify pins
// the contact to the new key: it keeps its name, state and history (moved
// to the new user ID), its sessions with the old key go, and messages
// still queued for the old key are marked failed. A device record with a
// higher sequence number signed by the same identity is an update.
//
// # Bad input
//
// Frames are read with the protocol's limit checked before allocation;
// every decoded message is validated. A frame that does not decode, has
// another version, is over the limit or names another device is answered
// with its code, the stream is reset (after a half-close, so the peer
// reads the code) and the peer is refused for Options.Penalty, doubling
// with each offence. Frames beyond the peer's token bucket
// (Options.PeerRate, PeerBurst) are answered rate_limited and end the
// stream the same way. A peer may hold 4 message streams at once, the node
// 512. First messages that start a session (a KEM decapsulation and
// several DH and signature checks each) have a bucket per device
// (Options.SessionRate). Bundle requests have their own bucket, which also
// bounds how fast a peer can take one-time prekeys (and at most
// prekeys.Policy.MaxHandedOut are out at once; then bundles go without
// one). Nothing a peer sends can make the service panic, and no message is
// acknowledged before it is committed.
//
// Times: backoff, prekey rotation, expiry and rate limits use
// Config.Clock (tests inject one); network deadlines use the system clock.
// Logs carry peer and message IDs and error codes, never plaintext, keys
// or whole ciphertexts.
package messaging
