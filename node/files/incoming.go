package files

import (
	"errors"
	"os"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Received records the pointer f of a message id from a contact, in the
// transaction that commits the message (messaging calls it): an incoming
// file, queued, which the engine downloads if auto and it is small enough
// (Options.AutoDownload; after the commit, call Wake); otherwise it waits
// for Download. A pointer already recorded under id (the same message
// received twice) is left as it is.
func Received(tx *store.Tx, id protocol.MessageID, from identity.UserID, f *protocol.File, now time.Time, auto bool) error {
	return received(tx, id, protocol.GroupID{}, from, f, now, auto)
}

func received(tx *store.Tx, id protocol.MessageID, group protocol.GroupID, from identity.UserID, f *protocol.File, now time.Time, auto bool) error {
	if _, err := tx.Files().Get(id); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	enc, err := f.Marshal()
	if err != nil {
		return err
	}
	rec := store.File{
		ID:        id,
		Peer:      from,
		Group:     group,
		Pointer:   enc,
		Name:      f.Name,
		MIME:      f.MIME,
		Size:      uint64(f.Size),
		State:     store.FileQueued,
		Pending:   auto,
		CreatedAt: now,
		UpdatedAt: now,
	}
	for _, r := range f.Relays {
		rec.Relays = append(rec.Relays, store.FileRelay{Relay: r.Relay, Mailbox: r.Mailbox, Log: r.Log})
	}
	return tx.Files().Put(&rec)
}

// Delete deletes the file of message id, in the transaction tx that
// deletes the message (messaging calls it): its record now, and its
// ciphertext in dir with the function it returns, to call after the
// commit. A message without a file is no error.
func Delete(tx *store.Tx, dir string, id protocol.MessageID) (func(), error) {
	if _, err := tx.Files().Get(id); errors.Is(err, store.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if err := tx.Files().Delete(id); err != nil {
		return nil, err
	}
	path := dataPath(dir, id)
	return func() { os.Remove(path) }, nil
}
