package mailbox

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/sealpost/sealpost/protocol"
)

func TestCardBlob(t *testing.T) {
	s, m := [16]byte{7}, [32]byte{9}
	card, bundle := bytes.Repeat([]byte{'c'}, 300), bytes.Repeat([]byte{'b'}, 3000)
	blob, err := SealCard(s, m, card, bundle, nil, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, card[:32]) || bytes.Contains(blob, bundle[:32]) {
		t.Fatal("the blob holds its contents in the clear")
	}
	c, b, pk, err := OpenCard(s, m, blob)
	if err != nil || !bytes.Equal(c, card) || !bytes.Equal(b, bundle) || pk != nil {
		t.Fatalf("OpenCard: %v", err)
	}
	kpk := PrekeyKey(bytes.Repeat([]byte{3}, 32), m)
	withKey, err := SealCard(s, m, card, bundle, kpk, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, pk, err := OpenCard(s, m, withKey); err != nil || !bytes.Equal(pk, kpk) {
		t.Fatalf("OpenCard with a prekey key: %x, %v", pk, err)
	}
	if _, err := SealCard(s, m, card, bundle, kpk[:5], rand.Reader); err == nil {
		t.Error("SealCard took a short prekey key")
	}
	if _, _, _, err := OpenCard([16]byte{8}, m, blob); !errors.Is(err, ErrCardBlob) {
		t.Errorf("another secret: got %v, want ErrCardBlob", err)
	}
	if _, _, _, err := OpenCard(s, [32]byte{8}, blob); !errors.Is(err, ErrCardBlob) {
		t.Errorf("another mailbox: got %v, want ErrCardBlob", err)
	}
	for i := range blob {
		bad := bytes.Clone(blob)
		bad[i] ^= 1
		if _, _, _, err := OpenCard(s, m, bad); !errors.Is(err, ErrCardBlob) {
			t.Fatalf("byte %d flipped: got %v, want ErrCardBlob", i, err)
		}
	}
	for _, n := range []int{0, 10, 24, 40, len(blob) - 1} {
		if _, _, _, err := OpenCard(s, m, blob[:n]); !errors.Is(err, ErrCardBlob) {
			t.Errorf("truncated to %d: got %v, want ErrCardBlob", n, err)
		}
	}
	if _, err := SealCard(s, m, nil, bundle, nil, rand.Reader); err == nil {
		t.Error("SealCard took an empty card")
	}
	if _, err := SealCard(s, m, card, make([]byte, protocol.MaxBundle+1), nil, rand.Reader); err == nil {
		t.Error("SealCard took a bundle over the limit")
	}
	big, err := SealCard(s, m, make([]byte, protocol.MaxCard), make([]byte, protocol.MaxBundle), make([]byte, PrekeyKeySize), rand.Reader)
	if err != nil || len(big) > protocol.MaxCardBlob {
		t.Errorf("largest blob: %d bytes (limit %d), %v", len(big), protocol.MaxCardBlob, err)
	}
}

func FuzzOpenCard(f *testing.F) {
	s, m := [16]byte{7}, [32]byte{9}
	blob, err := SealCard(s, m, []byte("card"), []byte("bundle"), nil, rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, bu, _, err := OpenCard(s, m, b)
		if err != nil {
			if !errors.Is(err, ErrCardBlob) {
				t.Fatalf("error %v is not ErrCardBlob", err)
			}
			return
		}
		if len(c) == 0 || len(bu) == 0 {
			t.Fatal("opened to an empty field")
		}
	})
}

func TestPrekeyBlob(t *testing.T) {
	m := [32]byte{4}
	key := PrekeyKey(bytes.Repeat([]byte{1}, 32), m)
	if bytes.Equal(key, PrekeyKey(bytes.Repeat([]byte{2}, 32), m)) || bytes.Equal(key, PrekeyKey(bytes.Repeat([]byte{1}, 32), [32]byte{5})) {
		t.Fatal("two mailboxes share a prekey key")
	}
	rec := bytes.Repeat([]byte{'k'}, 1292)
	blob, err := SealPrekey(key, m, rec, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) > protocol.MaxPrekeyBlob {
		t.Fatalf("prekey blob of %d bytes, limit %d", len(blob), protocol.MaxPrekeyBlob)
	}
	if got, err := OpenPrekey(key, m, blob); err != nil || !bytes.Equal(got, rec) {
		t.Fatalf("OpenPrekey: %v", err)
	}
	for i := range blob {
		bad := bytes.Clone(blob)
		bad[i] ^= 0x80
		if _, err := OpenPrekey(key, m, bad); !errors.Is(err, ErrPrekeyBlob) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	if _, err := OpenPrekey(key, [32]byte{5}, blob); !errors.Is(err, ErrPrekeyBlob) {
		t.Errorf("another mailbox: %v", err)
	}
}

func FuzzOpenPrekey(f *testing.F) {
	m := [32]byte{4}
	key := PrekeyKey(bytes.Repeat([]byte{1}, 32), m)
	blob, err := SealPrekey(key, m, []byte("record"), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := OpenPrekey(key, m, b); err != nil && !errors.Is(err, ErrPrekeyBlob) {
			t.Fatalf("error %v is not ErrPrekeyBlob", err)
		}
	})
}

func TestBundleBlob(t *testing.T) {
	m := [32]byte{9}
	kpk := PrekeyKey(bytes.Repeat([]byte{3}, 32), m)
	bundle := bytes.Repeat([]byte{'b'}, 3000)
	blob, err := SealBundle(kpk, m, bundle, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) > protocol.MaxCardBlob {
		t.Fatalf("a blob of %d bytes, over MaxCardBlob", len(blob))
	}
	if bytes.Contains(blob, bundle[:32]) {
		t.Fatal("the blob holds the bundle in the clear")
	}
	if b, err := OpenBundle(kpk, m, blob); err != nil || !bytes.Equal(b, bundle) {
		t.Fatalf("OpenBundle: %v", err)
	}
	// The prekey blobs' key opens neither way: the labels differ.
	if _, err := OpenPrekey(kpk, m, blob); !errors.Is(err, ErrPrekeyBlob) {
		t.Errorf("a bundle blob opened as a prekey blob: %v", err)
	}
	pb, err := SealPrekey(kpk, m, bundle[:100], rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBundle(kpk, m, pb); !errors.Is(err, ErrBundleBlob) {
		t.Errorf("a prekey blob opened as a bundle blob: %v", err)
	}
	if _, err := OpenBundle(PrekeyKey(bytes.Repeat([]byte{4}, 32), m), m, blob); !errors.Is(err, ErrBundleBlob) {
		t.Errorf("another key: got %v, want ErrBundleBlob", err)
	}
	if _, err := OpenBundle(kpk, [32]byte{8}, blob); !errors.Is(err, ErrBundleBlob) {
		t.Errorf("another mailbox: got %v, want ErrBundleBlob", err)
	}
	if _, err := OpenBundle(kpk[:5], m, blob); !errors.Is(err, ErrBundleBlob) {
		t.Errorf("a short key: got %v, want ErrBundleBlob", err)
	}
	for i := range blob {
		bad := bytes.Clone(blob)
		bad[i] ^= 1
		if _, err := OpenBundle(kpk, m, bad); !errors.Is(err, ErrBundleBlob) {
			t.Fatalf("byte %d flipped: got %v, want ErrBundleBlob", i, err)
		}
	}
	for _, n := range []int{0, 10, 24, 40, len(blob) - 1} {
		if _, err := OpenBundle(kpk, m, blob[:n]); !errors.Is(err, ErrBundleBlob) {
			t.Errorf("truncated to %d: got %v, want ErrBundleBlob", n, err)
		}
	}
	if _, err := SealBundle(kpk, m, nil, rand.Reader); err == nil {
		t.Error("SealBundle took an empty bundle")
	}
	if _, err := SealBundle(kpk, m, make([]byte, protocol.MaxBundle+1), rand.Reader); err == nil {
		t.Error("SealBundle took a bundle over the limit")
	}
	if _, err := SealBundle(kpk[:5], m, bundle, rand.Reader); err == nil {
		t.Error("SealBundle took a short key")
	}
}

func FuzzOpenBundle(f *testing.F) {
	m := [32]byte{9}
	kpk := PrekeyKey(bytes.Repeat([]byte{3}, 32), m)
	blob, err := SealBundle(kpk, m, []byte("bundle"), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		bu, err := OpenBundle(kpk, m, b)
		if err != nil {
			if !errors.Is(err, ErrBundleBlob) {
				t.Fatalf("error %v is not ErrBundleBlob", err)
			}
			return
		}
		if len(bu) == 0 {
			t.Fatal("opened to an empty bundle")
		}
	})
}
