package protocol

import (
	"crypto/ed25519"
	"encoding/hex"
	"testing"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/crypto/identity"
)

// pattern returns n bytes b, b+1, b+2, ... (mod 256): recognisable in hex
// dumps, never all zero.
func pattern(n int, b byte) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b + byte(i)
	}
	return out
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Multiaddrs as go-multiaddr encodes them (checked with go-multiaddr
// v0.16.1 outside this package, which may not import it).
var (
	addrTCP  = []byte{0x04, 127, 0, 0, 1, 0x06, 0xa1, 0x13}                           // /ip4/127.0.0.1/tcp/41235
	addrQUIC = []byte{0x04, 127, 0, 0, 1, 0x91, 0x02, 0xa1, 0x13, 0xcd, 0x03}         // /ip4/127.0.0.1/udp/41235/quic-v1
	addrDNS  = append([]byte{0x36, 0x11}, []byte("relay.example.org\x06\x1e\x1e")...) // /dns4/relay.example.org/tcp/7710
)

// ed25519Peer is the libp2p peer ID of the Ed25519 key pattern(32, b).
func ed25519Peer(b byte) []byte {
	id, err := PeerIDFromEd25519(ed25519.PublicKey(pattern(32, b)))
	if err != nil {
		panic(err)
	}
	return id
}

// sha256Peer is a peer ID in the SHA-256 multihash form (RSA keys).
func sha256Peer(b byte) []byte { return append([]byte{0x12, 0x20}, pattern(32, b)...) }

func sampleCiphertext() *Ciphertext {
	return &Ciphertext{Prekey: pattern(40, 0x10), Ratchet: pattern(48, 0x40)}
}

func sampleCiphertextBytes(t testing.TB) []byte {
	b, err := sampleCiphertext().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sampleDeliver(t testing.TB) *Deliver {
	return &Deliver{ID: 7, Identity: pattern(MaxIdentity, 0x01), Device: ed25519Peer(0x20), Ciphertext: sampleCiphertextBytes(t)}
}

func sampleMailbox() Mailbox {
	return Mailbox{
		Relay:      ed25519Peer(0x90),
		RelayAddrs: [][]byte{addrTCP},
		ID:         MailboxID(pattern(32, 0xa0)),
		SealingKey: SealingKey(pattern(32, 0xc0)),
		Token:      pattern(32, 0xe0),
	}
}

func sampleCard() *Card {
	return &Card{
		Identity:  pattern(MaxIdentity, 0x01),
		Device:    pattern(200, 0x30),
		Name:      "Alice Ævarsdóttir",
		Addrs:     [][]byte{addrTCP, addrQUIC},
		Mailboxes: []Mailbox{sampleMailbox()},
		UpdatedAt: 1767225600000, // 2026-01-01T00:00:00Z
		Seq:       3,
	}
}

// sampleCardV2 is sampleCard with a prekey key on its mailbox: a
// version-2 card.
func sampleCardV2() *Card {
	c := sampleCard()
	c.Mailboxes = []Mailbox{sampleMailbox(), sampleMailbox()}
	c.Mailboxes[0].PrekeyKey = PrekeyKey(pattern(32, 0xf0))
	c.Mailboxes[1].ID = MailboxID(pattern(32, 0xa8))
	return c
}

func sampleText() *Plaintext {
	return &Plaintext{
		ID:           MessageID(pattern(16, 0x50)),
		Seq:          1,
		SentAt:       1767225600123,
		Kind:         KindText,
		Text:         "hello, bob 👋",
		Card:         sampleCard(),
		InviteSecret: InviteSecret(pattern(16, 0x70)),
	}
}

func sampleReceipt() *Plaintext {
	return &Plaintext{
		ID:     MessageID(pattern(16, 0x51)),
		Seq:    2,
		SentAt: 1767225600456,
		Kind:   KindDeliveryReceipt,
		Covers: []MessageID{MessageID(pattern(16, 0x50)), MessageID(pattern(16, 0x60))},
	}
}

func sampleCardUpdate() *Plaintext {
	return &Plaintext{ID: MessageID(pattern(16, 0x52)), Seq: 3, SentAt: 1767225600789, Kind: KindCard, Card: sampleCard()}
}

func sampleReserved() *Plaintext {
	return &Plaintext{ID: MessageID(pattern(16, 0x53)), Seq: 4, SentAt: 1767225600999, Kind: KindSenderKey, Payload: pattern(20, 0x80)}
}

// sampleInvite is a loopback node with two addresses and no relay.
func sampleInvite() *Invite {
	return &Invite{
		Identity: ed25519.PublicKey(pattern(32, 0x01)),
		Device:   ed25519Peer(0x20),
		Addrs:    [][]byte{addrTCP, addrQUIC},
		Pin:      BundlePin(pattern(16, 0x40)),
		Secret:   InviteSecret(pattern(16, 0x70)),
		Name:     "bob",
	}
}

func sampleInviteRelay() *Invite {
	inv := sampleInvite()
	inv.Relays = []InviteRelay{{Peer: ed25519Peer(0x90), Addr: addrTCP, Mailbox: MailboxID(pattern(32, 0xa0))}}
	return inv
}

// sampleFile is a pointer to a file of 600 000 bytes (3 blobs), served by
// its sender's device and kept on one relay.
func sampleFile() *File {
	f := &File{
		Key:       attachment.Key(pattern(32, 0x11)),
		Digest:    attachment.Hash(pattern(32, 0x22)),
		Size:      600_000,
		Name:      "holiday photo.jpg",
		MIME:      "image/jpeg",
		Thumbnail: pattern(100, 0x33),
		Peer:      &FilePeer{Peer: ed25519Peer(0x20), Addrs: [][]byte{addrTCP}},
		Relays:    []FileRelay{{Relay: ed25519Peer(0x90), Addrs: [][]byte{addrTCP}, Mailbox: MailboxID(pattern(32, 0xa0))}},
	}
	for i := range 3 {
		f.Blobs = append(f.Blobs, attachment.Hash(pattern(32, byte(0x40+i))))
	}
	return f
}

// sampleGroupFile is a pointer of a file sent to a group: its blobs at
// the group's two home relays, under the group's logs.
func sampleGroupFile() *File {
	f := sampleFile()
	f.Relays = []FileRelay{
		{Relay: ed25519Peer(0x90), Addrs: [][]byte{addrTCP}, Log: GroupLogID(pattern(32, 0x91))},
		{Relay: ed25519Peer(0x98), Addrs: [][]byte{addrTCP}, Log: GroupLogID(pattern(32, 0x99))},
	}
	return f
}

func sampleFileMessage() *Plaintext {
	return &Plaintext{ID: MessageID(pattern(16, 0x54)), Seq: 5, SentAt: 1767225601000, Kind: KindFile, Text: "the view from the top", File: sampleFile()}
}

func sampleHome(b byte) GroupHome {
	return GroupHome{Relay: ed25519Peer(b), Addrs: [][]byte{addrTCP, addrQUIC}, Log: GroupLogID(pattern(32, b+1))}
}

func sampleGroupMeta() *GroupMeta {
	return &GroupMeta{Name: "climbing club", Admins: []identity.UserID{identity.UserID(pattern(32, 0x01)), identity.UserID(pattern(32, 0x02))},
		Homes: []GroupHome{sampleHome(0x90), sampleHome(0x98)}}
}

func sampleGroupInvite() *Plaintext {
	return &Plaintext{ID: MessageID(pattern(16, 0x55)), Seq: 6, SentAt: 1767225601100, Kind: KindGroup,
		Group: &GroupControl{Op: GroupInvite, Group: GroupID(pattern(32, 0xc0)), Name: "climbing club"}}
}

func sampleGroupWelcome() *Plaintext {
	return &Plaintext{ID: MessageID(pattern(16, 0x56)), Seq: 7, SentAt: 1767225601200, Kind: KindGroup,
		Group: &GroupControl{Op: GroupWelcomed, Group: GroupID(pattern(32, 0xc0)), Welcome: &GroupWelcomeRef{
			Epoch: 3, Token: GroupToken(pattern(32, 0xb1)), Homes: []GroupHome{sampleHome(0x90)},
			Pieces: [][32]byte{[32]byte(pattern(32, 0xe0)), [32]byte(pattern(32, 0xe1))}}}}
}

// samples are valid values of every message type, by name.
func samples(t testing.TB) []struct {
	name string
	msg  Message
	zero func() Message
} {
	newCiphertext := func() Message { return new(Ciphertext) }
	newPlaintext := func() Message { return new(Plaintext) }
	newInvite := func() Message { return new(Invite) }
	newFile := func() Message { return new(File) }
	newBlobRequest := func() Message { return new(BlobRequest) }
	newBlobResponse := func() Message { return new(BlobResponse) }
	minimalFile := &File{Key: attachment.Key(pattern(32, 1)), Digest: attachment.Hash(pattern(32, 2)),
		Blobs: []attachment.Hash{attachment.Hash(pattern(32, 3))}, Relays: sampleFile().Relays}
	put := &BlobRequest{ID: 1, Op: BlobPut, Hash: attachment.Hash(pattern(32, 0x40)), Cap: attachment.Cap(pattern(32, 0x50)),
		ReadCapHash: attachment.Hash(pattern(32, 0x60)), Mailbox: MailboxID(pattern(32, 0xa0)), Token: pattern(16, 0xe0), Size: 262208}
	link := *put
	link.ID, link.Op, link.Readers = 2, BlobLink, 12
	rsaInvite := sampleInviteRelay()
	rsaInvite.Device = sha256Peer(0x21)
	rsaInvite.Relays[0].Peer = sha256Peer(0x91)
	rsaInvite.Name = ""
	return []struct {
		name string
		msg  Message
		zero func() Message
	}{
		{"ciphertext", sampleCiphertext(), newCiphertext},
		{"ciphertext without prekey", &Ciphertext{Ratchet: pattern(100, 1)}, newCiphertext},
		{"deliver", sampleDeliver(t), func() Message { return new(Deliver) }},
		{"ack ok", &Ack{ID: 7, Code: CodeOK}, func() Message { return new(Ack) }},
		{"ack stream error", &Ack{Code: CodeMalformed}, func() Message { return new(Ack) }},
		{"plaintext text", sampleText(), newPlaintext},
		{"plaintext receipt", sampleReceipt(), newPlaintext},
		{"plaintext read receipt", &Plaintext{ID: MessageID(pattern(16, 9)), Seq: 9, SentAt: 1, Kind: KindReadReceipt, Covers: []MessageID{MessageID(pattern(16, 1))}}, newPlaintext},
		{"plaintext card", sampleCardUpdate(), newPlaintext},
		{"plaintext reserved", sampleReserved(), newPlaintext},
		{"plaintext device list", &Plaintext{ID: MessageID(pattern(16, 9)), Seq: 5, SentAt: MaxUnixMilli, Kind: KindDeviceList, Payload: []byte{1}}, newPlaintext},
		{"card", sampleCard(), func() Message { return new(Card) }},
		{"card v2", sampleCardV2(), func() Message { return new(Card) }},
		{"plaintext card v2", &Plaintext{ID: MessageID(pattern(16, 0x53)), Seq: 4, SentAt: 1767225600999, Kind: KindCard, Card: sampleCardV2()}, newPlaintext},
		{"card minimal", &Card{Identity: []byte{1}, Device: []byte{2}, UpdatedAt: 1, Seq: 1}, func() Message { return new(Card) }},
		{"bundle request", &BundleRequest{Pin: BundlePin(pattern(16, 0x40))}, func() Message { return new(BundleRequest) }},
		{"bundle request unpinned", &BundleRequest{}, func() Message { return new(BundleRequest) }},
		{"bundle response", &BundleResponse{Code: CodeOK, Bundle: pattern(3000, 3)}, func() Message { return new(BundleResponse) }},
		{"bundle response expired", &BundleResponse{Code: CodeExpired}, func() Message { return new(BundleResponse) }},
		{"invite", sampleInvite(), newInvite},
		{"invite with relay", sampleInviteRelay(), newInvite},
		{"invite non-Ed25519 peers", rsaInvite, newInvite},
		{"file", sampleFile(), newFile},
		{"file minimal", minimalFile, newFile},
		{"file for a group", sampleGroupFile(), newFile},
		{"plaintext file", sampleFileMessage(), newPlaintext},
		{"plaintext file without caption", &Plaintext{ID: MessageID(pattern(16, 9)), Seq: 6, SentAt: 1, Kind: KindFile, File: minimalFile}, newPlaintext},
		{"blob get", &BlobRequest{ID: 3, Op: BlobGet, Hash: attachment.Hash(pattern(32, 0x40)), Cap: attachment.Cap(pattern(32, 0x51))}, newBlobRequest},
		{"blob put", put, newBlobRequest},
		{"blob link", &link, newBlobRequest},
		{"blob put for a group log", &BlobRequest{ID: 6, Op: BlobPut, Hash: attachment.Hash(pattern(32, 0x40)), Cap: attachment.Cap(pattern(32, 0x50)),
			ReadCapHash: attachment.Hash(pattern(32, 0x61)), Log: GroupLogID(pattern(32, 0xb0)), Epoch: 4, Token: pattern(32, 0xe1), Size: 1000}, newBlobRequest},
		{"blob link for a group log at epoch 0", &BlobRequest{ID: 7, Op: BlobLink, Hash: attachment.Hash(pattern(32, 0x40)), Cap: attachment.Cap(pattern(32, 0x50)),
			ReadCapHash: attachment.Hash(pattern(32, 0x62)), Log: GroupLogID(pattern(32, 0xb0)), Token: pattern(32, 0xe1), Size: 1000, Readers: 2}, newBlobRequest},
		{"blob ack", &BlobRequest{ID: 4, Op: BlobAck, Hash: attachment.Hash(pattern(32, 0x40)), Cap: attachment.Cap(pattern(32, 0x51))}, newBlobRequest},
		{"blob delete", &BlobRequest{ID: 5, Op: BlobDelete, Hash: attachment.Hash(pattern(32, 0x40)), Cap: attachment.Cap(pattern(32, 0x50)), ReadCapHash: attachment.Hash(pattern(32, 0x60))}, newBlobRequest},
		{"blob get response", &BlobResponse{ID: 3, Op: BlobGet, Code: CodeOK, Size: 262208}, newBlobResponse},
		{"blob put response", &BlobResponse{ID: 1, Op: BlobPut, Code: CodeOK, StoredUntil: 1768435200000}, newBlobResponse},
		{"blob put refused", &BlobResponse{ID: 1, Op: BlobPut, Code: CodeMailboxQuota}, newBlobResponse},
		{"blob link not stored", &BlobResponse{ID: 2, Op: BlobLink, Code: CodeNotFound}, newBlobResponse},
		{"blob ack response", &BlobResponse{ID: 4, Op: BlobAck, Code: CodeOK}, newBlobResponse},
		{"blob frame error", &BlobResponse{Code: CodeMalformed}, newBlobResponse},
		{"group meta", sampleGroupMeta(), func() Message { return new(GroupMeta) }},
		{"group meta one relay", &GroupMeta{Name: "x", Admins: []identity.UserID{identity.UserID(pattern(32, 9))}, Homes: []GroupHome{sampleHome(0x90)}}, func() Message { return new(GroupMeta) }},
		{"plaintext group invite", sampleGroupInvite(), newPlaintext},
		{"group control", sampleGroupWelcome().Group, func() Message { return new(GroupControl) }},
		{"plaintext group key package", &Plaintext{ID: MessageID(pattern(16, 9)), Seq: 8, SentAt: 1, Kind: KindGroup,
			Group: &GroupControl{Op: GroupKeyPackage, Group: GroupID(pattern(32, 0xc0)), KeyPackage: pattern(3000, 4)}}, newPlaintext},
		{"plaintext group welcome", sampleGroupWelcome(), newPlaintext},
		{"plaintext group decline", &Plaintext{ID: MessageID(pattern(16, 9)), Seq: 9, SentAt: 1, Kind: KindGroup,
			Group: &GroupControl{Op: GroupDecline, Group: GroupID(pattern(32, 0xc0))}}, newPlaintext},
		{"invite relays only", &Invite{Identity: ed25519.PublicKey(pattern(32, 1)), Device: ed25519Peer(2), Pin: BundlePin(pattern(16, 3)), Secret: InviteSecret(pattern(16, 4)), Relays: sampleInviteRelay().Relays}, newInvite},
	}
}

func marshal(t testing.TB, m Message) []byte {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatalf("marshal %s: %v", m.kind(), err)
	}
	return b
}
