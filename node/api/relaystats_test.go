package api

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/relay"
)

type fakeRelay struct {
	st relay.Stats
	pp relay.RecentPeers
}

func (f fakeRelay) Stats() relay.Stats             { return f.st }
func (f fakeRelay) RecentPeers() relay.RecentPeers { return f.pp }

func TestRelayStats(t *testing.T) {
	want := relay.Stats{Mailboxes: 3, Envelopes: 10, EnvelopeBytes: 5120, DepositsPerMinute: 7,
		Rejections: map[string]uint64{"token_refused": 2}, TTLSeconds: 1209600}
	wantPeers := relay.RecentPeers{
		Streams:    []relay.SeenPeer{{PeerID: "12D3KooWA", LastSeen: time.Unix(1700000000, 0).UTC()}},
		Owners:     []relay.SeenPeer{},
		Depositors: []relay.SeenPeer{{PeerID: "12D3KooWA", LastSeen: time.Unix(1700000000, 0).UTC()}},
		Limit:      256,
	}
	for _, tc := range []struct {
		name    string
		service RelayService
	}{{"on", fakeRelay{want, relay.RecentPeers{Streams: wantPeers.Streams, Depositors: wantPeers.Depositors, Limit: 256}}}, {"off", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			cl := serveConfig(t, Config{Node: newFake(), RelayService: tc.service})
			got, err := cl.RelayStats(context.Background())
			peers, perr := cl.RelayPeers(context.Background())
			if tc.service == nil {
				for _, err := range []error{err, perr} {
					var apiErr *Error
					if !errors.As(err, &apiErr) || apiErr.Code != CodeUnavailable {
						t.Fatalf("without a relay service: %v", err)
					}
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, want)
			}
			// An empty list is [], not null.
			if perr != nil || !reflect.DeepEqual(peers, wantPeers) {
				t.Fatalf("peers: got %+v, %v; want %+v", peers, perr, wantPeers)
			}
		})
	}
}
