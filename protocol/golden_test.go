package protocol

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current encoder")

// TestGolden freezes the encoding of one value of each type, so that the
// wire format cannot drift unnoticed: a change here is a protocol change
// (a new version), not a refactoring. Each file holds the hex encoding, 32
// bytes a line; invite.link holds a whole link.
func TestGolden(t *testing.T) {
	cases := []struct {
		file string
		msg  Message
	}{
		{"ciphertext.hex", sampleCiphertext()},
		{"deliver.hex", sampleDeliver(t)},
		{"ack.hex", &Ack{ID: 300, Code: CodeOK}},
		{"plaintext-text.hex", sampleText()},
		{"plaintext-receipt.hex", sampleReceipt()},
		{"card.hex", sampleCard()},
		{"card-v2.hex", sampleCardV2()},
		{"bundle-request.hex", &BundleRequest{Pin: BundlePin(pattern(16, 0x40))}},
		{"bundle-response.hex", &BundleResponse{Code: CodeOK, Bundle: pattern(64, 0x33)}},
		{"bundle-response-expired.hex", &BundleResponse{Code: CodeExpired}},
		{"invite.hex", sampleInviteRelay()},
		{"group-meta.hex", sampleGroupMeta()},
		{"plaintext-group-invite.hex", sampleGroupInvite()},
		{"plaintext-group-welcome.hex", sampleGroupWelcome()},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			b := marshal(t, c.msg)
			path := filepath.Join("testdata", "golden", c.file)
			if *update {
				writeGolden(t, path, hexLines(b))
			}
			want := readHex(t, path)
			if !bytes.Equal(b, want) {
				t.Fatalf("encoding changed:\n got %x\nwant %x", b, want)
			}
			got := newLike(c.msg)
			if err := got.Unmarshal(want); err != nil {
				t.Fatalf("golden bytes do not decode: %v", err)
			}
		})
	}
	t.Run("invite.link", func(t *testing.T) {
		link, err := sampleInviteRelay().Link()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", "golden", "invite.link")
		if *update {
			writeGolden(t, path, link+"\n")
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSpace(string(b)); link != want {
			t.Fatalf("link changed:\n got %s\nwant %s", link, want)
		}
	})
}

func hexLines(b []byte) string {
	var s strings.Builder
	for len(b) > 0 {
		n := min(len(b), 32)
		s.WriteString(hex.EncodeToString(b[:n]))
		s.WriteByte('\n')
		b = b[n:]
	}
	return s.String()
}

func readHex(t *testing.T, path string) []byte {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return mustHex(t, strings.Join(strings.Fields(string(text)), ""))
}

func writeGolden(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
