package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node/files"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// fileMessenger is the messaging double of the file routes' tests: one
// contact, bob, without device or relays (a file to it goes direct, its
// pointer waits in the outbox), and the pointers handed over.
type fileMessenger struct {
	mu   sync.Mutex
	sent []string
}

func (m *fileMessenger) Recipient(_ context.Context, name string) (files.Recipient, error) {
	if name != "bob" {
		return files.Recipient{}, errors.New("unknown contact") // internal to the API: a real messenger's are sentinels
	}
	return files.Recipient{UserID: identity.UserID{1}}, nil
}

func (m *fileMessenger) SendFile(_ context.Context, _ identity.UserID, id protocol.MessageID, caption string, _ *protocol.File) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent = append(m.sent, id.String()+" "+caption)
	return nil
}

// serveFiles serves a real file service (on a loopback host and an
// in-memory store) with a node double.
func serveFiles(t *testing.T, opt files.Options) (*Client, *fileMessenger) {
	t.Helper()
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	msg := &fileMessenger{}
	svc, err := files.New(files.Config{Host: nodetest.Host(t), Store: st, Dir: filepath.Join(t.TempDir(), "files"),
		Messenger: msg, Options: opt})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return serveConfig(t, Config{Node: newFake(), Files: svc}), msg
}

// TestFileRoutes: a streamed upload, the listing, one file, its content
// whole and by range, with the headers that keep a browser from running
// it, and the refusals.
func TestFileRoutes(t *testing.T) {
	c, msg := serveFiles(t, files.Options{MaxSize: 1 << 20})
	ctx := context.Background()
	content := bytes.Repeat([]byte("sealpost attachment "), 20000) // 400 000 bytes
	info, err := c.SendFile(ctx, "bob", "page.html", "", "a caption", bytes.NewReader(content), int64(len(content)))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	if info.Name != "page.html" || info.MIME != "text/html" || info.Size != int64(len(content)) || !info.Outgoing ||
		info.Digest != hex.EncodeToString(sum[:]) {
		t.Errorf("sent %+v", info)
	}
	if len(msg.sent) != 1 || msg.sent[0] != info.ID+" a caption" {
		t.Errorf("pointers handed to messaging: %q", msg.sent)
	}
	list, err := c.Files(ctx, 0)
	if err != nil || len(list) != 1 || list[0].ID != info.ID {
		t.Fatalf("Files: %+v, %v", list, err)
	}
	got, err := c.File(ctx, info.ID)
	if err != nil || got.ID != info.ID {
		t.Fatalf("File: %+v, %v", got, err)
	}

	for _, off := range []int64{0, 1, 65536, int64(len(content)) - 3} {
		body, err := c.FileContent(ctx, info.ID, off)
		if err != nil {
			t.Fatalf("content from %d: %v", off, err)
		}
		b, err := io.ReadAll(body)
		body.Close()
		if err != nil || !bytes.Equal(b, content[off:]) {
			t.Errorf("content from %d: %d bytes, %v", off, len(b), err)
		}
	}
	// The raw answer: an attachment, whatever the sender says it is.
	resp, err := c.send(ctx, mustRequest(t, "GET", c.base+filePath(info.ID, "/content?inline=1")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if h.Get("Content-Type") != "application/octet-stream" || !strings.HasPrefix(h.Get("Content-Disposition"), "attachment;") ||
		!strings.Contains(h.Get("Content-Security-Policy"), "sandbox") || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("content headers: %v", h)
	}

	refusals := []struct {
		name string
		call func() error
		code Code
	}{
		{"unknown contact", func() error {
			_, err := c.SendFile(ctx, "carol", "x", "", "", bytes.NewReader([]byte("x")), 1)
			return err
		}, CodeInternal},
		{"over max_size", func() error {
			_, err := c.SendFile(ctx, "bob", "x", "", "", bytes.NewReader(make([]byte, 2<<20)), 2<<20)
			return err
		}, CodeLimit},
		{"path in the name", func() error {
			_, err := c.SendFile(ctx, "bob", "../etc/passwd", "", "", bytes.NewReader([]byte("x")), 1)
			return err
		}, CodeBadRequest},
		{"control character in the name", func() error {
			_, err := c.SendFile(ctx, "bob", "a\x1bb", "", "", bytes.NewReader([]byte("x")), 1)
			return err
		}, CodeBadRequest},
		{"unknown file", func() error { _, err := c.File(ctx, strings.Repeat("0", 32)); return err }, CodeNotFound},
		{"malformed file ID", func() error { _, err := c.File(ctx, "nope"); return err }, CodeNotFound},
		{"no thumbnail", func() error {
			_, err := c.send(ctx, mustRequest(t, "GET", c.base+filePath(info.ID, "/thumbnail")))
			return err
		}, CodeNotFound},
		{"chunked body", func() error {
			req := mustRequest(t, "POST", c.base+"/v1/files?to=bob")
			req.Body = io.NopCloser(strings.NewReader("abc"))
			req.ContentLength = -1
			_, err := c.send(ctx, req)
			return err
		}, CodeBadRequest},
	}
	for _, r := range refusals {
		err := r.call()
		var e *Error
		if !errors.As(err, &e) || e.Code != r.code {
			t.Errorf("%s: %v, want code %s", r.name, err, r.code)
		}
	}
	if list, _ := c.Files(ctx, 0); len(list) != 1 {
		t.Errorf("%d files after the refusals, want 1", len(list))
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestNoFiles: without a file service the routes answer unavailable.
func TestNoFiles(t *testing.T) {
	c := serveConfig(t, Config{Node: newFake()})
	_, err := c.Files(context.Background(), 0)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeUnavailable {
		t.Errorf("Files: %v", err)
	}
	if _, err := c.FileContent(context.Background(), "x", 0); !errors.As(err, &e) || e.Code != CodeUnavailable {
		t.Errorf("FileContent: %v", err)
	}
}
