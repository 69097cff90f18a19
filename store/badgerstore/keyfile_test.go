package badgerstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealpost/sealpost/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func putSelf(t *testing.T, s store.Store, name string) {
	t.Helper()
	err := s.Update(context.Background(), func(tx *store.Tx) error {
		return tx.PutSelf(store.Self{Name: name, Identity: []byte("id"), DeviceKey: []byte("dk"), CreatedAt: t0})
	})
	if err != nil {
		t.Fatalf("PutSelf: %v", err)
	}
}

func selfName(t *testing.T, s store.Store) string {
	t.Helper()
	var name string
	err := s.View(context.Background(), func(tx *store.Tx) error {
		self, err := tx.Self()
		name = self.Name
		return err
	})
	if err != nil {
		t.Fatalf("Self: %v", err)
	}
	return name
}

func openWith(dir string, passphrase string) (*Store, error) {
	return Open(context.Background(), dir, Options{Passphrase: []byte(passphrase)})
}

func TestReopen(t *testing.T) {
	for _, mode := range []Mode{ModePassphrase, ModeKeyFile, ModeUnencrypted} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			s := createStore(t, dir, mode)
			putSelf(t, s, "alice")
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got, err := ReadMode(dir); err != nil || got != mode {
				t.Fatalf("ReadMode: got %v %v, want %v", got, err, mode)
			}
			pass := ""
			if mode == ModePassphrase {
				pass = "correct horse"
			}
			s, err := openWith(dir, pass)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			if got := selfName(t, s); got != "alice" {
				t.Errorf("after reopen: name %q, want alice", got)
			}
			fi, err := os.Stat(filepath.Join(dir, keyFileName))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
			}
		})
	}
}

// TestEncryptedAtRest checks that a record's bytes appear in the files of
// an unencrypted store and in none of an encrypted one.
func TestEncryptedAtRest(t *testing.T) {
	marker := []byte("a very recognisable plaintext marker")
	for _, mode := range []Mode{ModeUnencrypted, ModePassphrase} {
		dir := t.TempDir()
		s := createStore(t, dir, mode)
		err := s.Update(context.Background(), func(tx *store.Tx) error {
			m := store.Message{ID: [16]byte{1}, State: store.MessageQueued, Body: marker}
			return tx.Messages().Put(&m)
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		found := false
		filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				b, _ := os.ReadFile(path)
				found = found || bytes.Contains(b, marker)
			}
			return nil
		})
		if found != (mode == ModeUnencrypted) {
			t.Errorf("%s: plaintext found on disk: %v", mode, found)
		}
	}
}

func TestWrongPassphrase(t *testing.T) {
	dir := t.TempDir()
	s := createStore(t, dir, ModePassphrase)
	putSelf(t, s, "alice")
	s.Close()
	if _, err := openWith(dir, "wrong horse"); !errors.Is(err, store.ErrWrongPassphrase) {
		t.Errorf("Open with a wrong passphrase: got %v, want ErrWrongPassphrase", err)
	}
	if _, err := openWith(dir, ""); !errors.Is(err, store.ErrPassphraseRequired) {
		t.Errorf("Open without a passphrase: got %v, want ErrPassphraseRequired", err)
	}
	// Any change to the authenticated header is caught as well.
	path := filepath.Join(dir, keyFileName)
	orig, _ := os.ReadFile(path)
	for _, off := range []int{len(keyFileMagic) + 4, len(keyFileMagic) + 12, len(orig) - 60, len(orig) - 1} {
		b := bytes.Clone(orig)
		b[off] ^= 1
		os.WriteFile(path, b, 0o600)
		_, err := openWith(dir, "correct horse")
		if !errors.Is(err, store.ErrWrongPassphrase) && !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("key file with byte %d flipped: got %v", off, err)
		}
	}
	os.WriteFile(path, orig, 0o600)
	s, err := openWith(dir, "correct horse")
	if err != nil {
		t.Fatalf("Open with the right passphrase: %v", err)
	}
	s.Close()
}

func TestChangePassphrase(t *testing.T) {
	dir := t.TempDir()
	s := createStore(t, dir, ModePassphrase)
	putSelf(t, s, "alice")
	// Changing is safe while the store is open: the data key stays.
	if err := ChangePassphrase(dir, []byte("wrong"), []byte("new"), fastKDF); !errors.Is(err, store.ErrWrongPassphrase) {
		t.Fatalf("ChangePassphrase with a wrong old one: got %v", err)
	}
	if err := ChangePassphrase(dir, []byte("correct horse"), []byte("battery staple"), fastKDF); err != nil {
		t.Fatalf("ChangePassphrase: %v", err)
	}
	s.Close()
	if _, err := openWith(dir, "correct horse"); !errors.Is(err, store.ErrWrongPassphrase) {
		t.Errorf("old passphrase after change: got %v, want ErrWrongPassphrase", err)
	}
	s, err := openWith(dir, "battery staple")
	if err != nil {
		t.Fatalf("Open with the new passphrase: %v", err)
	}
	if got := selfName(t, s); got != "alice" {
		t.Errorf("name %q after change", got)
	}
	s.Close()

	// Remove the passphrase, then set one again.
	if err := ChangePassphrase(dir, []byte("battery staple"), nil, KDFParams{}); err != nil {
		t.Fatalf("remove passphrase: %v", err)
	}
	if m, _ := ReadMode(dir); m != ModeKeyFile {
		t.Fatalf("mode after removing the passphrase: %v", m)
	}
	s, err = openWith(dir, "")
	if err != nil {
		t.Fatalf("Open key-file store: %v", err)
	}
	s.Close()
	if err := ChangePassphrase(dir, nil, []byte("third"), fastKDF); err != nil {
		t.Fatalf("add passphrase: %v", err)
	}
	s, err = openWith(dir, "third")
	if err != nil {
		t.Fatalf("Open with the added passphrase: %v", err)
	}
	if got := selfName(t, s); got != "alice" {
		t.Errorf("name %q after changes", got)
	}
	s.Close()
	// No temporary files are left behind.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != keyFileName && e.Name() != epochFileName && e.Name() != dataDirName && e.Name() != "lock" {
			t.Errorf("unexpected file %s", e.Name())
		}
	}

	plain := t.TempDir()
	createStore(t, plain, ModeUnencrypted).Close()
	if err := ChangePassphrase(plain, nil, []byte("x"), fastKDF); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("ChangePassphrase on an unencrypted store: got %v, want ErrInvalid", err)
	}
}

func TestCreateOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := openWith(dir, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Open of an empty dir: got %v, want ErrNotFound", err)
	}
	if _, err := Create(context.Background(), dir, ModePassphrase, Options{}); !errors.Is(err, store.ErrPassphraseRequired) {
		t.Errorf("Create without a passphrase: got %v, want ErrPassphraseRequired", err)
	}
	s := createStore(t, dir, ModeKeyFile)
	if _, err := openWith(dir, ""); !errors.Is(err, store.ErrLocked) {
		t.Errorf("second Open: got %v, want ErrLocked", err)
	}
	s.Close()
	if _, err := Create(context.Background(), dir, ModeKeyFile, testOptions()); !errors.Is(err, store.ErrExists) {
		t.Errorf("Create over a store: got %v, want ErrExists", err)
	}
	// A key file that does not match the database is refused clearly.
	other := t.TempDir()
	createStore(t, other, ModeKeyFile).Close()
	kf, _ := os.ReadFile(filepath.Join(other, keyFileName))
	os.WriteFile(filepath.Join(dir, keyFileName), kf, 0o600)
	if _, err := openWith(dir, ""); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("Open with another store's key: got %v, want ErrCorrupt", err)
	}
}

// encodeKeyFileV1 is a key file as version 1 wrote it: no checksum.
func encodeKeyFileV1(k *keyFile) []byte {
	b := encodeKeyFile(k)
	b = b[:len(b)-sha256.Size]
	b[len(keyFileMagic)] = 1
	return b
}

// FuzzParseKeyFile: any bytes parse to a key file or an error, never a
// panic; what parses encodes back to the same bytes (in its version); and
// no single changed byte of a version 2 file parses (the checksum).
func FuzzParseKeyFile(f *testing.F) {
	for _, mode := range []Mode{ModePassphrase, ModeKeyFile, ModeUnencrypted} {
		k := &keyFile{mode: mode, dataKey: make([]byte, dataKeySize)}
		if mode == ModePassphrase {
			var err error
			k, err = wrap(make([]byte, dataKeySize), []byte("p"), fastKDF, bytes.NewReader(make([]byte, 64)))
			if err != nil {
				f.Fatal(err)
			}
		}
		f.Add(encodeKeyFile(k))
		f.Add(encodeKeyFileV1(k))
	}
	f.Add([]byte(keyFileMagic + "\x02\x30")) // cut short: once a panic
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parseKeyFile(b)
		if err != nil {
			return
		}
		var enc []byte
		switch v := b[len(keyFileMagic)]; v {
		case keyFileVersion:
			enc = encodeKeyFile(k)
		case 1:
			enc = encodeKeyFileV1(k)
		default:
			t.Fatalf("version %d parsed", v)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("a parsed key file does not encode to its bytes:\n%x\n%x", b, enc)
		}
		if b[len(keyFileMagic)] == keyFileVersion {
			for i := range b {
				c := bytes.Clone(b)
				c[i] ^= 0x01
				if _, err := parseKeyFile(c); err == nil {
					t.Fatalf("byte %d changed: the key file still parses", i)
				}
			}
		}
		if k.mode == ModePassphrase {
			// Bounded parameters only; keep the fuzzer fast.
			if k.kdf.MemoryKiB <= 1024 && k.kdf.Time <= 2 {
				k.unwrap([]byte("p"))
			}
		}
	})
}
