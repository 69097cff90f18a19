package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
)

// SchemaVersion is the layout of keys and records this package writes.
//
//	1: the first layout.
//	2: adds the outbox index by NextAttempt (tOutboxDue), so Outbox.Due
//	   reads only the entries that are due instead of every entry.
const SchemaVersion = 2

// migration upgrades a store from schema to schema+1. It runs in one
// Update together with the version bump, so it is atomic: a store is
// always at one schema or the next, never in between. A migration must
// therefore fit in one transaction; one that might not must be written to
// resume (idempotent steps in several Updates, recording progress).
type migration struct {
	from int
	name string
	fn   func(tx *Tx) error
}

// migrations is the ordered list of upgrades; migrations[i].from == i+1.
var migrations = []migration{
	{from: 1, name: "index the outbox by next attempt", fn: indexOutboxDue},
}

var schemaKey = key(tMeta, []byte("schema"))

// schema returns the stored schema version, or 0 if none is recorded.
func schema(kv KV) (int, error) {
	b, err := kv.Get(schemaKey)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	v, n := binary.Uvarint(b)
	if n != len(b) || v == 0 || v > 1<<16 {
		return 0, fmt.Errorf("schema version: %w", ErrCorrupt)
	}
	return int(v), nil
}

func setSchema(kv KV, v int) error {
	return kv.Set(schemaKey, binary.AppendUvarint(nil, uint64(v)))
}

// migrate brings b to the latest schema of ms (whose last step leads to
// SchemaVersion when ms is migrations), or initializes an empty backend.
func migrate(ctx context.Context, b Backend, ms []migration) error {
	target := 1 + len(ms)
	var current int
	err := b.Update(ctx, func(kv KV) error {
		v, err := schema(kv)
		if err != nil {
			return err
		}
		current = v
		if v != 0 {
			return nil
		}
		empty := true
		err = kv.Scan(nil, nil, false, func(_, _ []byte) error {
			empty = false
			return errStop
		})
		if err != nil && !errors.Is(err, errStop) {
			return err
		}
		if !empty {
			return fmt.Errorf("schema version: %w: data without a version", ErrCorrupt)
		}
		current = target
		return setSchema(kv, target)
	})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	if current > target {
		return fmt.Errorf("open store: schema %d, this program knows up to %d: %w", current, target, ErrSchemaTooNew)
	}
	for _, m := range ms[current-1:] {
		err := b.Update(ctx, func(kv KV) error {
			v, err := schema(kv)
			if err != nil {
				return err
			}
			if v != m.from {
				return fmt.Errorf("schema version %d, migration expects %d: %w", v, m.from, ErrCorrupt)
			}
			if err := m.fn(&Tx{kv: kv, writable: true}); err != nil {
				return err
			}
			return setSchema(kv, m.from+1)
		})
		if err != nil {
			return fmt.Errorf("open store: migrate schema %d to %d (%s): %w", m.from, m.from+1, m.name, err)
		}
	}
	return nil
}

// indexOutboxDue (schema 1 -> 2) writes the NextAttempt index entry of
// every outbox entry.
func indexOutboxDue(tx *Tx) error {
	var keys [][]byte
	err := tx.scanPrefix([]byte{tOutbox}, false, func(_, v []byte) error {
		var o OutboxEntry
		if err := o.unmarshal(v); err != nil {
			return err
		}
		keys = append(keys, outboxDueKey(o.NextAttempt, o.ID))
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := tx.set(k, nil); err != nil {
			return err
		}
	}
	return nil
}
