package protocol

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/protocol/internal/pb"
)

// File is an attachment pointer (docs/PROTOCOL.md §11.3): everything a
// recipient needs to fetch, decrypt and check one file encrypted with
// crypto/attachment. It travels only inside an end-to-end encrypted message
// (the body of a KindFile plaintext), never alone: it holds the file key.
type File struct {
	// Key is the file key; Digest SHA-256 of the content; Size the content
	// size, at most attachment.MaxSize.
	Key    attachment.Key
	Digest attachment.Hash
	Size   int64
	// Blobs are the blobs' hashes, in order: exactly as many as the layout
	// of Size has (attachment.NewLayout).
	Blobs []attachment.Hash
	// Name is the file's name as the sender had it: a base name (rules in
	// CheckFileName), optional. A receiver never uses it as a path as is.
	Name string
	// MIME is the file's media type ("image/jpeg"), optional.
	MIME string
	// Thumbnail is a small preview image (JPEG or PNG), at most
	// MaxThumbnail bytes, optional. It is the sender's claim: whoever shows
	// it decodes it as untrusted input.
	Thumbnail []byte
	// Peer is a device that serves the blobs directly (the sender's),
	// optional.
	Peer *FilePeer
	// Relays are relay mailboxes under which the blobs are or will be
	// stored, at most MaxFileRelays.
	Relays []FileRelay
}

// FilePeer is a device that serves a file's blobs over BlobProtocol.
type FilePeer struct {
	// Peer is its peer ID.
	Peer []byte
	// Addrs are binary multiaddrs of it, at most MaxFileAddrs, optional.
	Addrs [][]byte
}

// FileRelay is a relay that holds a file's blobs under a mailbox, or, for
// a file sent to a group, under the group's log on one of its home relays.
type FileRelay struct {
	// Relay is the relay's peer ID; Addrs binary multiaddrs of it, 1 to
	// MaxFileAddrs.
	Relay []byte
	Addrs [][]byte
	// Mailbox is the mailbox whose blob quota the blobs are charged to; or
	// Log the group log whose blob quota they are charged to (exactly one
	// is set).
	Mailbox MailboxID
	Log     GroupLogID
}

// Locations: the first byte of the location a capability is derived for
// (attachment.Key.ReadCap).
const (
	locationPeer     = 0x01
	locationRelay    = 0x02
	locationGroupLog = 0x03
)

// Location is what the blobs' capabilities at this peer are derived for:
// 0x01 || peer ID.
func (p *FilePeer) Location() []byte {
	return append([]byte{locationPeer}, p.Peer...)
}

// Location is what the blobs' capabilities at this relay mailbox are
// derived for: 0x02 || len8(relay peer ID) || relay peer ID || mailbox ID;
// at a group log, 0x03 || len8(relay peer ID) || relay peer ID || log ID.
func (r *FileRelay) Location() []byte {
	l := make([]byte, 0, 2+len(r.Relay)+len(r.Mailbox))
	if !r.Log.IsZero() {
		l = append(l, locationGroupLog, byte(len(r.Relay)))
		l = append(l, r.Relay...)
		return append(l, r.Log[:]...)
	}
	l = append(l, locationRelay, byte(len(r.Relay)))
	l = append(l, r.Relay...)
	return append(l, r.Mailbox[:]...)
}

// PeerLocation is FilePeer.Location for a bare peer ID.
func PeerLocation(peer []byte) []byte { return (&FilePeer{Peer: peer}).Location() }

// Validate checks f's fields and that its blob list matches its size.
func (f *File) Validate() error {
	if f.Key == (attachment.Key{}) {
		return fmt.Errorf("%w: file: key missing", ErrMalformed)
	}
	if f.Digest.IsZero() {
		return fmt.Errorf("%w: file: digest missing", ErrMalformed)
	}
	if f.Size < 0 || f.Size > attachment.MaxSize {
		return fmt.Errorf("%w: file: size %d, limit %d", ErrTooLarge, f.Size, int64(attachment.MaxSize))
	}
	l, err := attachment.NewLayout(f.Size)
	if err != nil {
		return fmt.Errorf("%w: file: %v", ErrMalformed, err)
	}
	if len(f.Blobs) != l.Blobs {
		return fmt.Errorf("%w: file: %d blob hashes for a size of %d blobs", ErrMalformed, len(f.Blobs), l.Blobs)
	}
	for i, h := range f.Blobs {
		if h.IsZero() {
			return fmt.Errorf("%w: file: blob %d hash is all zero", ErrMalformed, i)
		}
	}
	if err := CheckFileName(f.Name); err != nil {
		return err
	}
	if err := CheckMIME(f.MIME); err != nil {
		return err
	}
	if len(f.Thumbnail) > MaxThumbnail {
		return fmt.Errorf("%w: file: thumbnail of %d bytes, limit %d", ErrTooLarge, len(f.Thumbnail), MaxThumbnail)
	}
	if f.Peer == nil && len(f.Relays) == 0 {
		return fmt.Errorf("%w: file: neither peer nor relays", ErrMalformed)
	}
	if f.Peer != nil {
		if err := checkPeerID(f.Peer.Peer, "file: peer"); err != nil {
			return err
		}
		if err := checkAddrs(f.Peer.Addrs, 0, MaxFileAddrs, "file: peer addrs"); err != nil {
			return err
		}
	}
	if len(f.Relays) > MaxFileRelays {
		return fmt.Errorf("%w: file: %d relays, limit %d", ErrTooLarge, len(f.Relays), MaxFileRelays)
	}
	for i := range f.Relays {
		r := &f.Relays[i]
		what := fmt.Sprintf("file: relays[%d]", i)
		if err := checkPeerID(r.Relay, what+": relay"); err != nil {
			return err
		}
		if err := checkAddrs(r.Addrs, 1, MaxFileAddrs, what+": addrs"); err != nil {
			return err
		}
		if r.Mailbox.IsZero() == r.Log.IsZero() {
			return fmt.Errorf("%w: %s: not exactly one of mailbox and log", ErrMalformed, what)
		}
		for j := range i {
			if string(f.Relays[j].Location()) == string(r.Location()) {
				return fmt.Errorf("%w: %s: listed twice", ErrMalformed, what)
			}
		}
	}
	return nil
}

// CheckFileName checks a file name from a pointer: at most MaxFileName
// bytes of UTF-8, a base name (no '/' or '\\', not "." or ".."), no control
// characters or bidirectional formatting characters (which could make
// "gpj.exe" display as "exe.jpg"), no white space at either end. Empty is
// allowed (no name). A name that passes is still the sender's claim: a
// receiver that writes the file chooses the directory and checks the
// joined path again.
func CheckFileName(name string) error {
	if err := checkName(name, MaxFileName, "file: name"); err != nil {
		return err
	}
	if name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("%w: file: name %q is not a base name", ErrMalformed, name)
	}
	return nil
}

// CheckMIME checks a media type: type "/" subtype, each 1 to 127 characters
// of RFC 6838's restricted-name (letters, digits and !#$&-^_.+, beginning
// with a letter or digit), at most MaxMIME bytes in all, no parameters.
// Empty is allowed.
func CheckMIME(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > MaxMIME {
		return fmt.Errorf("%w: file: media type of %d bytes, limit %d", ErrTooLarge, len(s), MaxMIME)
	}
	typ, sub, ok := strings.Cut(s, "/")
	if !ok || !restrictedName(typ) || !restrictedName(sub) {
		return fmt.Errorf("%w: file: media type %q", ErrMalformed, s)
	}
	return nil
}

func restrictedName(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for i, r := range s {
		switch {
		case r < 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r)):
		case i > 0 && strings.ContainsRune("!#$&-^_.+", r):
		default:
			return false
		}
	}
	return true
}

// Marshal returns the canonical encoding of f.
func (f *File) Marshal() ([]byte, error) { return encode(nil, f) }

// Unmarshal decodes and validates b into f.
func (f *File) Unmarshal(b []byte) error {
	var w pb.File
	if err := decode(b, f.limit(), f.kind(), &w); err != nil {
		return err
	}
	v, err := fileFromPB(&w)
	if err != nil {
		return err
	}
	*f = *v
	return nil
}

// fileFromPB converts and validates a decoded pointer (alone or inside a
// Plaintext).
func fileFromPB(w *pb.File) (*File, error) {
	if w.Version != Version {
		return nil, fmt.Errorf("%w: file version %d (this node speaks %d)", ErrUnsupportedVersion, w.Version, Version)
	}
	v := &File{
		Name:      w.Name,
		MIME:      w.Mime,
		Thumbnail: w.Thumbnail,
	}
	if w.Size > attachment.MaxSize {
		return nil, fmt.Errorf("%w: file: size %d, limit %d", ErrTooLarge, w.Size, int64(attachment.MaxSize))
	}
	v.Size = int64(w.Size)
	if err := fixed(v.Key[:], w.Key, false, "file: key"); err != nil {
		return nil, err
	}
	if err := fixed(v.Digest[:], w.Digest, false, "file: digest"); err != nil {
		return nil, err
	}
	if len(w.Blobs) == 0 || len(w.Blobs)%attachment.HashSize != 0 || len(w.Blobs) > attachment.MaxBlobs*attachment.HashSize {
		return nil, fmt.Errorf("%w: file: blob list of %d bytes", ErrMalformed, len(w.Blobs))
	}
	v.Blobs = make([]attachment.Hash, len(w.Blobs)/attachment.HashSize)
	for i := range v.Blobs {
		copy(v.Blobs[i][:], w.Blobs[i*attachment.HashSize:])
	}
	if w.Peer != nil {
		v.Peer = &FilePeer{Peer: w.Peer.Peer, Addrs: w.Peer.Addrs}
		if len(v.Peer.Peer) == 0 {
			return nil, fmt.Errorf("%w: file: peer without its peer ID", ErrMalformed)
		}
	}
	if len(w.Relays) > MaxFileRelays {
		return nil, fmt.Errorf("%w: file: %d relays, limit %d", ErrTooLarge, len(w.Relays), MaxFileRelays)
	}
	for i, r := range w.Relays {
		fr := FileRelay{Relay: r.Relay, Addrs: r.Addrs}
		if err := fixed(fr.Mailbox[:], r.Mailbox, true, fmt.Sprintf("file: relays[%d]: mailbox", i)); err != nil {
			return nil, err
		}
		if err := fixed(fr.Log[:], r.Log, true, fmt.Sprintf("file: relays[%d]: log", i)); err != nil {
			return nil, err
		}
		v.Relays = append(v.Relays, fr)
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return v, nil
}

func (f *File) wire() proto.Message { return f.wireFile() }

func (f *File) wireFile() *pb.File {
	w := &pb.File{
		Version:   Version,
		Key:       f.Key[:],
		Digest:    f.Digest[:],
		Size:      uint64(max(f.Size, 0)),
		Name:      f.Name,
		Mime:      f.MIME,
		Thumbnail: f.Thumbnail,
	}
	w.Blobs = make([]byte, 0, len(f.Blobs)*attachment.HashSize)
	for _, h := range f.Blobs {
		w.Blobs = append(w.Blobs, h[:]...)
	}
	if f.Peer != nil {
		w.Peer = &pb.FilePeer{Peer: f.Peer.Peer, Addrs: f.Peer.Addrs}
	}
	for i := range f.Relays {
		r := &f.Relays[i]
		w.Relays = append(w.Relays, &pb.FileRelay{Relay: r.Relay, Addrs: r.Addrs, Mailbox: optional(r.Mailbox[:]), Log: optional(r.Log[:])})
	}
	return w
}

func (f *File) limit() int   { return MaxFile }
func (f *File) kind() string { return "file" }
