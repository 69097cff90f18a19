package mailbox_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealpost/sealpost/crypto/seal"
	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
)

// TestLyingRelay: what a depositor and an owner do about a relay that
// lies. A receipt that does not verify (forged, or signed by another key
// than the relay's) is no receipt; a receipt whose stored-until lies past
// the longest custody a relay may give is refused too, and counted, so
// the sender does not wait years before depositing again; one within the
// clock tolerance counts, cut to the longest custody. A push of an
// envelope of another mailbox on a subscription never reaches the owner's
// handler, and is deleted.
func TestLyingRelay(t *testing.T) {
	ctx := context.Background()
	type lie struct {
		name string
		// until is the stored-until the relay signs (zero: unchanged);
		// forge sets a bad signature; other signs with another key.
		until        func(now time.Time) time.Time
		forge, other bool
		// wantErr is the deposit's error (nil: a receipt), wantUntil
		// the latest stored-until the sender may keep.
		wantErr   error
		wantUntil func(now time.Time) time.Time
	}
	otherKey := ed25519.NewKeyFromSeed(make([]byte, 32))
	for _, l := range []lie{
		{name: "far stored-until", until: func(now time.Time) time.Time { return now.AddDate(10, 0, 0) },
			wantErr: protocol.ErrCustody},
		{name: "just past the tolerance", until: func(now time.Time) time.Time {
			return now.Add(protocol.MaxCustody + protocol.CustodyTolerance + time.Minute)
		}, wantErr: protocol.ErrCustody},
		{name: "within the tolerance", until: func(now time.Time) time.Time {
			return now.Add(protocol.MaxCustody + protocol.CustodyTolerance/2)
		}, wantUntil: func(now time.Time) time.Time { return now.Add(protocol.MaxCustody) }},
		{name: "forged signature", forge: true, wantErr: mailbox.ErrBadRelay},
		{name: "wrong relay key", other: true, wantErr: mailbox.ErrBadRelay},
	} {
		t.Run(l.name, func(t *testing.T) {
			h := nodetest.Host(t)
			r := nodetest.StartRelay(t, nodetest.RelayOptions{Host: h, Tamper: func(req *protocol.RelayRequest, resp *protocol.RelayResponse) {
				if resp.Op != protocol.RelayDeposit || resp.Code != protocol.CodeOK {
					return
				}
				rc := protocol.Receipt{Relay: []byte(h.ID()), Mailbox: req.Mailbox,
					Envelope: protocol.EnvelopeHash(req.Envelope), StoredUntil: resp.StoredUntil}
				if l.until != nil {
					rc.StoredUntil = l.until(time.Now()).UnixMilli()
				}
				resp.StoredUntil = rc.StoredUntil
				switch {
				case l.forge:
					resp.Signature = append([]byte(nil), resp.Signature...)
					resp.Signature[7] ^= 1
				case l.other:
					m, _ := rc.SignedMessage()
					resp.Signature = ed25519.Sign(otherKey, m)
				default:
					resp.Signature = nodetest.SignReceipt(t, h, rc)
				}
			}})
			owner, ost := newClient(t)
			m := own(t, owner, ost, r)
			tok := token()
			if err := owner.Register(ctx, &m, mailbox.Quota{}, tok); err != nil {
				t.Fatal(err)
			}
			sender, _ := newClient(t)
			now := time.Now()
			out, _ := sender.Deposit(ctx, boxOf(t, r, &m, tok), claimed.Public(), claimedDevice, payloads("x"))
			got := out[0]
			if l.wantErr != nil {
				if !errors.Is(got.Err, l.wantErr) || !errors.Is(got.Err, mailbox.ErrBadRelay) || got.Receipt.Signature != nil {
					t.Fatalf("deposit: %+v; want no receipt and %v (a bad relay)", got, l.wantErr)
				}
				if errors.Is(l.wantErr, protocol.ErrCustody) && sender.BadReceipts() != 1 {
					t.Errorf("BadReceipts %d, want 1", sender.BadReceipts())
				}
				return
			}
			if got.Err != nil {
				t.Fatalf("deposit: %v", got.Err)
			}
			if limit := l.wantUntil(time.Now()); got.Receipt.StoredUntil.After(limit) || got.Receipt.StoredUntil.Before(l.wantUntil(now)) {
				t.Errorf("stored until %s, want at most %s", got.Receipt.StoredUntil, limit)
			}
			if sender.BadReceipts() != 0 {
				t.Errorf("BadReceipts %d, want 0", sender.BadReceipts())
			}
		})
	}

	t.Run("push for another mailbox", func(t *testing.T) {
		var (
			swap    atomic.Pointer[[]byte]
			swapped atomic.Int32
		)
		r := nodetest.StartRelay(t, nodetest.RelayOptions{Tamper: func(_ *protocol.RelayRequest, resp *protocol.RelayResponse) {
			if resp.Op == protocol.RelayPush {
				if e := swap.Load(); e != nil {
					resp.Envelope = *e
					swapped.Add(1)
				}
			}
		}})
		owner, ost := newClient(t)
		m := own(t, owner, ost, r)
		tok := token()
		if err := owner.Register(ctx, &m, mailbox.Quota{}, tok); err != nil {
			t.Fatal(err)
		}
		// Another mailbox's envelope, as the relay would hold it.
		otherKey, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{9}, 32))
		if err != nil {
			t.Fatal(err)
		}
		foreign, err := seal.Seal(nil, [32]byte{1, 2, 3}, otherKey.PublicKey().Bytes(), claimed.Public(), claimedDevice,
			[]byte("for someone else"), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		swap.Store(&foreign)
		sender, _ := newClient(t)
		if out, err := sender.Deposit(ctx, boxOf(t, r, &m, tok), claimed.Public(), claimedDevice, payloads("mine")); err != nil || out[0].Err != nil {
			t.Fatalf("Deposit: %v %+v", err, out)
		}
		var delivered atomic.Int32
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			owner.Run(rctx, func(_ context.Context, ds []mailbox.Delivery) ([]bool, error) {
				delivered.Add(int32(len(ds)))
				return make([]bool, len(ds)), nil
			})
		}()
		defer func() {
			cancel()
			<-done
		}()
		// The owner deletes what it can never open, and sees nothing.
		nodetest.WaitFor(t, 10*time.Second, "the foreign envelope deleted", func() bool {
			s := owner.Statuses()
			return swapped.Load() > 0 && len(s) == 1 && s[0].Stored == 0
		})
		if n := delivered.Load(); n != 0 {
			t.Errorf("%d envelopes of another mailbox reached the handler", n)
		}
	})
}
