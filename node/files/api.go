package files

import (
	"container/list"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Info is a file as the API shows it.
type Info struct {
	// ID is the ID of the message that carries the file.
	ID string `json:"id"`
	// Peer is the contact's user ID (for a group's file, the member who
	// sent it; empty for an outgoing one).
	Peer string `json:"peer"`
	// Group is the ID of the group the file was sent to, if any.
	Group    string `json:"group,omitempty"`
	Outgoing bool   `json:"outgoing"`
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	MIME     string `json:"mime"`
	// State is queued, sent, delivered, downloading, saved or failed.
	State string `json:"state"`
	// Error says why the last attempt failed.
	Error string `json:"error,omitempty"`
	// Digest is SHA-256 of the content, in hex.
	Digest string `json:"digest"`
	// Blobs is the number of blobs; Have how many are here (incoming) or
	// were fetched by the recipient directly (outgoing).
	Blobs int `json:"blobs"`
	Have  int `json:"have"`
	// Relays says, per relay the file goes through, how many blobs it
	// holds (outgoing) or were acknowledged to it (incoming).
	Relays []RelayInfo `json:"relays,omitempty"`
	// Thumbnail is set when the pointer carries a preview image.
	Thumbnail bool      `json:"thumbnail,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// RelayInfo is one relay's part in a transfer.
type RelayInfo struct {
	Relay string `json:"relay"`
	Done  int    `json:"done"`
	Error string `json:"error,omitempty"`
}

// Progress is the data of EventProgress.
type Progress struct {
	ID string `json:"id"`
	// Direction is "up" (this node sends) or "down" (it downloads).
	Direction string `json:"direction"`
	// Bytes of Total moved so far in this transfer's direction.
	Bytes int64 `json:"bytes"`
	Total int64 `json:"total"`

	sent time.Time
}

// info converts a record; msg is the state of its message (0: none).
func (s *Service) info(f *store.File, msg store.MessageState) Info {
	out := Info{
		ID:        f.ID.String(),
		Peer:      f.Peer.String(),
		Outgoing:  f.Outgoing,
		Name:      f.Name,
		Size:      int64(f.Size),
		MIME:      f.MIME,
		State:     f.Shown(msg).String(),
		Error:     f.Error,
		CreatedAt: f.CreatedAt,
	}
	if !f.Group.IsZero() {
		out.Group = f.Group.String()
		if f.Outgoing {
			out.Peer = ""
		}
	}
	if ptr, err := s.pointer(f); err == nil {
		out.Digest = hex.EncodeToString(ptr.Digest[:])
		out.Blobs = len(ptr.Blobs)
		out.Have = store.CountBits(f.Have, len(ptr.Blobs))
		out.Thumbnail = len(ptr.Thumbnail) > 0
		for _, r := range f.Relays {
			out.Relays = append(out.Relays, RelayInfo{Relay: peerString(r.Relay), Done: store.CountBits(r.Done, len(ptr.Blobs)), Error: r.Error})
		}
	}
	return out
}

// ParseID parses a file's (its message's) ID.
func ParseID(s string) (protocol.MessageID, error) {
	var id protocol.MessageID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%w: %q", ErrUnknownFile, s)
	}
	copy(id[:], b)
	return id, nil
}

// Get returns the file with message ID id.
func (s *Service) Get(ctx context.Context, id string) (Info, error) {
	fid, err := ParseID(id)
	if err != nil {
		return Info{}, err
	}
	var out Info
	err = s.cfg.Store.View(ctx, func(tx *store.Tx) error {
		f, err := tx.Files().Get(fid)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrUnknownFile, id)
		}
		if err != nil {
			return err
		}
		out = s.info(&f, messageState(tx, f.ID))
		return nil
	})
	return out, err
}

// List returns the files, newest first, at most limit (<= 0: all).
func (s *Service) List(ctx context.Context, limit int) ([]Info, error) {
	var out []Info
	err := s.cfg.Store.View(ctx, func(tx *store.Tx) error {
		return tx.Files().List(limit, func(f store.File) error {
			out = append(out, s.info(&f, messageState(tx, f.ID)))
			return nil
		})
	})
	return out, err
}

// Thumbnail returns the preview image a file's pointer carries (nil if
// none). It is the sender's: decode it as untrusted input.
func (s *Service) Thumbnail(ctx context.Context, id string) ([]byte, error) {
	fid, err := ParseID(id)
	if err != nil {
		return nil, err
	}
	f, err := s.record(ctx, fid)
	if err != nil {
		return nil, err
	}
	ptr, err := s.pointer(&f)
	if err != nil {
		return nil, err
	}
	return ptr.Thumbnail, nil
}

// Download asks for an incoming file that was not downloaded (over the
// automatic size, or failed): the engine fetches it now.
func (s *Service) Download(ctx context.Context, id string) (Info, error) {
	fid, err := ParseID(id)
	if err != nil {
		return Info{}, err
	}
	f, err := s.record(ctx, fid)
	if err != nil {
		return Info{}, err
	}
	if !f.Outgoing && f.State != store.FileSaved {
		if err := s.checkSize(int64(f.Size)); err != nil {
			return Info{}, err
		}
		f, err = s.update(ctx, fid, func(f *store.File) error {
			f.Wanted, f.Pending = true, true
			f.NextAttempt, f.Attempts = time.Time{}, 0
			if f.State == store.FileFailed && f.Error != errCorrupt {
				f.State = store.FileQueued
			}
			return nil
		})
		if err != nil {
			return Info{}, err
		}
		s.Wake()
	}
	return s.Get(ctx, id)
}

// Content is a file's content, for reading: an io.ReadSeeker and
// io.ReaderAt that decrypts the file's ciphertext as it is read (each
// segment authenticated before any of its bytes comes out). Close it.
type Content struct {
	*attachment.Reader
	Info Info
	// Digest is SHA-256 of the content; whoever writes it out checks it.
	Digest attachment.Hash
	f      *os.File
}

// Close closes the ciphertext.
func (c *Content) Close() error { return c.f.Close() }

// Open opens the content of a saved incoming file or of an outgoing one.
func (s *Service) Open(ctx context.Context, id string) (*Content, error) {
	info, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	fid, _ := ParseID(id)
	f, err := s.record(ctx, fid)
	if err != nil {
		return nil, err
	}
	if !f.Outgoing && f.State != store.FileSaved {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotSaved, id, info.State)
	}
	ptr, err := s.pointer(&f)
	if err != nil {
		return nil, err
	}
	file, err := os.Open(s.path(fid))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotSaved, id, err)
	}
	r, err := attachment.NewReader(file, ptr.Key, ptr.Size)
	if err != nil {
		file.Close()
		return nil, err
	}
	return &Content{Reader: r, Info: info, Digest: ptr.Digest, f: file}, nil
}

var _ io.ReadSeeker = (*Content)(nil)

// pointer decodes a record's pointer, through a small cache (the blob
// handler reads the same pointers over and over).
func (s *Service) pointer(f *store.File) (*protocol.File, error) {
	if p := s.ptrs.get(f.ID); p != nil {
		return p, nil
	}
	var p protocol.File
	if err := p.Unmarshal(f.Pointer); err != nil {
		return nil, fmt.Errorf("files: stored pointer of %x: %w", f.ID[:4], err)
	}
	s.ptrs.put(f.ID, &p)
	return &p, nil
}

// ptrCache is a bounded LRU of decoded pointers.
type ptrCache struct {
	mu  sync.Mutex
	max int
	ll  *list.List
	m   map[protocol.MessageID]*list.Element
}

type ptrEntry struct {
	id protocol.MessageID
	p  *protocol.File
}

func newPtrCache(n int) ptrCache {
	return ptrCache{max: n, ll: list.New(), m: map[protocol.MessageID]*list.Element{}}
}

func (c *ptrCache) get(id protocol.MessageID) *protocol.File {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[id]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*ptrEntry).p
	}
	return nil
}

func (c *ptrCache) put(id protocol.MessageID, p *protocol.File) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[id]; ok {
		c.ll.MoveToFront(e)
		return
	}
	c.m[id] = c.ll.PushFront(&ptrEntry{id, p})
	for c.ll.Len() > c.max {
		e := c.ll.Back()
		c.ll.Remove(e)
		delete(c.m, e.Value.(*ptrEntry).id)
	}
}

// progressEvery bounds how often a transfer's progress is published.
const progressEvery = 250 * time.Millisecond

// report adds n bytes to the progress of file id in direction dir ("up" or
// "down") of a transfer of size content bytes (counted in ciphertext, as
// the blobs move), and publishes it at most every progressEvery, and when
// it completes.
func (s *Service) report(id protocol.MessageID, dir string, n, size int64) {
	l, err := attachment.NewLayout(size)
	if err != nil {
		return
	}
	total := l.CiphertextSize()
	s.mu.Lock()
	p := s.progress[id]
	if p == nil || p.Direction != dir {
		p = &Progress{ID: id.String(), Direction: dir, Total: total}
		s.progress[id] = p
	}
	p.Bytes = min(p.Bytes+n, total)
	now := time.Now()
	if now.Sub(p.sent) < progressEvery && p.Bytes < total {
		s.mu.Unlock()
		return
	}
	p.sent = now
	out := *p
	if p.Bytes >= total {
		delete(s.progress, id)
	}
	s.mu.Unlock()
	s.cfg.Publish(EventProgress, out)
}

// resetProgress starts the progress of a transfer of file id over at done
// bytes (what earlier attempts moved).
func (s *Service) resetProgress(id protocol.MessageID, dir string, done, size int64) {
	l, err := attachment.NewLayout(size)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.progress[id] = &Progress{ID: id.String(), Direction: dir, Bytes: done, Total: l.CiphertextSize()}
	s.mu.Unlock()
}
