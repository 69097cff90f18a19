package protocol

import "github.com/sealpost/sealpost/crypto/identity"

// Size limits. Every decoder checks the size of its input against the limit
// of its type before it allocates anything, and every field against its own
// limit; every encoder refuses to produce what a decoder would refuse. The
// reason for each number is written next to it. The budget, from the outside
// in: a sealed envelope (MaxEnvelope) holds the sender's identity and device
// and one Ciphertext; a Ciphertext holds a PQXDH initial message and a
// ratchet message; the ratchet message encrypts one Plaintext, which holds a
// text, a receipt or a card, and may carry the sender's Card. Limit tests
// (limits_test.go) check that the largest value of each layer fits the next.
const (
	// MaxEnvelope is the largest sealed envelope: crypto/seal's top padding
	// bucket (DESIGN.md §3). Everything a message carries must fit in it, so
	// that a message that can go direct can also go through a relay.
	MaxEnvelope = 64 << 10

	// MaxCiphertext bounds an encoded Ciphertext. Sealing adds about 270
	// bytes around it (crypto/seal's header, ephemeral key and tag, 81
	// bytes; its length fields; the sender's public identity, MaxIdentity;
	// the device peer ID, up to MaxPeerID); the rest of the 4 KiB reserved
	// lets a later seal or identity version still fit.
	MaxCiphertext = MaxEnvelope - 4<<10

	// MaxPrekeyMessage bounds a PQXDH initial message: an ML-KEM-768
	// ciphertext (1088 bytes), an ephemeral X25519 key, identity keys and
	// prekey IDs come to about 1.3 KiB; 4 KiB leaves room for a new version.
	MaxPrekeyMessage = 4 << 10

	// MaxRatchetMessage bounds a ratchet message: what is left of
	// MaxCiphertext after the largest PQXDH initial message and the protobuf
	// tags and lengths of Ciphertext (at most 9 bytes; 16 reserved).
	MaxRatchetMessage = MaxCiphertext - MaxPrekeyMessage - 16

	// MaxPlaintext bounds an encoded Plaintext: the largest text plus the
	// largest attached card plus the fixed fields (about 100 bytes), rounded
	// up. The ratchet adds its encrypted header and two AEAD tags (well under
	// 1 KiB), which keeps the ratchet message under MaxRatchetMessage.
	MaxPlaintext = 48 << 10

	// MaxText bounds a text message, in bytes of UTF-8. sealpost has no
	// attachments in v1; 32 KiB is about ten printed pages, more than any
	// chat message, and leaves room in MaxPlaintext for an attached card.
	MaxText = 32 << 10

	// MaxPayload bounds the body of the reserved kinds (sender keys, device
	// lists) so that groups and multi-device have room without a new Plaintext
	// version.
	MaxPayload = MaxText

	// MaxReceiptIDs bounds the message IDs one receipt covers. A delivery
	// receipt covers one receive batch and a read receipt the unread
	// messages of one conversation; a receiver with more sends several
	// receipts. 1024 IDs take 18 KiB, well inside MaxPlaintext.
	MaxReceiptIDs = 1024

	// MaxCard bounds an encoded Card. A card with the largest identity and
	// device record (403 bytes), a name, 8 typical addresses and 4 mailboxes
	// takes under 3 KiB; 8 KiB leaves room, and Card.Marshal refuses (with
	// ErrTooLarge) a card whose addresses are too long, so the node can drop
	// some.
	MaxCard = 8 << 10

	// MaxIdentity bounds a public identity: crypto/identity's encoding has
	// one size (version, Ed25519 key, X25519 key, signature: 129 bytes).
	MaxIdentity = identity.PublicSize

	// MaxDeviceRecord bounds a device record: crypto/identity's largest
	// (274 bytes, with a 64-byte device ID).
	MaxDeviceRecord = identity.MaxDeviceRecordSize

	// MaxPeerID bounds a libp2p peer ID in bytes: a multihash whose digest is
	// either a public key inlined with the identity hash (libp2p inlines keys
	// up to 42 bytes) or a SHA-256 (34 bytes in all).
	MaxPeerID = 2 + maxInlineKey

	// MaxAddr bounds one binary multiaddr: /dns with a DNS name at its
	// 253-byte maximum, a port, and a /p2p/<relay>/p2p-circuit suffix fit.
	MaxAddr = 320

	// MaxName bounds a display name in a card, in bytes of UTF-8: 64 bytes
	// is 64 Latin or about 21 CJK characters, enough for a name, short
	// enough for a contact list.
	MaxName = 64

	// MaxCardAddrs bounds the device addresses in a card: IPv4 and IPv6,
	// TCP and QUIC make 4, plus circuit addresses through a few relays.
	MaxCardAddrs = 8

	// MaxMailboxes bounds the relay mailboxes in a card. Each message is
	// deposited on every listed relay (a full copy each), so more relays
	// cost senders more than they add in availability.
	MaxMailboxes = 4

	// MaxMailboxAddrs bounds the addresses of one relay in a card.
	MaxMailboxAddrs = 4

	// MinToken and MaxToken bound a deposit token: at least 128
	// random bits, at most a 32-byte secret with a 32-byte handle.
	MinToken = 16
	MaxToken = 64

	// MaxBundle bounds a prekey bundle (crypto/prekey encoding): two
	// ML-KEM-768 encapsulation keys (1184 bytes each, last-resort and
	// one-time), X25519 keys, signatures, identity and device record come
	// to under 4 KiB; 8 KiB leaves room.
	MaxBundle = 8 << 10

	// MaxInvite bounds the binary form of an invite, and so a link to
	// MaxInviteLink characters. A link over about 300 characters no longer
	// makes a terminal QR code that phones scan; the hard limit is larger so
	// that a node with many addresses still gets a (long) link, and so
	// parsing stays cheap. Invite.Link refuses larger invites with
	// ErrTooLarge; the node then drops addresses.
	MaxInvite = 1024

	// MaxInviteLink is the longest link ParseLink accepts.
	MaxInviteLink = len(InviteScheme) + (MaxInvite*8+5)/6

	// MaxInviteAddrs bounds the device addresses in an invite: a loopback
	// or LAN node has 2 (TCP and QUIC); 4 covers IPv4 and IPv6.
	MaxInviteAddrs = 4

	// MaxInviteRelays bounds the relays in an invite; each costs about 110
	// characters of link.
	MaxInviteRelays = 3

	// MaxInviteName bounds the display name in an invite, in bytes: each
	// byte costs 1.33 characters of link.
	MaxInviteName = 32

	// MaxCardBlob bounds the encrypted card blob an owner keeps on a relay
	// for one invite token (docs/PROTOCOL.md §10): a Card (MaxCard) and a
	// bundle without its one-time prekey (MaxBundle), with the AEAD's nonce,
	// tag and length fields, fit in 17 KiB; 24 KiB leaves room for a new
	// version of either.
	MaxCardBlob = 24 << 10

	// MaxPrekeyBlob bounds one encrypted one-time prekey on a relay: a
	// crypto/prekey one-time prekey record (1292 bytes) with its AEAD nonce
	// and tag come to about 1.35 KiB.
	MaxPrekeyBlob = 2 << 10

	// MaxPrekeyBatch bounds the prekeys of one upload, so that a batch of
	// the largest blobs fits a relay frame (32 x 2 KiB and their tags).
	MaxPrekeyBatch = 32

	// MaxAckSeqs bounds the sequence numbers one relay acknowledgement
	// deletes: at most 10 bytes each, 10 KiB in all, well inside a frame.
	MaxAckSeqs = 1024

	// MaxFetchLimit bounds the envelopes one relay fetch asks for. They come
	// one a frame, so the bound is on the work one request starts, not on a
	// buffer.
	MaxFetchLimit = 1024

	// MaxFileName bounds a file name in a pointer, in bytes of UTF-8: the
	// longest name common file systems (ext4, APFS, NTFS) store.
	MaxFileName = 255

	// MaxMIME bounds a media type: RFC 6838 allows 127 characters each for
	// type and subtype; no registered type comes near, so 127 in all.
	MaxMIME = 127

	// MaxThumbnail bounds a pointer's preview image: a small JPEG (a few
	// hundred pixels wide) fits in 8 KiB and keeps the pointer well inside
	// a message.
	MaxThumbnail = 8 << 10

	// MaxCaption bounds the text sent with a file: about a page, more than
	// any caption; with the largest pointer and card it keeps the
	// plaintext under MaxPlaintext.
	MaxCaption = 4 << 10

	// MaxFileRelays bounds the relay mailboxes a pointer lists: the
	// recipient's relays (MaxMailboxes), the same number again for a group
	// pointer whose members use other relays.
	MaxFileRelays = 2 * MaxMailboxes

	// MaxFileAddrs bounds the addresses of one source in a pointer.
	MaxFileAddrs = MaxMailboxAddrs

	// MaxFile bounds an encoded pointer: the blob list (MaxBlobs hashes,
	// 8 KiB), a thumbnail (8 KiB), a name and media type, and the sources
	// with their addresses (under 12 KiB with every address at its
	// limit); 30 KiB holds them (limits_test.go checks the largest).
	MaxFile = 30 << 10

	// MaxBlobReaders bounds how many readers' acknowledgements a blob
	// reference waits for before it is deleted: one per member of a group.
	MaxBlobReaders = 1024

	// MaxGroupEntry bounds a group log entry, an encoded GroupMessage
	// without sequence numbers. Application messages are as small as 1:1
	// ones (a MaxText text in an MLS PrivateMessage); the bound is set by
	// commits, whose UpdatePath takes, with the post-quantum suite, an
	// X-Wing key (1216 bytes) per level and an HPKE ciphertext (about
	// 1.2 KiB) per node of the resolution of the committer's copath. In a
	// tree whose members all committed since joining that is one node per
	// level (a commit to 1,000 members takes about 30 KiB); in one whose
	// members were added and have not committed since, the blank parents
	// leave nearly every member in the resolution: a commit removing one of
	// 1,000 members takes about 1.2 MB, which this bound holds with room
	// for the adds and meta that come with it. A Welcome, which carries the
	// whole tree, is cut into pieces of this size.
	MaxGroupEntry = 2 << 20

	// MaxGroupBody bounds the body of a GroupMessage: MaxGroupEntry less
	// the version, epoch, kind and tags (at most 20 bytes; 32 reserved).
	MaxGroupBody = MaxGroupEntry - 32

	// MaxGroupMessage bounds a GroupMessage on a topic: a log entry and
	// its sequence numbers (at most 2 x 10 bytes and a tag and length).
	MaxGroupMessage = MaxGroupEntry + 32

	// MaxFetchBytes bounds the bytes of the entries one group log FETCH
	// pushes: a relay ends the answer, with more, before an entry that
	// would pass it, and a client takes no more. So a client holds at most
	// this much of one answer (MaxFetchLimit entries of MaxGroupEntry
	// would be 2 GiB), and every answer holds at least one entry.
	MaxFetchBytes = 8 * MaxGroupEntry

	// MaxHomeRelays bounds the home relays of a group: each keeps a full
	// copy of the group's log, and the first orders its commits; a second
	// keeps the log readable while the first is down.
	MaxHomeRelays = 2

	// MaxUnixMilli bounds every time on the wire (Unix milliseconds): 2^53-1
	// is the largest integer a JSON client reads exactly, so times pass
	// through the API unchanged (it is the year 287396).
	MaxUnixMilli = 1<<53 - 1
)

// Frame limits, one per stream protocol (see ids.go).
const (
	// MaxMsgFrame bounds a frame on MsgProtocol. A Deliver holds the largest
	// Ciphertext, identity and device peer ID (61.5 KiB with its tags), so
	// a message that fits an envelope fits a frame.
	MaxMsgFrame = MaxEnvelope

	// MaxBundleFrame bounds a frame on BundleProtocol: the largest bundle
	// and the response's version, code and tags.
	MaxBundleFrame = MaxBundle + 64

	// MaxRelayFrame bounds a frame on RelayProtocol: the largest message is
	// a deposit (one envelope with a token, mailbox ID and tags, under 200
	// bytes more) or a push (one envelope, a sequence number and the prekey
	// count), and a prekey batch (MaxPrekeyBatch blobs of MaxPrekeyBlob,
	// 64 KiB and 96 bytes of tags, with a signature and challenge); 4 KiB
	// over the largest envelope holds each of them.
	MaxRelayFrame = MaxEnvelope + 4<<10

	// MaxBlobFrame bounds a frame on BlobProtocol: its requests and
	// responses hold hashes, capabilities, a mailbox ID and a token (under
	// 300 bytes). A blob's bytes follow their frame unframed.
	MaxBlobFrame = 512

	// MaxGroupLogFrame bounds a frame on GroupLogProtocol: the largest is
	// an append (an entry with a log ID, a token, a token hash and tags,
	// under 150 bytes more) or a push (an entry and a sequence number);
	// 1 KiB over the largest entry holds either.
	MaxGroupLogFrame = MaxGroupEntry + 1<<10
)

const maxInlineKey = 42
