package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

func testGroups(t *testing.T, st store.Store) {
	now := time.Unix(1_770_000_000, 0)
	gid := protocol.GroupID(id32(0x61))
	g := store.Group{ID: gid, Name: "club", State: store.GroupActive, Inviter: identity.UserID(id32(2)), Epoch: 3, Members: 4, Admin: true,
		Homes:   []store.GroupHomeCursor{{Relay: []byte{0, 5, 1, 2, 3, 4, 5}, Addrs: [][]byte{{4, 127, 0, 0, 1}}, Log: protocol.GroupLogID(id32(0x71)), Cursor: 9}},
		SendSeq: 5, CreatedAt: now, UpdatedAt: now.Add(time.Second)}
	update(t, st, func(tx *store.Tx) error {
		if err := tx.Groups().Put(&g); err != nil {
			return err
		}
		return tx.Groups().PutState(gid, []byte("mls state"))
	})
	view(t, st, func(tx *store.Tx) error {
		got, err := tx.Groups().Get(gid)
		if err != nil {
			return err
		}
		equal(t, "group", got, g)
		all, err := tx.Groups().List()
		if err != nil || len(all) != 1 {
			t.Errorf("List: %d groups, %v", len(all), err)
		}
		b, err := tx.Groups().State(gid)
		if err != nil || string(b) != "mls state" {
			t.Errorf("State: %q, %v", b, err)
		}
		if _, err := tx.Groups().Get(protocol.GroupID(id32(9))); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get of a missing group: %v", err)
		}
		return nil
	})
	if err := st.Update(t.Context(), func(tx *store.Tx) error {
		bad := g
		bad.State = 0
		return tx.Groups().Put(&bad)
	}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Put of an invalid group: %v", err)
	}

	t.Run("Work", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			for i := range 3 {
				n, err := tx.Groups().AddWork(store.GroupWork{Group: gid, Kind: 1, Data: []byte{byte(i)}})
				if err != nil {
					return err
				}
				if n != uint64(i+1) {
					t.Errorf("AddWork: n %d, want %d", n, i+1)
				}
			}
			_, err := tx.Groups().AddWork(store.GroupWork{Group: gid, Kind: 2, Data: []byte("other kind")})
			return err
		})
		update(t, st, func(tx *store.Tx) error {
			if err := tx.Groups().DeleteWork(gid, 1, 2); err != nil {
				return err
			}
			return tx.Groups().PutWork(store.GroupWork{Group: gid, Kind: 1, N: 3, Data: []byte("replaced")})
		})
		view(t, st, func(tx *store.Tx) error {
			w, err := tx.Groups().Work(gid, 1, 0)
			if err != nil {
				return err
			}
			if len(w) != 2 || w[0].N != 1 || string(w[1].Data) != "replaced" {
				t.Errorf("Work: %+v", w)
			}
			w, _ = tx.Groups().Work(gid, 1, 1)
			if len(w) != 1 {
				t.Errorf("Work with limit 1: %d items", len(w))
			}
			return nil
		})
		// N goes on from the last one given, even once every item is
		// gone: an N is never given twice.
		update(t, st, func(tx *store.Tx) error {
			for _, n := range []uint64{1, 3} {
				if err := tx.Groups().DeleteWork(gid, 1, n); err != nil {
					return err
				}
			}
			n, err := tx.Groups().AddWork(store.GroupWork{Group: gid, Kind: 1, Data: []byte("after")})
			if n != 4 {
				t.Errorf("AddWork after deleting every item: n %d, want 4", n)
			}
			return err
		})
		view(t, st, func(tx *store.Tx) error {
			for kind, want := range map[store.GroupWorkKind]int{1: 1, 2: 1} {
				if w, err := tx.Groups().Work(gid, kind, 0); err != nil || len(w) != want {
					t.Errorf("Work of kind %d: %+v, %v; want %d items", kind, w, err, want)
				}
			}
			return nil
		})
		update(t, st, func(tx *store.Tx) error {
			_, err := tx.Groups().AddWork(store.GroupWork{Group: gid, Kind: 0, Data: []byte("none")})
			if !errors.Is(err, store.ErrInvalid) {
				t.Errorf("AddWork of kind 0: %v", err)
			}
			return nil
		})
	})

	t.Run("Inbox", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			for i := range 2 {
				e := store.GroupInboxEntry{From: identity.UserID(id32(byte(i + 1))), Accepted: i == 0, Control: []byte{1, byte(i)}, ReceivedAt: now}
				if err := tx.Groups().AddInbox(e); err != nil {
					return err
				}
			}
			return nil
		})
		var first uint64
		view(t, st, func(tx *store.Tx) error {
			in, err := tx.Groups().Inbox(0)
			if err != nil {
				return err
			}
			if len(in) != 2 || !in[0].Accepted || in[1].Accepted || in[1].Control[1] != 1 {
				t.Errorf("Inbox: %+v", in)
			}
			first = in[0].N
			return nil
		})
		update(t, st, func(tx *store.Tx) error { return tx.Groups().DeleteInbox(first) })
		view(t, st, func(tx *store.Tx) error {
			in, err := tx.Groups().Inbox(0)
			if err != nil || len(in) != 1 {
				t.Errorf("Inbox after delete: %d, %v", len(in), err)
			}
			return nil
		})
	})

	t.Run("Deliveries", func(t *testing.T) {
		msg := protocol.MessageID(id16(0x81))
		alice, bob := identity.UserID(id32(0xa1)), identity.UserID(id32(0xb1))
		update(t, st, func(tx *store.Tx) error {
			m := store.Message{ID: msg, Group: gid, Peer: identity.UserID(id32(1)), Outgoing: true, Seq: 1, Kind: 1,
				Body: []byte("hi"), SentAt: now, ReceivedAt: now, State: store.MessageSent}
			if err := tx.Messages().Put(&m); err != nil {
				return err
			}
			return tx.Groups().AddRecipients(gid, msg, []identity.UserID{alice, bob})
		})
		update(t, st, func(tx *store.Tx) error {
			ok, err := tx.Groups().Delivered(gid, msg, alice, now)
			if err != nil || !ok {
				t.Errorf("Delivered: %v, %v", ok, err)
			}
			if ok, _ := tx.Groups().Delivered(gid, msg, alice, now); ok {
				t.Error("a second receipt counted")
			}
			if ok, _ := tx.Groups().Delivered(gid, msg, identity.UserID(id32(0xc1)), now); ok {
				t.Error("a receipt from a non-recipient counted")
			}
			return nil
		})
		view(t, st, func(tx *store.Tx) error {
			d, err := tx.Groups().Deliveries(msg)
			if err != nil {
				return err
			}
			if len(d) != 2 || d[0].Member != alice || !d[0].At.Equal(now) || !d[1].At.IsZero() {
				t.Errorf("Deliveries: %+v", d)
			}
			if p, _ := tx.Groups().Pending(gid, msg); !p {
				t.Error("not pending with bob's receipt missing")
			}
			ms, err := tx.Messages().ListGroup(gid, 0, 0)
			if err != nil || len(ms) != 1 || ms[0].Group != gid {
				t.Errorf("ListGroup: %+v, %v", ms, err)
			}
			if ms, _ := tx.Messages().List(identity.UserID(id32(1)), 0, 0); len(ms) != 0 {
				t.Errorf("a group message is listed in a conversation: %+v", ms)
			}
			return nil
		})
		update(t, st, func(tx *store.Tx) error {
			ids, err := tx.Groups().DropMember(gid, bob, 0)
			if err != nil || len(ids) != 1 || ids[0] != msg {
				t.Errorf("DropMember: %v, %v", ids, err)
			}
			return nil
		})
		view(t, st, func(tx *store.Tx) error {
			if p, _ := tx.Groups().Pending(gid, msg); p {
				t.Error("pending after the only missing member was dropped")
			}
			return nil
		})
		update(t, st, func(tx *store.Tx) error { return tx.Messages().Delete(msg) })
		view(t, st, func(tx *store.Tx) error {
			if ms, _ := tx.Messages().ListGroup(gid, 0, 0); len(ms) != 0 {
				t.Errorf("ListGroup after Delete: %d", len(ms))
			}
			return nil
		})
	})

	update(t, st, func(tx *store.Tx) error { return tx.Groups().Delete(gid) })
	view(t, st, func(tx *store.Tx) error {
		if _, err := tx.Groups().State(gid); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("state after Delete: %v", err)
		}
		if w, _ := tx.Groups().Work(gid, 2, 0); len(w) != 0 {
			t.Errorf("work after Delete: %d", len(w))
		}
		return nil
	})
}

// testGroupStateParts: a state larger than a record (a group of 1,000
// members with a commit and its Welcome pending) is stored in parts and
// read back whole; a smaller one after it leaves no part of the larger
// behind, and DeleteState deletes every part.
func testGroupStateParts(t *testing.T, st store.Store) {
	gid := protocol.GroupID(id32(0x62))
	big := make([]byte, 2*store.MaxValueSize+123)
	for i := range big {
		big[i] = byte(i * 7)
	}
	small := big[:store.MaxValueSize/3]
	for _, state := range [][]byte{big, small, big[:store.MaxValueSize/2+1], big} {
		update(t, st, func(tx *store.Tx) error { return tx.Groups().PutState(gid, state) })
		view(t, st, func(tx *store.Tx) error {
			b, err := tx.Groups().State(gid)
			if err != nil || !bytes.Equal(b, state) {
				t.Errorf("State: %d bytes, %v; want the %d put", len(b), err, len(state))
			}
			return nil
		})
	}
	update(t, st, func(tx *store.Tx) error { return tx.Groups().DeleteState(gid) })
	view(t, st, func(tx *store.Tx) error {
		if _, err := tx.Groups().State(gid); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("State after DeleteState: %v", err)
		}
		return nil
	})
	update(t, st, func(tx *store.Tx) error { return tx.Groups().PutState(gid, small) })
	view(t, st, func(tx *store.Tx) error {
		if b, err := tx.Groups().State(gid); err != nil || !bytes.Equal(b, small) {
			t.Errorf("State after a delete and a put: %d bytes, %v", len(b), err)
		}
		return nil
	})
}

// testGroupStateKeys: keys go with a state only; the next PutState and
// DeleteState delete them.
func testGroupStateKeys(t *testing.T, st store.Store) {
	gid := protocol.GroupID(id32(0x63))
	keys := func() []byte {
		var b []byte
		view(t, st, func(tx *store.Tx) error {
			var err error
			if b, err = tx.Groups().StateKeys(gid); err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("StateKeys: %v", err)
			}
			return nil
		})
		return b
	}
	if err := st.Update(context.Background(), func(tx *store.Tx) error { return tx.Groups().PutStateKeys(gid, []byte("keys")) }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutStateKeys without a state: %v, want ErrNotFound", err)
	}
	update(t, st, func(tx *store.Tx) error { return tx.Groups().PutState(gid, []byte("state")) })
	update(t, st, func(tx *store.Tx) error { return tx.Groups().PutStateKeys(gid, []byte("keys 1")) })
	update(t, st, func(tx *store.Tx) error { return tx.Groups().PutStateKeys(gid, []byte("keys 2")) })
	if b := keys(); string(b) != "keys 2" {
		t.Errorf("StateKeys: %q, want the last put", b)
	}
	update(t, st, func(tx *store.Tx) error { return tx.Groups().PutState(gid, []byte("state 2")) })
	if b := keys(); b != nil {
		t.Errorf("StateKeys after PutState: %q, want none", b)
	}
	update(t, st, func(tx *store.Tx) error { return tx.Groups().PutStateKeys(gid, []byte("keys 3")) })
	update(t, st, func(tx *store.Tx) error { return tx.Groups().DeleteState(gid) })
	if b := keys(); b != nil {
		t.Errorf("StateKeys after DeleteState: %q, want none", b)
	}
}
