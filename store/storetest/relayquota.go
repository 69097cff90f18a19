package storetest

import (
	"testing"

	"github.com/sealpost/sealpost/store"
)

// testRelayQuotas: the shared quotas of a creator's mailboxes count the
// mailboxes while they exist and their envelopes' bytes, in the same
// transactions as the data.
func testRelayQuotas(t *testing.T, st store.Store) {
	peer, subnet := store.RelayQuotaKey{1}, store.RelayQuotaKey{2}
	check := func(k store.RelayQuotaKey, want store.RelayQuota) {
		t.Helper()
		view(t, st, func(tx *store.Tx) error {
			got, err := tx.Relay().Quota(k)
			if err != nil {
				return err
			}
			if got != want {
				t.Errorf("quota %x: got %+v, want %+v", k[:1], got, want)
			}
			return nil
		})
	}
	a, b, c := relayMailbox(1), relayMailbox(2), relayMailbox(3)
	a.Quotas = [2]store.RelayQuotaKey{peer, subnet}
	b.Quotas = [2]store.RelayQuotaKey{{}, subnet}
	update(t, st, func(tx *store.Tx) error {
		for _, m := range []store.RelayMailbox{a, b, c} {
			if err := tx.Relay().CreateMailbox(m); err != nil {
				return err
			}
			if _, _, err := tx.Relay().PutToken(m.ID, store.RelayToken{Hash: id32(50), MaxCount: 100, MaxBytes: 1 << 20}); err != nil {
				return err
			}
		}
		for i, m := range []store.RelayMailbox{a, a, b, c} {
			if _, err := tx.Relay().AddEnvelope(store.RelayEnvelope{Mailbox: m.ID, Token: id32(50), StoredUntil: T0, Envelope: envelope(512<<i, 1)}, nil); err != nil {
				return err
			}
		}
		return nil
	})
	check(peer, store.RelayQuota{Mailboxes: 1, Bytes: 512 + 1024})
	check(subnet, store.RelayQuota{Mailboxes: 2, Bytes: 512 + 1024 + 2048})
	view(t, st, func(tx *store.Tx) error {
		m, err := tx.Relay().Mailbox(a.ID)
		if err == nil && m.Quotas != a.Quotas {
			t.Errorf("stored quotas %x, want %x", m.Quotas, a.Quotas)
		}
		return err
	})
	update(t, st, func(tx *store.Tx) error {
		_, err := tx.Relay().DeleteEnvelope(a.ID, 2)
		return err
	})
	check(peer, store.RelayQuota{Mailboxes: 1, Bytes: 512})
	check(subnet, store.RelayQuota{Mailboxes: 2, Bytes: 512 + 2048})
	for _, m := range []store.RelayMailbox{a, b} {
		update(t, st, func(tx *store.Tx) error {
			for {
				done, err := tx.Relay().DeleteMailbox(m.ID, 16)
				if done || err != nil {
					return err
				}
			}
		})
	}
	check(peer, store.RelayQuota{})
	check(subnet, store.RelayQuota{})
}
