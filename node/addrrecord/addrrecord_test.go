package addrrecord

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testKey returns a deterministic Ed25519 device key and its peer ID.
func testKey(t testing.TB, seed byte) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

func testRecord(seq uint64, expires time.Time) Record {
	return Record{
		Addrs: []ma.Multiaddr{
			ma.StringCast("/ip4/192.0.2.7/tcp/7710"),
			ma.StringCast("/ip6/2001:db8::1/udp/7710/quic-v1"),
			ma.StringCast("/ip4/198.51.100.1/tcp/7710/p2p/12D3KooWBHQ9gBd6ybZK6kCcCVactnY6ZSpkq2W97wJroVU6ypaS/p2p-circuit"),
		},
		Seq:     seq,
		Expires: expires,
	}
}

func TestRoundTrip(t *testing.T) {
	k, id := testKey(t, 1)
	want := testRecord(7, now.Add(time.Hour))
	data, err := Seal(k, want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Open(id, data, now)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if got.Seq != want.Seq || !got.Expires.Equal(want.Expires) || len(got.Addrs) != len(want.Addrs) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want.Addrs {
		if !got.Addrs[i].Equal(want.Addrs[i]) {
			t.Errorf("addr %d: got %s, want %s", i, got.Addrs[i], want.Addrs[i])
		}
	}
	if err := (Validator{Now: func() time.Time { return now }}).Validate(Key(id), data); err != nil {
		t.Errorf("Validate: %v", err)
	}
	p, err := ParseKey(Key(id))
	if err != nil || p != id {
		t.Errorf("ParseKey(Key(id)) = %s, %v", p, err)
	}
}

func TestRefused(t *testing.T) {
	k, id := testKey(t, 1)
	other, otherID := testKey(t, 2)
	seal := func(k crypto.PrivKey, r Record) []byte {
		t.Helper()
		b, err := Seal(k, r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := seal(k, testRecord(1, now.Add(time.Hour)))
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 1 // in the signature
	third, _ := testKey(t, 3)
	wrongType, err := record.Seal(&otherType{}, k)
	if err != nil {
		t.Fatal(err)
	}
	wrongTypeBytes, err := wrongType.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		id   peer.ID
		data []byte
		at   time.Time
		want error
	}{
		{"signed by another key", id, seal(other, testRecord(1, now.Add(time.Hour))), now, ErrInvalid},
		{"another key's record under this key", otherID, good, now, ErrInvalid},
		{"third key", id, seal(third, testRecord(1, now.Add(time.Hour))), now, ErrInvalid},
		{"bad signature", id, flipped, now, ErrInvalid},
		{"expired beyond the tolerance", id, good, now.Add(time.Hour + ClockTolerance + time.Second), ErrExpired},
		{"too far in the future", id, seal(k, testRecord(1, now.Add(MaxTTL+ClockTolerance+time.Minute))), now, ErrInvalid},
		{"oversized", id, append(bytes.Clone(good), make([]byte, MaxSize)...), now, ErrInvalid},
		{"other payload type", id, wrongTypeBytes, now, ErrInvalid},
		{"garbage", id, []byte("not an envelope"), now, ErrInvalid},
		{"empty", id, nil, now, ErrInvalid},
	} {
		if _, err := Open(tc.id, tc.data, tc.at); !errors.Is(err, tc.want) {
			t.Errorf("%s: Open = %v, want %v", tc.name, err, tc.want)
		}
	}
	// Within the tolerance an expired record is still accepted: the
	// signer's clock may be behind.
	if _, err := Open(id, good, now.Add(time.Hour+ClockTolerance-time.Second)); err != nil {
		t.Errorf("record expired less than ClockTolerance ago: %v", err)
	}
	v := Validator{Now: func() time.Time { return now }}
	if err := v.Validate("/other/"+string(id), good); !errors.Is(err, ErrInvalid) {
		t.Errorf("Validate under another namespace = %v", err)
	}
	if err := v.Validate("/"+Namespace+"/notapeer", good); !errors.Is(err, ErrInvalid) {
		t.Errorf("Validate under a key that is no peer ID = %v", err)
	}
}

// otherType is a record of another payload type signed by the right key.
type otherType struct{}

func (*otherType) Domain() string                 { return Domain }
func (*otherType) Codec() []byte                  { return []byte("/other/1") }
func (*otherType) MarshalRecord() ([]byte, error) { return []byte{1}, nil }
func (*otherType) UnmarshalRecord([]byte) error   { return nil }

func TestSealLimits(t *testing.T) {
	k, _ := testKey(t, 1)
	r := testRecord(1, now.Add(time.Hour))
	for len(r.Addrs) <= MaxAddrs {
		r.Addrs = append(r.Addrs, r.Addrs[0])
	}
	if _, err := Seal(k, r); !errors.Is(err, ErrInvalid) {
		t.Errorf("Seal with %d addresses = %v, want ErrInvalid", len(r.Addrs), err)
	}
	if _, err := Seal(k, Record{Expires: time.Unix(0, 0)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Seal with expiry at 1970 = %v, want ErrInvalid", err)
	}
	// Many ordinary addresses fit; many long ones exceed MaxSize.
	r.Addrs = r.Addrs[:MaxAddrs]
	if _, err := Seal(k, r); err != nil {
		t.Errorf("Seal with %d addresses: %v", len(r.Addrs), err)
	}
	long := ma.StringCast("/dns4/" + strings.Repeat("a", 200) + ".example/tcp/7710")
	for i := range r.Addrs {
		r.Addrs[i] = long
	}
	if _, err := Seal(k, r); !errors.Is(err, ErrInvalid) {
		t.Errorf("Seal of a record over MaxSize = %v, want ErrInvalid", err)
	}
}

func TestSelect(t *testing.T) {
	k, id := testKey(t, 1)
	other, _ := testKey(t, 2)
	mk := func(k crypto.PrivKey, seq uint64, exp time.Time) []byte {
		b, err := Seal(k, testRecord(seq, exp))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v := Validator{Now: func() time.Time { return now }}
	values := [][]byte{
		mk(k, 5, now.Add(time.Hour)),
		mk(other, 99, now.Add(time.Hour)), // wrong signer: ignored
		mk(k, 50, now.Add(-time.Hour)),    // expired: ignored
		mk(k, 9, now.Add(time.Hour)),      // best
		mk(k, 9, now.Add(30*time.Minute)), // equal: the first wins
		[]byte("junk"),                    // ignored
		mk(k, 7, now.Add(2*time.Hour)),    // lower
	}
	i, err := v.Select(Key(id), values)
	if err != nil || i != 3 {
		t.Errorf("Select = %d, %v; want 3", i, err)
	}
	if _, err := v.Select(Key(id), values[1:3]); !errors.Is(err, ErrInvalid) {
		t.Errorf("Select with no valid record = %v, want ErrInvalid", err)
	}
}

func FuzzOpen(f *testing.F) {
	k, id := testKey(f, 1)
	good, err := Seal(k, testRecord(1, now.Add(time.Hour)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{})
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Open(id, data, now)
		if err != nil {
			return
		}
		if len(r.Addrs) > MaxAddrs || r.Expires.After(now.Add(MaxTTL+ClockTolerance)) {
			t.Fatalf("Open accepted %+v", r)
		}
	})
}

// FuzzPayload feeds the payload decoder directly (the envelope's signature
// would otherwise keep the fuzzer out of it).
func FuzzPayload(f *testing.F) {
	pl := payload{testRecord(1, now.Add(time.Hour))}
	b, err := pl.MarshalRecord()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:headerSize])
	f.Fuzz(func(t *testing.T, data []byte) {
		var p payload
		if err := p.UnmarshalRecord(data); err != nil {
			return
		}
		again, err := p.MarshalRecord()
		if err != nil {
			t.Fatalf("decoded payload does not encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs:\n%x\n%x", data, again)
		}
	})
}
