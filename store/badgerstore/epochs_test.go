package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/store"
)

// fakeClock is an injected clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// clockOptions are the test options with an injected clock at t0.
func clockOptions() (Options, *fakeClock) {
	clock := &fakeClock{now: t0}
	opts := testOptions()
	opts.Now = clock.Now
	return opts, clock
}

const stateMarker = "ratchet state, generation "

// recoverStates opens the closed store in dir the way a thief who knows
// the passphrase would: it unwraps the data key, opens the epoch file,
// reads every version of every key badger still has (all of them: the
// store keeps every version in these tests), and tries every epoch key on
// every value. It returns the generations of session state it could read.
func recoverStates(t *testing.T, dir, passphrase string) map[string]bool {
	t.Helper()
	k, err := readKeyFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	dk, err := k.unwrap([]byte(passphrase))
	if err != nil {
		t.Fatal(err)
	}
	fk, err := deriveEpochFileKey(dk)
	if err != nil {
		t.Fatal(err)
	}
	ring := &keyring{dir: dir, fileKey: fk}
	b, err := os.ReadFile(filepath.Join(dir, epochFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.decode(b); err != nil {
		t.Fatal(err)
	}
	opt := badger.DefaultOptions(filepath.Join(dir, dataDirName)).
		WithEncryptionKey(dk).WithIndexCacheSize(1 << 20).WithLogger(nil).
		WithNumVersionsToKeep(math.MaxInt32).WithReadOnly(true)
	db, err := badger.Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	found := map[string]bool{}
	err = db.View(func(txn *badger.Txn) error {
		io := badger.DefaultIteratorOptions
		io.AllVersions = true
		it := txn.NewIterator(io)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			cands := [][]byte{v}
			if len(v) >= sealOverhead {
				for _, e := range ring.epochs {
					aead, _ := chacha20poly1305.NewX(e.key)
					if p, err := aead.Open(nil, v[4:4+chacha20poly1305.NonceSizeX], v[4+chacha20poly1305.NonceSizeX:], recordAAD(it.Item().Key())); err == nil {
						cands = append(cands, p)
					}
				}
			}
			for _, c := range cands {
				if i := bytes.Index(c, []byte(stateMarker)); i >= 0 && i+len(stateMarker)+3 <= len(c) {
					found[string(c[i+len(stateMarker):i+len(stateMarker)+3])] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestDeletedSessionUnrecoverable writes 200 generations of one session,
// deletes it, and checks that once the injected clock has passed the
// window (24 hours) none of them can be read from the store's files, even
// with the passphrase and so the data key; and that before, they could
// (so the check can fail).
func TestDeletedSessionUnrecoverable(t *testing.T) {
	dir := t.TempDir()
	opts, clock := clockOptions()
	opts.keepVersions = math.MaxInt32
	opts.GCInterval = -1
	s, err := Create(context.Background(), dir, ModePassphrase, opts)
	if err != nil {
		t.Fatal(err)
	}
	peer := identity.UserID{7}
	id := store.SessionID{9}
	for g := range 200 {
		clock.Add(time.Minute)
		ses := store.Session{Peer: peer, Device: []byte("device"), ID: id, CreatedAt: t0,
			State: fmt.Appendf(nil, "%s%03d %s", stateMarker, g, bytes.Repeat([]byte{byte(g)}, 300))}
		if err := s.Update(context.Background(), func(tx *store.Tx) error { return tx.Sessions().Put(ses) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Update(context.Background(), func(tx *store.Tx) error { return tx.Sessions().Delete(peer, []byte("device"), id) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(recoverStates(t, dir, "correct horse")); got != 200 {
		t.Fatalf("before the window: %d generations readable with the passphrase, want all 200 (the check reads what badger keeps)", got)
	}

	// The daemon runs on; a day later the epoch that sealed them is gone.
	opts.Passphrase = []byte("correct horse")
	s, err = Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	putSelf(t, s, "alice") // a live record, re-sealed by the rotation
	clock.Add(24 * time.Hour)
	if err := s.b.rotate(); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if got := selfName(t, s); got != "alice" {
		t.Errorf("live record after rotation: %q", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := recoverStates(t, dir, "correct horse"); len(got) != 0 {
		t.Errorf("after the window, %d of 200 superseded or deleted session states are readable with the passphrase: %v", len(got), got)
	}
	opts.Passphrase = []byte("correct horse")
	s, err = Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := selfName(t, s); got != "alice" {
		t.Errorf("live record after reopening: %q", got)
	}
}

// TestRotationKeepsLiveRecords rotates while records are being written and
// checks that every record written is still there, through more rotations
// than an epoch file holds keys.
func TestRotationKeepsLiveRecords(t *testing.T) {
	dir := t.TempDir()
	opts, clock := clockOptions()
	s, err := Create(context.Background(), dir, ModeKeyFile, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	const n = 400
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			m := store.Message{ID: [16]byte{byte(i >> 8), byte(i)}, State: store.MessageQueued, Body: []byte("body")}
			if err := s.Update(context.Background(), func(tx *store.Tx) error { return tx.Messages().Put(&m) }); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 2 * maxEpochs {
		clock.Add(defaultEpochPeriod)
		if err := s.b.rotate(); err != nil {
			t.Fatalf("rotate: %v", err)
		}
	}
	wg.Wait()
	err = s.View(context.Background(), func(tx *store.Tx) error {
		for i := range n {
			if _, err := tx.Messages().Get([16]byte{byte(i >> 8), byte(i)}); err != nil {
				return fmt.Errorf("message %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.b.ring.epochs) != 1 {
		t.Errorf("%d epochs after rotations, want 1", len(s.b.ring.epochs))
	}
}

// TestFlippedBitIsCorrupt flips each bit of a stored record's sealed value
// and checks that reading it fails with store.ErrCorrupt, never returning
// another record; and that a value moved under another key does not open.
func TestFlippedBitIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	s := createStore(t, dir, ModePassphrase)
	defer s.Close()
	putSelf(t, s, "alice")
	b := s.b
	var raw []byte
	var meta byte
	selfKey := []byte{0x01}
	err := b.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(selfKey)
		if err != nil {
			return err
		}
		meta = item.UserMeta()
		raw, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if meta != metaSealed {
		t.Fatalf("self record stored with meta %d, want sealed", meta)
	}
	write := func(k, v []byte, meta byte) {
		t.Helper()
		err := b.db.Update(func(txn *badger.Txn) error {
			return txn.SetEntry(badger.NewEntry(k, v).WithMeta(meta))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range len(raw) * 8 {
		flipped := bytes.Clone(raw)
		flipped[i/8] ^= 1 << (i % 8)
		write(selfKey, flipped, metaSealed)
		err := s.View(context.Background(), func(tx *store.Tx) error {
			_, err := tx.Self()
			return err
		})
		if !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("bit %d flipped: got %v, want ErrCorrupt", i, err)
		}
	}
	// The same value unsealed (meta flipped), and under another key.
	write(selfKey, raw, 0)
	if err := s.View(context.Background(), func(tx *store.Tx) error { _, err := tx.Self(); return err }); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("sealed value with its meta cleared: got %v, want ErrCorrupt", err)
	}
	write(selfKey, raw, metaSealed)
	if got := selfName(t, s); got != "alice" {
		t.Fatalf("restored record: %q", got)
	}
	other := []byte{0x05, 1}
	write(other, raw, metaSealed)
	err = b.View(context.Background(), func(kv store.KV) error { _, err := kv.Get(other); return err })
	if !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("value moved to another key: got %v, want ErrCorrupt", err)
	}
}

// TestMissingEpochFile: a store whose epoch file is gone says so.
func TestMissingEpochFile(t *testing.T) {
	dir := t.TempDir()
	s := createStore(t, dir, ModePassphrase)
	putSelf(t, s, "alice")
	s.Close()
	os.Remove(filepath.Join(dir, epochFileName))
	_, err := openWith(dir, "correct horse")
	if !errors.Is(err, store.ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte("epoch keys")) {
		t.Errorf("open without the epoch file: got %v, want ErrCorrupt naming the epoch key file", err)
	}
}

// TestRotationInterrupted stops a rotation after its new epoch began and
// before the old one was retired (as a crash would), and checks that the
// store opens, reads everything, and finishes the rotation.
func TestRotationInterrupted(t *testing.T) {
	dir := t.TempDir()
	opts, clock := clockOptions()
	opts.epochCheck = time.Hour
	s, err := Create(context.Background(), dir, ModePassphrase, opts)
	if err != nil {
		t.Fatal(err)
	}
	putSelf(t, s, "alice")
	clock.Add(defaultEpochPeriod)
	s.b.ring.rotMu.Lock() // the loop's rotation must not finish it
	if _, err := s.b.ring.begin(clock.Now(), defaultEpochPeriod, s.b.rand); err != nil {
		t.Fatal(err)
	}
	putSelf(t, s, "bob")
	s.b.ring.rotMu.Unlock()
	s.Close()

	opts.Passphrase = []byte("correct horse")
	s, err = Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := selfName(t, s); got != "bob" {
		t.Errorf("after an interrupted rotation: %q", got)
	}
	if err := s.b.rotate(); err != nil {
		t.Fatal(err)
	}
	if n := len(s.b.ring.epochs); n != 1 {
		t.Errorf("%d epochs after the rotation finished, want 1", n)
	}
	if got := selfName(t, s); got != "bob" {
		t.Errorf("after the rotation finished: %q", got)
	}
}

// fuzzRing is a keyring with a fixed file key, for the fuzz targets.
func fuzzRing() *keyring {
	return &keyring{dir: "store", fileKey: bytes.Repeat([]byte{7}, chacha20poly1305.KeySize)}
}

// seedEpochFiles are epoch files of one epoch and of the most epochs, with
// and without the legacy flag.
func seedEpochFiles(f *testing.F) [][]byte {
	var out [][]byte
	for _, n := range []int{1, maxEpochs} {
		r := fuzzRing()
		r.legacy = n == 1
		for i := range n {
			r.epochs = append(r.epochs, epoch{n: uint32(3 + i), start: t0.Add(time.Duration(i) * time.Hour), key: bytes.Repeat([]byte{byte(i)}, epochKeySize)})
		}
		b, err := r.encode()
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// checkRing checks what decode accepted, and that it encodes to an epoch
// file that decodes to the same epochs.
func checkRing(t *testing.T, r *keyring) {
	if len(r.epochs) == 0 || len(r.epochs) > maxEpochs {
		t.Fatalf("%d epochs decoded", len(r.epochs))
	}
	for i, e := range r.epochs {
		if len(e.key) != epochKeySize {
			t.Fatalf("epoch %d: key of %d bytes", e.n, len(e.key))
		}
		if i > 0 && e.n <= r.epochs[i-1].n {
			t.Fatalf("epochs out of order: %d after %d", e.n, r.epochs[i-1].n)
		}
	}
	b, err := r.encode()
	if err != nil {
		t.Fatal(err)
	}
	again := fuzzRing()
	if err := again.decode(b); err != nil {
		t.Fatalf("a decoded epoch file does not decode once encoded again: %v", err)
	}
	if again.legacy != r.legacy || len(again.epochs) != len(r.epochs) {
		t.Fatalf("encoded again: legacy %v, %d epochs; want %v, %d", again.legacy, len(again.epochs), r.legacy, len(r.epochs))
	}
	for i, e := range again.epochs {
		o := r.epochs[i]
		if e.n != o.n || !e.start.Equal(o.start) || !bytes.Equal(e.key, o.key) {
			t.Fatalf("epoch %d encoded again as %d at %v", o.n, e.n, e.start)
		}
	}
}

// FuzzEpochFile: any bytes decode to epochs or an error that names the
// epoch file (damage) or a newer version, never a panic; and a single
// changed byte of a real epoch file never decodes.
func FuzzEpochFile(f *testing.F) {
	for _, b := range seedEpochFiles(f) {
		f.Add(b)
	}
	f.Add([]byte(epochFileMagic))
	f.Add([]byte(epochFileMagic + "\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := fuzzRing()
		err := r.decode(b)
		if err != nil {
			var d *DamageError
			if !errors.As(err, &d) && !errors.Is(err, store.ErrSchemaTooNew) {
				t.Fatalf("decode: %v is neither damage nor a newer version", err)
			}
			return
		}
		checkRing(t, r)
		for i := range b {
			c := bytes.Clone(b)
			c[i] ^= 0x80
			if err := fuzzRing().decode(c); err == nil {
				t.Fatalf("byte %d changed: the epoch file still decodes", i)
			}
		}
	})
}

// FuzzEpochContents fuzzes what the epoch file's authenticated encryption
// protects (flags, count, epochs), which FuzzEpochFile cannot reach: any
// contents decode to ordered epochs within the bounds or an error, never a
// panic.
func FuzzEpochContents(f *testing.F) {
	for _, b := range seedEpochFiles(f) {
		r := fuzzRing()
		h := len(epochFileMagic) + 1
		p, err := func() ([]byte, error) {
			aead, _ := chacha20poly1305.NewX(r.fileKey)
			return aead.Open(nil, b[h:h+chacha20poly1305.NonceSizeX], b[h+chacha20poly1305.NonceSizeX:], b[:h])
		}()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	f.Add([]byte{0, 0})
	f.Add([]byte{1, maxEpochs + 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		r := fuzzRing()
		b, err := r.sealFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.decode(b); err != nil {
			var d *DamageError
			if !errors.As(err, &d) {
				t.Fatalf("decode: %v is not damage", err)
			}
			return
		}
		checkRing(t, r)
	})
}
