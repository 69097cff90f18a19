// Package protocol defines sealpost's wire formats: the stream protocol IDs,
// framing, the messages of direct delivery, bundle fetch, the relay,
// attachment blobs and group logs, the typed plaintext, contact card and
// attachment pointer that travel inside the Double Ratchet, the group
// message of gossipsub topics and group logs, invite links, size limits,
// validation, and the table from error sentinels to wire error codes.
// docs/PROTOCOL.md §9–12 is the byte-level specification, field by field;
// this package is its reference implementation.
//
// # Byte layout
//
// Every message is a protobuf message (proto3, the .proto files in
// internal/pb) in its one canonical encoding: fields in field-number order,
// each at most once, default values left out, minimal varints, no unknown
// fields. Field 1 of every top-level message is its version; this package
// speaks version 1 (Version) of every message, and versions 1 and 2 of the
// Card (CardVersion). Byte strings that crypto/ defines (public identities,
// device records, bundles, PQXDH initial messages, ratchet messages) are
// carried as opaque bytes and never re-encoded; peer IDs and multiaddrs as
// their binary forms; times as Unix milliseconds. On a stream each message
// is a frame, uvarint(len(message)) || message, with a limit per protocol.
// Owner signatures and custody receipts cover the labelled encodings of
// relay_auth.go, never protobuf bytes.
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
// Ciphertext.SeenKey.
//
// Adding a protocol means: its ID in ids.go (and FrameLimit), its frame
// limit in limits.go, a .proto file in internal/pb (added to the
// go:generate line), a Go file with its types implementing Message, and
// its codes in errors.go and code.proto.
package protocol
