// Package attachment encrypts files for sealpost's attachments: a random key
// per file, ChaCha20-Poly1305 over fixed-size segments in the STREAM
// construction (as in age), size padding in exponential buckets, and the
// ciphertext cut into blobs named by their SHA-256, each stored under
// capabilities derived per place it is kept.
//
// Format (docs/PROTOCOL.md §11):
//
//	padded    = content || zero bytes up to PaddedSize(len(content))
//	segment j = padded[64 KiB × j : 64 KiB × (j+1)]
//	sealed j  = ChaCha20-Poly1305(payload key, nonce(j, last), segment j, no AD)
//	nonce     = j as 11 bytes big-endian || 0x01 for the last segment, else 0x00
//	ciphertext = sealed 0 || sealed 1 || ...
//	blob i    = the sealed segments i×s .. i×s+s−1 (s from the layout)
//
// Each segment authenticates its own position and whether it ends the file,
// so a stream can be decrypted as it arrives, and truncation, reordering,
// splicing from another file and appended data are all detected. Blobs hold
// whole segments, so each blob decrypts on its own and a transfer resumes at
// any blob.
//
// What the caller must do: keep the Key secret (it travels only inside an
// end-to-end encrypted message); check each blob's hash before trusting a
// source (OpenBlob does); discard what OpenBlob wrote for a blob that fails;
// and accept a file only once Reader.Verify matched its digest. Nothing in
// this package is safe for concurrent use.
package attachment

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// Version is the format this package writes and reads: the layout, the
// segment size and the derivations below.
const Version = 1

// Sizes (docs/PROTOCOL.md §11.1).
const (
	// KeySize is the size of a file key.
	KeySize = 32
	// HashSize is the size of a blob hash or a content digest (SHA-256).
	HashSize = sha256.Size
	// CapSize is the size of a read or write capability.
	CapSize = 32

	// SegmentSize is the plaintext of one segment. 64 KiB keeps the AEAD's
	// per-call cost negligible and the buffers small.
	SegmentSize = 64 << 10
	// TagSize is the AEAD tag each segment adds.
	TagSize = chacha20poly1305.Overhead
	// SealedSegmentSize is a full segment's ciphertext.
	SealedSegmentSize = SegmentSize + TagSize

	// MinPadded is the smallest padded size: every file, even an empty
	// one, is at least this long on the wire.
	MinPadded = 1 << 10

	// MinBlobSegments is the segments of a blob of a small file: 256 KiB
	// of plaintext, 262 208 bytes of ciphertext.
	MinBlobSegments = 4
	// MaxBlobSegments bounds the segments of a blob (16 MiB of plaintext).
	MaxBlobSegments = 256
	// MaxBlobs bounds the blobs of a file, so that the list of their hashes
	// (8 KiB) fits in the pointer inside a message. A larger file gets
	// larger blobs (the layout doubles the segments per blob).
	MaxBlobs = 256
	// MaxBlobSize is the largest blob: MaxBlobSegments sealed segments.
	MaxBlobSize = MaxBlobSegments * SealedSegmentSize

	// MaxPadded is the largest padded size: MaxBlobs blobs of
	// MaxBlobSegments segments, 4 GiB.
	MaxPadded = MaxBlobs * MaxBlobSegments * SegmentSize
	// MaxSize is the largest file: the largest padding bucket that is not
	// above MaxPadded (TestMaxSize computes it).
	MaxSize = 4_218_593_209

	// MaxLocation bounds the location bytes a capability is derived for.
	MaxLocation = 255
)

// The labels of the derivations, each followed by a zero byte in the HKDF
// info (docs/PROTOCOL.md §1.2).
const (
	labelPayload = "sealpost/v1/file-payload"
	labelRead    = "sealpost/v1/file-read"
	labelWrite   = "sealpost/v1/file-write"
)

var (
	// ErrDecrypt is the one error of a segment that does not authenticate,
	// whatever the cause: a flipped bit, a segment moved, dropped, taken
	// from another file, or made to look like the last one.
	ErrDecrypt = errors.New("attachment: segment authentication failed")
	// ErrBlobHash: a blob's bytes do not hash to the hash it was asked for.
	ErrBlobHash = errors.New("attachment: blob does not match its hash")
	// ErrPadding: the padding after the content is not zero, so the file is
	// longer than the size its pointer announced.
	ErrPadding = errors.New("attachment: content longer than the announced size")
	// ErrDigest: the decrypted content does not match the digest its
	// pointer announced.
	ErrDigest = errors.New("attachment: content does not match its digest")
	// ErrLength: a ciphertext, blob or segment is not the length the
	// layout gives, or a Writer got more or fewer bytes than its size.
	ErrLength = errors.New("attachment: length does not match the layout")
	// ErrTooLarge: the size is over MaxSize.
	ErrTooLarge = errors.New("attachment: file too large")
)

// Key is a file key: 32 random bytes, one per file.
type Key [KeySize]byte

// NewKey reads a key from rand, refusing all zeros (a broken source).
func NewKey(rand io.Reader) (Key, error) {
	var k Key
	if _, err := io.ReadFull(rand, k[:]); err != nil {
		return k, fmt.Errorf("attachment: read random: %w", err)
	}
	if k == (Key{}) {
		return k, errors.New("attachment: random source gave zeros")
	}
	return k, nil
}

// Hash is a SHA-256: a blob's name, or a file's content digest.
type Hash [HashSize]byte

// HashBlob returns the name of a blob: SHA-256 of its bytes.
func HashBlob(blob []byte) Hash { return sha256.Sum256(blob) }

// String returns h in lowercase hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is all zero (absent).
func (h Hash) IsZero() bool { return h == Hash{} }

// Cap is a read or write capability of a blob at one location.
type Cap [CapSize]byte

// Hash returns SHA-256 of the capability: what a relay stores, so that a
// copy of its disk holds no capability.
func (c Cap) Hash() Hash { return sha256.Sum256(c[:]) }

// Equal compares two capabilities in constant time.
func (c Cap) Equal(o Cap) bool { return subtle.ConstantTimeCompare(c[:], o[:]) == 1 }

// ReadCap derives the capability that reads (and acknowledges) blob at
// location: HKDF-SHA256(ikm = key, salt = none, info = "sealpost/v1/file-read"
// || 0x00 || len8(location) || location || blob, L = 32). Whoever holds the
// pointer derives it; a location learns only its own capabilities, which
// say nothing about the key or another location's.
func (k Key) ReadCap(location []byte, blob Hash) (Cap, error) {
	return deriveCap(k[:], labelRead, location, blob)
}

// WriteCap derives the capability that uploads and deletes blob at
// location from the writer's own secret (never in the pointer), as ReadCap
// with the label "sealpost/v1/file-write".
func WriteCap(secret Key, location []byte, blob Hash) (Cap, error) {
	return deriveCap(secret[:], labelWrite, location, blob)
}

func deriveCap(ikm []byte, label string, location []byte, blob Hash) (Cap, error) {
	var c Cap
	if len(location) == 0 || len(location) > MaxLocation {
		return c, fmt.Errorf("attachment: location of %d bytes, want 1 to %d", len(location), MaxLocation)
	}
	info := make([]byte, 0, len(label)+2+len(location)+HashSize)
	info = append(info, label...)
	info = append(info, 0, byte(len(location)))
	info = append(info, location...)
	info = append(info, blob[:]...)
	b, err := hkdf.Key(sha256.New, ikm, nil, string(info), CapSize)
	if err != nil {
		return c, fmt.Errorf("attachment: derive capability: %w", err)
	}
	copy(c[:], b)
	return c, nil
}

// PaddedSize returns the padded size of a file of n content bytes: the
// smallest bucket at or above n, where the buckets are b_0 = MinPadded and
// b_{k+1} = b_k + ceil(b_k / 20), steps of about 5%. A relay that sees the
// ciphertext cannot tell apart the sizes within one bucket; the padding
// costs at most 5%. It returns -1 for n < 0 or n > MaxSize.
func PaddedSize(n int64) int64 {
	if n < 0 || n > MaxSize {
		return -1
	}
	b := int64(MinPadded)
	for b < n {
		b += (b + 19) / 20
	}
	return b
}

// Layout is the shape of a file's ciphertext. It follows from the content
// size alone, so sender and recipient compute the same one.
type Layout struct {
	// Size is the content size; Padded its padded size (PaddedSize).
	Size, Padded int64
	// Segments is the number of segments of the padded content.
	Segments int64
	// BlobSegments is the segments of every blob but the last, which may
	// hold fewer: MinBlobSegments doubled until the file needs at most
	// MaxBlobs blobs.
	BlobSegments int64
	// Blobs is the number of blobs.
	Blobs int
}

// NewLayout returns the layout of a file of size content bytes.
func NewLayout(size int64) (Layout, error) {
	p := PaddedSize(size)
	if p < 0 {
		if size < 0 {
			return Layout{}, fmt.Errorf("%w: negative size %d", ErrLength, size)
		}
		return Layout{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size, int64(MaxSize))
	}
	l := Layout{Size: size, Padded: p, Segments: (p + SegmentSize - 1) / SegmentSize, BlobSegments: MinBlobSegments}
	for (l.Segments+l.BlobSegments-1)/l.BlobSegments > MaxBlobs {
		l.BlobSegments *= 2
	}
	l.Blobs = int((l.Segments + l.BlobSegments - 1) / l.BlobSegments)
	return l, nil
}

// CiphertextSize is the size of the whole ciphertext: the padded content and
// a tag per segment.
func (l Layout) CiphertextSize() int64 { return l.Padded + l.Segments*TagSize }

// SegmentPlainSize is the padded plaintext of segment j: SegmentSize for
// all but the last.
func (l Layout) SegmentPlainSize(j int64) int {
	if j == l.Segments-1 {
		return int(l.Padded - j*SegmentSize)
	}
	return SegmentSize
}

// BlobSegmentRange returns the first segment of blob i and how many it
// holds.
func (l Layout) BlobSegmentRange(i int) (first, n int64) {
	first = int64(i) * l.BlobSegments
	return first, min(l.BlobSegments, l.Segments-first)
}

// BlobOffset is where blob i starts in the ciphertext.
func (l Layout) BlobOffset(i int) int64 { return int64(i) * l.BlobSegments * SealedSegmentSize }

// BlobSize is the size of blob i, or 0 if there is no blob i.
func (l Layout) BlobSize(i int) int64 {
	if i < 0 || i >= l.Blobs {
		return 0
	}
	first, n := l.BlobSegmentRange(i)
	last := first + n - 1
	return (n-1)*SealedSegmentSize + int64(l.SegmentPlainSize(last)) + TagSize
}

// BlobContent returns where blob i's part of the content starts and how
// long it is (zero for a blob of padding only).
func (l Layout) BlobContent(i int) (offset, n int64) {
	first, segs := l.BlobSegmentRange(i)
	offset = min(first*SegmentSize, l.Size)
	end := min((first+segs)*SegmentSize, l.Size)
	return offset, end - offset
}

// Cipher seals and opens the segments of one file.
type Cipher struct {
	aead   cipher.AEAD
	layout Layout
	nonce  [chacha20poly1305.NonceSize]byte
}

// NewCipher returns the cipher of the file of size content bytes under key:
// its payload key is HKDF-SHA256(ikm = key, salt = none,
// info = "sealpost/v1/file-payload" || 0x00, L = 32).
func NewCipher(key Key, size int64) (*Cipher, error) {
	l, err := NewLayout(size)
	if err != nil {
		return nil, err
	}
	pk, err := hkdf.Key(sha256.New, key[:], nil, labelPayload+"\x00", chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("attachment: derive payload key: %w", err)
	}
	aead, err := chacha20poly1305.New(pk)
	clear(pk)
	if err != nil {
		return nil, err
	}
	return &Cipher{aead: aead, layout: l}, nil
}

// Layout returns the file's layout.
func (c *Cipher) Layout() Layout { return c.layout }

// setNonce writes segment j's nonce: j as 11 bytes big-endian, then the
// last-segment flag.
func (c *Cipher) setNonce(j int64) {
	n := &c.nonce
	clear(n[:3])
	for i := 0; i < 8; i++ {
		n[10-i] = byte(j >> (8 * i))
	}
	n[11] = 0
	if j == c.layout.Segments-1 {
		n[11] = 1
	}
}

// SealSegment appends the ciphertext of segment j to dst. plaintext is the
// segment's padded plaintext, exactly Layout.SegmentPlainSize(j) bytes.
func (c *Cipher) SealSegment(dst []byte, j int64, plaintext []byte) ([]byte, error) {
	if j < 0 || j >= c.layout.Segments || len(plaintext) != c.layout.SegmentPlainSize(j) {
		return dst, fmt.Errorf("%w: segment %d of %d bytes", ErrLength, j, len(plaintext))
	}
	c.setNonce(j)
	return c.aead.Seal(dst, c.nonce[:], plaintext, nil), nil
}

// OpenSegment decrypts segment j and appends its content to dst: the padded
// plaintext without the padding, which must be zero (else ErrPadding). A
// segment of the wrong length is ErrLength; one that does not authenticate
// ErrDecrypt, with dst unchanged.
func (c *Cipher) OpenSegment(dst []byte, j int64, ciphertext []byte) ([]byte, error) {
	if j < 0 || j >= c.layout.Segments || len(ciphertext) != c.layout.SegmentPlainSize(j)+TagSize {
		return dst, fmt.Errorf("%w: sealed segment %d of %d bytes", ErrLength, j, len(ciphertext))
	}
	c.setNonce(j)
	out, err := c.aead.Open(dst, c.nonce[:], ciphertext, nil)
	if err != nil {
		return dst, ErrDecrypt
	}
	pt := out[len(dst):]
	content := max(0, min(int64(len(pt)), c.layout.Size-j*SegmentSize))
	for _, b := range pt[content:] {
		if b != 0 {
			clear(pt)
			return dst, ErrPadding
		}
	}
	return out[:len(dst)+int(content)], nil
}

// OpenBlob reads blob i from r (exactly Layout.BlobSize(i) bytes; it reads
// no further), decrypts it segment by segment and writes its content to w,
// each segment once it has authenticated. It returns the content bytes
// written. When the bytes read do not hash to want, it fails with
// ErrBlobHash after the last segment: whatever it wrote for this blob must
// then be discarded. r ending early is ErrLength.
func (c *Cipher) OpenBlob(w io.Writer, r io.Reader, i int, want Hash) (int64, error) {
	if i < 0 || i >= c.layout.Blobs {
		return 0, fmt.Errorf("%w: no blob %d in %d", ErrLength, i, c.layout.Blobs)
	}
	first, n := c.layout.BlobSegmentRange(i)
	h := sha256.New()
	buf := make([]byte, SealedSegmentSize)
	out := make([]byte, 0, SegmentSize)
	var written int64
	for j := first; j < first+n; j++ {
		seg := buf[:c.layout.SegmentPlainSize(j)+TagSize]
		if _, err := io.ReadFull(r, seg); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return written, fmt.Errorf("%w: blob %d ended in segment %d", ErrLength, i, j)
			}
			return written, err
		}
		h.Write(seg)
		pt, err := c.OpenSegment(out[:0], j, seg)
		if err != nil {
			return written, err
		}
		if len(pt) > 0 {
			m, err := w.Write(pt)
			written += int64(m)
			if err != nil {
				return written, err
			}
		}
	}
	var got Hash
	h.Sum(got[:0])
	if got != want {
		return written, ErrBlobHash
	}
	return written, nil
}
