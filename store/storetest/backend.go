package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sealpost/sealpost/store"
)

// RunBackend checks the ordered key-value semantics of a store.Backend;
// open returns a new, empty backend (closed by the suite).
func RunBackend(t *testing.T, open func(t *testing.T) store.Backend) {
	ctx := context.Background()
	t.Run("ScanRanges", func(t *testing.T) {
		b := open(t)
		defer b.Close()
		keys := []string{"a", "a\x00", "a\xff", "ab", "b", "b\x01", "c", "\xff", "\xff\xff"}
		err := b.Update(ctx, func(kv store.KV) error {
			for i, k := range keys {
				if err := kv.Set([]byte(k), []byte{byte(i)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		check := func(kv store.KV, lo, hi string, hiNil, reverse bool, want string) {
			t.Helper()
			var h []byte
			if !hiNil {
				h = []byte(hi)
			}
			var got []string
			err := kv.Scan([]byte(lo), h, reverse, func(k, v []byte) error {
				got = append(got, fmt.Sprintf("%q", k))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != want {
				t.Errorf("Scan(%q, %q, nil hi %v, reverse %v): got %v, want %s", lo, hi, hiNil, reverse, got, want)
			}
		}
		err = b.View(ctx, func(kv store.KV) error {
			check(kv, "", "", true, false, `["a" "a\x00" "ab" "a\xff" "b" "b\x01" "c" "\xff" "\xff\xff"]`)
			check(kv, "", "", true, true, `["\xff\xff" "\xff" "c" "b\x01" "b" "a\xff" "ab" "a\x00" "a"]`)
			check(kv, "a", "b", false, false, `["a" "a\x00" "ab" "a\xff"]`)
			check(kv, "a", "b", false, true, `["a\xff" "ab" "a\x00" "a"]`)
			check(kv, "a\x00", "a\xff", false, false, `["a\x00" "ab"]`)
			check(kv, "a\x01", "b\x01", false, true, `["b" "a\xff" "ab"]`)
			check(kv, "bb", "c", false, false, `[]`)
			check(kv, "bb", "c", false, true, `[]`)
			check(kv, "c", "", true, true, `["\xff\xff" "\xff" "c"]`)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// The transaction's own writes and deletions are merged into scans.
		err = b.Update(ctx, func(kv store.KV) error {
			if err := kv.Delete([]byte("ab")); err != nil {
				return err
			}
			if err := kv.Set([]byte("aa"), []byte("new")); err != nil {
				return err
			}
			if err := kv.Set([]byte("b"), []byte("replaced")); err != nil {
				return err
			}
			check(kv, "a", "c", false, false, `["a" "a\x00" "aa" "a\xff" "b" "b\x01"]`)
			check(kv, "a", "c", false, true, `["b\x01" "b" "a\xff" "aa" "a\x00" "a"]`)
			v, err := kv.Get([]byte("b"))
			if err != nil || string(v) != "replaced" {
				t.Errorf("Get own write: %q %v", v, err)
			}
			if _, err := kv.Get([]byte("ab")); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get own delete: got %v, want ErrNotFound", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = b.View(ctx, func(kv store.KV) error {
			check(kv, "a", "c", false, false, `["a" "a\x00" "aa" "a\xff" "b" "b\x01"]`)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ScanStops", func(t *testing.T) {
		b := open(t)
		defer b.Close()
		stop := errors.New("stop")
		err := b.Update(ctx, func(kv store.KV) error {
			for i := 0; i < 10; i++ {
				if err := kv.Set([]byte{'k', byte(i)}, nil); err != nil {
					return err
				}
			}
			n := 0
			err := kv.Scan([]byte("k"), []byte("l"), false, func(k, v []byte) error {
				n++
				if n == 3 {
					return stop
				}
				return nil
			})
			if !errors.Is(err, stop) || n != 3 {
				t.Errorf("Scan stopped with %v after %d keys, want stop after 3", err, n)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Values", func(t *testing.T) {
		b := open(t)
		defer b.Close()
		big := make([]byte, 100<<10)
		for i := range big {
			big[i] = byte(i * 7)
		}
		err := b.Update(ctx, func(kv store.KV) error {
			if err := kv.Set([]byte("empty"), nil); err != nil {
				return err
			}
			return kv.Set([]byte("big"), big)
		})
		if err != nil {
			t.Fatal(err)
		}
		err = b.View(ctx, func(kv store.KV) error {
			v, err := kv.Get([]byte("empty"))
			if err != nil || len(v) != 0 {
				t.Errorf("Get(empty): %q %v", v, err)
			}
			v, err = kv.Get([]byte("big"))
			if err != nil || string(v) != string(big) {
				t.Errorf("Get(big): %d bytes, %v", len(v), err)
			}
			v[0]++ // the caller owns the slice
			v2, _ := kv.Get([]byte("big"))
			if v2[0] != big[0] {
				t.Error("modifying a returned value changed the store")
			}
			if _, err := kv.Get([]byte("missing")); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get(missing): got %v, want ErrNotFound", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrorAborts", func(t *testing.T) {
		b := open(t)
		defer b.Close()
		boom := errors.New("boom")
		err := b.Update(ctx, func(kv store.KV) error {
			if err := kv.Set([]byte("x"), []byte("1")); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Update: got %v, want boom", err)
		}
		err = b.View(ctx, func(kv store.KV) error {
			if _, err := kv.Get([]byte("x")); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("aborted write visible: %v", err)
			}
			if err := kv.Set([]byte("y"), nil); !errors.Is(err, store.ErrReadOnly) {
				t.Errorf("Set in View: got %v, want ErrReadOnly", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
