package store

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
)

// The personal node's attachments: one record per file sent or received,
// named by the ID of the message that carries its pointer. The file's
// ciphertext lives outside the key-value store, in the node's file
// directory (node/files); the record holds the pointer (with the file key,
// so the ciphertext on disk is as safe as the store) and the transfer's
// progress, so a transfer resumes where it stopped.
//
//	tFile        id(16)            -> File
//	tFileByTime  created(8) id(16) -> "" (listing, newest first)
//	tFilePending id(16)            -> "" (files with transfer work left)
//	tFileBlob    hash(32) id(16)   -> "" (blobs this node serves, outgoing files)

// FileState is where a file is. The API shows these names.
type FileState uint8

const (
	// FileQueued: outgoing, being uploaded before its pointer is sent;
	// incoming, not downloaded yet (waiting for its size limit, a
	// download request or a source).
	FileQueued FileState = 1
	// FileSent: outgoing, its pointer is handed to messaging (whose
	// message state tells sent, delivered or failed from then on).
	FileSent FileState = 2
	// FileDelivered: outgoing, the recipient has it.
	FileDelivered FileState = 3
	// FileDownloading: incoming, being downloaded.
	FileDownloading FileState = 4
	// FileSaved: incoming, every blob is here and the content matched its
	// digest.
	FileSaved FileState = 5
	// FileFailed: Error says why; a transfer that can recover is retried.
	FileFailed FileState = 6
)

func (s FileState) valid() bool { return s >= FileQueued && s <= FileFailed }

// String returns the state's name as the CLI and API show it.
func (s FileState) String() string {
	switch s {
	case FileQueued:
		return "queued"
	case FileSent:
		return "sent"
	case FileDelivered:
		return "delivered"
	case FileDownloading:
		return "downloading"
	case FileSaved:
		return "saved"
	case FileFailed:
		return "failed"
	}
	return fmt.Sprintf("FileState(%d)", uint8(s))
}

// File size limits.
const (
	// MaxFilePointer bounds a stored pointer (protocol's MaxFile, with room).
	MaxFilePointer = 32 << 10
	// MaxFileBlobs bounds a file's blobs (crypto/attachment's MaxBlobs).
	MaxFileBlobs = 256
	// MaxFileRelays bounds the relays a file's record tracks.
	MaxFileRelays = 8
	// maxFileName and maxFileMIME bound the copies of the pointer's name
	// and media type kept for listing.
	maxFileName = 1024
	maxFileMIME = 256
	maxPeerID   = 64
	maxCaption  = 4 << 10
)

// File is one attachment, sent or received.
type File struct {
	// ID is the ID of the message that carries (or will carry) the
	// pointer.
	ID protocol.MessageID
	// Peer is the contact it goes to or came from (for a group's file,
	// the member who sent it; zero for an outgoing one).
	Peer identity.UserID
	// Group is the group it was sent to (zero for a contact's file); its
	// relays are then the group's home relays, under the group's logs.
	Group    protocol.GroupID
	Outgoing bool
	// Pointer is the encoded pointer (protocol.File): key, digest, blobs.
	Pointer []byte
	// Caption is the text sent with an outgoing file, kept until its
	// pointer is handed to messaging.
	Caption string
	// Name, MIME and Size repeat the pointer's, for listing.
	Name string
	MIME string
	Size uint64
	// Hashes are the blobs' hashes (outgoing: indexed so the node can serve
	// them; incoming: empty, they are in the pointer).
	Hashes [][32]byte
	State  FileState
	Error  string
	// Have is a bitmap over the blobs, blob i in bit i%8 of byte i/8:
	// incoming, stored here and checked; outgoing, acknowledged by the
	// recipient over a direct stream.
	Have []byte
	// Secret is the writer's secret of an outgoing file (its blobs' write
	// capabilities derive from it).
	Secret [32]byte
	// Relays track each relay's part: outgoing, the blobs it stored;
	// incoming, the blobs acknowledged to it after the download.
	Relays []FileRelay
	// Wanted: incoming, download requested (automatically, or by the user).
	Wanted bool
	// Direct: outgoing, the recipient's device was reachable when the file
	// was sent, so its pointer went at once and the relays get the blobs
	// only if the recipient has not fetched them directly in time.
	Direct bool
	// Pending: transfer work is left (an upload, a download, an
	// acknowledgement); indexed, so it resumes after a restart.
	Pending     bool
	Attempts    uint32
	NextAttempt time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// FileRelay is one relay mailbox's (or group log's) part in a file's
// transfer.
type FileRelay struct {
	Relay   []byte
	Mailbox protocol.MailboxID
	Log     protocol.GroupLogID
	// Done is a bitmap over the blobs, as File.Have.
	Done []byte
	// StoredUntil is the earliest expiry the relay granted.
	StoredUntil time.Time
	Error       string
	// Refused: the relay refused the file for good (no retry).
	Refused bool
}

// Shown returns the state to show for f: its own, except for an outgoing
// file whose pointer is handed to messaging, which shows its message's
// state msg (read shows as delivered: a file is delivered or not).
func (f *File) Shown(msg MessageState) FileState {
	if !f.Outgoing || f.State != FileSent {
		return f.State
	}
	switch msg {
	case MessageDelivered, MessageRead:
		return FileDelivered
	case MessageFailed:
		return FileFailed
	case MessageQueued:
		return FileQueued
	}
	return FileSent
}

// HasBit reports bit i of bitmap b.
func HasBit(b []byte, i int) bool { return i >= 0 && i/8 < len(b) && b[i/8]&(1<<(i%8)) != 0 }

// SetBit sets bit i of bitmap b, growing it as needed, and returns it.
func SetBit(b []byte, i int) []byte {
	for len(b) <= i/8 {
		b = append(b, 0)
	}
	b[i/8] |= 1 << (i % 8)
	return b
}

// CountBits returns the bits set among the first n of b.
func CountBits(b []byte, n int) int {
	c := 0
	for i := range n {
		if HasBit(b, i) {
			c++
		}
	}
	return c
}

// fileVersion 2 added Caption, Direct and FileRelay.Refused; 3 Group and
// FileRelay.Log.
const fileVersion = 3

func (f *File) validate() error {
	switch {
	case f.ID == (protocol.MessageID{}):
		return fmt.Errorf("file: %w: zero ID", ErrInvalid)
	case !f.State.valid():
		return fmt.Errorf("file: %w: state %d", ErrInvalid, f.State)
	case len(f.Pointer) > MaxFilePointer, len(f.Name) > maxFileName, len(f.MIME) > maxFileMIME,
		len(f.Error) > MaxReasonLen, len(f.Hashes) > MaxFileBlobs, len(f.Have) > MaxFileBlobs/8,
		len(f.Relays) > MaxFileRelays, len(f.Caption) > maxCaption:
		return fmt.Errorf("file: %w: field too long", ErrInvalid)
	}
	for _, r := range f.Relays {
		if len(r.Relay) > maxPeerID || len(r.Done) > MaxFileBlobs/8 || len(r.Error) > MaxReasonLen {
			return fmt.Errorf("file: %w: relay field too long", ErrInvalid)
		}
	}
	return nil
}

func (f *File) marshal() []byte {
	e := newEnc(fileVersion, 256+len(f.Pointer)+32*len(f.Hashes))
	e.fixed(f.ID[:])
	e.fixed(f.Peer[:])
	e.bool(f.Outgoing)
	e.bytes(f.Pointer)
	e.str(f.Caption)
	e.str(f.Name)
	e.str(f.MIME)
	e.uvarint(f.Size)
	e.uvarint(uint64(len(f.Hashes)))
	for _, h := range f.Hashes {
		e.fixed(h[:])
	}
	e.u8(uint8(f.State))
	e.str(f.Error)
	e.bytes(f.Have)
	e.fixed(f.Secret[:])
	e.uvarint(uint64(len(f.Relays)))
	for _, r := range f.Relays {
		e.bytes(r.Relay)
		e.fixed(r.Mailbox[:])
		e.bytes(r.Done)
		e.time(r.StoredUntil)
		e.str(r.Error)
		e.bool(r.Refused)
		e.fixed(r.Log[:])
	}
	e.bool(f.Wanted)
	e.bool(f.Direct)
	e.bool(f.Pending)
	e.uvarint(uint64(f.Attempts))
	e.time(f.NextAttempt)
	e.time(f.CreatedAt)
	e.time(f.UpdatedAt)
	e.fixed(f.Group[:])
	return e.b
}

func (f *File) unmarshal(b []byte) error {
	d, v := newDec("file", b, 1, 2, fileVersion)
	d.fixed(f.ID[:])
	d.fixed(f.Peer[:])
	f.Outgoing = d.bool()
	f.Pointer = d.bytes(MaxFilePointer)
	f.Caption = ""
	if v >= 2 {
		f.Caption = d.str(maxCaption)
	}
	f.Name = d.str(maxFileName)
	f.MIME = d.str(maxFileMIME)
	f.Size = d.uvarint()
	n := d.count(MaxFileBlobs, 32)
	f.Hashes = nil
	for range n {
		var h [32]byte
		d.fixed(h[:])
		f.Hashes = append(f.Hashes, h)
	}
	f.State = FileState(d.u8())
	f.Error = d.str(MaxReasonLen)
	f.Have = d.bytes(MaxFileBlobs / 8)
	d.fixed(f.Secret[:])
	n = d.count(MaxFileRelays, 1+32+1+2+1)
	f.Relays = nil
	for range n {
		var r FileRelay
		r.Relay = d.bytes(maxPeerID)
		d.fixed(r.Mailbox[:])
		r.Done = d.bytes(MaxFileBlobs / 8)
		r.StoredUntil = d.time()
		r.Error = d.str(MaxReasonLen)
		if v >= 2 {
			r.Refused = d.bool()
		}
		if v >= 3 {
			d.fixed(r.Log[:])
		}
		f.Relays = append(f.Relays, r)
	}
	f.Wanted = d.bool()
	f.Direct = false
	if v >= 2 {
		f.Direct = d.bool()
	}
	f.Pending = d.bool()
	f.Attempts = d.u32()
	f.NextAttempt = d.time()
	f.CreatedAt = d.time()
	f.UpdatedAt = d.time()
	f.Group = protocol.GroupID{}
	if v >= 3 {
		d.fixed(f.Group[:])
	}
	if err := d.finish("file"); err != nil {
		return err
	}
	if !f.State.valid() {
		return fmt.Errorf("decode file: %w: state %d", ErrCorrupt, f.State)
	}
	return nil
}

// Files is the node's attachment table.
type Files struct{ tx *Tx }

// Files returns the attachment table.
func (tx *Tx) Files() Files { return Files{tx} }

func fileKey(id protocol.MessageID) []byte        { return key(tFile, id[:]) }
func filePendingKey(id protocol.MessageID) []byte { return key(tFilePending, id[:]) }
func fileByTimeKey(t time.Time, id protocol.MessageID) []byte {
	k := timeKey(t)
	return key(tFileByTime, k[:], id[:])
}
func fileBlobKey(h [32]byte, id protocol.MessageID) []byte { return key(tFileBlob, h[:], id[:]) }

// Put stores f, replacing the record of the same ID, and keeps the indexes
// (pending work, listing, the blobs served) in step with it.
func (s Files) Put(f *File) error {
	if err := f.validate(); err != nil {
		return err
	}
	old, err := s.Get(f.ID)
	switch {
	case err == nil:
		if err := s.unindex(&old); err != nil {
			return err
		}
	case !errors.Is(err, ErrNotFound):
		return err
	}
	if err := s.tx.set(fileKey(f.ID), f.marshal()); err != nil {
		return err
	}
	return s.index(f)
}

func (s Files) index(f *File) error {
	if err := s.tx.set(fileByTimeKey(f.CreatedAt, f.ID), nil); err != nil {
		return err
	}
	if f.Pending {
		if err := s.tx.set(filePendingKey(f.ID), nil); err != nil {
			return err
		}
	}
	if f.Outgoing {
		for _, h := range f.Hashes {
			if err := s.tx.set(fileBlobKey(h, f.ID), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s Files) unindex(f *File) error {
	keys := [][]byte{fileByTimeKey(f.CreatedAt, f.ID), filePendingKey(f.ID)}
	for _, h := range f.Hashes {
		keys = append(keys, fileBlobKey(h, f.ID))
	}
	for _, k := range keys {
		if err := s.tx.del(k); err != nil {
			return err
		}
	}
	return nil
}

// Get returns file id, or ErrNotFound.
func (s Files) Get(id protocol.MessageID) (File, error) {
	var f File
	if ok, err := s.tx.getRecord(fileKey(id), &f); err != nil || !ok {
		return f, cmp.Or(err, notFound("file", id[:4]))
	}
	return f, nil
}

// Delete removes file id and its index entries; a missing one is not an
// error.
func (s Files) Delete(id protocol.MessageID) error {
	f, err := s.Get(id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.unindex(&f); err != nil {
		return err
	}
	return s.tx.del(fileKey(id))
}

// List calls fn for the files, newest first, at most limit of them (limit
// <= 0: all).
func (s Files) List(limit int, fn func(f File) error) error {
	n := 0
	return s.tx.scanPrefix([]byte{tFileByTime}, true, func(k, _ []byte) error {
		if len(k) != 1+8+16 {
			return fmt.Errorf("file listing index: %w", ErrCorrupt)
		}
		f, err := s.Get(protocol.MessageID(k[9:]))
		if err != nil {
			return fmt.Errorf("file listing index: %w", err)
		}
		if err := fn(f); err != nil {
			return err
		}
		n++
		if limit > 0 && n >= limit {
			return errStop
		}
		return nil
	})
}

// Pending returns the IDs of the files with transfer work left.
func (s Files) Pending() ([]protocol.MessageID, error) {
	var ids []protocol.MessageID
	err := s.tx.scanPrefix([]byte{tFilePending}, false, func(k, _ []byte) error {
		if len(k) != 1+16 {
			return fmt.Errorf("file pending index: %w", ErrCorrupt)
		}
		ids = append(ids, protocol.MessageID(k[1:]))
		return nil
	})
	return ids, err
}

// ByBlob returns the outgoing files that have a blob named h (normally
// one).
func (s Files) ByBlob(h [32]byte) ([]protocol.MessageID, error) {
	var ids []protocol.MessageID
	err := s.tx.scanPrefix(key(tFileBlob, h[:]), false, func(k, _ []byte) error {
		if len(k) != 1+32+16 {
			return fmt.Errorf("file blob index: %w", ErrCorrupt)
		}
		ids = append(ids, protocol.MessageID(k[33:]))
		return nil
	})
	return ids, err
}
