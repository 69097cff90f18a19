package badgerstore

import (
	"bytes"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/sealpost/sealpost/store"
)

// kvTxn is a store.KV over a badger transaction.
type kvTxn struct {
	txn      *badger.Txn
	ring     *keyring // nil: values as they are; the caller holds ring.mu
	writable bool
	dirty    bool
	deletes  int64
	scanning bool
}

func (t *kvTxn) Get(key []byte) ([]byte, error) {
	item, err := t.txn.Get(key)
	if err != nil {
		return nil, translate(err)
	}
	var v []byte
	err = item.Value(func(raw []byte) error {
		var err error
		v, err = t.open(item.Key(), item.UserMeta(), raw)
		return err
	})
	return v, translate(err)
}

// open returns the value stored for key as raw with badger's user-meta
// byte meta: opened if sealed, else a copy. Every non-empty value of an
// encrypted store is sealed (but those written before sealing existed,
// until the first rotation re-seals them).
func (t *kvTxn) open(key []byte, meta byte, raw []byte) ([]byte, error) {
	switch {
	case meta == metaSealed && t.ring != nil:
		return t.ring.open(key, raw)
	case meta == 0 && (t.ring == nil || len(raw) == 0 || t.ring.legacy):
		return bytes.Clone(raw), nil
	}
	return nil, fmt.Errorf("%w: a stored value has the wrong form (damaged on disk)", store.ErrCorrupt)
}

func (t *kvTxn) Set(key, value []byte) error {
	if !t.writable {
		return store.ErrReadOnly
	}
	e := badger.NewEntry(key, value)
	if t.ring != nil && len(value) > 0 {
		e = badger.NewEntry(key, t.ring.seal(key, value)).WithMeta(metaSealed)
	}
	if err := t.txn.SetEntry(e); err != nil {
		return translate(err)
	}
	t.dirty = true
	return nil
}

func (t *kvTxn) Delete(key []byte) error {
	if !t.writable {
		return store.ErrReadOnly
	}
	if err := t.txn.Delete(key); err != nil {
		return translate(err)
	}
	t.dirty = true
	t.deletes++
	return nil
}

// errNestedScan: badger allows one iterator at a time in a read-write
// transaction.
var errNestedScan = errors.New("badgerstore: Scan inside a Scan callback")

func (t *kvTxn) Scan(lo, hi []byte, reverse bool, fn func(k, v []byte) error) error {
	if t.scanning {
		return errNestedScan
	}
	t.scanning = true
	defer func() { t.scanning = false }()
	opt := badger.DefaultIteratorOptions
	opt.PrefetchValues = false
	opt.Reverse = reverse
	if hi != nil {
		// Let badger skip tables that cannot hold the range.
		opt.Prefix = commonPrefix(lo, hi)
	}
	it := t.txn.NewIterator(opt)
	defer it.Close()
	if reverse {
		if hi == nil {
			it.Rewind()
		} else {
			it.Seek(hi)
		}
	} else {
		it.Seek(lo)
	}
	for ; it.Valid(); it.Next() {
		item := it.Item()
		k := item.Key()
		if reverse {
			if hi != nil && bytes.Compare(k, hi) >= 0 {
				continue
			}
			if bytes.Compare(k, lo) < 0 {
				return nil
			}
		} else if hi != nil && bytes.Compare(k, hi) >= 0 {
			return nil
		}
		var ferr error
		err := item.Value(func(v []byte) error {
			if t.ring != nil || item.UserMeta() != 0 {
				var err error
				if v, err = t.open(k, item.UserMeta(), v); err != nil {
					return err
				}
			}
			ferr = fn(k, v)
			return nil
		})
		if err != nil {
			return translate(err)
		}
		if ferr != nil {
			return ferr
		}
	}
	return nil
}

func commonPrefix(a, b []byte) []byte {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return a[:n:n]
}
