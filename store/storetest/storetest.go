// Package storetest is the conformance suite every store implementation
// runs: Run checks the typed tables through store.Store, RunBackend the
// ordered key-value semantics of a store.Backend underneath.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Run runs the conformance suite; open returns a new, empty store (closed
// by the suite, or by open's own cleanup).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, st store.Store)
	}{
		{"Self", testSelf},
		{"Prekeys", testPrekeys},
		{"Sessions", testSessions},
		{"Contacts", testContacts},
		{"Messages", testMessages},
		{"Outbox", testOutbox},
		{"Seen", testSeen},
		{"Invites", testInvites},
		{"MoveConversation", testMoveConversation},
		{"Mailboxes", testMailboxes},
		{"DepositTokens", testDepositTokens},
		{"RelayMailboxes", testRelayMailboxes},
		{"RelayTokens", testRelayTokens},
		{"RelayEnvelopes", testRelayEnvelopes},
		{"RelayCards", testRelayCards},
		{"RelayPrekeys", testRelayPrekeys},
		{"RelayPrekeyRace", testRelayPrekeyRace},
		{"RelayDeleteMailbox", testRelayDeleteMailbox},
		{"RelayQuotas", testRelayQuotas},
		{"RelayGroupQuotas", testRelayGroupQuotas},
		{"RelayBlobs", testRelayBlobs},
		{"RelayBlobLogs", testRelayBlobLogs},
		{"RelayGroupLogs", testRelayGroupLogs},
		{"RelayGroupAppend", testRelayGroupAppend},
		{"RelayGroupCommitRace", testRelayGroupCommitRace},
		{"RelayGroupExpiry", testRelayGroupExpiry},
		{"RelayGroupDeleteLog", testRelayGroupDeleteLog},
		{"Files", testFiles},
		{"Groups", testGroups},
		{"GroupStateParts", testGroupStateParts},
		{"GroupStateKeys", testGroupStateKeys},
		{"Counters", testCounters},
		{"Committed", testCommitted},
		{"Rollback", testRollback},
		{"ReadOnly", testReadOnly},
		{"Snapshot", testSnapshot},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"Context", testContext},
		{"Limits", testLimits},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := open(t)
			defer st.Close()
			tc.fn(t, st)
		})
	}
	t.Run("Close", func(t *testing.T) {
		st := open(t)
		if err := st.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		err := st.View(context.Background(), func(tx *store.Tx) error { return nil })
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("View after Close: got %v, want ErrClosed", err)
		}
		err = st.Update(context.Background(), func(tx *store.Tx) error { return nil })
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("Update after Close: got %v, want ErrClosed", err)
		}
	})
}

// T0 is the base time of the suite's records.
var T0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

func update(t *testing.T, st store.Store, fn func(tx *store.Tx) error) {
	t.Helper()
	if err := st.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func view(t *testing.T, st store.Store, fn func(tx *store.Tx) error) {
	t.Helper()
	if err := st.View(context.Background(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

// equal compares records, treating times with time.Time.Equal.
func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// normalize returns v with every time.Time in UTC, recursively, so that
// DeepEqual compares instants.
func normalize(v any) any {
	rv := reflect.ValueOf(v)
	out := reflect.New(rv.Type()).Elem()
	copyNorm(out, rv)
	return out.Interface()
}

var timeType = reflect.TypeOf(time.Time{})

func copyNorm(dst, src reflect.Value) {
	if src.Type() == timeType {
		dst.Set(reflect.ValueOf(src.Interface().(time.Time).UTC()))
		return
	}
	switch src.Kind() {
	case reflect.Struct:
		for i := 0; i < src.NumField(); i++ {
			copyNorm(dst.Field(i), src.Field(i))
		}
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		if src.Len() == 0 && src.Type().Elem().Kind() == reflect.Uint8 {
			// Treat empty and nil byte slices alike.
			return
		}
		dst.Set(reflect.MakeSlice(src.Type(), src.Len(), src.Len()))
		for i := 0; i < src.Len(); i++ {
			copyNorm(dst.Index(i), src.Index(i))
		}
	default:
		dst.Set(src)
	}
}

func id16(b byte) [16]byte {
	var x [16]byte
	x[0] = b
	x[15] = b
	return x
}

func id32(b byte) [32]byte {
	var x [32]byte
	x[0] = b
	x[31] = b
	return x
}

func testSelf(t *testing.T, st store.Store) {
	view(t, st, func(tx *store.Tx) error {
		if _, err := tx.Self(); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Self on empty store: got %v, want ErrNotFound", err)
		}
		return nil
	})
	want := store.Self{
		Name:         "alice",
		Identity:     []byte("private identity"),
		DeviceKey:    []byte("device key"),
		DeviceRecord: []byte("device record"),
		CreatedAt:    T0,
		Card:         []byte("own card"),
	}
	update(t, st, func(tx *store.Tx) error { return tx.PutSelf(want) })
	view(t, st, func(tx *store.Tx) error {
		got, err := tx.Self()
		if err != nil {
			return err
		}
		equal(t, "Self", got, want)
		return nil
	})
	err := st.Update(context.Background(), func(tx *store.Tx) error {
		return tx.PutSelf(store.Self{Name: "no keys"})
	})
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("PutSelf without keys: got %v, want ErrInvalid", err)
	}
}

func testPrekeys(t *testing.T, st store.Store) {
	mk := func(kind store.PrekeyKind, id uint32) store.Prekey {
		return store.Prekey{
			Kind: kind, ID: id, CreatedAt: T0,
			Private: []byte(fmt.Sprintf("priv %d %d", kind, id)),
			Public:  []byte(fmt.Sprintf("pub %d %d", kind, id)),
			State:   store.PrekeyAvailable,
		}
	}
	t.Run("Put", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			for id := uint32(1); id <= 5; id++ {
				if err := tx.Prekeys().Put(mk(store.PrekeyOneTime, id)); err != nil {
					return err
				}
			}
			if err := tx.Prekeys().Put(mk(store.PrekeySigned, 1)); err != nil {
				return err
			}
			return tx.Prekeys().Put(mk(store.PrekeyLastResort, 7))
		})
	})
	t.Run("GetListCount", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			got, err := tx.Prekeys().Get(store.PrekeyOneTime, 3)
			if err != nil {
				return err
			}
			equal(t, "Get", got, mk(store.PrekeyOneTime, 3))
			if _, err := tx.Prekeys().Get(store.PrekeySigned, 3); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get missing: got %v, want ErrNotFound", err)
			}
			list, err := tx.Prekeys().List(store.PrekeyOneTime)
			if err != nil {
				return err
			}
			if len(list) != 5 || list[0].ID != 1 || list[4].ID != 5 {
				t.Errorf("List(one-time): got %d keys %v", len(list), list)
			}
			n, err := tx.Prekeys().Count(store.PrekeyOneTime, store.PrekeyAvailable)
			if err != nil {
				return err
			}
			if n != 5 {
				t.Errorf("Count available: got %d, want 5", n)
			}
			return nil
		})
	})
	t.Run("TakeAvailable", func(t *testing.T) {
		// Take all five, then none is left.
		for want := uint32(1); want <= 5; want++ {
			update(t, st, func(tx *store.Tx) error {
				p, err := tx.Prekeys().TakeAvailable(store.PrekeyOneTime, T0.Add(time.Minute))
				if err != nil {
					return err
				}
				if p.ID != want || p.State != store.PrekeyHandedOut || !p.StateChangedAt.Equal(T0.Add(time.Minute)) {
					t.Errorf("TakeAvailable: got %+v, want ID %d handed out", p, want)
				}
				return nil
			})
		}
	})
	t.Run("NoneLeftUpload", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			if _, err := tx.Prekeys().TakeAvailable(store.PrekeyOneTime, T0); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("TakeAvailable on none: got %v, want ErrNotFound", err)
			}
			// Upload one to a relay.
			p, err := tx.Prekeys().Get(store.PrekeyOneTime, 2)
			if err != nil {
				return err
			}
			p.State = store.PrekeyUploaded
			p.Mailbox = protocol.MailboxID{7, 7}
			return tx.Prekeys().Put(p)
		})
	})
	t.Run("CountStates", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			for _, c := range []struct {
				state store.PrekeyState
				want  int
			}{{store.PrekeyAvailable, 0}, {store.PrekeyHandedOut, 4}, {store.PrekeyUploaded, 1}} {
				n, err := tx.Prekeys().Count(store.PrekeyOneTime, c.state)
				if err != nil {
					return err
				}
				if n != c.want {
					t.Errorf("Count(%s): got %d, want %d", c.state, n, c.want)
				}
			}
			up, err := tx.Prekeys().ListState(store.PrekeyOneTime, store.PrekeyUploaded)
			if err != nil {
				return err
			}
			if len(up) != 1 || up[0].ID != 2 || up[0].Mailbox != (protocol.MailboxID{7, 7}) {
				t.Errorf("ListState(uploaded): got %+v", up)
			}
			return nil
		})
	})
	t.Run("Delete", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			if err := tx.Prekeys().Delete(store.PrekeyOneTime, 2); err != nil {
				return err
			}
			return tx.Prekeys().Delete(store.PrekeyOneTime, 99) // missing: no error
		})
	})
	t.Run("AfterDelete", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			n, err := tx.Prekeys().Count(store.PrekeyOneTime, store.PrekeyUploaded)
			if err != nil {
				return err
			}
			if n != 0 {
				t.Errorf("Count(uploaded) after Delete: got %d, want 0", n)
			}
			n, err = tx.Prekeys().Count(store.PrekeySigned, store.PrekeyAvailable)
			if err != nil {
				return err
			}
			if n != 1 {
				t.Errorf("Count(signed): got %d, want 1", n)
			}
			return nil
		})
	})
	t.Run("Invalid", func(t *testing.T) {
		err := st.Update(context.Background(), func(tx *store.Tx) error {
			return tx.Prekeys().Put(store.Prekey{Kind: 9, ID: 1, State: store.PrekeyAvailable})
		})
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Put with a bad kind: got %v, want ErrInvalid", err)
		}
	})
}

func testSessions(t *testing.T, st store.Store) {
	alice, bob := id32(1), id32(2)
	devA := []byte("device-a")
	devB := []byte("device-b-longer")
	mk := func(peer [32]byte, dev []byte, sid byte) store.Session {
		return store.Session{
			Peer: peer, Device: dev, ID: id16(sid),
			State:     []byte{sid, 1, 2, 3},
			CreatedAt: T0, LastDecryptAt: T0.Add(time.Second), LastUsedAt: T0.Add(2 * time.Second),
			Initiated: sid%2 == 1, Confirmed: sid%3 == 0, Prekey: []byte{sid, 7}, Invite: []byte{sid, 8},
		}
	}
	t.Run("Put", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			for _, s := range []store.Session{
				mk(alice, devA, 1), mk(alice, devA, 2), mk(alice, devB, 3), mk(bob, devA, 4),
			} {
				if err := tx.Sessions().Put(s); err != nil {
					return err
				}
			}
			return nil
		})
	})
	t.Run("GetList", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			got, err := tx.Sessions().Get(alice, devA, id16(2))
			if err != nil {
				return err
			}
			equal(t, "Get", got, mk(alice, devA, 2))
			if _, err := tx.Sessions().Get(bob, devA, id16(1)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get missing: got %v, want ErrNotFound", err)
			}
			all, err := tx.Sessions().List(alice)
			if err != nil {
				return err
			}
			if len(all) != 3 {
				t.Errorf("List(alice): got %d sessions, want 3", len(all))
			}
			dev, err := tx.Sessions().ListDevice(alice, devA)
			if err != nil {
				return err
			}
			if len(dev) != 2 || dev[0].ID != id16(1) || dev[1].ID != id16(2) {
				t.Errorf("ListDevice(alice, a): got %+v", dev)
			}
			// A device ID that is a prefix of another must not match it.
			dev, err = tx.Sessions().ListDevice(alice, []byte("device-"))
			if err != nil {
				return err
			}
			if len(dev) != 0 {
				t.Errorf("ListDevice(prefix): got %d sessions, want 0", len(dev))
			}
			return nil
		})
	})
	t.Run("Replace", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			s := mk(alice, devA, 1)
			s.State = []byte("newer state")
			if err := tx.Sessions().Put(s); err != nil {
				return err
			}
			return tx.Sessions().Delete(alice, devA, id16(2))
		})
	})
	t.Run("AfterReplace", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			dev, err := tx.Sessions().ListDevice(alice, devA)
			if err != nil {
				return err
			}
			if len(dev) != 1 || string(dev[0].State) != "newer state" {
				t.Errorf("after replace and delete: got %+v", dev)
			}
			return nil
		})
	})
	t.Run("Invalid", func(t *testing.T) {
		err := st.Update(context.Background(), func(tx *store.Tx) error {
			return tx.Sessions().Put(store.Session{Peer: alice})
		})
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Put without device: got %v, want ErrInvalid", err)
		}
	})
}

func testContacts(t *testing.T, st store.Store) {
	mk := func(b byte, name string) store.Contact {
		return store.Contact{
			UserID: id32(b), Name: name, Identity: []byte{b, b},
			Card: []byte("card " + name), State: store.ContactAccepted,
			SendSeq: 3, RecvSeq: 4, CreatedAt: T0, UpdatedAt: T0,
			Device: []byte{b, 1}, DeviceRecord: []byte{b, 2}, Addrs: [][]byte{{b, 3}, {b, 4, 5}},
			CardSeq: uint64(b) + 10, Session: id16(b), PendingCard: []byte{b, 6},
		}
	}
	t.Run("Put", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			for _, c := range []store.Contact{mk(3, "carol"), mk(1, "alice"), mk(2, "bob"), mk(4, "")} {
				if err := tx.Contacts().Put(c); err != nil {
					return err
				}
			}
			return nil
		})
	})
	t.Run("GetByNameList", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			got, err := tx.Contacts().ByName("bob")
			if err != nil {
				return err
			}
			equal(t, "ByName", got, mk(2, "bob"))
			got, err = tx.Contacts().Get(id32(1))
			if err != nil {
				return err
			}
			equal(t, "Get", got, mk(1, "alice"))
			if _, err := tx.Contacts().ByName("dave"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("ByName missing: got %v, want ErrNotFound", err)
			}
			if _, err := tx.Contacts().ByName(""); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("ByName empty: got %v, want ErrNotFound", err)
			}
			list, err := tx.Contacts().List()
			if err != nil {
				return err
			}
			var names []string
			for _, c := range list {
				names = append(names, c.Name)
			}
			if fmt.Sprint(names) != "[alice bob carol ]" {
				t.Errorf("List names: got %q", names)
			}
			return nil
		})
	})
	t.Run("NameTaken", func(t *testing.T) {
		// A duplicate name is refused and changes nothing.
		err := st.Update(context.Background(), func(tx *store.Tx) error {
			return tx.Contacts().Put(mk(5, "alice"))
		})
		if !errors.Is(err, store.ErrNameTaken) {
			t.Errorf("Put duplicate name: got %v, want ErrNameTaken", err)
		}
		err = st.Update(context.Background(), func(tx *store.Tx) error {
			return tx.Contacts().Rename(id32(2), "carol", T0)
		})
		if !errors.Is(err, store.ErrNameTaken) {
			t.Errorf("Rename to a taken name: got %v, want ErrNameTaken", err)
		}
	})
	t.Run("Rename", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			if err := tx.Contacts().Rename(id32(2), "robert", T0.Add(time.Hour)); err != nil {
				return err
			}
			// The old name is free again.
			c := mk(6, "bob")
			return tx.Contacts().Put(c)
		})
	})
	t.Run("AfterRename", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			got, err := tx.Contacts().ByName("robert")
			if err != nil {
				return err
			}
			if got.UserID != id32(2) || !got.UpdatedAt.Equal(T0.Add(time.Hour)) {
				t.Errorf("after Rename: got %+v", got)
			}
			got, err = tx.Contacts().ByName("bob")
			if err != nil {
				return err
			}
			if got.UserID != id32(6) {
				t.Errorf("ByName(bob) after reuse: got user %x", got.UserID)
			}
			return nil
		})
	})
	t.Run("UpdateDelete", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			// Update fields without renaming; then delete.
			c, err := tx.Contacts().Get(id32(3))
			if err != nil {
				return err
			}
			c.Verified, c.IdentityChanged, c.PendingIdentity = true, true, []byte("new identity")
			c.State = store.ContactBlocked
			if err := tx.Contacts().Put(c); err != nil {
				return err
			}
			if err := tx.Contacts().Delete(id32(1)); err != nil {
				return err
			}
			return tx.Contacts().Delete(id32(99))
		})
	})
	t.Run("AfterDelete", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			c, err := tx.Contacts().ByName("carol")
			if err != nil {
				return err
			}
			if !c.Verified || !c.IdentityChanged || string(c.PendingIdentity) != "new identity" || c.State != store.ContactBlocked {
				t.Errorf("after update: got %+v", c)
			}
			if _, err := tx.Contacts().ByName("alice"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("ByName after Delete: got %v, want ErrNotFound", err)
			}
			return nil
		})
	})
	t.Run("NameFreed", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			return tx.Contacts().Put(mk(7, "alice")) // freed by Delete
		})
	})
}

func testMessages(t *testing.T, st store.Store) {
	alice, bob := id32(1), id32(2)
	mk := func(id byte, peer [32]byte, seq uint64) store.Message {
		return store.Message{
			ID: id16(id), Peer: peer, Outgoing: id%2 == 0, Seq: seq, Kind: 1,
			Body: []byte(fmt.Sprintf("message %d", id)), SentAt: T0, ReceivedAt: T0.Add(time.Second),
			State: store.MessageReceived,
		}
	}
	var orders []uint64
	t.Run("Put", func(t *testing.T) {
		for i := byte(1); i <= 10; i++ {
			peer := alice
			if i%3 == 0 {
				peer = bob
			}
			update(t, st, func(tx *store.Tx) error {
				m := mk(i, peer, uint64(i))
				if err := tx.Messages().Put(&m); err != nil {
					return err
				}
				orders = append(orders, m.Order)
				return nil
			})
		}
		for i := 1; i < len(orders); i++ {
			if orders[i] <= orders[i-1] || orders[0] == 0 {
				t.Fatalf("orders not strictly increasing from 1: %v", orders)
			}
		}
	})
	t.Run("GetListSince", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			got, err := tx.Messages().Get(id16(4))
			if err != nil {
				return err
			}
			want := mk(4, alice, 4)
			want.Order = orders[3]
			equal(t, "Get", got, want)
			if _, err := tx.Messages().Get(id16(99)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get missing: got %v, want ErrNotFound", err)
			}
			// alice has 1 2 4 5 7 8 10; the newest three, ascending.
			list, err := tx.Messages().List(alice, 3, 0)
			if err != nil {
				return err
			}
			if ids := msgIDs(list); ids != "[7 8 10]" {
				t.Errorf("List(alice, 3): got %s, want [7 8 10]", ids)
			}
			list, err = tx.Messages().List(alice, 3, list[0].Order)
			if err != nil {
				return err
			}
			if ids := msgIDs(list); ids != "[2 4 5]" {
				t.Errorf("List(alice, 3, before 7): got %s, want [2 4 5]", ids)
			}
			list, err = tx.Messages().List(bob, 0, 0)
			if err != nil {
				return err
			}
			if ids := msgIDs(list); ids != "[3 6 9]" {
				t.Errorf("List(bob): got %s, want [3 6 9]", ids)
			}
			list, err = tx.Messages().Since(orders[5], 0)
			if err != nil {
				return err
			}
			if ids := msgIDs(list); ids != "[7 8 9 10]" {
				t.Errorf("Since(order of 6): got %s, want [7 8 9 10]", ids)
			}
			list, err = tx.Messages().Since(0, 2)
			if err != nil {
				return err
			}
			if ids := msgIDs(list); ids != "[1 2]" {
				t.Errorf("Since(0, 2): got %s, want [1 2]", ids)
			}
			return nil
		})
	})
	t.Run("ReplaceSetState", func(t *testing.T) {
		// Replacing keeps the Order; SetState changes state and reason.
		update(t, st, func(tx *store.Tx) error {
			m := mk(4, alice, 4)
			m.Body = []byte("edited")
			if err := tx.Messages().Put(&m); err != nil {
				return err
			}
			if m.Order != orders[3] {
				t.Errorf("replace: Order %d, want %d", m.Order, orders[3])
			}
			if err := tx.Messages().SetState(id16(2), store.MessageFailed, "no route"); err != nil {
				return err
			}
			if err := tx.Messages().SetState(id16(99), store.MessageRead, ""); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("SetState missing: got %v, want ErrNotFound", err)
			}
			return nil
		})
		view(t, st, func(tx *store.Tx) error {
			m, err := tx.Messages().Get(id16(2))
			if err != nil {
				return err
			}
			if m.State != store.MessageFailed || m.Reason != "no route" {
				t.Errorf("after SetState: got %s %q", m.State, m.Reason)
			}
			list, err := tx.Messages().Since(0, 0)
			if err != nil {
				return err
			}
			if len(list) != 10 {
				t.Errorf("Since(0) after replace: got %d messages, want 10", len(list))
			}
			return nil
		})
	})
	t.Run("DeleteConversation", func(t *testing.T) {
		// Delete alice's conversation in steps of 3.
		var steps []int
		for {
			var n int
			update(t, st, func(tx *store.Tx) error {
				var err error
				n, err = tx.Messages().DeleteConversation(alice, 3)
				return err
			})
			steps = append(steps, n)
			if n == 0 || len(steps) > 10 {
				break
			}
		}
		if fmt.Sprint(steps) != "[3 3 1 0]" {
			t.Errorf("DeleteConversation steps: got %v, want [3 3 1 0]", steps)
		}
		update(t, st, func(tx *store.Tx) error {
			return tx.Messages().Delete(id16(3))
		})
		view(t, st, func(tx *store.Tx) error {
			list, err := tx.Messages().Since(0, 0)
			if err != nil {
				return err
			}
			if ids := msgIDs(list); ids != "[6 9]" {
				t.Errorf("after deletes: got %s, want [6 9]", ids)
			}
			list, err = tx.Messages().List(alice, 0, 0)
			if err != nil {
				return err
			}
			if len(list) != 0 {
				t.Errorf("List(alice) after DeleteConversation: %d messages", len(list))
			}
			return nil
		})
	})
	t.Run("OrdersNeverReused", func(t *testing.T) {
		// Orders are never reused.
		update(t, st, func(tx *store.Tx) error {
			m := mk(11, alice, 11)
			if err := tx.Messages().Put(&m); err != nil {
				return err
			}
			if m.Order <= orders[9] {
				t.Errorf("new Order %d after deletes, want > %d", m.Order, orders[9])
			}
			return nil
		})
	})
}

func msgIDs(ms []store.Message) string {
	var ids []int
	for _, m := range ms {
		ids = append(ids, int(m.ID[0]))
	}
	return fmt.Sprint(ids)
}

func testOutbox(t *testing.T, st store.Store) {
	mk := func(id byte, next time.Duration) store.OutboxEntry {
		return store.OutboxEntry{
			ID: id16(id), Peer: id32(1), Device: []byte("device"), Payload: bytes.Repeat([]byte{id}, 100),
			CreatedAt: T0, NextAttempt: T0.Add(next), Session: id16(id + 100), Redeposits: uint32(id),
		}
	}
	t.Run("Put", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			for i, d := range []time.Duration{5 * time.Second, time.Second, 3 * time.Second, -time.Hour, time.Hour} {
				if err := tx.Outbox().Put(mk(byte(i+1), d)); err != nil {
					return err
				}
			}
			return nil
		})
	})
	t.Run("DueNextList", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			due, err := tx.Outbox().Due(T0.Add(3*time.Second), 0)
			if err != nil {
				return err
			}
			if ids := outIDs(due); ids != "[4 2 3]" {
				t.Errorf("Due(+3s): got %s, want [4 2 3]", ids)
			}
			due, err = tx.Outbox().Due(T0.Add(time.Minute), 2)
			if err != nil {
				return err
			}
			if ids := outIDs(due); ids != "[4 2]" {
				t.Errorf("Due(+1m, 2): got %s, want [4 2]", ids)
			}
			next, ok, err := tx.Outbox().Next()
			if err != nil {
				return err
			}
			if !ok || !next.Equal(T0.Add(-time.Hour)) {
				t.Errorf("Next: got %v %v, want %v", next, ok, T0.Add(-time.Hour))
			}
			got, err := tx.Outbox().Get(id16(3))
			if err != nil {
				return err
			}
			equal(t, "Get", got, mk(3, 3*time.Second))
			all, err := tx.Outbox().List()
			if err != nil {
				return err
			}
			if ids := outIDs(all); ids != "[1 2 3 4 5]" {
				t.Errorf("List: got %s", ids)
			}
			return nil
		})
	})
	t.Run("Retry", func(t *testing.T) {
		// A retry moves an entry later and records receipts.
		update(t, st, func(tx *store.Tx) error {
			o, err := tx.Outbox().Get(id16(4))
			if err != nil {
				return err
			}
			o.Attempts++
			o.NextAttempt = T0.Add(2 * time.Hour)
			o.LastError = "peer unreachable"
			o.Receipts = []store.Receipt{
				{Relay: "relay-1", StoredUntil: T0.Add(14 * 24 * time.Hour), Signed: []byte("sig 1")},
				{Relay: "relay-2", StoredUntil: T0.Add(7 * 24 * time.Hour)},
			}
			if err := tx.Outbox().Put(o); err != nil {
				return err
			}
			if err := tx.Outbox().Delete(id16(2)); err != nil {
				return err
			}
			return tx.Outbox().Delete(id16(99))
		})
	})
	t.Run("AfterRetry", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			due, err := tx.Outbox().Due(T0.Add(time.Minute), 0)
			if err != nil {
				return err
			}
			if ids := outIDs(due); ids != "[3 1]" {
				t.Errorf("Due after retry and delete: got %s, want [3 1]", ids)
			}
			due, err = tx.Outbox().Due(T0.Add(3*time.Hour), 0)
			if err != nil {
				return err
			}
			if ids := outIDs(due); ids != "[3 1 5 4]" {
				t.Errorf("Due(+3h): got %s, want [3 1 5 4]", ids)
			}
			o, err := tx.Outbox().Get(id16(4))
			if err != nil {
				return err
			}
			if o.Attempts != 1 || len(o.Receipts) != 2 || o.Receipts[0].Relay != "relay-1" ||
				string(o.Receipts[0].Signed) != "sig 1" || !o.Receipts[1].StoredUntil.Equal(T0.Add(7*24*time.Hour)) {
				t.Errorf("after retry: got %+v", o)
			}
			if _, err := tx.Outbox().Get(id16(2)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get deleted: got %v, want ErrNotFound", err)
			}
			return nil
		})
	})
	t.Run("Delete", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			for _, id := range []byte{1, 3, 4, 5} {
				if err := tx.Outbox().Delete(id16(id)); err != nil {
					return err
				}
			}
			return nil
		})
	})
	t.Run("Empty", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			if _, ok, err := tx.Outbox().Next(); err != nil || ok {
				t.Errorf("Next on empty outbox: got %v %v", ok, err)
			}
			return nil
		})
	})
}

func outIDs(os []store.OutboxEntry) string {
	var ids []int
	for _, o := range os {
		ids = append(ids, int(o.ID[0]))
	}
	return fmt.Sprint(ids)
}

func testSeen(t *testing.T, st store.Store) {
	t.Run("Add", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			for i := byte(1); i <= 6; i++ {
				if err := tx.Seen().Add(id32(i), T0.Add(time.Duration(i)*time.Hour)); err != nil {
					return err
				}
			}
			// Re-adding with an earlier time keeps the later one; a later one wins.
			if err := tx.Seen().Add(id32(2), T0); err != nil {
				return err
			}
			return tx.Seen().Add(id32(1), T0.Add(10*time.Hour))
		})
	})
	t.Run("Has", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			for i := byte(1); i <= 7; i++ {
				ok, err := tx.Seen().Has(id32(i))
				if err != nil {
					return err
				}
				if ok != (i <= 6) {
					t.Errorf("Has(%d): got %v", i, ok)
				}
			}
			return nil
		})
	})
	t.Run("ExpireInSteps", func(t *testing.T) {
		var removed []int
		for {
			var n int
			update(t, st, func(tx *store.Tx) error {
				var err error
				n, err = tx.Seen().Expire(T0.Add(4*time.Hour), 2)
				return err
			})
			removed = append(removed, n)
			if n < 2 || len(removed) > 5 {
				break
			}
		}
		if fmt.Sprint(removed) != "[2 1]" {
			t.Errorf("Expire steps: got %v, want [2 1]", removed)
		}
	})
	t.Run("AfterExpire", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			var present []int
			for i := byte(1); i <= 6; i++ {
				ok, err := tx.Seen().Has(id32(i))
				if err != nil {
					return err
				}
				if ok {
					present = append(present, int(i))
				}
			}
			if fmt.Sprint(present) != "[1 5 6]" {
				t.Errorf("after Expire: present %v, want [1 5 6]", present)
			}
			return nil
		})
	})
	t.Run("ExpireAll", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			n, err := tx.Seen().Expire(T0.Add(100*time.Hour), 0)
			if err != nil {
				return err
			}
			if n != 3 {
				t.Errorf("Expire all: got %d, want 3", n)
			}
			return nil
		})
	})
	// First messages' hashes stay as long as their signed prekey, whatever
	// the time, and go when it is released.
	has := func(tx *store.Tx, ids ...byte) string {
		var present []int
		for _, i := range ids {
			ok, err := tx.Seen().Has(id32(i))
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				present = append(present, int(i))
			}
		}
		return fmt.Sprint(present)
	}
	t.Run("AddFirst", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			for i := byte(20); i < 25; i++ {
				if err := tx.Seen().AddFirst(id32(i), 7); err != nil {
					return err
				}
			}
			if err := tx.Seen().AddFirst(id32(30), 8); err != nil {
				return err
			}
			// A timed entry becomes the prekey's; a time added later
			// changes nothing.
			if err := tx.Seen().Add(id32(31), T0); err != nil {
				return err
			}
			if err := tx.Seen().AddFirst(id32(31), 8); err != nil {
				return err
			}
			return tx.Seen().Add(id32(20), T0)
		})
		update(t, st, func(tx *store.Tx) error {
			n, err := tx.Seen().Expire(T0.Add(1000*time.Hour), 0)
			if n != 0 {
				t.Errorf("Expire removed %d entries kept for prekeys", n)
			}
			if got := has(tx, 20, 21, 22, 23, 24, 30, 31); got != "[20 21 22 23 24 30 31]" {
				t.Errorf("after Expire: present %s, want all", got)
			}
			return err
		})
	})
	t.Run("ReleasePrekey", func(t *testing.T) {
		var steps []int
		for range 5 {
			var n int
			update(t, st, func(tx *store.Tx) error {
				var err error
				n, err = tx.Seen().ReleasePrekey(7, 3)
				return err
			})
			steps = append(steps, n)
			if n < 3 {
				break
			}
		}
		if fmt.Sprint(steps) != "[3 2]" {
			t.Errorf("ReleasePrekey steps: got %v, want [3 2]", steps)
		}
		view(t, st, func(tx *store.Tx) error {
			if got := has(tx, 20, 21, 22, 23, 24, 30, 31); got != "[30 31]" {
				t.Errorf("after ReleasePrekey(7): present %s, want [30 31]", got)
			}
			return nil
		})
		update(t, st, func(tx *store.Tx) error {
			n, err := tx.Seen().ReleasePrekey(8, 0)
			if n != 2 {
				t.Errorf("ReleasePrekey(8): got %d, want 2", n)
			}
			return err
		})
		view(t, st, func(tx *store.Tx) error {
			if got := has(tx, 30, 31); got != "[]" {
				t.Errorf("after ReleasePrekey(8): present %s, want none", got)
			}
			return nil
		})
	})
	// A message request's entries go with it: all but the latest keep,
	// or all; an entry that became a first message's stays, and so does
	// what an accepted request's notes covered.
	t.Run("Request", func(t *testing.T) {
		a, b := identity.UserID(id32(0xa0)), identity.UserID(id32(0xb0))
		update(t, st, func(tx *store.Tx) error {
			for i := byte(40); i < 45; i++ {
				if err := tx.Seen().AddRequest(a, id32(i), T0.Add(time.Duration(i)*time.Hour)); err != nil {
					return err
				}
			}
			for i := byte(50); i < 53; i++ {
				if err := tx.Seen().AddRequest(b, id32(i), T0.Add(time.Duration(i)*time.Hour)); err != nil {
					return err
				}
			}
			if err := tx.Seen().AddFirst(id32(40), 9); err != nil {
				return err
			}
			n, err := tx.Seen().ForgetRequest(a, 2)
			if n != 3 {
				t.Errorf("ForgetRequest(a, 2): forgot %d, want 3", n)
			}
			return err
		})
		view(t, st, func(tx *store.Tx) error {
			if got := has(tx, 40, 41, 42, 43, 44, 50, 51, 52); got != "[40 43 44 50 51 52]" {
				t.Errorf("after ForgetRequest(a, 2): present %s, want [40 43 44 50 51 52]", got)
			}
			return nil
		})
		update(t, st, func(tx *store.Tx) error {
			if n, err := tx.Seen().KeepRequest(b); n != 3 || err != nil {
				t.Errorf("KeepRequest(b): %d, %v; want 3", n, err)
			}
			if n, err := tx.Seen().ForgetRequest(b, 0); n != 0 || err != nil {
				t.Errorf("ForgetRequest(b, 0) after KeepRequest: %d, %v; want 0", n, err)
			}
			n, err := tx.Seen().ForgetRequest(a, 0)
			if n != 2 {
				t.Errorf("ForgetRequest(a, 0): forgot %d, want 2", n)
			}
			return err
		})
		view(t, st, func(tx *store.Tx) error {
			if got := has(tx, 40, 43, 44, 50, 51, 52); got != "[40 50 51 52]" {
				t.Errorf("after ForgetRequest(a, 0): present %s, want [40 50 51 52]", got)
			}
			if n, err := tx.Seen().Count(); n != 4 || err != nil {
				t.Errorf("Count: %d, %v; want 4", n, err)
			}
			return nil
		})
		// Expiry still finds the timed entries, and no index is left
		// behind.
		update(t, st, func(tx *store.Tx) error {
			n, err := tx.Seen().Expire(T0.Add(1000*time.Hour), 0)
			if n != 3 {
				t.Errorf("Expire after ForgetRequest: %d index entries, want 3", n)
			}
			return err
		})
	})
}

func testMailboxes(t *testing.T, st store.Store) {
	mk := func(b byte) store.Mailbox {
		return store.Mailbox{
			ID: id32(b), Relay: fmt.Sprintf("relay-%d", b),
			Addrs:   []string{"/ip4/127.0.0.1/tcp/7710", "/ip4/127.0.0.1/udp/7710/quic-v1"},
			AuthKey: []byte{b, 1}, SealingKey: []byte{b, 2}, ClientKey: []byte{b, 3}, CreatedAt: T0,
		}
	}
	update(t, st, func(tx *store.Tx) error {
		if err := tx.Mailboxes().Put(mk(2)); err != nil {
			return err
		}
		m := mk(1)
		m.Addrs = nil
		return tx.Mailboxes().Put(m)
	})
	view(t, st, func(tx *store.Tx) error {
		got, err := tx.Mailboxes().Get(id32(2))
		if err != nil {
			return err
		}
		equal(t, "Get", got, mk(2))
		list, err := tx.Mailboxes().List()
		if err != nil {
			return err
		}
		if len(list) != 2 || list[0].ID != id32(1) || list[0].Addrs != nil {
			t.Errorf("List: got %+v", list)
		}
		return nil
	})
	update(t, st, func(tx *store.Tx) error { return tx.Mailboxes().Delete(id32(1)) })
	view(t, st, func(tx *store.Tx) error {
		if _, err := tx.Mailboxes().Get(id32(1)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get deleted: got %v, want ErrNotFound", err)
		}
		return nil
	})
	err := st.Update(context.Background(), func(tx *store.Tx) error {
		return tx.Mailboxes().Put(store.Mailbox{ID: id32(3)})
	})
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Put without relay: got %v, want ErrInvalid", err)
	}
}

func testDepositTokens(t *testing.T, st store.Store) {
	invite := store.DepositToken{Token: id16(1), Relay: "relay-1", Mailbox: id32(9), Invite: id16(3), CreatedAt: T0,
		ExpiresAt: T0.Add(time.Hour), CardSeq: 7}
	personal := store.DepositToken{Token: id16(2), Relay: "relay-1", Mailbox: id32(9), Contact: id32(5), CreatedAt: T0}
	update(t, st, func(tx *store.Tx) error {
		if err := tx.DepositTokens().Put(personal); err != nil {
			return err
		}
		return tx.DepositTokens().Put(invite)
	})
	update(t, st, func(tx *store.Tx) error {
		tok, err := tx.DepositTokens().Get(id16(2))
		if err != nil {
			return err
		}
		equal(t, "Get", tok, personal)
		tok.Revoked, tok.Registered = true, true
		return tx.DepositTokens().Put(tok)
	})
	view(t, st, func(tx *store.Tx) error {
		list, err := tx.DepositTokens().List()
		if err != nil {
			return err
		}
		personal.Revoked, personal.Registered = true, true
		equal(t, "List", list, []store.DepositToken{invite, personal})
		return nil
	})
	update(t, st, func(tx *store.Tx) error { return tx.DepositTokens().Delete(id16(1)) })
	view(t, st, func(tx *store.Tx) error {
		if _, err := tx.DepositTokens().Get(id16(1)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get deleted: got %v, want ErrNotFound", err)
		}
		return nil
	})
}

func testCounters(t *testing.T, st store.Store) {
	update(t, st, func(tx *store.Tx) error {
		for want := uint64(1); want <= 3; want++ {
			got, err := tx.Counters().Next("prekey.id")
			if err != nil {
				return err
			}
			if got != want {
				t.Errorf("Next: got %d, want %d", got, want)
			}
		}
		if got, err := tx.Counters().Next("other"); err != nil || got != 1 {
			t.Errorf("Next(other): got %d %v, want 1", got, err)
		}
		return nil
	})
	view(t, st, func(tx *store.Tx) error {
		if got, err := tx.Counters().Get("prekey.id"); err != nil || got != 3 {
			t.Errorf("Get: got %d %v, want 3", got, err)
		}
		if got, err := tx.Counters().Get("never"); err != nil || got != 0 {
			t.Errorf("Get(never): got %d %v, want 0", got, err)
		}
		if _, err := tx.Counters().Get(""); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Get(\"\"): got %v, want ErrInvalid", err)
		}
		return nil
	})
}

// testCommitted: Update calls the WithCommitted function once, after the
// commit (a transaction begun from it sees the write) and before it
// returns; an Update whose fn fails never calls it.
func testCommitted(t *testing.T, st store.Store) {
	ctx := context.Background()
	calls := 0
	boom := errors.New("boom")
	err := st.Update(store.WithCommitted(ctx, func() { calls++ }), func(tx *store.Tx) error {
		if _, err := tx.Counters().Next("c"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) || calls != 0 {
		t.Fatalf("failed Update: got %v and %d calls, want boom and none", err, calls)
	}
	seen := make(chan uint64, 1)
	err = st.Update(store.WithCommitted(ctx, func() {
		calls++
		go func() {
			var v uint64
			err := st.View(ctx, func(tx *store.Tx) error {
				var err error
				v, err = tx.Counters().Get("c")
				return err
			})
			if err != nil {
				t.Errorf("View: %v", err)
			}
			seen <- v
		}()
	}), func(tx *store.Tx) error {
		_, err := tx.Counters().Next("c")
		return err
	})
	if err != nil || calls != 1 {
		t.Fatalf("Update: got %v and %d calls, want nil and one", err, calls)
	}
	if v := <-seen; v != 1 {
		t.Errorf("a View begun at the commit read %d, want 1", v)
	}
	// Without WithCommitted, Committed is a function that does nothing.
	store.Committed(ctx)()
}

func testRollback(t *testing.T, st store.Store) {
	boom := errors.New("boom")
	err := st.Update(context.Background(), func(tx *store.Tx) error {
		if err := tx.Seen().Add(id32(1), T0); err != nil {
			return err
		}
		m := store.Message{ID: id16(1), Peer: id32(1), State: store.MessageQueued}
		if err := tx.Messages().Put(&m); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", boom)
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	view(t, st, func(tx *store.Tx) error {
		if ok, err := tx.Seen().Has(id32(1)); err != nil || ok {
			t.Errorf("rolled-back write visible: %v %v", ok, err)
		}
		if _, err := tx.Messages().Get(id16(1)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("rolled-back message: got %v, want ErrNotFound", err)
		}
		if n, err := tx.Counters().Get("store.message.order"); err != nil || n != 0 {
			t.Errorf("rolled-back counter: got %d %v", n, err)
		}
		return nil
	})
	// Reads see the transaction's own writes, including deletions.
	update(t, st, func(tx *store.Tx) error {
		if err := tx.Seen().Add(id32(2), T0); err != nil {
			return err
		}
		if ok, err := tx.Seen().Has(id32(2)); err != nil || !ok {
			t.Errorf("own write not visible: %v %v", ok, err)
		}
		if _, err := tx.Seen().Expire(T0, 0); err != nil {
			return err
		}
		if ok, err := tx.Seen().Has(id32(2)); err != nil || ok {
			t.Errorf("own delete not visible: %v %v", ok, err)
		}
		return nil
	})
}

func testReadOnly(t *testing.T, st store.Store) {
	err := st.View(context.Background(), func(tx *store.Tx) error {
		if tx.Writable() {
			t.Error("View's tx is writable")
		}
		return tx.Seen().Add(id32(1), T0)
	})
	if !errors.Is(err, store.ErrReadOnly) {
		t.Errorf("write in View: got %v, want ErrReadOnly", err)
	}
}

// testSnapshot checks that a View does not see an Update that commits
// while it runs.
func testSnapshot(t *testing.T, st store.Store) {
	update(t, st, func(tx *store.Tx) error { return tx.Seen().Add(id32(1), T0) })
	view(t, st, func(tx *store.Tx) error {
		if ok, err := tx.Seen().Has(id32(1)); err != nil || !ok {
			t.Fatalf("Has(1) before: %v %v", ok, err)
		}
		done := make(chan error)
		go func() {
			done <- st.Update(context.Background(), func(tx *store.Tx) error {
				if err := tx.Seen().Add(id32(2), T0); err != nil {
					return err
				}
				_, err := tx.Seen().Expire(T0, 1)
				return err
			})
		}()
		if err := <-done; err != nil {
			t.Fatalf("concurrent Update: %v", err)
		}
		for i, want := range map[byte]bool{1: true, 2: false} {
			if ok, err := tx.Seen().Has(id32(i)); err != nil || ok != want {
				t.Errorf("Has(%d) in the old snapshot: got %v %v, want %v", i, ok, err, want)
			}
		}
		return nil
	})
}

// testConcurrentUpdates runs Updates from many goroutines that all take a
// message Order (so conflict on one counter) and checks that every one
// committed once with a distinct Order.
func testConcurrentUpdates(t *testing.T, st store.Store) {
	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				var id [16]byte
				id[0], id[1] = byte(w), byte(i)
				err := st.Update(context.Background(), func(tx *store.Tx) error {
					m := store.Message{ID: id, Peer: id32(byte(w)), Seq: uint64(i), State: store.MessageReceived}
					return tx.Messages().Put(&m)
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Update: %v", err)
	}
	view(t, st, func(tx *store.Tx) error {
		all, err := tx.Messages().Since(0, 0)
		if err != nil {
			return err
		}
		if len(all) != workers*each {
			t.Fatalf("got %d messages, want %d", len(all), workers*each)
		}
		seen := map[[16]byte]bool{}
		for i, m := range all {
			if m.Order != uint64(i+1) {
				t.Errorf("message %d has Order %d, want %d", i, m.Order, i+1)
			}
			if seen[m.ID] {
				t.Errorf("message %x listed twice", m.ID)
			}
			seen[m.ID] = true
		}
		return nil
	})
}

func testContext(t *testing.T, st store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	err := st.Update(ctx, func(tx *store.Tx) error { called = true; return nil })
	if !errors.Is(err, context.Canceled) || called {
		t.Errorf("Update with a canceled context: got %v (fn called: %v)", err, called)
	}
	err = st.View(ctx, func(tx *store.Tx) error { called = true; return nil })
	if !errors.Is(err, context.Canceled) || called {
		t.Errorf("View with a canceled context: got %v (fn called: %v)", err, called)
	}
}

func testLimits(t *testing.T, st store.Store) {
	long := string(bytes.Repeat([]byte{'x'}, store.MaxNameLen+1))
	for name, fn := range map[string]func(tx *store.Tx) error{
		"contact name": func(tx *store.Tx) error {
			return tx.Contacts().Put(store.Contact{UserID: id32(1), Name: long, State: store.ContactAccepted})
		},
		"contact state": func(tx *store.Tx) error {
			return tx.Contacts().Put(store.Contact{UserID: id32(1), Name: "x"})
		},
		"message body": func(tx *store.Tx) error {
			m := store.Message{ID: id16(1), State: store.MessageQueued, Body: make([]byte, store.MaxBodyLen+1)}
			return tx.Messages().Put(&m)
		},
		"message state": func(tx *store.Tx) error {
			m := store.Message{ID: id16(1), State: 0}
			return tx.Messages().Put(&m)
		},
		"outbox receipts": func(tx *store.Tx) error {
			return tx.Outbox().Put(store.OutboxEntry{ID: id16(1), Receipts: make([]store.Receipt, store.MaxReceipts+1)})
		},
		"session device": func(tx *store.Tx) error {
			return tx.Sessions().Put(store.Session{Device: make([]byte, store.MaxDeviceIDLen+1)})
		},
		"counter name": func(tx *store.Tx) error {
			_, err := tx.Counters().Next(long)
			return err
		},
	} {
		if err := st.Update(context.Background(), fn); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s over the limit: got %v, want ErrInvalid", name, err)
		}
	}
}

func testInvites(t *testing.T, st store.Store) {
	mk := func(b byte, expires time.Duration) store.Invite {
		return store.Invite{Secret: id16(b), Pin: []byte{b, 1, 2}, CreatedAt: T0, ExpiresAt: T0.Add(expires)}
	}
	t.Run("Put", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			for i, d := range []time.Duration{time.Hour, time.Minute, 2 * time.Hour} {
				if err := tx.Invites().Put(mk(byte(i+1), d)); err != nil {
					return err
				}
			}
			return nil
		})
	})
	t.Run("GetList", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			got, err := tx.Invites().Get(id16(2))
			if err != nil {
				return err
			}
			equal(t, "Get", got, mk(2, time.Minute))
			if _, err := tx.Invites().Get(id16(9)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get missing: got %v, want ErrNotFound", err)
			}
			all, err := tx.Invites().List()
			if err != nil {
				return err
			}
			if len(all) != 3 || all[0].Secret != id16(1) || all[2].Secret != id16(3) {
				t.Errorf("List: got %+v", all)
			}
			return nil
		})
	})
	t.Run("Expire", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			n, err := tx.Invites().Expire(T0.Add(time.Hour), 0)
			if err != nil {
				return err
			}
			if n != 2 {
				t.Errorf("Expire(+1h): removed %d, want 2", n)
			}
			return tx.Invites().Delete(id16(7)) // missing: not an error
		})
	})
	t.Run("AfterExpire", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			all, err := tx.Invites().List()
			if err != nil {
				return err
			}
			if len(all) != 1 || all[0].Secret != id16(3) {
				t.Errorf("after Expire: got %+v", all)
			}
			return nil
		})
	})
	t.Run("Delete", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error { return tx.Invites().Delete(id16(3)) })
		view(t, st, func(tx *store.Tx) error {
			if _, err := tx.Invites().Get(id16(3)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get after Delete: got %v, want ErrNotFound", err)
			}
			return nil
		})
	})
	t.Run("Invalid", func(t *testing.T) {
		err := st.Update(context.Background(), func(tx *store.Tx) error {
			return tx.Invites().Put(store.Invite{})
		})
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Put with a zero secret: got %v, want ErrInvalid", err)
		}
	})
}

func testMoveConversation(t *testing.T, st store.Store) {
	old, nu, other := id32(1), id32(2), id32(3)
	var want []store.Message
	t.Run("Messages", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			for i := byte(1); i <= 7; i++ {
				peer := old
				switch i {
				case 3:
					peer = other
				case 6:
					peer = nu
				}
				m := store.Message{ID: id16(i), Peer: peer, Seq: uint64(i), Kind: 1, Body: []byte{i},
					SentAt: T0, ReceivedAt: T0, State: store.MessageReceived}
				if err := tx.Messages().Put(&m); err != nil {
					return err
				}
				if peer != other {
					m.Peer = nu
					want = append(want, m)
				}
			}
			return nil
		})
	})
	t.Run("Move", func(t *testing.T) {
		total := 0
		for {
			var n int
			update(t, st, func(tx *store.Tx) error {
				var err error
				n, err = tx.Messages().MoveConversation(old, nu, 2)
				return err
			})
			if n == 0 {
				break
			}
			total += n
		}
		if total != 5 {
			t.Errorf("moved %d messages, want 5", total)
		}
	})
	t.Run("Moved", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			got, err := tx.Messages().List(nu, 0, 0)
			if err != nil {
				return err
			}
			equal(t, "List(new) after the move", got, want)
			gone, err := tx.Messages().List(old, 0, 0)
			if err != nil {
				return err
			}
			if len(gone) != 0 {
				t.Errorf("List(old) after the move: got %s, want none", msgIDs(gone))
			}
			rest, err := tx.Messages().List(other, 0, 0)
			if err != nil {
				return err
			}
			if ids := msgIDs(rest); ids != "[3]" {
				t.Errorf("List(other): got %s, want [3]", ids)
			}
			m, err := tx.Messages().Get(id16(1))
			if err != nil {
				return err
			}
			if m.Peer != nu || m.Order != want[0].Order {
				t.Errorf("moved message: peer %x order %d, want %x %d", m.Peer[:1], m.Order, nu[:1], want[0].Order)
			}
			return nil
		})
	})
}
