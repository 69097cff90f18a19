package ratchet

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"testing"
)

func TestHMACMatchesStdlib(t *testing.T) {
	var key [32]byte
	for i := range key {
		key[i] = byte(i * 7)
	}
	for n := 0; n <= maxHMACMessage; n++ {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		m := hmac.New(sha256.New, key[:])
		m.Write(msg)
		want := m.Sum(nil)
		got := hmacSHA256(&key, msg)
		if !bytes.Equal(got[:], want) {
			t.Fatalf("hmac of %d bytes: got %x, want %x", n, got, want)
		}
	}
}

func TestKDFsMatchStdlibHKDF(t *testing.T) {
	var a, b [32]byte
	for i := range a {
		a[i] = byte(i)
		b[i] = byte(255 - i)
	}

	rk, hka, nhkb := kdfInit(&a, 1)
	want, err := hkdf.Key(sha256.New, a[:], make([]byte, 32), labelInit+"\x01", 96)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(append(rk[:], hka[:]...), nhkb[:]...); !bytes.Equal(got, want) {
		t.Errorf("kdfInit: got %x, want %x", got, want)
	}

	nrk, ck, nhk := kdfRoot(&a, b[:])
	want, err = hkdf.Key(sha256.New, b[:], a[:], labelRoot, 96)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(append(nrk[:], ck[:]...), nhk[:]...); !bytes.Equal(got, want) {
		t.Errorf("kdfRoot: got %x, want %x", got, want)
	}

	key, nonce := messageKeys(&a)
	want, err = hkdf.Expand(sha256.New, a[:], labelMessage, 44)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(key[:], nonce[:]...); !bytes.Equal(got, want) {
		t.Errorf("messageKeys: got %x, want %x", got, want)
	}

	mk, next := kdfChain(&a)
	m := hmac.New(sha256.New, a[:])
	m.Write([]byte{1})
	if !bytes.Equal(mk[:], m.Sum(nil)) {
		t.Error("kdfChain: message key is not HMAC(ck, 0x01)")
	}
	m = hmac.New(sha256.New, a[:])
	m.Write([]byte{2})
	if !bytes.Equal(next[:], m.Sum(nil)) {
		t.Error("kdfChain: next chain key is not HMAC(ck, 0x02)")
	}
}

func TestMessageHash(t *testing.T) {
	msg := []byte("a wire message")
	got := MessageHash(msg)
	want := sha256.Sum256(append([]byte(labelHash+"\x00"), msg...))
	if got != want {
		t.Fatalf("MessageHash: got %x, want %x", got, want)
	}
	if MessageHash(append(msg, 0)) == got {
		t.Fatal("MessageHash ignores a trailing byte")
	}
}
