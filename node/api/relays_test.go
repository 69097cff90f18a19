package api

import (
	"context"
	"errors"
	"testing"

	"github.com/sealpost/sealpost/node/messaging"
)

// fakeRelays is a Messaging that also serves the relay routes.
type fakeRelays struct {
	fakeMessaging
	relays []messaging.Relay
}

func (f *fakeRelays) AddRelay(ctx context.Context, addr string) (messaging.Relay, error) {
	return messaging.Relay{ID: "relay-" + addr, Mailbox: "00"}, f.record("AddRelay %s", addr)
}
func (f *fakeRelays) Relays(ctx context.Context) ([]messaging.Relay, error) {
	return f.relays, f.record("Relays")
}
func (f *fakeRelays) RemoveRelay(ctx context.Context, id string) error {
	return f.record("RemoveRelay %s", id)
}

func TestRelayRoutes(t *testing.T) {
	f := &fakeRelays{}
	cl := serveMessaging(t, f)
	ctx := context.Background()
	r, err := cl.AddRelay(ctx, "/ip4/127.0.0.1/tcp/1/p2p/x")
	if err != nil || r.ID != "relay-/ip4/127.0.0.1/tcp/1/p2p/x" || f.last() != "AddRelay /ip4/127.0.0.1/tcp/1/p2p/x" {
		t.Errorf("AddRelay: %+v, %v, %s", r, err, f.last())
	}
	list, err := cl.Relays(ctx)
	if err != nil || list == nil || len(list) != 0 {
		t.Errorf("Relays with none: %v, %v (want an empty list)", list, err)
	}
	f.relays = []messaging.Relay{{ID: "a", State: "subscribed", Stored: 3}}
	if list, err := cl.Relays(ctx); err != nil || len(list) != 1 || list[0].Stored != 3 {
		t.Errorf("Relays: %+v, %v", list, err)
	}
	res, err := cl.RemoveRelay(ctx, "a/b")
	if err != nil || !res.Removed || res.ID != "a/b" || f.last() != "RemoveRelay a/b" {
		t.Errorf("RemoveRelay: %+v, %v, %s", res, err, f.last())
	}
	// Errors keep their codes.
	for _, c := range []struct {
		err  error
		code Code
	}{
		{messaging.ErrRelayExists, CodeConflict},
		{messaging.ErrUnknownRelay, CodeNotFound},
		{messaging.ErrInvalidRelay, CodeBadRequest},
		{messaging.ErrTooManyRelays, CodeLimit},
		{messaging.ErrUnreachable, CodeNetwork},
	} {
		f.err = c.err
		_, err := cl.AddRelay(ctx, "x")
		var e *Error
		if !errors.As(err, &e) || e.Code != c.code {
			t.Errorf("%v: got %v, want code %s", c.err, err, c.code)
		}
	}
}

func TestRelayRoutesUnavailable(t *testing.T) {
	cl := serveMessaging(t, &fakeMessaging{})
	_, err := cl.Relays(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeUnavailable {
		t.Errorf("relays without a relay service: %v, want unavailable", err)
	}
}
