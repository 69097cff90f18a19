package messaging

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node/prekeys"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// newBareService starts a service on a host that does not listen, with a
// memory store holding a new identity: enough for everything but
// delivery, which it retries only hourly.
func newBareService(tb testing.TB, name string) *Service {
	tb.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	pid, err := peer.IDFromPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := key.Raw()
	if err != nil {
		tb.Fatal(err)
	}
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	rec, err := identity.NewDeviceRecord(id, ed25519.PrivateKey(raw), []byte(pid), time.Now(), 1)
	if err != nil {
		tb.Fatal(err)
	}
	self := store.Self{Name: name, CreatedAt: time.Now()}
	self.Identity, _ = id.MarshalBinary()
	self.DeviceKey, _ = crypto.MarshalPrivateKey(key)
	self.DeviceRecord, _ = rec.MarshalBinary()
	st := store.NewMemory()
	if err := st.Update(context.Background(), func(tx *store.Tx) error { return tx.PutSelf(self) }); err != nil {
		tb.Fatal(err)
	}
	h, err := libp2p.New(libp2p.Identity(key), libp2p.NoListenAddrs, libp2p.DisableRelay(), libp2p.Ping(false))
	if err != nil {
		tb.Fatal(err)
	}
	s, err := New(context.Background(), Config{Host: h, Store: st, Options: Options{
		RetryMin: time.Hour, Prekeys: prekeysPolicy(), SessionRate: 1e9, SessionBurst: 1e9,
	}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Close()
		h.Close()
		st.Close()
	})
	return s
}

// pair is a sender with a session to a receiver, made without the network:
// the sender fetched the receiver's bundle directly.
type pair struct {
	from, to *Service
	bundle   []byte // a bundle response the receiver served
}

func newPair(tb testing.TB) *pair {
	tb.Helper()
	from, to := newBareService(tb, "alice"), newBareService(tb, "bob")
	var data []byte
	err := to.do(context.Background(), false, func(w *work) error {
		var err error
		data, err = to.pk.Serve(w.tx, nil, true, w.now)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	now := from.clock.Now()
	b, err := checkBundle(data, to.uid, to.host.ID(), now)
	if err != nil {
		tb.Fatal(err)
	}
	rec, err := from.initiate(b, nil, now)
	if err != nil {
		tb.Fatal(err)
	}
	err = from.do(context.Background(), true, func(w *work) error {
		pub, _ := b.Identity.MarshalBinary()
		devRec, _ := b.Device.MarshalBinary()
		w.addSession(rec, nil)
		w.addContact(store.Contact{UserID: to.uid, Name: "bob", Identity: pub, State: store.ContactAccepted,
			Device: []byte(to.host.ID()), DeviceRecord: devRec, Session: rec.ID, CreatedAt: w.now})
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := (&protocol.BundleResponse{Code: protocol.CodeOK, Bundle: data}).Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return &pair{from: from, to: to, bundle: resp}
}

// deliveries sends texts from p.from and returns the encoded Deliver
// messages that would carry them.
func (p *pair) deliveries(tb testing.TB, texts ...string) [][]byte {
	tb.Helper()
	var out [][]byte
	for i, text := range texts {
		r, err := p.from.Send(context.Background(), "bob", text)
		if err != nil {
			tb.Fatal(err)
		}
		id, _ := ParseMessageID(r.ID)
		var e store.OutboxEntry
		err = p.from.st.View(context.Background(), func(tx *store.Tx) error {
			e, err = tx.Outbox().Get(id)
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
		d, err := (&protocol.Deliver{ID: uint64(i + 1), Identity: p.from.selfPub, Device: []byte(p.from.host.ID()),
			Ciphertext: e.Payload}).Marshal()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// prekeysPolicy keeps few one-time prekeys: generating them is most of
// a bare service's start.
func prekeysPolicy() prekeys.Policy { return prekeys.Policy{OneTimeTarget: 4, OneTimeLow: 2} }

// FuzzReceive feeds Deliver messages to the receive path, from decoding to
// the commit: whatever the bytes, no panic, no failed transaction, and a
// known code.
func FuzzReceive(f *testing.F) {
	p := newPair(f)
	seeds := p.deliveries(f, "hello", "second message", "third")
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte{0x08, 0x01})
	f.Add([]byte{0x08, 0x02, 0x10, 0x01})
	dev := []byte(p.from.host.ID())
	f.Fuzz(func(t *testing.T, b []byte) {
		var d protocol.Deliver
		if err := d.Unmarshal(b); err != nil {
			if c := protocol.CodeOf(err); !c.Known() || c == protocol.CodeOK || c == protocol.CodeInternal {
				t.Fatalf("decode error %v has code %v", err, c)
			}
			return
		}
		if !bytes.Equal(d.Device, dev) {
			return // the stream handler refuses it (wrong sender)
		}
		codes, err := p.to.Receive(context.Background(), []Incoming{{Identity: d.Identity, Device: d.Device, Ciphertext: d.Ciphertext}})
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if !codes[0].Known() {
			t.Fatalf("unknown code %v", codes[0])
		}
		// A second copy is a duplicate or refused again, never a new
		// message.
		before := countMessages(t, p.to)
		again, err := p.to.Receive(context.Background(), []Incoming{{Identity: d.Identity, Device: d.Device, Ciphertext: d.Ciphertext}})
		if err != nil {
			t.Fatalf("Receive again: %v", err)
		}
		if codes[0] == protocol.CodeOK && again[0] != protocol.CodeOK {
			t.Fatalf("an accepted message is refused the second time: %v", again[0])
		}
		if after := countMessages(t, p.to); after != before {
			t.Fatalf("a second copy stored %d more messages", after-before)
		}
	})
}

func countMessages(t *testing.T, s *Service) int {
	t.Helper()
	n := 0
	err := s.st.View(context.Background(), func(tx *store.Tx) error {
		all, err := tx.Messages().Since(0, 0)
		n = len(all)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// FuzzBundleResponse feeds bundle responses to the requester's checks:
// decoding, verification against the expected identity and device, and
// the pin.
func FuzzBundleResponse(f *testing.F) {
	p := newPair(f)
	f.Add(p.bundle)
	f.Add([]byte{0x08, 0x01, 0x10, 0x0d})
	want, dev := p.to.uid, p.to.host.ID()
	now := p.from.clock.Now()
	f.Fuzz(func(t *testing.T, b []byte) {
		var resp protocol.BundleResponse
		if err := resp.Unmarshal(b); err != nil || resp.Code != protocol.CodeOK {
			return
		}
		bundle, err := checkBundle(resp.Bundle, want, dev, now)
		if err != nil {
			return
		}
		if bundle.Identity.UserID() != want || !bytes.Equal(bundle.Device.DeviceID(), []byte(dev)) {
			t.Fatal("checkBundle accepted a bundle of another identity or device")
		}
		h := bundle.Hash()
		var pin protocol.BundlePin
		copy(pin[:], h[:])
		if !pin.Matches(h[:]) {
			t.Fatal("pin does not match its own bundle")
		}
	})
}

func TestReceiveSeeds(t *testing.T) {
	p := newPair(t)
	seeds := p.deliveries(t, "one", "two")
	for i, s := range seeds {
		var d protocol.Deliver
		if err := d.Unmarshal(s); err != nil {
			t.Fatal(err)
		}
		codes, err := p.to.Receive(context.Background(), []Incoming{{Identity: d.Identity, Device: d.Device, Ciphertext: d.Ciphertext}})
		if err != nil || codes[0] != protocol.CodeOK {
			t.Fatalf("seed %d: %v, %v", i, codes, err)
		}
	}
	if n := countMessages(t, p.to); n != 2 {
		t.Errorf("the receiver holds %d messages, want 2", n)
	}
}
