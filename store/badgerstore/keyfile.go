package badgerstore

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/sealpost/sealpost/store"
)

// Mode says how a store's data is protected at rest. It is chosen when the
// store is created and recorded in its key file.
type Mode uint8

const (
	// ModePassphrase: the data is encrypted with a random data key, which is
	// kept wrapped by a key derived from the passphrase with Argon2id.
	ModePassphrase Mode = 1
	// ModeKeyFile: the data is encrypted with a random data key kept in
	// plain in the key file (mode 0600) next to it. This protects nothing
	// against someone who copies the disk; it only keeps the data from
	// being read by tools that do not look for the key.
	ModeKeyFile Mode = 2
	// ModeUnencrypted: the data is not encrypted (a relay, whose store
	// holds only sealed envelopes).
	ModeUnencrypted Mode = 3
)

func (m Mode) String() string {
	switch m {
	case ModePassphrase:
		return "passphrase"
	case ModeKeyFile:
		return "key-file"
	case ModeUnencrypted:
		return "unencrypted"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// KDFParams are Argon2id's parameters. They are recorded in the key file,
// so they can grow without breaking existing stores.
type KDFParams struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

// DefaultKDF is used when Options.KDF is zero: t=3, 64 MiB, p=4 (about a
// quarter of a second on a small machine).
var DefaultKDF = KDFParams{Time: 3, MemoryKiB: 64 << 10, Threads: 4}

// Bounds on parameters read from a key file, so a damaged or hostile file
// cannot make Open allocate without limit.
const (
	maxKDFTime   = 64
	maxKDFMemory = 4 << 20 // KiB: 4 GiB
	minKDFMemory = 8       // KiB, Argon2's minimum for one lane
)

func (p KDFParams) validate() error {
	if p.Time < 1 || p.Time > maxKDFTime || p.Threads < 1 ||
		p.MemoryKiB < minKDFMemory*uint32(p.Threads) || p.MemoryKiB > maxKDFMemory {
		return fmt.Errorf("%w: Argon2id parameters t=%d m=%dKiB p=%d out of range",
			store.ErrInvalid, p.Time, p.MemoryKiB, p.Threads)
	}
	return nil
}

// Key file layout (version 2), all integers big-endian:
//
//	magic   "sealpost/store-key" (18 bytes)
//	version 2 (1 byte; version 1 is the same without the checksum)
//	mode    1 passphrase | 2 key-file | 3 unencrypted (1 byte)
//	mode 1: kdf 1 = Argon2id (1 byte), time (4), memory KiB (4),
//	        threads (1), salt (16), nonce (24), sealed data key (32+16):
//	        XChaCha20-Poly1305 under the Argon2id key, with every byte
//	        before the sealed key as additional data, so the parameters
//	        cannot be changed without the passphrase.
//	mode 2: data key (32)
//	mode 3: nothing
//	checksum: SHA-256 of every byte before it (32), so that a damaged
//	        file is told apart from a wrong passphrase.
const (
	keyFileName    = "key"
	keyFileMagic   = "sealpost/store-key"
	keyFileVersion = 2
	kdfArgon2id    = 1
	dataKeySize    = 32
	saltSize       = 16
)

// keyFile is a parsed key file.
type keyFile struct {
	mode    Mode
	kdf     KDFParams
	salt    []byte
	nonce   []byte
	sealed  []byte // mode 1
	dataKey []byte // mode 2
	header  []byte // mode 1: the authenticated bytes
}

func encodeKeyFile(k *keyFile) []byte {
	b := []byte(keyFileMagic)
	b = append(b, keyFileVersion, byte(k.mode))
	switch k.mode {
	case ModePassphrase:
		b = append(b, kdfArgon2id)
		b = binary.BigEndian.AppendUint32(b, k.kdf.Time)
		b = binary.BigEndian.AppendUint32(b, k.kdf.MemoryKiB)
		b = append(b, k.kdf.Threads)
		b = append(b, k.salt...)
		b = append(b, k.nonce...)
		b = append(b, k.sealed...)
	case ModeKeyFile:
		b = append(b, k.dataKey...)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// errKeyFile describes a key file that does not parse, errKeyFileSum one
// that does not match its checksum.
var (
	errKeyFile    = &DamageError{Path: keyFileName, Problem: "is not a key file"}
	errKeyFileSum = &DamageError{Path: keyFileName, Problem: "is damaged (it does not match its checksum)"}
)

func parseKeyFile(b []byte) (*keyFile, error) {
	if !bytes.HasPrefix(b, []byte(keyFileMagic)) || len(b) < len(keyFileMagic)+2 {
		return nil, errKeyFile
	}
	rest := b[len(keyFileMagic):]
	switch v := rest[0]; {
	case v > keyFileVersion:
		return nil, fmt.Errorf("key file version %d: %w", v, store.ErrSchemaTooNew)
	case v == keyFileVersion:
		n := len(b) - sha256.Size
		if n < len(keyFileMagic)+2 {
			return nil, errKeyFileSum // cut short
		}
		if sum := sha256.Sum256(b[:n]); !bytes.Equal(sum[:], b[n:]) {
			return nil, errKeyFileSum
		}
		b = b[:n]
		rest = b[len(keyFileMagic):]
	case v != 1:
		return nil, errKeyFile
	}
	k := &keyFile{mode: Mode(rest[1])}
	rest = rest[2:]
	switch k.mode {
	case ModePassphrase:
		const n = 1 + 4 + 4 + 1 + saltSize + chacha20poly1305.NonceSizeX + dataKeySize + chacha20poly1305.Overhead
		if len(rest) != n || rest[0] != kdfArgon2id {
			return nil, errKeyFile
		}
		k.kdf = KDFParams{
			Time:      binary.BigEndian.Uint32(rest[1:]),
			MemoryKiB: binary.BigEndian.Uint32(rest[5:]),
			Threads:   rest[9],
		}
		if err := k.kdf.validate(); err != nil {
			return nil, fmt.Errorf("%w: %v", errKeyFile, err)
		}
		rest = rest[10:]
		k.salt = bytes.Clone(rest[:saltSize])
		rest = rest[saltSize:]
		k.nonce = bytes.Clone(rest[:chacha20poly1305.NonceSizeX])
		k.sealed = bytes.Clone(rest[chacha20poly1305.NonceSizeX:])
		k.header = bytes.Clone(b[:len(b)-len(k.sealed)])
	case ModeKeyFile:
		if len(rest) != dataKeySize {
			return nil, errKeyFile
		}
		k.dataKey = bytes.Clone(rest)
	case ModeUnencrypted:
		if len(rest) != 0 {
			return nil, errKeyFile
		}
	default:
		return nil, errKeyFile
	}
	return k, nil
}

// deriveKey runs Argon2id and then returns its memory to the operating
// system, so the (by default 64 MiB) buffer does not stay resident.
func deriveKey(passphrase []byte, salt []byte, p KDFParams) []byte {
	k := argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, chacha20poly1305.KeySize)
	runtime.GC()
	debug.FreeOSMemory()
	return k
}

// wrap returns a passphrase key file holding dataKey.
func wrap(dataKey, passphrase []byte, p KDFParams, rnd io.Reader) (*keyFile, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	k := &keyFile{mode: ModePassphrase, kdf: p,
		salt: make([]byte, saltSize), nonce: make([]byte, chacha20poly1305.NonceSizeX)}
	if _, err := io.ReadFull(rnd, k.salt); err != nil {
		return nil, fmt.Errorf("read random salt: %w", err)
	}
	if _, err := io.ReadFull(rnd, k.nonce); err != nil {
		return nil, fmt.Errorf("read random nonce: %w", err)
	}
	kek := deriveKey(passphrase, k.salt, p)
	defer clear(kek)
	aead, err := chacha20poly1305.NewX(kek)
	if err != nil {
		return nil, err
	}
	k.sealed = make([]byte, dataKeySize+chacha20poly1305.Overhead) // size the encoding
	header := encodeKeyFile(k)
	header = header[:len(header)-sha256.Size-len(k.sealed)]
	k.sealed = aead.Seal(nil, k.nonce, dataKey, header)
	return k, nil
}

// unwrap returns the data key of a passphrase key file.
func (k *keyFile) unwrap(passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, store.ErrPassphraseRequired
	}
	kek := deriveKey(passphrase, k.salt, k.kdf)
	defer clear(kek)
	aead, err := chacha20poly1305.NewX(kek)
	if err != nil {
		return nil, err
	}
	dk, err := aead.Open(nil, k.nonce, k.sealed, k.header)
	if err != nil {
		return nil, store.ErrWrongPassphrase
	}
	return dk, nil
}

// readKeyFile reads and parses dir's key file; store.ErrNotFound if there
// is none.
func readKeyFile(dir string) (*keyFile, error) {
	b, err := os.ReadFile(filepath.Join(dir, keyFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no store in %s: %w", dir, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	if len(b) > 4096 {
		return nil, &DamageError{Path: filepath.Join(dir, keyFileName), Problem: errKeyFile.Problem}
	}
	k, err := parseKeyFile(b)
	if d := (*DamageError)(nil); errors.As(err, &d) {
		return nil, &DamageError{Path: filepath.Join(dir, keyFileName), Problem: d.Problem}
	}
	return k, err
}

// writeKeyFile atomically replaces dir's key file (writeFileAtomic; step
// as there).
func writeKeyFile(dir string, k *keyFile, step func(string)) error {
	b := encodeKeyFile(k)
	defer clear(b)
	if err := writeFileAtomic(dir, keyFileName, b, step); err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// ReadMode returns how the store in dir is protected, so a caller knows
// whether to ask for a passphrase; store.ErrNotFound if dir holds no store.
func ReadMode(dir string) (Mode, error) {
	k, err := readKeyFile(dir)
	if err != nil {
		return 0, err
	}
	return k.mode, nil
}

// ChangePassphrase rewraps the data key of the store in dir without
// re-encrypting anything: old unlocks it (ignored for a ModeKeyFile
// store), new protects it from now on with Argon2id parameters kdf (zero:
// DefaultKDF). An empty new turns the store into a ModeKeyFile store; a
// ModeKeyFile store given a new passphrase becomes a ModePassphrase one.
// The key file is replaced atomically, so a crash leaves the old or the
// new passphrase working. It is safe while the store is open.
func ChangePassphrase(dir string, old, new []byte, kdf KDFParams) error {
	return changePassphrase(dir, old, new, kdf, nil)
}

// changePassphrase is ChangePassphrase with writeKeyFile's step hook.
func changePassphrase(dir string, old, new []byte, kdf KDFParams, step func(string)) error {
	removeTemps(dir, keyFileName)
	k, err := readKeyFile(dir)
	if err != nil {
		return err
	}
	var dk []byte
	switch k.mode {
	case ModePassphrase:
		if dk, err = k.unwrap(old); err != nil {
			return err
		}
	case ModeKeyFile:
		dk = k.dataKey
	default:
		return fmt.Errorf("change passphrase: %w: the store is not encrypted", store.ErrInvalid)
	}
	defer clear(dk)
	var nk *keyFile
	if len(new) == 0 {
		nk = &keyFile{mode: ModeKeyFile, dataKey: dk}
	} else {
		if kdf == (KDFParams{}) {
			kdf = DefaultKDF
		}
		if nk, err = wrap(dk, new, kdf, rand.Reader); err != nil {
			return err
		}
	}
	return writeKeyFile(dir, nk, step)
}
