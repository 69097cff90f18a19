package relay_test

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mr-tron/base58"

	"github.com/sealpost/sealpost/crypto/identity"
)

// encodings returns b in every encoding a careless log or store might
// hold it in: raw, hex (both cases), base32 (standard and lower case,
// with and without padding), base58 and base64 (standard and URL, with
// and without padding).
func encodings(b []byte) [][]byte {
	out := [][]byte{bytes.Clone(b)}
	for _, s := range []string{
		hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
		base32.StdEncoding.EncodeToString(b), strings.ToLower(base32.StdEncoding.EncodeToString(b)),
		base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b),
		strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)),
		base58.Encode(b),
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
	} {
		out = append(out, []byte(s))
	}
	return out
}

// secret is a byte string that must not appear, with what it is.
type secret struct {
	what string
	b    []byte
}

// checkBlind searches the relay's home directory (its store and every
// other file) and its log for the plaintexts, the names, and each party's
// identity key and user ID in every encoding. The relay must be stopped.
func checkBlind(t *testing.T, relay *node, parties []*node, texts, names []string) {
	t.Helper()
	var secrets []secret
	for _, s := range texts {
		secrets = append(secrets, secret{"plaintext " + s, []byte(s)})
	}
	for _, s := range names {
		secrets = append(secrets, secret{"name " + s, []byte(s)})
	}
	for _, p := range parties {
		uid, err := identity.ParseUserID(p.id.UserID)
		if err != nil {
			t.Fatalf("user ID %q: %v", p.id.UserID, err)
		}
		secrets = append(secrets, secret{p.name + "'s user ID", []byte(p.id.UserID)})
		for _, e := range encodings(uid.PublicKey()) {
			secrets = append(secrets, secret{p.name + "'s identity key", e})
		}
	}
	search := func(where string, data []byte) {
		for _, s := range secrets {
			if bytes.Contains(data, s.b) {
				t.Errorf("%s holds %s (%q)", where, s.what, truncate(s.b))
			}
		}
	}
	files := 0
	err := filepath.WalkDir(relay.home.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if d.Type()&fs.ModeSocket != 0 {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		search(path, data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("the relay's home holds no file")
	}
	search("the relay's log", []byte(relay.d.Output()))
}

func truncate(b []byte) string {
	if len(b) > 24 {
		return string(b[:24]) + "..."
	}
	return string(b)
}
