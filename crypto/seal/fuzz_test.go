package seal

import (
	"bytes"
	"testing"
)

func FuzzOpen(f *testing.F) {
	fx := newFixture(f)
	var genuine [][]byte
	for _, n := range []int{0, 100, 1000} {
		env := fx.seal(f, bytes.Repeat([]byte{7}, n))
		genuine = append(genuine, env)
		f.Add(env)
		f.Add(env[:len(env)-1])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, env []byte) {
		id, perr := PeekMailbox(env)
		o, err := Open(env, fx.sealing)
		if err != nil {
			if o != nil {
				t.Fatal("contents returned with an error")
			}
			return
		}
		if perr != nil || id != o.Mailbox {
			t.Fatalf("Open succeeded but PeekMailbox gave %x, %v", id, perr)
		}
		for _, g := range genuine {
			if bytes.Equal(g, env) {
				return
			}
		}
		t.Fatal("an envelope that was never sealed opened")
	})
}
