package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// The relay's group logs: epochs with their token hashes, entries in
// sequence, commits that close an epoch (first one wins), idempotent
// appends, reads bounded to one epoch, expiry and deletion, and the counts
// kept next to them.

func groupLog(b byte, epoch uint64) store.RelayGroupLog {
	return store.RelayGroupLog{ID: id32(b), CreatedAt: T0, IdleUntil: T0.Add(30 * 24 * time.Hour), Epoch: epoch}
}

// groupAppend is an append of a n-byte entry filled with fill to epoch of
// log 1, with the token hash of that epoch (tokenOf).
func groupAppend(epoch uint64, n int, fill byte) store.GroupAppend {
	return store.GroupAppend{
		Log: id32(1), Epoch: epoch, Token: tokenOf(epoch), Entry: bytes.Repeat([]byte{fill}, n),
		StoredUntil: T0.Add(time.Hour), Now: T0,
	}
}

func tokenOf(epoch uint64) protocol.TokenHash { return id32(byte(100 + epoch)) }

func groupCommit(epoch uint64, fill byte) store.GroupAppend {
	a := groupAppend(epoch, 64, fill)
	a.Commit, a.Next = true, tokenOf(epoch+1)
	return a
}

func checkGroupTotals(t *testing.T, st store.Store, want store.RelayGroupTotals) {
	t.Helper()
	view(t, st, func(tx *store.Tx) error {
		got, err := tx.RelayGroups().Totals()
		if err != nil {
			return err
		}
		if got != want {
			t.Errorf("group totals: got %+v, want %+v", got, want)
		}
		return nil
	})
}

// appendGroup runs one append in its own transaction.
func appendGroup(st store.Store, a store.GroupAppend) (e store.RelayGroupEntry, dup bool, err error) {
	err = st.Update(context.Background(), func(tx *store.Tx) error {
		var err error
		e, dup, err = tx.RelayGroups().Append(a, nil)
		return err
	})
	return e, dup, err
}

// groupEntries lists the sequence numbers of an epoch's entries.
func groupEntries(t *testing.T, st store.Store, epoch, after uint64, limit int) ([]uint64, error) {
	t.Helper()
	var seqs []uint64
	err := st.View(context.Background(), func(tx *store.Tx) error {
		seqs = nil
		return tx.RelayGroups().Entries(id32(1), epoch, after, limit, func(e store.RelayGroupEntry) error {
			if e.Epoch != epoch {
				t.Errorf("entry %d of epoch %d in a read of epoch %d", e.Seq, e.Epoch, epoch)
			}
			seqs = append(seqs, e.Seq)
			return nil
		})
	})
	return seqs, err
}

func testRelayGroupLogs(t *testing.T, st store.Store) {
	checkGroupTotals(t, st, store.RelayGroupTotals{})
	update(t, st, func(tx *store.Tx) error {
		l := groupLog(1, 3)
		l.Count, l.LastSeq = 5, 9 // ignored: counts start at zero
		return tx.RelayGroups().CreateLog(l, tokenOf(3))
	})
	for name, c := range map[string]struct {
		l     store.RelayGroupLog
		token protocol.TokenHash
		want  error
	}{
		"twice":      {groupLog(1, 0), tokenOf(0), store.ErrExists},
		"zero ID":    {store.RelayGroupLog{}, tokenOf(0), store.ErrInvalid},
		"zero token": {groupLog(2, 0), protocol.TokenHash{}, store.ErrInvalid},
	} {
		err := st.Update(context.Background(), func(tx *store.Tx) error { return tx.RelayGroups().CreateLog(c.l, c.token) })
		if !errors.Is(err, c.want) {
			t.Errorf("create %s: got %v, want %v", name, err, c.want)
		}
	}
	view(t, st, func(tx *store.Tx) error {
		got, err := tx.RelayGroups().Log(id32(1))
		if err != nil {
			return err
		}
		want := groupLog(1, 3)
		want.FirstEpoch = 3
		equal(t, "Log", got, want)
		g, err := tx.RelayGroups().Epoch(id32(1), 3)
		if err != nil {
			return err
		}
		equal(t, "Epoch", g, store.RelayGroupEpoch{Epoch: 3, TokenHash: tokenOf(3), FirstSeq: 1, OpenedAt: T0})
		if _, err := tx.RelayGroups().Epoch(id32(1), 2); !errors.Is(err, store.ErrWrongEpoch) {
			t.Errorf("epoch before the first: got %v, want ErrWrongEpoch", err)
		}
		if _, err := tx.RelayGroups().Log(id32(2)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown log: got %v, want ErrNotFound", err)
		}
		if _, err := tx.RelayGroups().Epoch(id32(2), 0); !errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrWrongEpoch) {
			t.Errorf("epoch of an unknown log: got %v, want ErrNotFound", err)
		}
		return nil
	})
	checkGroupTotals(t, st, store.RelayGroupTotals{Logs: 1})
}

func testRelayGroupAppend(t *testing.T, st store.Store) {
	update(t, st, func(tx *store.Tx) error { return tx.RelayGroups().CreateLog(groupLog(1, 0), tokenOf(0)) })

	// Three entries and a commit in epoch 0, two entries in epoch 1.
	for i, a := range []store.GroupAppend{
		groupAppend(0, 100, 1), groupAppend(0, 200, 2), groupAppend(0, 300, 3), groupCommit(0, 4),
		groupAppend(1, 400, 5), groupAppend(1, 500, 6),
	} {
		e, dup, err := appendGroup(st, a)
		if err != nil || dup || e.Seq != uint64(i+1) || e.Epoch != a.Epoch || e.Commit != a.Commit {
			t.Fatalf("append %d: seq %d epoch %d commit %v dup %v, %v", i, e.Seq, e.Epoch, e.Commit, dup, err)
		}
	}
	checkGroupTotals(t, st, store.RelayGroupTotals{Logs: 1, Entries: 6, Bytes: 100 + 200 + 300 + 64 + 400 + 500})
	view(t, st, func(tx *store.Tx) error {
		l, err := tx.RelayGroups().Log(id32(1))
		if err != nil {
			return err
		}
		if l.Epoch != 1 || l.FirstEpoch != 0 || l.LastSeq != 6 || l.Count != 6 || l.Bytes != 1564 {
			t.Errorf("log after appends: %+v", l)
		}
		g, err := tx.RelayGroups().Epoch(id32(1), 0)
		if err != nil {
			return err
		}
		equal(t, "closed epoch", g, store.RelayGroupEpoch{Epoch: 0, TokenHash: tokenOf(0), FirstSeq: 1, CommitSeq: 4, OpenedAt: T0})
		g, err = tx.RelayGroups().Epoch(id32(1), 1)
		if err != nil {
			return err
		}
		equal(t, "open epoch", g, store.RelayGroupEpoch{Epoch: 1, TokenHash: tokenOf(1), FirstSeq: 5, OpenedAt: T0})
		e, err := tx.RelayGroups().Entry(id32(1), 2)
		if err != nil {
			return err
		}
		equal(t, "Entry", e, store.RelayGroupEntry{Log: id32(1), Seq: 2, Epoch: 0, StoredUntil: T0.Add(time.Hour), Entry: bytes.Repeat([]byte{2}, 200)})
		return nil
	})

	// Reads are bounded to one epoch.
	for _, c := range []struct {
		epoch, after uint64
		limit        int
		want         []uint64
	}{
		{0, 0, 0, []uint64{1, 2, 3, 4}},
		{0, 1, 2, []uint64{2, 3}},
		{0, 4, 0, nil},
		{0, 100, 0, nil},
		{1, 0, 0, []uint64{5, 6}},
		{1, 5, 0, []uint64{6}},
		{1, ^uint64(0), 0, nil},
	} {
		got, err := groupEntries(t, st, c.epoch, c.after, c.limit)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("entries of epoch %d after %d limit %d: got %v, %v; want %v", c.epoch, c.after, c.limit, got, err, c.want)
		}
	}
	if _, err := groupEntries(t, st, 2, 0, 0); !errors.Is(err, store.ErrWrongEpoch) {
		t.Errorf("entries of a future epoch: got %v, want ErrWrongEpoch", err)
	}

	// A second commit for epoch 0 is refused; so is an entry for it.
	if _, _, err := appendGroup(st, groupCommit(0, 9)); !errors.Is(err, store.ErrWrongEpoch) {
		t.Errorf("second commit for epoch 0: got %v, want ErrWrongEpoch", err)
	}
	if _, _, err := appendGroup(st, groupAppend(0, 10, 9)); !errors.Is(err, store.ErrWrongEpoch) {
		t.Errorf("entry for a closed epoch: got %v, want ErrWrongEpoch", err)
	}
	// Appending what is stored answers with what is stored, the winning
	// commit included, and writes nothing.
	for _, a := range []store.GroupAppend{groupCommit(0, 4), groupAppend(1, 400, 5)} {
		e, dup, err := appendGroup(st, a)
		if err != nil || !dup || e.Epoch != a.Epoch || !bytes.Equal(e.Entry, a.Entry) {
			t.Errorf("append again: seq %d dup %v, %v", e.Seq, dup, err)
		}
	}
	// The same bytes in another epoch are another entry.
	if e, dup, err := appendGroup(st, groupAppend(1, 100, 1)); err != nil || dup || e.Seq != 7 {
		t.Errorf("entry of epoch 0 again in epoch 1: seq %d dup %v, %v", e.Seq, dup, err)
	}

	// Tokens: an epoch's own only.
	a := groupAppend(1, 10, 7)
	a.Token = tokenOf(0)
	if _, _, err := appendGroup(st, a); !errors.Is(err, store.ErrNoGroupToken) {
		t.Errorf("token of another epoch: got %v, want ErrNoGroupToken", err)
	}
	a = groupAppend(5, 10, 7)
	if _, _, err := appendGroup(st, a); !errors.Is(err, store.ErrWrongEpoch) {
		t.Errorf("future epoch: got %v, want ErrWrongEpoch", err)
	}
	a = groupAppend(1, 10, 7)
	a.Log = id32(2)
	if _, _, err := appendGroup(st, a); !errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrNoGroupToken) {
		t.Errorf("unknown log: got %v, want ErrNotFound", err)
	}
	for name, a := range map[string]store.GroupAppend{
		"empty":          groupAppend(1, 0, 0),
		"too large":      groupAppend(1, store.MaxRelayGroupEntry+1, 1),
		"commit no next": func() store.GroupAppend { a := groupCommit(1, 8); a.Next = protocol.TokenHash{}; return a }(),
	} {
		if _, _, err := appendGroup(st, a); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}

	// A quota check sees the counts and can refuse.
	full := errors.New("full")
	err := st.Update(context.Background(), func(tx *store.Tx) error {
		_, _, err := tx.RelayGroups().Append(groupAppend(1, 10, 8), func(l *store.RelayGroupLog, tot *store.RelayGroupTotals) error {
			if l.Count != 7 || tot.Entries != 7 || tot.Logs != 1 {
				t.Errorf("check sees log %+v, totals %+v", l, tot)
			}
			return full
		})
		return err
	})
	if !errors.Is(err, full) {
		t.Errorf("refused by check: %v", err)
	}
	checkGroupTotals(t, st, store.RelayGroupTotals{Logs: 1, Entries: 7, Bytes: 1664})
}

// testRelayGroupCommitRace: many committers for one epoch at once; exactly
// one wins, whatever the backend's concurrency.
func testRelayGroupCommitRace(t *testing.T, st store.Store) {
	update(t, st, func(tx *store.Tx) error { return tx.RelayGroups().CreateLog(groupLog(1, 0), tokenOf(0)) })
	const n = 16
	var wg sync.WaitGroup
	won := make(chan byte, n)
	for i := range n {
		wg.Go(func() {
			_, _, err := appendGroup(st, groupCommit(0, byte(i)))
			switch {
			case err == nil:
				won <- byte(i)
			case !errors.Is(err, store.ErrWrongEpoch):
				t.Errorf("committer %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	close(won)
	var winners []byte
	for w := range won {
		winners = append(winners, w)
	}
	if len(winners) != 1 {
		t.Fatalf("%d commits won epoch 0: %v", len(winners), winners)
	}
	seqs, err := groupEntries(t, st, 0, 0, 0)
	if err != nil || len(seqs) != 1 {
		t.Fatalf("epoch 0 holds %v, %v", seqs, err)
	}
	// The winner's retry is answered as a success, the losers' are not.
	for i := range byte(n) {
		_, dup, err := appendGroup(st, groupCommit(0, i))
		if (i == winners[0]) != (err == nil && dup) {
			t.Errorf("committer %d again: dup %v, %v", i, dup, err)
		}
	}
}

func testRelayGroupExpiry(t *testing.T, st store.Store) {
	update(t, st, func(tx *store.Tx) error { return tx.RelayGroups().CreateLog(groupLog(1, 0), tokenOf(0)) })
	at := func(a store.GroupAppend, d time.Duration) store.GroupAppend {
		a.StoredUntil = T0.Add(d)
		return a
	}
	for _, a := range []store.GroupAppend{
		at(groupAppend(0, 10, 1), time.Minute), at(groupCommit(0, 2), 2*time.Minute),
		at(groupAppend(1, 10, 3), 3*time.Minute), at(groupCommit(1, 4), 4*time.Minute),
		at(groupAppend(2, 10, 5), 5*time.Minute),
	} {
		if _, _, err := appendGroup(st, a); err != nil {
			t.Fatal(err)
		}
	}
	expire := func(now time.Time, limit int) []store.GroupEntryRef {
		var refs []store.GroupEntryRef
		update(t, st, func(tx *store.Tx) error {
			var err error
			refs, err = tx.RelayGroups().ExpiredEntries(now, limit)
			if err != nil {
				return err
			}
			for _, r := range refs {
				if ok, err := tx.RelayGroups().DeleteEntry(r.Log, r.Seq); err != nil || !ok {
					return fmt.Errorf("delete %d: %v %v", r.Seq, ok, err)
				}
			}
			return nil
		})
		return refs
	}
	if refs := expire(T0.Add(2*time.Minute), 1); len(refs) != 1 || refs[0].Seq != 1 {
		t.Errorf("first expired: %v", refs)
	}
	if refs := expire(T0.Add(2*time.Minute), 0); len(refs) != 1 || refs[0].Seq != 2 {
		t.Errorf("then: %v", refs)
	}
	// Epoch 0's commit is gone, and with it the epoch.
	if _, err := groupEntries(t, st, 0, 0, 0); !errors.Is(err, store.ErrWrongEpoch) {
		t.Errorf("read of an expired epoch: got %v, want ErrWrongEpoch", err)
	}
	view(t, st, func(tx *store.Tx) error {
		l, err := tx.RelayGroups().Log(id32(1))
		if err != nil {
			return err
		}
		if l.FirstEpoch != 1 || l.Epoch != 2 || l.Count != 3 || l.Bytes != 10+64+10 {
			t.Errorf("log after expiry: %+v", l)
		}
		return nil
	})
	if seqs, err := groupEntries(t, st, 1, 0, 0); err != nil || fmt.Sprint(seqs) != "[3 4]" {
		t.Errorf("epoch 1 after expiry: %v, %v", seqs, err)
	}
	// An expired entry is no longer a duplicate: appending it again to
	// its (gone) epoch is refused.
	if _, _, err := appendGroup(st, groupCommit(0, 2)); !errors.Is(err, store.ErrWrongEpoch) {
		t.Errorf("expired commit again: got %v, want ErrWrongEpoch", err)
	}
	expire(T0.Add(time.Hour), 0)
	checkGroupTotals(t, st, store.RelayGroupTotals{Logs: 1})
	view(t, st, func(tx *store.Tx) error {
		l, err := tx.RelayGroups().Log(id32(1))
		if err != nil {
			return err
		}
		if l.FirstEpoch != 2 || l.Epoch != 2 || l.Count != 0 || l.Bytes != 0 || l.LastSeq != 5 {
			t.Errorf("log after all expired: %+v", l)
		}
		return nil
	})
	// The open epoch stays readable and appendable; sequence numbers go on.
	if e, _, err := appendGroup(st, groupAppend(2, 10, 6)); err != nil || e.Seq != 6 {
		t.Errorf("append after expiry: seq %d, %v", e.Seq, err)
	}
}

func testRelayGroupDeleteLog(t *testing.T, st store.Store) {
	l := groupLog(1, 0)
	l.IdleUntil = T0.Add(time.Hour)
	update(t, st, func(tx *store.Tx) error { return tx.RelayGroups().CreateLog(l, tokenOf(0)) })
	l2 := groupLog(2, 0)
	l2.IdleUntil = T0.Add(3 * time.Hour)
	update(t, st, func(tx *store.Tx) error { return tx.RelayGroups().CreateLog(l2, tokenOf(0)) })
	for i := range 40 {
		a := groupAppend(uint64(i/10), 10, byte(i))
		if i%10 == 9 {
			a = groupCommit(uint64(i/10), byte(i))
		}
		a.IdleUntil = T0.Add(2 * time.Hour)
		if _, _, err := appendGroup(st, a); err != nil {
			t.Fatal(err)
		}
	}
	idle := func(now time.Time) []protocol.GroupLogID {
		var ids []protocol.GroupLogID
		view(t, st, func(tx *store.Tx) error {
			var err error
			ids, err = tx.RelayGroups().IdleLogs(now, 0)
			return err
		})
		return ids
	}
	// The appends moved log 1's deadline from one hour to two.
	if ids := idle(T0.Add(90 * time.Minute)); len(ids) != 0 {
		t.Errorf("idle at 1.5 h: %x", ids)
	}
	if ids := idle(T0.Add(150 * time.Minute)); len(ids) != 1 || ids[0] != id32(1) {
		t.Errorf("idle at 2.5 h: %x", ids)
	}
	calls := 0
	for done := false; !done; calls++ {
		update(t, st, func(tx *store.Tx) error {
			var err error
			done, err = tx.RelayGroups().DeleteLog(id32(1), 16)
			return err
		})
		if calls == 0 {
			if _, _, err := appendGroup(st, groupAppend(4, 10, 99)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("append to a log being deleted: %v", err)
			}
		}
		if calls > 20 {
			t.Fatal("DeleteLog does not finish")
		}
	}
	if calls < 3 {
		t.Errorf("DeleteLog of 40 entries took %d calls of 16 records", calls)
	}
	view(t, st, func(tx *store.Tx) error {
		if _, err := tx.RelayGroups().Log(id32(1)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("deleted log: %v", err)
		}
		return nil
	})
	if ids := idle(T0.Add(150 * time.Minute)); len(ids) != 0 {
		t.Errorf("idle after delete: %x", ids)
	}
	checkGroupTotals(t, st, store.RelayGroupTotals{Logs: 1})
	update(t, st, func(tx *store.Tx) error {
		done, err := tx.RelayGroups().DeleteLog(id32(9), 0)
		if !done {
			t.Error("deleting a missing log is not done")
		}
		return err
	})
	update(t, st, func(tx *store.Tx) error {
		done, err := tx.RelayGroups().DeleteLog(id32(2), 0)
		if !done {
			t.Error("DeleteLog without a limit is not done")
		}
		return err
	})
	checkGroupTotals(t, st, store.RelayGroupTotals{})
}
