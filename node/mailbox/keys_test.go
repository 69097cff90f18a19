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
	blob, err := SealCard(s, m, card, bundle, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, card[:32]) || bytes.Contains(blob, bundle[:32]) {
		t.Fatal("the blob holds its contents in the clear")
	}
	c, b, err := OpenCard(s, m, blob)
	if err != nil || !bytes.Equal(c, card) || !bytes.Equal(b, bundle) {
		t.Fatalf("OpenCard: %v", err)
	}
	if _, _, err := OpenCard([16]byte{8}, m, blob); !errors.Is(err, ErrCardBlob) {
		t.Errorf("another secret: got %v, want ErrCardBlob", err)
	}
	if _, _, err := OpenCard(s, [32]byte{8}, blob); !errors.Is(err, ErrCardBlob) {
		t.Errorf("another mailbox: got %v, want ErrCardBlob", err)
	}
	for i := range blob {
		bad := bytes.Clone(blob)
		bad[i] ^= 1
		if _, _, err := OpenCard(s, m, bad); !errors.Is(err, ErrCardBlob) {
			t.Fatalf("byte %d flipped: got %v, want ErrCardBlob", i, err)
		}
	}
	for _, n := range []int{0, 10, 24, 40, len(blob) - 1} {
		if _, _, err := OpenCard(s, m, blob[:n]); !errors.Is(err, ErrCardBlob) {
			t.Errorf("truncated to %d: got %v, want ErrCardBlob", n, err)
		}
	}
	if _, err := SealCard(s, m, nil, bundle, rand.Reader); err == nil {
		t.Error("SealCard took an empty card")
	}
	if _, err := SealCard(s, m, card, make([]byte, protocol.MaxBundle+1), rand.Reader); err == nil {
		t.Error("SealCard took a bundle over the limit")
	}
	big, err := SealCard(s, m, make([]byte, protocol.MaxCard), make([]byte, protocol.MaxBundle), rand.Reader)
	if err != nil || len(big) > protocol.MaxCardBlob {
		t.Errorf("largest blob: %d bytes (limit %d), %v", len(big), protocol.MaxCardBlob, err)
	}
}

func FuzzOpenCard(f *testing.F) {
	s, m := [16]byte{7}, [32]byte{9}
	blob, err := SealCard(s, m, []byte("card"), []byte("bundle"), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, bu, err := OpenCard(s, m, b)
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
