package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/store"
)

// Provision creates a node's identity in st: a new identity
// (crypto/identity), the device's libp2p Ed25519 key, and the device record
// signed by the identity and countersigned by the device key, written as
// store.Self with the display name. All randomness comes from rand (nil:
// crypto/rand). It fails, writing nothing, if st already holds an identity
// (the error wraps store.ErrExists).
func Provision(ctx context.Context, st store.Store, name string, rand io.Reader) error {
	if rand == nil {
		rand = cryptoRand{}
	}
	id, err := identity.Generate(rand)
	if err != nil {
		return fmt.Errorf("node: provision: %w", err)
	}
	var seed [ed25519.SeedSize]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return fmt.Errorf("node: provision: device key: %w", err)
	}
	devKey := ed25519.NewKeyFromSeed(seed[:])
	libKey, err := crypto.UnmarshalEd25519PrivateKey(devKey)
	if err != nil {
		return fmt.Errorf("node: provision: device key: %w", err)
	}
	pid, err := peer.IDFromPrivateKey(libKey)
	if err != nil {
		return fmt.Errorf("node: provision: device key: %w", err)
	}
	now := time.Now()
	rec, err := identity.NewDeviceRecord(id, devKey, []byte(pid), now, 1)
	if err != nil {
		return fmt.Errorf("node: provision: device record: %w", err)
	}
	self := store.Self{Name: name, CreatedAt: now}
	if self.Identity, err = id.MarshalBinary(); err != nil {
		return fmt.Errorf("node: provision: %w", err)
	}
	if self.DeviceKey, err = crypto.MarshalPrivateKey(libKey); err != nil {
		return fmt.Errorf("node: provision: %w", err)
	}
	if self.DeviceRecord, err = rec.MarshalBinary(); err != nil {
		return fmt.Errorf("node: provision: %w", err)
	}
	err = st.Update(ctx, func(tx *store.Tx) error {
		_, err := tx.Self()
		switch {
		case err == nil:
			return fmt.Errorf("node: provision: the store already holds an identity: %w", store.ErrExists)
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		return tx.PutSelf(self)
	})
	if err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("node: provision: %w", err)
	}
	return err
}
