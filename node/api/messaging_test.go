package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/protocol"
)

// fakeMessaging is a Messaging whose answers the tests set. It records the
// arguments it was called with.
type fakeMessaging struct {
	mu    sync.Mutex
	err   error // returned by every method when set
	calls []string
	inbox []messaging.Message
	msgs  []messaging.Message
	state string // WaitState's answer; "" waits for ctx
}

func (f *fakeMessaging) record(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	return f.err
}

func (f *fakeMessaging) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeMessaging) Invite(ctx context.Context) (messaging.Invite, error) {
	return messaging.Invite{Link: "sealpost://x"}, f.record("Invite")
}
func (f *fakeMessaging) RevokeInvite(ctx context.Context, link string) error {
	return f.record("RevokeInvite %s", link)
}
func (f *fakeMessaging) AddContact(ctx context.Context, link, name string) (messaging.Contact, error) {
	return messaging.Contact{Name: name}, f.record("AddContact %s %s", link, name)
}
func (f *fakeMessaging) Contacts(ctx context.Context) ([]messaging.Contact, error) {
	return nil, f.record("Contacts")
}
func (f *fakeMessaging) Contact(ctx context.Context, n string) (messaging.Contact, error) {
	return messaging.Contact{Name: n}, f.record("Contact %s", n)
}
func (f *fakeMessaging) Verify(ctx context.Context, n, sn string) (messaging.Contact, error) {
	return messaging.Contact{Name: n, Verified: true}, f.record("Verify %s %s", n, sn)
}
func (f *fakeMessaging) Accept(ctx context.Context, n string) (messaging.Contact, error) {
	return messaging.Contact{Name: n, State: "accepted"}, f.record("Accept %s", n)
}
func (f *fakeMessaging) Remove(ctx context.Context, n string) error {
	return f.record("Remove %s", n)
}
func (f *fakeMessaging) DeleteMessage(ctx context.Context, id string) error {
	return f.record("DeleteMessage %s", id)
}
func (f *fakeMessaging) DeleteConversation(ctx context.Context, n string) (int, error) {
	return 3, f.record("DeleteConversation %s", n)
}
func (f *fakeMessaging) Send(ctx context.Context, to, text string) (messaging.SendResult, error) {
	return messaging.SendResult{ID: strings.Repeat("ab", 16), State: "queued"}, f.record("Send %s %d", to, len(text))
}
func (f *fakeMessaging) MessagesBefore(ctx context.Context, n string, before uint64, limit int) ([]messaging.Message, error) {
	return f.msgs, f.record("Messages %s %d %d", n, before, limit)
}
func (f *fakeMessaging) Page(ctx context.Context, n string, before uint64, limit int) ([]messaging.Message, error) {
	return f.msgs, f.record("Page %s %d %d", n, before, limit)
}
func (f *fakeMessaging) MarkRead(ctx context.Context, n string) error {
	return f.record("MarkRead %s", n)
}
func (f *fakeMessaging) Conversations(ctx context.Context) ([]messaging.Conversation, error) {
	return nil, f.record("Conversations")
}
func (f *fakeMessaging) Inbox(ctx context.Context, after uint64, limit int) ([]messaging.Message, uint64, error) {
	err := f.record("Inbox %d %d", after, limit)
	var out []messaging.Message
	next := after
	for _, m := range f.inbox {
		if m.Cursor > after && len(out) < limit {
			out = append(out, m)
			next = m.Cursor
		}
	}
	return out, next, err
}
func (f *fakeMessaging) WaitState(ctx context.Context, id protocol.MessageID, want string) (string, error) {
	if err := f.record("WaitState %s %s", id, want); err != nil {
		return "", err
	}
	if f.state != "" {
		return f.state, nil
	}
	<-ctx.Done()
	return "queued", ctx.Err()
}

func serveMessaging(t *testing.T, m Messaging) *Client {
	t.Helper()
	return serveConfig(t, Config{Node: newFake(), Messaging: m})
}

// serveConfig starts a server for cfg on a unix socket, shut down when the
// test ends, and returns a client for it.
func serveConfig(t *testing.T, cfg Config) *Client {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := t.TempDir() + "/api.sock"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Shutdown(context.Background())
		<-done
	})
	return unixClient(t, sock)
}

func TestMessagingRoutes(t *testing.T) {
	f := &fakeMessaging{state: "delivered"}
	c := serveMessaging(t, f)
	ctx := context.Background()
	// Names that are awkward in a path reach the service unchanged.
	for _, name := range []string{"bob", "a/b", ".", "..", "a b?c#d%e", "ünïcode"} {
		steps := []struct {
			call func() error
			want string
		}{
			{func() error { _, err := c.Contact(ctx, name); return err }, "Contact " + name},
			{func() error { _, err := c.Verify(ctx, name, "123"); return err }, "Verify " + name + " 123"},
			{func() error { _, err := c.Accept(ctx, name); return err }, "Accept " + name},
			{func() error { _, err := c.RemoveContact(ctx, name); return err }, "Remove " + name},
			{func() error {
				return c.Messages(ctx, name, 7, func(messaging.Message) error { return nil })
			}, "Messages " + name + " 0 7"},
			{func() error {
				return c.MessagesBefore(ctx, name, 42, 3, func(messaging.Message) error { return nil })
			}, "Messages " + name + " 42 3"},
			{func() error { _, err := c.MarkRead(ctx, name); return err }, "MarkRead " + name},
		}
		for _, st := range steps {
			if err := st.call(); err != nil {
				t.Errorf("%q: %v", name, err)
			}
			if got := f.last(); got != st.want {
				t.Errorf("service called with %q, want %q", got, st.want)
			}
		}
	}
	if inv, err := c.Invite(ctx); err != nil || inv.Link != "sealpost://x" {
		t.Errorf("Invite = %+v, %v", inv, err)
	}
	if _, err := c.RevokeInvite(ctx, "sealpost://y"); err != nil || f.last() != "RevokeInvite sealpost://y" {
		t.Errorf("RevokeInvite: %v, %s", err, f.last())
	}
	if ct, err := c.AddContact(ctx, "sealpost://z", "carol"); err != nil || ct.Name != "carol" || f.last() != "AddContact sealpost://z carol" {
		t.Errorf("AddContact = %+v, %v, %s", ct, err, f.last())
	}
	if list, err := c.Contacts(ctx); err != nil || list == nil {
		t.Errorf("Contacts = %#v, %v; want an empty list", list, err)
	}
	// mark_read=false reads the page without marking anything read.
	if resp, err := c.request(ctx, "GET", "/v1/contacts/bob/messages?limit=5&before=9&mark_read=false", nil); err != nil || f.last() != "Page bob 9 5" {
		t.Errorf("messages with mark_read=false: %v, service called with %q", err, f.last())
	} else {
		resp.Body.Close()
	}
	if _, err := c.request(ctx, "GET", "/v1/contacts/bob/messages?mark_read=no", nil); err == nil || err.(*Error).Code != CodeBadRequest {
		t.Errorf("messages with mark_read=no: %v, want bad_request", err)
	}
	if list, err := c.Conversations(ctx); err != nil || list == nil || f.last() != "Conversations" {
		t.Errorf("Conversations = %#v, %v; want an empty list", list, err)
	}
	// The largest text, escaped throughout in JSON, fits the send route.
	big := strings.Repeat("\x01", messaging.MaxText)
	if res, err := c.Send(ctx, "bob", big); err != nil || res.State != "queued" || f.last() != fmt.Sprintf("Send bob %d", len(big)) {
		t.Errorf("Send = %+v, %v, %s", res, err, f.last())
	}
	id := strings.Repeat("cd", 16)
	if res, err := c.WaitState(ctx, id, "delivered", time.Second); err != nil || res.State != "delivered" || res.ID != id {
		t.Errorf("WaitState = %+v, %v", res, err)
	}
}

func TestMessagingWaitTimeout(t *testing.T) {
	f := &fakeMessaging{}
	c := serveMessaging(t, f)
	_, err := c.WaitState(context.Background(), strings.Repeat("cd", 16), "delivered", 20*time.Millisecond)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeTimeout || e.Code.ExitCode() != ExitWaitTimeout || !strings.Contains(e.Message, "queued") {
		t.Errorf("got %v, want a timeout that names the state", err)
	}
	_, err = c.WaitState(context.Background(), "nothex", "delivered", time.Second)
	if !errors.As(err, &e) || e.Code != CodeBadRequest {
		t.Errorf("bad ID: %v, want bad_request", err)
	}
}

func TestMessagingErrors(t *testing.T) {
	tests := []struct {
		err  error
		code Code
		exit int
	}{
		{fmt.Errorf("%w: %q", messaging.ErrUnknownContact, "zed"), CodeNotFound, ExitUser},
		{fmt.Errorf("%w: bob", messaging.ErrUntrustedIdentity), CodeUntrustedIdentity, ExitUntrusted},
		{fmt.Errorf("%w: %w", messaging.ErrUntrustedIdentity, messaging.ErrUnreachable), CodeUntrustedIdentity, ExitUntrusted},
		{fmt.Errorf("%w: bad base64", messaging.ErrInvalidLink), CodeBadRequest, ExitUser},
		{messaging.ErrInviteExpired, CodeConflict, ExitUser},
		{messaging.ErrInvalidName, CodeBadRequest, ExitUser},
		{messaging.ErrNameTaken, CodeConflict, ExitUser},
		{messaging.ErrSafetyMismatch, CodeConflict, ExitUser},
		{messaging.ErrNotAccepted, CodeConflict, ExitUser},
		{messaging.ErrEmptyMessage, CodeBadRequest, ExitUser},
		{messaging.ErrTooLong, CodeLimit, ExitLimit},
		{messaging.ErrUnknownMessage, CodeNotFound, ExitUser},
		{messaging.ErrBadState, CodeBadRequest, ExitUser},
		{fmt.Errorf("%w: 12D3: dial refused", messaging.ErrUnreachable), CodeNetwork, ExitNetwork},
		{messaging.ErrRateLimited, CodeLimit, ExitLimit},
		{messaging.ErrPeerRefused, CodeNetwork, ExitNetwork},
		{messaging.ErrBadBundle, CodeNetwork, ExitNetwork},
		{messaging.ErrClosed, CodeUnavailable, ExitInternal},
	}
	f := &fakeMessaging{}
	c := serveMessaging(t, f)
	for _, tt := range tests {
		f.mu.Lock()
		f.err = tt.err
		f.mu.Unlock()
		_, err := c.Send(context.Background(), "bob", "hi")
		var e *Error
		if !errors.As(err, &e) || e.Code != tt.code || e.Code.ExitCode() != tt.exit || e.Message != tt.err.Error() {
			t.Errorf("%v: got %#v, want code %s (exit %d)", tt.err, err, tt.code, tt.exit)
		}
	}
}

func TestMessagingRequests(t *testing.T) {
	f := &fakeMessaging{state: "sent"}
	c := serveMessaging(t, f)
	tests := []struct {
		name, method, path, body string
		code                     Code
	}{
		{"send: unknown field", "POST", "/v1/messages", `{"to":"bob","text":"hi","x":1}`, CodeBadRequest},
		{"send: too large", "POST", "/v1/messages", `{"to":"bob","text":"` + strings.Repeat("a", MaxSendBody) + `"}`, CodeLimit},
		{"inbox: bad after", "GET", "/v1/inbox?after=-1", "", CodeBadRequest},
		{"inbox: bad limit", "GET", "/v1/inbox?limit=x", "", CodeBadRequest},
		{"messages: bad limit", "GET", "/v1/contacts/bob/messages?limit=-2", "", CodeBadRequest},
		{"wait: no timeout", "POST", "/v1/messages/" + strings.Repeat("ab", 16) + "/wait", `{"state":"sent"}`, CodeBadRequest},
		{"wait: long timeout", "POST", "/v1/messages/" + strings.Repeat("ab", 16) + "/wait", `{"state":"sent","timeout_ms":600001}`, CodeBadRequest},
		{"contacts: wrong method", "PUT", "/v1/contacts", "", CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://sealpost"+tt.path, strings.NewReader(tt.body))
			resp, err := c.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if err := decodeError(resp).(*Error); err.Code != tt.code {
				t.Errorf("got %v, want %s", err, tt.code)
			}
		})
	}
}

func TestMessagingUnavailable(t *testing.T) {
	c := serveMessaging(t, nil)
	_, err := c.Send(context.Background(), "bob", "hi")
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeUnavailable {
		t.Errorf("Send without messaging: %v, want unavailable", err)
	}
	err = c.Messages(context.Background(), "bob", 0, func(messaging.Message) error { return nil })
	if !errors.As(err, &e) || e.Code != CodeUnavailable {
		t.Errorf("Messages without messaging: %v, want unavailable", err)
	}
}

func TestInboxPages(t *testing.T) {
	f := &fakeMessaging{}
	// 2500 small messages and a few large ones: pages stop at
	// MaxInboxPage messages or at maxInboxBytes.
	for i := 1; i <= 2500; i++ {
		text := "m"
		if i%20 == 0 {
			text = strings.Repeat("<", messaging.MaxText) // six bytes each in JSON
		}
		f.inbox = append(f.inbox, messaging.Message{ID: fmt.Sprint(i), Text: text, Cursor: uint64(i) * 2})
	}
	c := serveMessaging(t, f)
	ctx := context.Background()
	var got []uint64
	cursor, err := c.AllInbox(ctx, 0, func(m messaging.Message) error {
		got = append(got, m.Cursor)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2500 || cursor != 5000 {
		t.Fatalf("got %d messages, cursor %d; want 2500, 5000", len(got), cursor)
	}
	pages := 0
	for _, call := range f.calls {
		if strings.HasPrefix(call, "Inbox ") {
			pages++
		}
	}
	if pages <= 4 {
		t.Errorf("%d pages: no page was cut at its size", pages)
	}
	for i, cur := range got {
		if cur != uint64(i+1)*2 {
			t.Fatalf("message %d has cursor %d, want %d", i, cur, (i+1)*2)
		}
	}
	page, err := c.Inbox(ctx, 4000, 10)
	if err != nil || len(page.Messages) != 10 || page.Cursor != 4020 {
		t.Errorf("Inbox(4000, 10) = %d messages, cursor %d, %v", len(page.Messages), page.Cursor, err)
	}
	page, err = c.Inbox(ctx, 5000, 0)
	if err != nil || len(page.Messages) != 0 || page.Cursor != 5000 || page.Messages == nil {
		t.Errorf("Inbox at the end = %+v, %v", page, err)
	}
}

func TestMessagesLines(t *testing.T) {
	f := &fakeMessaging{}
	for i := range 3 {
		f.msgs = append(f.msgs, messaging.Message{ID: fmt.Sprint(i), Text: strings.Repeat("\n<", messaging.MaxText/2), Seq: uint64(i + 1)})
	}
	c := serveMessaging(t, f)
	var seqs []uint64
	err := c.Messages(context.Background(), "bob", 0, func(m messaging.Message) error {
		if len(m.Text) != messaging.MaxText {
			t.Errorf("text of %d bytes, want %d", len(m.Text), messaging.MaxText)
		}
		seqs = append(seqs, m.Seq)
		return nil
	})
	if err != nil || fmt.Sprint(seqs) != "[1 2 3]" {
		t.Errorf("Messages: %v, %v", seqs, err)
	}
	stop := errors.New("stop")
	if err := c.Messages(context.Background(), "bob", 0, func(messaging.Message) error { return stop }); err != stop {
		t.Errorf("Messages returned %v, want fn's error", err)
	}
}

func TestSubscribe(t *testing.T) {
	f := newFake()
	s, sock, _ := serve(t, f)
	c := unixClient(t, sock)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	es, err := c.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	f.events <- node.Event{Type: node.EventMessageState, Time: time.Now(), Data: messaging.StateEvent{ID: "x", State: "sent"}}
	ev, err := es.Next()
	if err != nil || ev.Type != node.EventMessageState || !strings.Contains(string(ev.Data), `"state":"sent"`) {
		t.Errorf("Next = %+v, %v", ev, err)
	}
	s.Shutdown(context.Background())
	if _, err := es.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Next after Shutdown: %v, want io.ErrUnexpectedEOF", err)
	}
}
