package badgerstore

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/sealpost/sealpost/store"
)

// Forward-secure deletion.
//
// Badger never overwrites: a record replaced or deleted stays in its value
// log, memtable log and tables until compaction and value-log GC happen to
// rewrite those files, which can take weeks, and badger's own encryption
// keeps every data key it ever used. So in an encrypted store (ModePassphrase
// and ModeKeyFile) every non-empty value is also sealed, before badger sees
// it, under an epoch key that lives outside the database, in the epoch file
// next to it:
//
//   - The epoch file holds the epoch keys still needed, sealed under a key
//     derived from the data key, and is replaced atomically (a synced
//     temporary file renamed over it, the directory synced).
//   - New values are sealed under the newest epoch. Every epochPeriod a new
//     epoch begins: its key is added to the file first, then used; live
//     records still sealed under older epochs are re-sealed under the new
//     one; then the older keys are removed from the file and from memory.
//   - What was superseded or deleted before that stays sealed under a key
//     that no longer exists anywhere, so with the passphrase (and so the
//     data key) it cannot be read from the home: after at most
//     epochPeriod plus the time of one rotation (well under 24 hours)
//     while the store is open, and at the first rotation after Open for a
//     store that was closed meanwhile.
//
// A sealed value is epoch (4 bytes, big-endian) || nonce (24) ||
// XChaCha20-Poly1305 ciphertext and tag, with "sealpost/v1/store-record"
// || 0x00 || the record's key as additional data, and badger's user-meta
// byte set to metaSealed. The key in the additional data makes a value moved to another
// key, or a flipped bit anywhere in it, fail to open (store.ErrCorrupt)
// instead of decoding as a different record. Empty values (index entries)
// carry nothing and are stored as they are.
//
// Epoch file layout (version 1): magic "sealpost/store-epochs" (21 bytes),
// version (1), nonce (24), then XChaCha20-Poly1305 under
// HKDF-SHA256(data key, info "sealpost/v1/store-epochs") with the magic and
// version as additional data, of: flags (1; bit 0: values written before
// sealing existed may remain), count (1, at most maxEpochs), and per epoch
// its number (4), start as Unix nanoseconds (8) and key (32).

const (
	epochFileName    = "epochs"
	epochFileMagic   = "sealpost/store-epochs"
	epochFileVersion = 1
	epochFileInfo    = "sealpost/v1/store-epochs"
	recordAD         = "sealpost/v1/store-record"
	epochKeySize     = chacha20poly1305.KeySize
	maxEpochs        = 16
	flagLegacy       = 1

	// metaSealed is badger's user-meta byte of a sealed value.
	metaSealed byte = 1
	// sealOverhead is what sealing adds to a value.
	sealOverhead = 4 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead

	// defaultEpochPeriod is how long an epoch key seals new values.
	defaultEpochPeriod = 12 * time.Hour
	// rotateBatch bounds the records one re-sealing transaction rewrites.
	rotateBatch = 256
)

type epoch struct {
	n     uint32
	start time.Time
	key   []byte
}

// keyring is the epoch keys of an open store. mu is held for reading by
// every transaction, from before it seals or opens its first value until
// it has committed, and for writing to switch the current epoch or drop
// old ones, so that no value sealed under an epoch is committed after the
// switch away from it, and no reader loses a key it is using.
type keyring struct {
	mu      sync.RWMutex
	dir     string // the store's directory (the epoch file's)
	fileKey []byte
	epochs  []epoch // ascending; the last is current
	legacy  bool    // unsealed values may remain
	rotMu   sync.Mutex
}

func deriveEpochFileKey(dataKey []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, dataKey, nil, epochFileInfo, chacha20poly1305.KeySize)
}

// loadKeyring reads the epoch file of the store in dir, or makes a first
// epoch if there is none: for a new database (empty), or for one written
// before sealing existed (legacy: every value unsealed). A database that
// holds sealed values without an epoch file is reported as corrupt.
func loadKeyring(dir string, dataKey []byte, hasSealed func() (bool, error), empty bool, rnd io.Reader, now time.Time) (*keyring, error) {
	fk, err := deriveEpochFileKey(dataKey)
	if err != nil {
		return nil, err
	}
	r := &keyring{dir: dir, fileKey: fk}
	b, err := os.ReadFile(filepath.Join(dir, epochFileName))
	if err == nil {
		if err := r.decode(b); err != nil {
			return nil, err
		}
		return r, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read epoch file: %w", err)
	}
	if !empty {
		sealed, err := hasSealed()
		if err != nil {
			return nil, err
		}
		if sealed {
			return nil, errDamaged(dir, epochFileName, "(the epoch keys) is missing, so the records sealed under its keys cannot be read")
		}
		r.legacy = true
	}
	e, err := newEpoch(1, now, rnd)
	if err != nil {
		return nil, err
	}
	r.epochs = []epoch{e}
	if err := r.write(); err != nil {
		return nil, err
	}
	return r, nil
}

func newEpoch(n uint32, start time.Time, rnd io.Reader) (epoch, error) {
	e := epoch{n: n, start: start, key: make([]byte, epochKeySize)}
	if _, err := io.ReadFull(rnd, e.key); err != nil {
		return epoch{}, fmt.Errorf("read random epoch key: %w", err)
	}
	return e, nil
}

func (r *keyring) header() []byte {
	return append([]byte(epochFileMagic), epochFileVersion)
}

// write replaces the epoch file with r's epochs.
func (r *keyring) write() error {
	b, err := r.encode()
	if err != nil {
		return err
	}
	return writeFileAtomic(r.dir, epochFileName, b, nil)
}

// encode returns the epoch file of r's epochs.
func (r *keyring) encode() ([]byte, error) {
	var p []byte
	var flags byte
	if r.legacy {
		flags |= flagLegacy
	}
	p = append(p, flags, byte(len(r.epochs)))
	for _, e := range r.epochs {
		p = binary.BigEndian.AppendUint32(p, e.n)
		p = binary.BigEndian.AppendUint64(p, uint64(e.start.UnixNano()))
		p = append(p, e.key...)
	}
	defer clear(p)
	return r.sealFile(p)
}

// sealFile returns the epoch file of the plaintext p.
func (r *keyring) sealFile(p []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(r.fileKey)
	if err != nil {
		return nil, err
	}
	b := r.header()
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	rand.Read(nonce)
	b = append(b, nonce...)
	return aead.Seal(b, nonce, p, b[:len(epochFileMagic)+1]), nil
}

// decode parses and opens an epoch file.
func (r *keyring) decode(b []byte) error {
	bad := func(why string) error { return errDamaged(r.dir, epochFileName, "%s", why) }
	h := r.header()
	if len(b) > 4096 || len(b) < len(h)+chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead || !bytes.HasPrefix(b, h[:len(h)-1]) {
		return bad("is not an epoch file")
	}
	if v := b[len(h)-1]; v != epochFileVersion {
		if v > epochFileVersion {
			return fmt.Errorf("epoch file version %d: %w", v, store.ErrSchemaTooNew)
		}
		return bad("has an unknown version")
	}
	aead, err := chacha20poly1305.NewX(r.fileKey)
	if err != nil {
		return err
	}
	nonce := b[len(h) : len(h)+chacha20poly1305.NonceSizeX]
	p, err := aead.Open(nil, nonce, b[len(h)+chacha20poly1305.NonceSizeX:], h)
	if err != nil {
		return bad("does not authenticate (damaged, or not this store's)")
	}
	defer clear(p)
	const entry = 4 + 8 + epochKeySize
	if len(p) < 2 || p[1] == 0 || p[1] > maxEpochs || len(p) != 2+int(p[1])*entry {
		return bad("has bad contents")
	}
	r.legacy = p[0]&flagLegacy != 0
	for q := p[2:]; len(q) > 0; q = q[entry:] {
		e := epoch{
			n:     binary.BigEndian.Uint32(q),
			start: time.Unix(0, int64(binary.BigEndian.Uint64(q[4:]))),
			key:   bytes.Clone(q[12:entry]),
		}
		if len(r.epochs) > 0 && e.n <= r.epochs[len(r.epochs)-1].n {
			return bad("has its epochs out of order")
		}
		r.epochs = append(r.epochs, e)
	}
	return nil
}

// current returns the newest epoch; the caller holds mu.
func (r *keyring) current() epoch { return r.epochs[len(r.epochs)-1] }

// find returns the key of epoch n; the caller holds mu.
func (r *keyring) find(n uint32) []byte {
	for _, e := range r.epochs {
		if e.n == n {
			return e.key
		}
	}
	return nil
}

func recordAAD(key []byte) []byte {
	return append(append([]byte(recordAD), 0), key...)
}

// seal returns value sealed for key under the current epoch; the caller
// holds mu.
func (r *keyring) seal(key, value []byte) []byte {
	e := r.current()
	aead, _ := chacha20poly1305.NewX(e.key)
	out := make([]byte, 4+chacha20poly1305.NonceSizeX, len(value)+sealOverhead)
	binary.BigEndian.PutUint32(out, e.n)
	rand.Read(out[4:])
	return aead.Seal(out, out[4:4+chacha20poly1305.NonceSizeX], value, recordAAD(key))
}

// epochOf returns the epoch a sealed value names.
func epochOf(sealed []byte) (uint32, bool) {
	if len(sealed) < sealOverhead {
		return 0, false
	}
	return binary.BigEndian.Uint32(sealed), true
}

// open returns the value sealed for key; the caller holds mu.
func (r *keyring) open(key, sealed []byte) ([]byte, error) {
	n, ok := epochOf(sealed)
	if !ok {
		return nil, fmt.Errorf("%w: sealed value of %d bytes", store.ErrCorrupt, len(sealed))
	}
	k := r.find(n)
	if k == nil {
		return nil, fmt.Errorf("%w: value sealed under epoch %d, whose key is gone", store.ErrCorrupt, n)
	}
	aead, _ := chacha20poly1305.NewX(k)
	v, err := aead.Open(nil, sealed[4:4+chacha20poly1305.NonceSizeX], sealed[4+chacha20poly1305.NonceSizeX:], recordAAD(key))
	if err != nil {
		return nil, fmt.Errorf("%w: a stored value does not authenticate (damaged on disk)", store.ErrCorrupt)
	}
	return v, nil
}

// begin starts a new epoch if the current one began period or more before
// now, and reports whether older epochs remain to be retired.
func (r *keyring) begin(now time.Time, period time.Duration, rnd io.Reader) (bool, error) {
	r.mu.RLock()
	cur := r.current()
	pending := len(r.epochs) > 1 || r.legacy
	r.mu.RUnlock()
	if now.Sub(cur.start) < period {
		return pending, nil
	}
	if len(r.epochs) >= maxEpochs {
		return true, nil // retire the old ones first
	}
	e, err := newEpoch(cur.n+1, now, rnd)
	if err != nil {
		return false, err
	}
	// The key is on disk before anything is sealed under it.
	r.mu.Lock()
	defer r.mu.Unlock()
	r.epochs = append(r.epochs, e)
	if err := r.write(); err != nil {
		r.epochs = r.epochs[:len(r.epochs)-1]
		return false, fmt.Errorf("new epoch: %w", err)
	}
	return true, nil
}

// retire forgets every epoch but the current one, and the legacy flag:
// the caller re-sealed every live value under the current epoch.
func (r *keyring) retire() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := slices.Clone(r.epochs[:len(r.epochs)-1])
	wasLegacy := r.legacy
	r.epochs = r.epochs[len(r.epochs)-1:]
	r.legacy = false
	if err := r.write(); err != nil {
		r.epochs = append(old, r.epochs...)
		r.legacy = wasLegacy
		return fmt.Errorf("retire epochs: %w", err)
	}
	for _, e := range old {
		clear(e.key)
	}
	return nil
}

// wipe clears every key in memory (Close).
func (r *keyring) wipe() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.epochs {
		clear(e.key)
	}
	clear(r.fileKey)
}

// writeFileAtomic replaces dir/name with b: a 0600 temporary file is
// written and synced, renamed over the old one, and the directory is
// synced. A process killed at any moment leaves the old file or the new
// one, and at most a temporary file, which removeTemps deletes. step, if
// not nil, is called after each step with its name (tests kill the process
// there).
func writeFileAtomic(dir, name string, b []byte, step func(string)) error {
	if step == nil {
		step = func(string) {}
	}
	f, err := os.CreateTemp(dir, name+tempSuffix)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename this fails harmlessly
	step("created")
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	step("written")
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	step("synced")
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	step("renamed")
	if err := syncDir(dir); err != nil {
		return err
	}
	step("dir synced")
	return nil
}

// tempSuffix is the pattern of writeFileAtomic's temporary files.
const tempSuffix = ".tmp-*"

// removeTemps deletes temporary files that a writeFileAtomic of dir/name
// killed before its rename left behind: a key file's hold a wrapped data
// key that nothing reads, under a passphrase that may be the one just
// replaced, and an epoch file's hold epoch keys that may be retired.
func removeTemps(dir, name string) {
	tmps, _ := filepath.Glob(filepath.Join(dir, name+tempSuffix))
	for _, t := range tmps {
		os.Remove(t)
	}
}
