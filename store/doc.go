// Package store persists a node's state: its own identity and keys,
// prekeys, sessions, contacts, messages, the outbox, the seen-set, its
// relay mailboxes and its attachments' transfer state; and a relay's
// mailboxes, envelopes and blob references (the blobs' bytes live in
// store/blobfs).
//
// Callers see a transactional Store that hands out typed tables through a
// Tx, never raw keys:
//
//	err := st.Update(ctx, func(tx *store.Tx) error {
//		if err := tx.Sessions().Put(ses); err != nil {
//			return err
//		}
//		return tx.Messages().Put(&msg)
//	})
//
// Update returns only when the transaction is durable, and concurrent
// Updates share one fsync, so a caller that needs many durable writes per
// second issues them concurrently (or batches them into one Update). Update
// may run its function more than once when transactions conflict (see
// Store); keep side effects inside the transaction.
//
// The typed layer is written once over a small ordered key-value interface
// (Backend, KV) with two implementations: the in-memory one in this package
// (NewMemory) and badger in store/badgerstore. store/storetest is the
// conformance suite both run.
//
// # Records
//
// Records are plain Go structs, encoded by this package in a compact
// versioned binary form (see codec.go): a version byte and the fields in
// order. Decoders check every length against the bytes that remain and the
// size limits of this package before allocating, and fail with ErrCorrupt.
// Times are stored with nanosecond precision in UTC; compare them with
// time.Time.Equal.
//
// # Schema
//
// The key layout has a version (SchemaVersion) stored in the backend. Open
// initializes an empty backend to the current schema and upgrades an older
// one through the ordered migrations in migrate.go; it refuses a newer one
// with ErrSchemaTooNew.
//
// # Adding a typed table
//
// A new table (as the relay's mailboxes, token hashes and envelopes were)
// is a local change: take the next free table byte in keys.go,
// write the record with marshal/unmarshal (a version byte first) and a
// small table type with the methods its caller needs, add an accessor
// method on Tx, a fuzz target for the decoder and a test in storetest. A
// new table needs no migration; rewriting existing data does (append to
// migrations and bump SchemaVersion).
package store
