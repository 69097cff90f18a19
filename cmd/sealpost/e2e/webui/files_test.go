package webui_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/sealpost/sealpost/node/api"
	"github.com/sealpost/sealpost/node/home"
)

// testPNG is a w×h picture.
func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := range w {
		for y := range h {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 4), 200, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestFiles: alice sends a picture and a larger file from the app (with
// progress) and bob receives both; bob sends a picture, which the app
// shows inline and saves, and a file whose name looks like HTML, which
// shows as text.
func TestFiles(t *testing.T) {
	ctx := newTab(t)
	alice := newUser(t, "alice")
	bob := newUser(t, "bob")
	alice.h.MustRun("contact", "add", bob.invite(), "--name", "bob")
	alice.h.MustRun("send", "bob", "hello", "--wait", "delivered", "--timeout", waitFor.String())
	dialogs := countDialogs(ctx)
	do(t, ctx, chromedp.EmulateViewport(1280, 800))
	origin := openApp(t, ctx, alice)
	do(t, ctx, click("link", "bob"))
	waitJS(t, ctx, "bob's conversation", `document.body.dataset.conversation === `+jsString(bob.id.UserID))
	bobAPI, err := api.Dial(home.Home{Dir: bob.h.Dir})
	if err != nil {
		t.Fatal(err)
	}
	defer bobAPI.CloseIdleConnections()
	// received returns the content of bob's incoming file named name once
	// it is saved.
	received := func(name string) []byte {
		t.Helper()
		var content []byte
		eventually(t, waitFor, func() string {
			list, err := bobAPI.Files(context.Background(), 0)
			if err != nil {
				return err.Error()
			}
			for _, f := range list {
				if f.Name == name && !f.Outgoing && f.State == "saved" {
					r, err := bobAPI.FileContent(context.Background(), f.ID, 0)
					if err != nil {
						return err.Error()
					}
					defer r.Close()
					content, err = io.ReadAll(r)
					if err != nil {
						return err.Error()
					}
					return ""
				}
			}
			return "bob has not saved " + name
		})
		return content
	}

	t.Run("send with progress", func(t *testing.T) {
		dir := t.TempDir()
		pic := testPNG(t, 48, 32)
		big := make([]byte, 3<<20)
		rand.Read(big)
		for name, b := range map[string][]byte{"view.png": pic, "notes.bin": big} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		// Every progress bar the page shows is recorded.
		js[bool](t, ctx, `window.progressSeen = []; new MutationObserver(() => {
			for (const p of document.querySelectorAll('#msg-list progress')) {
				const l = p.getAttribute('aria-label');
				if (!window.progressSeen.includes(l)) window.progressSeen.push(l);
			}
		}).observe(document.getElementById('msg-list'), {subtree: true, childList: true, attributes: true}); true`)
		do(t, ctx, visible("button", "Attach file"))
		do(t, ctx, chromedp.SetUploadFiles(chromedp.CSS(`#file-input`), []string{filepath.Join(dir, "view.png"), filepath.Join(dir, "notes.bin")}))
		if got := received("view.png"); !bytes.Equal(got, pic) {
			t.Errorf("bob saved %d bytes of view.png, want the %d sent", len(got), len(pic))
		}
		if got := received("notes.bin"); !bytes.Equal(got, big) {
			t.Errorf("bob saved %d bytes of notes.bin, want the %d sent", len(got), len(big))
		}
		seen := js[[]string](t, ctx, `window.progressSeen`)
		for _, want := range []string{"Sending view.png", "Sending notes.bin"} {
			if !strings.Contains(strings.Join(seen, "|"), want) {
				t.Errorf("the page showed the progress bars %q, none named %q", seen, want)
			}
		}
		waitJS(t, ctx, "the sent picture to show", `[...document.querySelectorAll('#msg-list li.out img')].some(i => i.alt === 'view.png' && i.complete && i.naturalWidth === 48)`)
		waitJS(t, ctx, "the progress bars to go", `document.querySelectorAll('#msg-list progress').length === 0`)
	})

	t.Run("pictures inline, save", func(t *testing.T) {
		pic := testPNG(t, 64, 40)
		if _, err := bobAPI.SendFile(context.Background(), "alice", "cat.png", "image/png", "a cat", bytes.NewReader(pic), int64(len(pic))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "bob's picture inline", `[...document.querySelectorAll('#msg-list li.in img')].some(i => i.alt === 'cat.png' && i.complete && i.naturalWidth === 64)`)
		if got := inConversation(t, ctx); !strings.Contains(got, "a cat") {
			t.Errorf("the caption is missing: %q", got)
		}
		screenshot(t, ctx, "picture")
		allNamed(t, ctx, "a conversation with files")
		do(t, ctx, visible("link", "Save cat.png"))
		// Save downloads exactly what bob sent, as an attachment.
		got := js[[]string](t, ctx, `(async () => {
			const a = [...document.querySelectorAll('#msg-list a')].find(a => a.getAttribute('aria-label') === 'Save cat.png');
			const r = await fetch(a.href);
			const b = new Uint8Array(await r.arrayBuffer());
			return [a.getAttribute('download'), r.headers.get('Content-Disposition'), String(b.length)];
		})()`)
		if got[0] != "cat.png" || !strings.HasPrefix(got[1], "attachment") || got[2] != itoa(len(pic)) {
			t.Errorf("Save: download=%q, Content-Disposition %q, %s bytes; want cat.png, an attachment, %d bytes", got[0], got[1], got[2], len(pic))
		}
		if !strings.HasPrefix(origin, "http://127.0.0.1:") {
			t.Errorf("origin %q", origin)
		}
	})

	t.Run("file names are text", func(t *testing.T) {
		const evil = `<img src=x onerror=alert(1)>.txt`
		body := []byte("just text")
		if _, err := bobAPI.SendFile(context.Background(), "alice", evil, "text/plain", "", bytes.NewReader(body), int64(len(body))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the file with the odd name", `[...document.querySelectorAll('#msg-list .file .name')].some(e => e.textContent === `+jsString(evil)+`)`)
		if n := js[int](t, ctx, `[...document.querySelectorAll('#msg-list img')].filter(i => !i.alt.endsWith('.png')).length`); n != 0 {
			t.Errorf("the page holds %d img elements besides the pictures", n)
		}
		do(t, ctx, visible("link", "Save "+evil))
		if n := dialogs.Load(); n != 0 {
			t.Errorf("%d JavaScript dialogs opened", n)
		}
	})
}

func itoa(n int) string { return strconv.Itoa(n) }
