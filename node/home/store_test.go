package home

import (
	"context"
	"errors"
	"testing"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node"
)

// TestOpen: Open initializes a home when given InitOptions and opens it
// with its passphrase afterwards; the errors a user acts on match home's
// names.
func TestOpen(t *testing.T) {
	ctx := context.Background()
	h := Home{Dir: t.TempDir()}
	// Init and OpenStore clear the passphrase they are given: each call
	// gets its own copy.
	pass := func() []byte { return []byte("correct horse") }

	st, id, err := h.Open(ctx, nil, &InitOptions{Name: "ann", Profile: ProfilePersonal, Passphrase: pass()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id == nil || id.UserID == "" || id.PeerID == "" {
		t.Fatalf("Open with InitOptions returned identity %+v", id)
	}
	if _, err := identity.ParseUserID(id.UserID); err != nil {
		t.Errorf("user ID %q: %v", id.UserID, err)
	}
	id0 := *id
	if !h.Initialized() {
		t.Error("home not initialized after Open with InitOptions")
	}
	if _, _, err := h.Open(ctx, nil, &InitOptions{Passphrase: pass()}, nil); !errors.Is(err, ErrInitialized) {
		t.Errorf("initializing again: %v, want ErrInitialized", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	if _, _, err := h.Open(ctx, []byte("wrong"), nil, nil); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("wrong passphrase: %v, want ErrWrongPassphrase", err)
	}
	if _, _, err := h.Open(ctx, nil, nil, nil); !errors.Is(err, ErrPassphraseRequired) {
		t.Errorf("no passphrase: %v, want ErrPassphraseRequired", err)
	}
	st, id, err = h.Open(ctx, pass(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if id != nil {
		t.Errorf("opening returned identity %+v, want nil", id)
	}
	self, err := node.ReadSelf(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if self.UserID.String() != id0.UserID {
		t.Errorf("reopened store holds %s, want %s", self.UserID, id0.UserID)
	}
}
