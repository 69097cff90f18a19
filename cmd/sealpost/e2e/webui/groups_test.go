package webui_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// groupWait bounds waits for a group's membership to change (commits go
// through the home relay).
const groupWait = 90 * time.Second

type groupJSON struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Members int    `json:"members"`
	State   string `json:"state"`
}

// group is u's group named name, as `group ls` shows it (zero if none).
func (u *user) group(name string) groupJSON {
	u.t.Helper()
	var l struct {
		Groups []groupJSON `json:"groups"`
	}
	u.h.JSON(&l, "group", "ls")
	for _, g := range l.Groups {
		if g.Name == name {
			return g
		}
	}
	return groupJSON{}
}

// groupTexts are the texts of u's group's messages.
func (u *user) groupTexts(name string) []string {
	u.t.Helper()
	var out []string
	for _, m := range u.lines("group", "messages", name) {
		out = append(out, m.Text)
	}
	return out
}

// TestGroups: alice, in the app, creates a group on her relay, adds bob
// (who is on the command line), writes and reads live, sends him a
// picture with the attach button, removes him; dave,
// whom alice has not accepted, invites her to two groups: she declines one
// and accepts the other, then leaves it. The subtests run in order.
func TestGroups(t *testing.T) {
	ctx := newTab(t)
	relay := newUser(t, "relay", "--relay-service")
	alice := newUser(t, "alice", "--bootstrap", relay.addr())
	bob := newUser(t, "bob", "--bootstrap", relay.addr())
	alice.h.MustRun("relays", "add", relay.addr())
	alice.h.MustRun("contact", "add", bob.invite(), "--name", "bob")
	do(t, ctx, chromedp.EmulateViewport(1280, 800))
	openApp(t, ctx, alice)
	var hikers groupJSON

	t.Run("create and add a member", func(t *testing.T) {
		do(t, ctx, click("button", "New group"), visible("textbox", "Group name"))
		allNamed(t, ctx, "the New group dialog")
		do(t, ctx, typeInto("textbox", "Group name", "hikers"), click("button", "Create"), visible("link", "hikers"))
		hikers = alice.group("hikers")
		if hikers.ID == "" || hikers.State != "active" {
			t.Fatalf("alice's command line shows the group as %+v", hikers)
		}
		waitJS(t, ctx, "the group to open", `document.body.dataset.conversation === `+jsString(hikers.ID))
		if nav := textOf(t, ctx, "navigation", "Conversations"); !strings.Contains(nav, "hikers") || !strings.Contains(nav, "bob") {
			t.Errorf("the conversation list lacks the group or bob: %q", nav)
		}
		do(t, ctx, click("button", "Members"), visible("checkbox", "bob"))
		allNamed(t, ctx, "the members dialog")
		do(t, ctx, click("checkbox", "bob"), click("button", "Add to group"))
		eventually(t, groupWait, func() string {
			if g := bob.group("hikers"); g.State != "active" || g.Members != 2 {
				return "bob is not in the group: " + g.State
			}
			return ""
		})
		do(t, ctx, visible("button", "Remove bob from the group"))
		screenshot(t, ctx, "group-members")
		do(t, ctx, chromedp.KeyEvent(kb.Escape))
	})

	t.Run("send and receive", func(t *testing.T) {
		const text = "hello hikers, from the web"
		do(t, ctx, typeInto("textbox", "Message", text), click("button", "Send"))
		eventually(t, waitFor, func() string {
			if !slices.Contains(bob.groupTexts("hikers"), text) {
				return "bob's group lacks alice's message"
			}
			return ""
		})
		eventually(t, waitFor, func() string {
			if s := lastOutgoingState(t, ctx); s != "delivered" {
				return "the message shows " + s + ", not delivered"
			}
			return ""
		})
		const reply = "hi alice, bob from the terminal"
		bob.h.MustRun("group", "send", "hikers", reply, "--wait", "sent", "--timeout", waitFor.String())
		waitJS(t, ctx, "bob's message in the group", `[...document.querySelectorAll('#msg-list li.in')].some(li => li.querySelector('.text')?.textContent === `+jsString(reply)+` && li.querySelector('.from')?.textContent === 'bob')`)
		screenshot(t, ctx, "group")
		allNamed(t, ctx, "a group")
	})

	t.Run("attach a file", func(t *testing.T) {
		// The group view's attach button sends the file to the group:
		// bob's node saves it (it downloads automatically) and it is the
		// bytes alice picked.
		pic := testPNG(t, 40, 30)
		path := filepath.Join(t.TempDir(), "summit.png")
		if err := os.WriteFile(path, pic, 0o600); err != nil {
			t.Fatal(err)
		}
		do(t, ctx, visible("button", "Attach file"))
		do(t, ctx, chromedp.SetUploadFiles(chromedp.CSS(`#file-input`), []string{path}))
		var id string
		eventually(t, waitFor, func() string {
			var l struct {
				Files []struct {
					ID       string `json:"id"`
					Name     string `json:"name"`
					Group    string `json:"group"`
					Outgoing bool   `json:"outgoing"`
					State    string `json:"state"`
				} `json:"files"`
			}
			bob.h.JSON(&l, "file", "ls")
			for _, f := range l.Files {
				if f.Name == "summit.png" && !f.Outgoing && f.Group == hikers.ID && f.State == "saved" {
					id = f.ID
					return ""
				}
			}
			return "bob has not saved summit.png from the group"
		})
		var saved struct {
			Path string `json:"path"`
		}
		bob.h.JSON(&saved, "file", "save", id, t.TempDir())
		if got, err := os.ReadFile(saved.Path); err != nil || !bytes.Equal(got, pic) {
			t.Fatalf("bob saved %d bytes (%v), want the %d alice attached", len(got), err, len(pic))
		}
		waitJS(t, ctx, "the sent picture in the group", `[...document.querySelectorAll('#msg-list li.out img')].some(i => i.alt === 'summit.png' && i.complete && i.naturalWidth === 40)`)
	})

	t.Run("unread count", func(t *testing.T) {
		// What arrives in the open group is read at once.
		waitJS(t, ctx, "the open group to be read", `document.querySelector('.conv.unread') === null && document.title === 'sealpost'`)
		// With bob's conversation open, bob's group messages count.
		do(t, ctx, click("link", "bob"))
		waitJS(t, ctx, "bob's conversation to open", `document.body.dataset.conversation === `+jsString(bob.id.UserID))
		for _, text := range []string{"are you there?", "the trail is open"} {
			bob.h.MustRun("group", "send", "hikers", text, "--wait", "sent", "--timeout", waitFor.String())
		}
		hikersUnread := `(() => { const li = [...document.querySelectorAll('#conv-list li')].find(li => li.querySelector('a').textContent === 'hikers'); return li?.querySelector('.badge')?.textContent ?? ''; })()`
		eventually(t, waitFor, func() string {
			if got := js[string](t, ctx, hikersUnread); got != "Unread: 2" {
				return fmt.Sprintf("the group's unread count reads %q, want \"Unread: 2\"", got)
			}
			return ""
		})
		if title := js[string](t, ctx, `document.title`); title != "(2) sealpost" {
			t.Errorf("the title is %q, want \"(2) sealpost\"", title)
		}
		screenshot(t, ctx, "group-unread")
		// Opening the group reads it, in the daemon: a fresh load of the
		// app, with no conversation open, counts nothing.
		do(t, ctx, click("link", "hikers"))
		waitJS(t, ctx, "the group to be read", `document.querySelector('.conv.unread') === null && document.title === 'sealpost'`)
		js[bool](t, ctx, `(location.hash = '#/', true)`)
		do(t, ctx, chromedp.Reload())
		waitJS(t, ctx, "the app to be ready", `document.body.dataset.ready === 'true' && !document.body.classList.contains('conv-open')`)
		if got := js[string](t, ctx, hikersUnread); got != "" {
			t.Errorf("after a reload the group's unread count reads %q", got)
		}
		do(t, ctx, click("link", "hikers"))
		waitJS(t, ctx, "the group to open", `document.body.dataset.conversation === `+jsString(hikers.ID))
	})

	t.Run("remove a member", func(t *testing.T) {
		do(t, ctx, click("button", "Members"), click("button", "Remove bob from the group"))
		eventually(t, groupWait, func() string {
			if g := bob.group("hikers"); g.State == "active" {
				return "bob is still in the group"
			}
			return ""
		})
		waitJS(t, ctx, "bob to leave the members", `![...document.querySelectorAll('#member-list li')].some(li => li.textContent.includes('bob'))`)
		do(t, ctx, chromedp.KeyEvent(kb.Escape))
	})

	t.Run("invitations: decline, accept, leave", func(t *testing.T) {
		link := alice.invite()
		alice.h.MustRun("invite", "--revoke", link)
		dave := newUser(t, "dave", "--bootstrap", relay.addr())
		dave.h.MustRun("contact", "add", link, "--name", "alice")
		dave.h.MustRun("send", "alice", "hi, this is dave", "--wait", "sent", "--timeout", waitFor.String())
		for _, name := range []string{"poker", "chess"} {
			dave.h.MustRun("group", "create", name, "--relay", relay.addr())
			dave.h.MustRun("group", "add", name, "alice")
		}
		do(t, ctx, visible("link", "poker"), visible("link", "chess"))
		if nav := textOf(t, ctx, "navigation", "Conversations"); !strings.Contains(nav, "Group invitation") {
			t.Errorf("the list does not mark the invitations: %q", nav)
		}
		do(t, ctx, click("link", "poker"), visible("button", "Decline"))
		if !js[bool](t, ctx, `document.getElementById('composer').hidden`) {
			t.Error("the composer shows for an invitation")
		}
		allNamed(t, ctx, "a group invitation")
		do(t, ctx, click("button", "Decline"))
		waitJS(t, ctx, "poker to leave the list", `![...document.querySelectorAll('#conv-list a')].some(a => a.textContent === 'poker')`)

		do(t, ctx, click("link", "chess"), click("button", "Accept"))
		eventually(t, groupWait, func() string {
			if g := dave.group("chess"); g.Members != 2 {
				return "alice has not joined dave's group"
			}
			return ""
		})
		waitJS(t, ctx, "the composer after joining", `!document.getElementById('composer').hidden`)
		const text = "hello dave, I joined"
		do(t, ctx, typeInto("textbox", "Message", text), click("button", "Send"))
		eventually(t, waitFor, func() string {
			if !slices.Contains(dave.groupTexts("chess"), text) {
				return "dave's group lacks alice's message"
			}
			return ""
		})

		do(t, ctx, click("button", "Members"), click("button", "Leave group"))
		eventually(t, groupWait, func() string {
			if g := dave.group("chess"); g.Members != 1 {
				return "alice is still in dave's group"
			}
			return ""
		})
		waitJS(t, ctx, "the group to say alice left", `document.getElementById('composer').hidden && !document.getElementById('group-note').hidden`)
	})
}
