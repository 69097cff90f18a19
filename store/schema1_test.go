package store

// The schema-1 code path, kept to write the migration fixture
// (testdata/schema1.kv; see TestWriteFixture). Schema 1 differs from 2
// only in the outbox: Outbox.Put wrote the entry alone, without the
// NextAttempt index, and Due scanned every entry.

// outboxPutSchema1 is Outbox.Put as schema 1 had it.
func outboxPutSchema1(tx *Tx, o OutboxEntry) error {
	if err := o.validate(); err != nil {
		return err
	}
	return tx.set(outboxKey(o.ID), o.marshal())
}

// writeSchema1 writes the records into kv as a schema-1 store did: the
// tables that schema 2 did not change through the current code, the outbox
// through outboxPutSchema1, and schema version 1.
func writeSchema1(kv KV, self Self, contacts []Contact, msgs []Message, outbox []OutboxEntry, seen map[[32]byte]int64) error {
	tx := &Tx{kv: kv, writable: true}
	if err := tx.PutSelf(self); err != nil {
		return err
	}
	for _, c := range contacts {
		if err := tx.Contacts().Put(c); err != nil {
			return err
		}
	}
	for _, m := range msgs {
		if err := tx.Messages().Put(&m); err != nil {
			return err
		}
	}
	for _, o := range outbox {
		if err := outboxPutSchema1(tx, o); err != nil {
			return err
		}
	}
	for h, sec := range seen {
		if err := tx.Seen().Add(h, self.CreatedAt.Add(timeSeconds(sec))); err != nil {
			return err
		}
	}
	return setSchema(kv, 1)
}
