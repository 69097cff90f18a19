package badgerstore

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/sealpost/sealpost/store"
)

// TestDataKeyRotation makes badger rotate its data keys (each new one is
// stored encrypted with the store's key) while the store is open, long
// after Open returned, then reopens the store and reads everything back.
func TestDataKeyRotation(t *testing.T) {
	dir := t.TempDir()
	opts := Options{MemTableSize: 1 << 20, vlogFileSize: 1 << 20, keyRotation: time.Millisecond}
	s, err := Create(context.Background(), dir, ModeKeyFile, opts)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 4096)
	write := func(round int) {
		err := s.Update(context.Background(), func(tx *store.Tx) error {
			for j := 0; j < 100; j++ {
				var id [16]byte
				binary.BigEndian.PutUint64(id[:], uint64(round*100+j))
				m := store.Message{ID: id, State: store.MessageReceived, Body: body}
				if err := tx.Messages().Put(&m); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 20; round++ {
		write(round)
		time.Sleep(2 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	err = s.View(context.Background(), func(tx *store.Tx) error {
		ms, err := tx.Messages().Since(0, 0)
		if err != nil {
			return err
		}
		if len(ms) != 2000 {
			t.Errorf("%d messages after reopen, want 2000", len(ms))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read after reopen: %v", err)
	}
}
