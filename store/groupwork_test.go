package store_test

import (
	"testing"

	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// TestAddWorkWithoutLastRow: a store written before AddWork kept the last
// N of a kind in a row of its own goes on after its last item.
func TestAddWorkWithoutLastRow(t *testing.T) {
	st := store.NewMemory()
	defer st.Close()
	gid := protocol.GroupID{7}
	add := func() uint64 {
		t.Helper()
		var n uint64
		if err := st.Update(t.Context(), func(tx *store.Tx) error {
			var err error
			n, err = tx.Groups().AddWork(store.GroupWork{Group: gid, Kind: 6, Data: []byte("w")})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	add()
	add()
	if err := st.Update(t.Context(), func(tx *store.Tx) error { return store.ForgetLastWork(tx, gid, 6) }); err != nil {
		t.Fatal(err)
	}
	if n := add(); n != 3 {
		t.Errorf("AddWork without the row: n %d, want 3", n)
	}
	if n := add(); n != 4 {
		t.Errorf("AddWork after: n %d, want 4", n)
	}
}
