// Package protocol defines sealpost's wire formats: the stream protocol IDs,
// framing, the messages of direct delivery, bundle fetch, the relay and
// attachment blobs, the typed plaintext, contact card and attachment
// pointer that travel inside the Double Ratchet, invite links, size limits,
// validation, and the table from error sentinels to wire error codes.
// docs/PROTOCOL.md §9–11 is the byte-level specification; this package is
// its reference implementation.
//
// # Byte layout
//
// Every message is a protobuf message (proto3, the .proto files in
// internal/pb) in its one canonical encoding: fields in field-number order,
// each at most once, default values (zero, empty) left out, minimal varints,
// no unknown fields. Field 1 of every top-level message is its version; this
// package speaks version 1 (Version) of every message, and versions 1 and 2
// of the Card (CardVersion: version 2 adds the mailbox's prekey key, and a
// card is encoded at the lowest version that holds it). Sub-records
// (Mailbox in a Card, InviteRelay in an Invite) are versioned by the record
// that holds them.
// Byte strings that crypto/ defines (public identities, device records,
// bundles, PQXDH initial messages, ratchet messages) are carried as opaque
// bytes and never re-encoded; peer IDs and multiaddrs are carried as their
// binary forms. Times are Unix milliseconds, unsigned varints.
//
// On a stream, each message is a frame:
//
//	frame = uvarint(len(message)) || message      1 <= len <= the protocol's limit
//
// Ciphertext (the outbox's unit) = {1 version, 2 prekey, 3 ratchet}.
// Deliver = {1 version, 2 id, 3 identity, 4 device, 5 ciphertext (an encoded
// Ciphertext)}; Ack = {1 version, 2 id, 3 code}. Plaintext = {1 version, 2 id,
// 3 seq, 4 sent_at, 5 kind, 6 text, 7 covers, 8 payload, 9 card, 10
// invite_secret}. Card = {1 version, 2 identity, 3 device, 4 name, 5 addrs,
// 6 mailboxes, 7 updated_at, 8 seq}, Mailbox = {1 relay, 2 relay_addrs, 3
// id, 4 sealing_key, 5 token, 6 prekey_key (card version 2)}. BundleRequest = {1 version, 2 pin};
// BundleResponse = {1 version, 2 code, 3 bundle}. An invite link is
// "sealpost://" || base64url-without-padding(Invite), Invite = {1 version,
// 2 identity, 3 device_key | 4 device_id, 5 addrs, 6 bundle_pin, 7 secret,
// 8 name, 9 relays}. RelayRequest = {1 version, 2 id, 3 op, 4 mailbox,
// 5 owner_key, 6 sealing_key, 7 token, 8 token_hash, 9 count, 10 bytes,
// 11 after, 12 limit, 13 seqs, 14 envelope, 15 blob, 16 blobs, 17
// expires_at, 18 challenge, 19 signature}; RelayResponse = {1 version, 2 id,
// 3 op, 4 code, 5 challenge, 6 mailbox, 7 seq, 8 envelope, 9 stored_until,
// 10 signature, 11 count, 12 bytes, 13 prekeys, 14 more, 15 blob}; the op
// decides which fields are present (relay.go's tables, docs/PROTOCOL.md
// §10). Owner signatures and custody receipts cover the labelled encodings
// of relay_auth.go, never protobuf bytes. An attachment pointer, the body of
// a KindFile plaintext (field 11), is File = {1 version, 2 key, 3 digest,
// 4 size, 5 blobs (the blob hashes, concatenated), 6 name, 7 mime,
// 8 thumbnail, 9 peer, 10 relays}, FilePeer = {1 peer, 2 addrs}, FileRelay =
// {1 relay, 2 addrs, 3 mailbox}. BlobRequest = {1 version, 2 id, 3 op,
// 4 hash, 5 cap, 6 read_cap_hash, 7 mailbox, 8 token, 9 size, 10 readers};
// BlobResponse = {1 version, 2 id, 3 op, 4 code, 5 size, 6 stored_until};
// on BlobProtocol a blob's bytes follow, unframed, the PUT request or the
// GET response that announces them (FrameReader.Body reads them;
// docs/PROTOCOL.md §11).
//
// # Using it
//
// Other packages see only the hand-written types here. Marshal validates
// and encodes; Unmarshal decodes and validates, so whatever comes out of
// Unmarshal (or FrameReader.Read) is within every limit; a decoding error
// wraps one of the sentinels of errors.go, and CodeOf turns it into the code
// to send back. Byte slices in a decoded message are its own (never the
// frame buffer). A stream handler reads with NewFrameReader(stream,
// MaxMsgFrame) and writes with WriteFrame or AppendFrame (which batches
// several frames, such as Acks, into one Write); it sets a deadline on the
// stream, and answers a frame that does not decode with Ack{ID: 0, Code:
// CodeOf(err)} and a reset. The receiver's seen-set key for a Ciphertext is
// Ciphertext.SeenKey. Adding a protocol means: its ID in ids.go (and
// FrameLimit), its frame limit in limits.go, a .proto file in internal/pb
// (added to the go:generate line), a Go file with its types implementing
// Message, and its codes in errors.go and code.proto.
package protocol
