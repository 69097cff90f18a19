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

// The relay tables: mailboxes held for others, token hashes with quotas
// and usage, envelopes with an expiry index, card and prekey blobs, and the
// counts kept next to them.

func relayMailbox(b byte) store.RelayMailbox {
	return store.RelayMailbox{ID: id32(b), OwnerKey: id32(b + 100), SealingKey: id32(b + 200), CreatedAt: T0, SeenAt: T0}
}

func envelope(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

// checkTotals compares the relay's totals.
func checkTotals(t *testing.T, st store.Store, want store.RelayTotals) {
	t.Helper()
	view(t, st, func(tx *store.Tx) error {
		got, err := tx.Relay().Totals()
		if err != nil {
			return err
		}
		if got != want {
			t.Errorf("totals: got %+v, want %+v", got, want)
		}
		return nil
	})
}

func testRelayMailboxes(t *testing.T, st store.Store) {
	checkTotals(t, st, store.RelayTotals{})
	update(t, st, func(tx *store.Tx) error {
		m := relayMailbox(1)
		m.Count, m.LastSeq = 5, 9 // ignored: counts start at zero
		if err := tx.Relay().CreateMailbox(m); err != nil {
			return err
		}
		return tx.Relay().CreateMailbox(relayMailbox(2))
	})
	err := st.Update(context.Background(), func(tx *store.Tx) error { return tx.Relay().CreateMailbox(relayMailbox(1)) })
	if !errors.Is(err, store.ErrExists) {
		t.Errorf("create twice: got %v, want ErrExists", err)
	}
	err = st.Update(context.Background(), func(tx *store.Tx) error { return tx.Relay().CreateMailbox(store.RelayMailbox{}) })
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("create zero ID: got %v, want ErrInvalid", err)
	}
	update(t, st, func(tx *store.Tx) error { return tx.Relay().Seen(id32(1), T0.Add(time.Hour)) })
	view(t, st, func(tx *store.Tx) error {
		got, err := tx.Relay().Mailbox(id32(1))
		if err != nil {
			return err
		}
		want := relayMailbox(1)
		want.SeenAt = T0.Add(time.Hour)
		equal(t, "Mailbox", got, want)
		if _, err := tx.Relay().Mailbox(id32(3)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown mailbox: got %v, want ErrNotFound", err)
		}
		return nil
	})
	checkTotals(t, st, store.RelayTotals{Mailboxes: 2})
}

func testRelayTokens(t *testing.T, st store.Store) {
	mb := id32(1)
	update(t, st, func(tx *store.Tx) error { return tx.Relay().CreateMailbox(relayMailbox(1)) })
	t.Run("Put", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			tok, created, err := tx.Relay().PutToken(mb, store.RelayToken{Hash: id32(50), MaxCount: 10, MaxBytes: 4096, CreatedAt: T0, Count: 3})
			if err != nil {
				return err
			}
			if !created || tok.Count != 0 {
				t.Errorf("PutToken: created %v, count %d", created, tok.Count)
			}
			_, _, err = tx.Relay().PutToken(mb, store.RelayToken{Hash: id32(51), MaxCount: 1, MaxBytes: 1, CreatedAt: T0})
			return err
		})
	})
	t.Run("UnknownMailbox", func(t *testing.T) {
		_, _, err := putToken(st, id32(9), store.RelayToken{Hash: id32(50)})
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("token of an unknown mailbox: got %v, want ErrNotFound", err)
		}
	})
	t.Run("QuotaChangeKeepsUsage", func(t *testing.T) {
		// Usage is kept when the quota changes.
		update(t, st, func(tx *store.Tx) error {
			_, err := tx.Relay().AddEnvelope(store.RelayEnvelope{Mailbox: mb, Token: id32(50), StoredUntil: T0, Envelope: envelope(512, 1)}, nil)
			return err
		})
		tok, created, err := putToken(st, mb, store.RelayToken{Hash: id32(50), MaxCount: 20, MaxBytes: 8192})
		if err != nil || created || tok.Count != 1 || tok.Bytes != 512 || tok.MaxCount != 20 || tok.MaxBytes != 8192 || !tok.CreatedAt.Equal(T0) {
			t.Errorf("PutToken again: %+v, created %v, %v", tok, created, err)
		}
		view(t, st, func(tx *store.Tx) error {
			var hashes [][32]byte
			if err := tx.Relay().Tokens(mb, func(t store.RelayToken) error {
				hashes = append(hashes, t.Hash)
				return nil
			}); err != nil {
				return err
			}
			equal(t, "Tokens", hashes, [][32]byte{id32(50), id32(51)})
			m, err := tx.Relay().Mailbox(mb)
			if err != nil {
				return err
			}
			if m.Tokens != 2 {
				t.Errorf("mailbox tokens: %d", m.Tokens)
			}
			return nil
		})
	})
	t.Run("Revoke", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			if err := tx.Relay().PutCard(mb, id32(50), envelope(100, 7)); err != nil {
				return err
			}
			if err := tx.Relay().DeleteToken(mb, id32(50)); err != nil {
				return err
			}
			return tx.Relay().DeleteToken(mb, id32(77)) // missing: no error
		})
		view(t, st, func(tx *store.Tx) error {
			if _, err := tx.Relay().Token(mb, id32(50)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("deleted token: got %v", err)
			}
			if _, err := tx.Relay().Card(mb, id32(50)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("card of a deleted token: got %v", err)
			}
			return nil
		})
	})
	t.Run("RevokedTokensEnvelope", func(t *testing.T) {
		checkTotals(t, st, store.RelayTotals{Mailboxes: 1, Tokens: 1, Envelopes: 1, EnvelopeBytes: 512})
		// The envelope of the revoked token is still there and deletes cleanly.
		update(t, st, func(tx *store.Tx) error {
			ok, err := tx.Relay().DeleteEnvelope(mb, 1)
			if !ok {
				t.Error("envelope of a revoked token missing")
			}
			return err
		})
		checkTotals(t, st, store.RelayTotals{Mailboxes: 1, Tokens: 1})
	})
}

func putToken(st store.Store, mb protocol.MailboxID, tok store.RelayToken) (store.RelayToken, bool, error) {
	var out store.RelayToken
	var created bool
	err := st.Update(context.Background(), func(tx *store.Tx) error {
		var err error
		out, created, err = tx.Relay().PutToken(mb, tok)
		return err
	})
	return out, created, err
}

func testRelayEnvelopes(t *testing.T, st store.Store) {
	mb, other := id32(1), id32(2)
	total := uint64(512 * (1 + 2 + 3 + 4 + 5))
	t.Run("Mailboxes", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			for _, b := range []byte{1, 2} {
				if err := tx.Relay().CreateMailbox(relayMailbox(b)); err != nil {
					return err
				}
				if _, _, err := tx.Relay().PutToken(id32(b), store.RelayToken{Hash: id32(50)}); err != nil {
					return err
				}
			}
			_, _, err := tx.Relay().PutToken(mb, store.RelayToken{Hash: id32(51)})
			return err
		})
	})
	t.Run("Add", func(t *testing.T) {
		// Five envelopes in mb, expiring at T0+1h..T0+5h, alternating tokens;
		// one in the other mailbox, expiring first.
		update(t, st, func(tx *store.Tx) error {
			for i := range 5 {
				tok := id32(50 + byte(i%2))
				seq, err := tx.Relay().AddEnvelope(store.RelayEnvelope{Mailbox: mb, Token: tok, StoredUntil: T0.Add(time.Duration(i+1) * time.Hour), Envelope: envelope(512*(i+1), byte(i+1))}, nil)
				if err != nil {
					return err
				}
				if seq != uint64(i+1) {
					t.Errorf("seq %d, want %d", seq, i+1)
				}
			}
			_, err := tx.Relay().AddEnvelope(store.RelayEnvelope{Mailbox: other, Token: id32(50), StoredUntil: T0, Envelope: envelope(512, 9)}, nil)
			return err
		})
	})
	t.Run("Refused", func(t *testing.T) {
		for _, bad := range []store.RelayEnvelope{
			{Mailbox: mb, Token: id32(52), StoredUntil: T0, Envelope: envelope(512, 1)},
			{Mailbox: id32(3), Token: id32(50), StoredUntil: T0, Envelope: envelope(512, 1)},
		} {
			err := st.Update(context.Background(), func(tx *store.Tx) error {
				_, err := tx.Relay().AddEnvelope(bad, nil)
				return err
			})
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("AddEnvelope with unknown token or mailbox: got %v, want ErrNotFound", err)
			}
		}
		err := st.Update(context.Background(), func(tx *store.Tx) error {
			_, err := tx.Relay().AddEnvelope(store.RelayEnvelope{Mailbox: mb, Token: id32(50), StoredUntil: T0, Envelope: envelope(store.MaxRelayEnvelope+1, 1)}, nil)
			return err
		})
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("AddEnvelope too large: got %v, want ErrInvalid", err)
		}
		// A check that refuses writes nothing; it sees the counts before.
		errQuota := errors.New("quota")
		err = st.Update(context.Background(), func(tx *store.Tx) error {
			_, err := tx.Relay().AddEnvelope(store.RelayEnvelope{Mailbox: mb, Token: id32(50), StoredUntil: T0, Envelope: envelope(512, 1)},
				func(m *store.RelayMailbox, tok *store.RelayToken, tot *store.RelayTotals) error {
					if m.Count != 5 || tok.Count != 3 || tot.Envelopes != 6 {
						t.Errorf("check sees %d, %d, %d", m.Count, tok.Count, tot.Envelopes)
					}
					return errQuota
				})
			return err
		})
		if !errors.Is(err, errQuota) {
			t.Errorf("refusing check: %v", err)
		}
		err = st.Update(context.Background(), func(tx *store.Tx) error {
			_, err := tx.Relay().AddEnvelope(store.RelayEnvelope{Mailbox: mb, Token: id32(99), StoredUntil: T0, Envelope: envelope(512, 1)}, nil)
			return err
		})
		if !errors.Is(err, store.ErrNoRelayToken) {
			t.Errorf("unknown token: %v, want ErrNoRelayToken", err)
		}
	})
	t.Run("CountsListsExpiry", func(t *testing.T) {
		checkTotals(t, st, store.RelayTotals{Mailboxes: 2, Tokens: 3, Envelopes: 6, EnvelopeBytes: total + 512})
		view(t, st, func(tx *store.Tx) error {
			m, err := tx.Relay().Mailbox(mb)
			if err != nil {
				return err
			}
			if m.Count != 5 || m.Bytes != total || m.LastSeq != 5 {
				t.Errorf("mailbox counts: %+v", m)
			}
			t50, _ := tx.Relay().Token(mb, id32(50))
			t51, _ := tx.Relay().Token(mb, id32(51))
			if t50.Count != 3 || t50.Bytes != 512*(1+3+5) || t51.Count != 2 || t51.Bytes != 512*(2+4) {
				t.Errorf("token counts: %+v %+v", t50, t51)
			}
			var got []uint64
			err = tx.Relay().Envelopes(mb, 1, 3, func(e store.RelayEnvelope) error {
				got = append(got, e.Seq)
				if e.Mailbox != mb || len(e.Envelope) != 512*int(e.Seq) || e.Envelope[0] != byte(e.Seq) ||
					!e.StoredUntil.Equal(T0.Add(time.Duration(e.Seq)*time.Hour)) || e.Token != id32(50+byte((e.Seq-1)%2)) {
					t.Errorf("envelope %d: %+v", e.Seq, e.StoredUntil)
				}
				return nil
			})
			equal(t, "Envelopes(after 1, limit 3)", got, []uint64{2, 3, 4})
			got = nil
			if err := tx.Relay().Envelopes(mb, 0, 0, func(e store.RelayEnvelope) error {
				got = append(got, e.Seq)
				return nil
			}); err != nil {
				return err
			}
			equal(t, "Envelopes(all)", got, []uint64{1, 2, 3, 4, 5})
			got = nil
			if err := tx.Relay().Envelopes(mb, ^uint64(0), 0, func(e store.RelayEnvelope) error {
				got = append(got, e.Seq)
				return nil
			}); err != nil {
				return err
			}
			if got != nil {
				t.Errorf("Envelopes after the largest seq: %v", got)
			}
			exp, err := tx.Relay().ExpiredEnvelopes(T0.Add(2*time.Hour), 0)
			if err != nil {
				return err
			}
			equal(t, "ExpiredEnvelopes", exp, []store.EnvelopeRef{{Mailbox: other, Seq: 1}, {Mailbox: mb, Seq: 1}, {Mailbox: mb, Seq: 2}})
			exp, err = tx.Relay().ExpiredEnvelopes(T0.Add(10*time.Hour), 2)
			if err != nil {
				return err
			}
			if len(exp) != 2 {
				t.Errorf("ExpiredEnvelopes with limit 2: %d", len(exp))
			}
			return err
		})
	})
	t.Run("Delete", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			for _, s := range []uint64{2, 3, 99} {
				ok, err := tx.Relay().DeleteEnvelope(mb, s)
				if err != nil {
					return err
				}
				if ok != (s != 99) {
					t.Errorf("DeleteEnvelope(%d) = %v", s, ok)
				}
			}
			return nil
		})
		checkTotals(t, st, store.RelayTotals{Mailboxes: 2, Tokens: 3, Envelopes: 4, EnvelopeBytes: total + 512 - 512*5})
	})
	t.Run("AfterDelete", func(t *testing.T) {
		view(t, st, func(tx *store.Tx) error {
			exp, err := tx.Relay().ExpiredEnvelopes(T0.Add(3*time.Hour), 0)
			equal(t, "ExpiredEnvelopes after deletes", exp, []store.EnvelopeRef{{Mailbox: other, Seq: 1}, {Mailbox: mb, Seq: 1}})
			t50, _ := tx.Relay().Token(mb, id32(50))
			if t50.Count != 2 || t50.Bytes != 512*(1+5) {
				t.Errorf("token counts after delete: %+v", t50)
			}
			return err
		})
	})
	t.Run("SeqNeverReused", func(t *testing.T) {
		// Sequence numbers are never reused.
		update(t, st, func(tx *store.Tx) error {
			seq, err := tx.Relay().AddEnvelope(store.RelayEnvelope{Mailbox: mb, Token: id32(50), StoredUntil: T0, Envelope: envelope(512, 1)}, nil)
			if seq != 6 {
				t.Errorf("seq after deletes: %d, want 6", seq)
			}
			return err
		})
	})
}

func testRelayCards(t *testing.T, st store.Store) {
	mb := id32(1)
	update(t, st, func(tx *store.Tx) error {
		if err := tx.Relay().CreateMailbox(relayMailbox(1)); err != nil {
			return err
		}
		_, _, err := tx.Relay().PutToken(mb, store.RelayToken{Hash: id32(50)})
		return err
	})
	err := st.Update(context.Background(), func(tx *store.Tx) error { return tx.Relay().PutCard(mb, id32(51), envelope(10, 1)) })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("card for an unknown token: got %v, want ErrNotFound", err)
	}
	update(t, st, func(tx *store.Tx) error { return tx.Relay().PutCard(mb, id32(50), envelope(1000, 1)) })
	update(t, st, func(tx *store.Tx) error { return tx.Relay().PutCard(mb, id32(50), envelope(300, 2)) })
	view(t, st, func(tx *store.Tx) error {
		b, err := tx.Relay().Card(mb, id32(50))
		if !bytes.Equal(b, envelope(300, 2)) {
			t.Errorf("Card: %d bytes", len(b))
		}
		tok, _ := tx.Relay().Token(mb, id32(50))
		if !tok.HasCard {
			t.Error("token without HasCard")
		}
		return err
	})
	checkTotals(t, st, store.RelayTotals{Mailboxes: 1, Tokens: 1, Cards: 1, BlobBytes: 300})
}

func testRelayPrekeys(t *testing.T, st store.Store) {
	mb := id32(1)
	update(t, st, func(tx *store.Tx) error {
		if err := tx.Relay().CreateMailbox(relayMailbox(1)); err != nil {
			return err
		}
		// A batch expiring at T0+2h, then one expiring earlier, at T0+1h.
		if err := tx.Relay().AddPrekeys(mb, [][]byte{envelope(100, 1), envelope(100, 2)}, T0.Add(2*time.Hour)); err != nil {
			return err
		}
		return tx.Relay().AddPrekeys(mb, [][]byte{envelope(50, 3)}, T0.Add(time.Hour))
	})
	checkTotals(t, st, store.RelayTotals{Mailboxes: 1, Prekeys: 3, BlobBytes: 250})
	take := func(now time.Time) ([]byte, error) {
		var b []byte
		err := st.Update(context.Background(), func(tx *store.Tx) error {
			var err error
			var ok bool
			b, ok, err = tx.Relay().TakePrekey(mb, now)
			if err == nil && !ok {
				b = nil
			}
			return err
		})
		return b, err
	}
	// The one that expires first is handed out first.
	if b, err := take(T0); err != nil || !bytes.Equal(b, envelope(50, 3)) {
		t.Errorf("first take: %x, %v", b, err)
	}
	// At T0+2h the other batch has expired: nothing is handed out, and the
	// expired blobs are gone.
	if b, err := take(T0.Add(2 * time.Hour)); err != nil || b != nil {
		t.Errorf("take after expiry: got %x, %v, want none", b, err)
	}
	checkTotals(t, st, store.RelayTotals{Mailboxes: 1})
	view(t, st, func(tx *store.Tx) error {
		m, err := tx.Relay().Mailbox(mb)
		if m.Prekeys != 0 || m.PrekeySeq != 3 {
			t.Errorf("mailbox prekeys: %d (seq %d)", m.Prekeys, m.PrekeySeq)
		}
		return err
	})

	// The sweep removes expired batches of every mailbox.
	update(t, st, func(tx *store.Tx) error {
		if err := tx.Relay().AddPrekeys(mb, [][]byte{envelope(10, 1), envelope(10, 2)}, T0.Add(time.Hour)); err != nil {
			return err
		}
		return tx.Relay().AddPrekeys(mb, [][]byte{envelope(10, 3)}, T0.Add(3*time.Hour))
	})
	update(t, st, func(tx *store.Tx) error {
		n, err := tx.Relay().ExpirePrekeys(T0.Add(time.Hour), 0)
		if n != 2 {
			t.Errorf("ExpirePrekeys: %d, want 2", n)
		}
		return err
	})
	checkTotals(t, st, store.RelayTotals{Mailboxes: 1, Prekeys: 1, BlobBytes: 10})
	if b, err := take(T0); err != nil || !bytes.Equal(b, envelope(10, 3)) {
		t.Errorf("take after sweep: %x, %v", b, err)
	}
}

// testRelayPrekeyRace: many concurrent takers, fewer prekeys; each prekey
// goes to one taker at most, and none is lost.
func testRelayPrekeyRace(t *testing.T, st store.Store) {
	mb := id32(1)
	const prekeys, takers = 8, 32
	update(t, st, func(tx *store.Tx) error {
		if err := tx.Relay().CreateMailbox(relayMailbox(1)); err != nil {
			return err
		}
		var blobs [][]byte
		for i := range prekeys {
			blobs = append(blobs, []byte(fmt.Sprintf("prekey-%d", i)))
		}
		return tx.Relay().AddPrekeys(mb, blobs, T0.Add(time.Hour))
	})
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for range takers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b []byte
			var ok bool
			err := st.Update(context.Background(), func(tx *store.Tx) error {
				var err error
				b, ok, err = tx.Relay().TakePrekey(mb, T0)
				return err
			})
			if err != nil && !errors.Is(err, store.ErrConflict) {
				t.Errorf("TakePrekey: %v", err)
			}
			if err == nil && ok {
				mu.Lock()
				got[string(b)]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var left uint64
	view(t, st, func(tx *store.Tx) error {
		m, err := tx.Relay().Mailbox(mb)
		left = m.Prekeys
		return err
	})
	for b, n := range got {
		if n != 1 {
			t.Errorf("%s handed out %d times", b, n)
		}
	}
	if uint64(len(got))+left != prekeys {
		t.Errorf("%d handed out, %d left, of %d", len(got), left, prekeys)
	}
}

func testRelayDeleteMailbox(t *testing.T, st store.Store) {
	mb, other := id32(1), id32(2)
	t.Run("Fill", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			for _, b := range []byte{1, 2} {
				if err := tx.Relay().CreateMailbox(relayMailbox(b)); err != nil {
					return err
				}
			}
			for i := range 5 {
				if _, _, err := tx.Relay().PutToken(mb, store.RelayToken{Hash: id32(50 + byte(i))}); err != nil {
					return err
				}
				if err := tx.Relay().PutCard(mb, id32(50+byte(i)), envelope(100, 1)); err != nil {
					return err
				}
			}
			if _, _, err := tx.Relay().PutToken(other, store.RelayToken{Hash: id32(50)}); err != nil {
				return err
			}
			for i := range 30 {
				if _, err := tx.Relay().AddEnvelope(store.RelayEnvelope{Mailbox: mb, Token: id32(50 + byte(i%5)), StoredUntil: T0, Envelope: envelope(512, 1)}, nil); err != nil {
					return err
				}
			}
			if _, err := tx.Relay().AddEnvelope(store.RelayEnvelope{Mailbox: other, Token: id32(50), StoredUntil: T0, Envelope: envelope(512, 2)}, nil); err != nil {
				return err
			}
			if err := tx.Relay().AddPrekeys(mb, [][]byte{envelope(10, 1), envelope(10, 2)}, T0); err != nil {
				return err
			}
			return tx.Relay().AddPrekeys(other, [][]byte{envelope(10, 1)}, T0)
		})
	})
	t.Run("DeleteInRounds", func(t *testing.T) {
		rounds := 0
		for done := false; !done; rounds++ {
			if rounds > 20 {
				t.Fatal("DeleteMailbox does not finish")
			}
			update(t, st, func(tx *store.Tx) error {
				var err error
				done, err = tx.Relay().DeleteMailbox(mb, 16)
				if err != nil {
					return err
				}
				if !done {
					// Deleting: the mailbox accepts nothing more.
					_, err := tx.Relay().AddEnvelope(store.RelayEnvelope{Mailbox: mb, Token: id32(50), StoredUntil: T0, Envelope: envelope(512, 1)}, nil)
					if !errors.Is(err, store.ErrNotFound) {
						t.Errorf("deposit into a mailbox being deleted: %v", err)
					}
					ids, err := tx.Relay().Deleting(0)
					if len(ids) != 1 || ids[0] != mb {
						t.Errorf("Deleting: %x", ids)
					}
					return err
				}
				return nil
			})
		}
		if rounds < 3 {
			t.Errorf("deleted in %d rounds of 16 records; want several", rounds)
		}
	})
	t.Run("WhatIsLeft", func(t *testing.T) {
		checkTotals(t, st, store.RelayTotals{Mailboxes: 1, Tokens: 1, Envelopes: 1, EnvelopeBytes: 512, Prekeys: 1, BlobBytes: 10})
		view(t, st, func(tx *store.Tx) error {
			if _, err := tx.Relay().Mailbox(mb); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("deleted mailbox: %v", err)
			}
			ids, err := tx.Relay().Deleting(0)
			if len(ids) != 0 {
				t.Errorf("Deleting after the end: %x", ids)
			}
			exp, err := tx.Relay().ExpiredEnvelopes(T0, 0)
			equal(t, "expiry index", exp, []store.EnvelopeRef{{Mailbox: other, Seq: 1}})
			return err
		})
	})
	t.Run("Indexes", func(t *testing.T) {
		update(t, st, func(tx *store.Tx) error {
			n, err := tx.Relay().ExpirePrekeys(T0, 0)
			if n != 1 {
				t.Errorf("prekey index after delete: %d entries, want the other mailbox's 1", n)
			}
			done, err2 := tx.Relay().DeleteMailbox(id32(9), 0)
			if !done || err2 != nil {
				t.Errorf("deleting an unknown mailbox: %v %v", done, err2)
			}
			return err
		})
	})
}
