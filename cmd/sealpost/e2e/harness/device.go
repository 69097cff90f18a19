package harness

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node/home"
	"github.com/sealpost/sealpost/store"
)

// NewIdentity starts a stopped daemon's home over with a new identity
// on the same device: the home is removed and initialized again with
// args, and the new identity takes the old device key (so the device's
// peer ID stays). For a contact, that is an identity change.
func (h *Home) NewIdentity(args ...string) {
	h.t.Helper()
	deviceKey := h.self().DeviceKey
	if err := os.RemoveAll(h.Dir); err != nil {
		h.t.Fatal(err)
	}
	h.Init(args...)
	self := h.self()
	id, err := identity.ParsePrivate(self.Identity)
	if err != nil {
		h.t.Fatal(err)
	}
	// The device key as libp2p marshals an Ed25519 key (protobuf: type 1,
	// 64 bytes of key), and its peer ID (the identity multihash of the
	// marshalled public key): written out, as only node/ imports libp2p.
	keyHeader := []byte{0x08, 0x01, 0x12, 0x40}
	if len(deviceKey) != len(keyHeader)+ed25519.PrivateKeySize || !bytes.HasPrefix(deviceKey, keyHeader) {
		h.t.Fatalf("the device key is not a marshalled Ed25519 key")
	}
	raw := ed25519.PrivateKey(deviceKey[len(keyHeader):])
	pid := append([]byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}, raw.Public().(ed25519.PublicKey)...)
	rec, err := identity.NewDeviceRecord(id, raw, pid, time.Now(), 1)
	if err != nil {
		h.t.Fatal(err)
	}
	self.DeviceKey = deviceKey
	if self.DeviceRecord, err = rec.MarshalBinary(); err != nil {
		h.t.Fatal(err)
	}
	self.Card = nil
	h.update(func(tx *store.Tx) error { return tx.PutSelf(self) })
}

// self reads the identity and device key of a stopped daemon's home (one
// without a passphrase).
func (h *Home) self() store.Self {
	h.t.Helper()
	var self store.Self
	h.view(func(tx *store.Tx) error {
		var err error
		self, err = tx.Self()
		return err
	})
	return self
}

func (h *Home) view(f func(*store.Tx) error) {
	h.t.Helper()
	st, err := home.Home{Dir: h.Dir}.OpenStore(context.Background(), nil, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	defer st.Close()
	if err := st.View(context.Background(), f); err != nil {
		h.t.Fatal(err)
	}
}

func (h *Home) update(f func(*store.Tx) error) {
	h.t.Helper()
	st, err := home.Home{Dir: h.Dir}.OpenStore(context.Background(), nil, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	defer st.Close()
	if err := st.Update(context.Background(), f); err != nil {
		h.t.Fatal(err)
	}
}
