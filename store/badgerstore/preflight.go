package badgerstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2"

	"github.com/sealpost/sealpost/store"
)

// Damage that badger does not report well: a missing MANIFEST makes it
// start an empty database and delete the tables it does not know; a
// missing KEYREGISTRY or a truncated or damaged table makes a goroutine of
// its Open panic, which no caller can recover. preflight looks for these
// before badger.Open, so that each is an error that names the file.

// DamageError reports a file of the store that is missing or damaged, so
// that the store cannot be opened as it is. It wraps store.ErrCorrupt.
type DamageError struct {
	// Path is the file's path.
	Path string
	// Problem says what is wrong with it.
	Problem string
}

func (e *DamageError) Error() string { return "store: " + e.Path + " " + e.Problem }
func (e *DamageError) Unwrap() error { return store.ErrCorrupt }

func errDamaged(dir, name, format string, args ...any) error {
	return &DamageError{Path: filepath.Join(dir, name), Problem: fmt.Sprintf(format, args...)}
}

// preflight checks the badger directory dir against the damage above. An
// empty or missing directory (a new store) passes.
func preflight(dir string, o badger.Options) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	have := map[string]bool{}
	data := false
	for _, e := range entries {
		have[e.Name()] = true
		switch filepath.Ext(e.Name()) {
		case ".sst", ".vlog", ".mem":
			data = true
		}
	}
	if !data {
		return nil
	}
	if !have[badger.ManifestFilename] {
		return errDamaged(dir, badger.ManifestFilename, "is missing")
	}
	if len(o.EncryptionKey) > 0 && !have[badger.KeyRegistryFileName] {
		return errDamaged(dir, badger.KeyRegistryFileName, "(the database's encryption keys) is missing")
	}
	reg, err := badger.OpenKeyRegistry(badger.KeyRegistryOptions{
		Dir: dir, ReadOnly: true, EncryptionKey: o.EncryptionKey,
		EncryptionKeyRotationDuration: o.EncryptionKeyRotationDuration,
	})
	if err != nil {
		if errors.Is(err, badger.ErrEncryptionKeyMismatch) {
			return fmt.Errorf("%w: the key does not open this database: %v", store.ErrCorrupt, err)
		}
		return errDamaged(dir, badger.KeyRegistryFileName, "does not read (%v)", err)
	}
	defer reg.Close()
	// An encrypted table keeps its decrypted index only in this cache.
	cache, err := ristretto.NewCache(&ristretto.Config[uint64, *fb.TableIndex]{NumCounters: 1000, MaxCost: 4 << 20, BufferItems: 64})
	if err != nil {
		return err
	}
	defer cache.Close()
	f, err := os.Open(filepath.Join(dir, badger.ManifestFilename))
	if err != nil {
		return err
	}
	m, _, err := badger.ReplayManifestFile(f, o.ExternalMagicVersion, o)
	f.Close()
	if err != nil {
		return errDamaged(dir, badger.ManifestFilename, "does not read (%v)", err)
	}
	for id, tm := range m.Tables {
		name := fmt.Sprintf("%06d.sst", id)
		if !have[name] {
			return errDamaged(dir, name, "is missing (the %s lists it)", badger.ManifestFilename)
		}
		dk, err := reg.DataKey(tm.KeyID)
		if err != nil {
			return errDamaged(dir, name, "needs a key the %s does not hold (%v)", badger.KeyRegistryFileName, err)
		}
		if err := checkTable(filepath.Join(dir, name), id, table.Options{
			BlockSize: o.BlockSize, BloomFalsePositive: o.BloomFalsePositive,
			Compression: tm.Compression, DataKey: dk, IndexCache: cache,
		}); err != nil {
			return errDamaged(dir, name, "is damaged: %v", err)
		}
	}
	return nil
}

// checkTable reads the table file at path and parses its index as badger
// does, turning badger's panic on a damaged one into an error.
func checkTable(path string, id uint64, opt table.Options) (err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	defer func() {
		if recover() != nil {
			err = errors.New("its index does not parse")
		}
	}()
	_, err = table.OpenInMemoryTable(b, id, &opt)
	return err
}
