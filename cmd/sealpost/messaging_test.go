package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/api"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/protocol"
)

// fakeNode is an api.Node whose event stream the test drives.
type fakeNode struct {
	mu   sync.Mutex
	subs []chan node.Event
	n    int // subscriptions made
}

func (f *fakeNode) Info() node.Info                                 { return node.Info{} }
func (f *fakeNode) Peers() []node.PeerInfo                          { return nil }
func (f *fakeNode) Connect(ctx context.Context, maddr string) error { return nil }
func (f *fakeNode) Status(ctx context.Context) (node.Status, error) { return node.Status{}, nil }

// Subscribe returns a channel that the test publishes to; it is closed by
// end (or left to the request's end).
func (f *fakeNode) Subscribe(ctx context.Context) <-chan node.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan node.Event, node.SubscriberBuffer)
	f.subs = append(f.subs, ch)
	f.n++
	return ch
}

// publish puts an event on every open subscription.
func (f *fakeNode) publish(typ string, data any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.subs {
		ch <- node.Event{Type: typ, Time: time.Now(), Data: data}
	}
}

// end closes every subscription, after an overflow event if overflow.
func (f *fakeNode) end(overflow bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.subs {
		if overflow {
			ch <- node.Event{Type: node.EventOverflow, Time: time.Now()}
		}
		close(ch)
	}
	f.subs = nil
}

func (f *fakeNode) subscriptions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// fakeMessaging answers Send, WaitState and Inbox; onSend runs inside Send,
// before the answer (as a daemon that delivers at once would).
type fakeMessaging struct {
	api.Messaging // the other methods are not called
	onSend        func(id string)
	waitState     string

	mu    sync.Mutex
	inbox []messaging.Message
}

const testID = "0123456789abcdef0123456789abcdef"

func (f *fakeMessaging) Send(ctx context.Context, to, text string) (messaging.SendResult, error) {
	if f.onSend != nil {
		f.onSend(testID)
	}
	return messaging.SendResult{ID: testID, State: messaging.StateQueued}, nil
}

func (f *fakeMessaging) WaitState(ctx context.Context, id protocol.MessageID, want string) (string, error) {
	if f.waitState != "" {
		return f.waitState, nil
	}
	<-ctx.Done()
	return messaging.StateQueued, ctx.Err()
}

func (f *fakeMessaging) Inbox(ctx context.Context, after uint64, limit int) ([]messaging.Message, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []messaging.Message
	for _, m := range f.inbox {
		if m.Cursor > after && len(out) < limit {
			out = append(out, m)
			after = m.Cursor
		}
	}
	return out, after, nil
}

func (f *fakeMessaging) add(text string) messaging.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := messaging.Message{ID: text, Text: text, Cursor: uint64(2*len(f.inbox) + 1)}
	f.inbox = append(f.inbox, m)
	return m
}

func serveFake(t *testing.T, n *fakeNode, m *fakeMessaging) *api.Client {
	t.Helper()
	srv, err := api.New(api.Config{Node: n, Messaging: m})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	cl := api.NewUnixClient(sock)
	t.Cleanup(func() {
		cl.CloseIdleConnections()
		srv.Shutdown(context.Background())
		<-done
	})
	return cl
}

func state(id, st string) messaging.StateEvent {
	return messaging.StateEvent{ID: id, State: st}
}

func TestSendAndWait(t *testing.T) {
	tests := []struct {
		name      string
		want      string
		timeout   time.Duration
		onSend    func(n *fakeNode, id string)
		waitState string
		state     string // the result's
		exit      int    // 0: no error
	}{
		{
			// The states are reached before Send answers: they are on
			// the stream, subscribed before the send.
			name: "reached before the answer", want: "delivered",
			onSend: func(n *fakeNode, id string) {
				n.publish(node.EventMessageState, state("other", "delivered"))
				n.publish(node.EventMessageState, state(id, "sent"))
				n.publish(node.EventMessageState, state(id, "delivered"))
			},
			state: "delivered",
		},
		{
			name: "a later state counts", want: "sent",
			onSend: func(n *fakeNode, id string) {
				n.publish(node.EventMessageState, state(id, "read"))
			},
			state: "read",
		},
		{
			name: "failed, then delivered", want: "delivered",
			onSend: func(n *fakeNode, id string) {
				n.publish(node.EventMessageState, messaging.StateEvent{ID: id, State: "failed", Reason: "unreachable"})
				go func() {
					time.Sleep(50 * time.Millisecond)
					n.publish(node.EventMessageState, state(id, "delivered"))
				}()
			},
			state: "delivered",
		},
		{
			name: "timeout", want: "delivered", timeout: 100 * time.Millisecond,
			onSend: func(n *fakeNode, id string) {
				n.publish(node.EventMessageState, state(id, "sent"))
			},
			state: "sent", exit: api.ExitWaitTimeout,
		},
		{
			// Events were dropped: the daemon's wait route answers.
			name: "overflow", want: "delivered", timeout: 10 * time.Second,
			onSend:    func(n *fakeNode, id string) { n.end(true) },
			waitState: "delivered",
			state:     "delivered",
		},
		{
			name: "overflow, then timeout", want: "delivered", timeout: 100 * time.Millisecond,
			onSend: func(n *fakeNode, id string) { n.end(true) },
			state:  "queued", exit: api.ExitWaitTimeout,
		},
		{
			name: "the daemon stops", want: "delivered", timeout: 10 * time.Second,
			onSend: func(n *fakeNode, id string) { n.end(false) },
			state:  "queued", exit: api.ExitNoDaemon,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &fakeNode{}
			m := &fakeMessaging{waitState: tt.waitState, onSend: func(id string) { tt.onSend(n, id) }}
			cl := serveFake(t, n, m)
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 10 * time.Second // a bound for a broken wait
			}
			res, err := sendAndWait(context.Background(), cl, "bob", "hi", tt.want, timeout)
			if res.ID != testID || res.State != tt.state {
				t.Errorf("result %+v, want state %s", res, tt.state)
			}
			if tt.exit == 0 {
				if err != nil {
					t.Errorf("error %v", err)
				}
				return
			}
			if got := exitCode(err); got != tt.exit {
				t.Errorf("error %v: exit %d, want %d", err, got, tt.exit)
			}
			if tt.exit == api.ExitWaitTimeout && !strings.Contains(err.Error(), testID) {
				t.Errorf("timeout error %q does not name the message", err)
			}
		})
	}
}

func TestFollowInbox(t *testing.T) {
	n := &fakeNode{}
	m := &fakeMessaging{}
	cl := serveFake(t, n, m)
	for i := range 3 {
		m.add(fmt.Sprintf("backlog %d", i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 100)
	done := make(chan error, 1)
	go func() {
		done <- followInbox(ctx, cl, 0, func(msg messaging.Message) error {
			got <- msg.Text
			return nil
		})
	}()
	var texts []string
	read := func(k int) {
		t.Helper()
		for range k {
			select {
			case s := <-got:
				texts = append(texts, s)
			case <-time.After(10 * time.Second):
				t.Fatalf("followInbox printed only %q", texts)
			}
		}
	}
	read(3)
	// A message committed before its event, two events for one message,
	// and an event for a message printed already.
	a := m.add("new 0")
	b := m.add("new 1")
	n.publish(node.EventMessageReceived, a)
	n.publish(node.EventMessageReceived, b)
	n.publish(node.EventMessageReceived, a)
	read(2)
	// An overflow: it subscribes again and reads on from its cursor, also
	// what arrived with no event on the new stream.
	m.add("new 2")
	n.end(true)
	for n.subscriptions() < 2 {
		time.Sleep(time.Millisecond)
	}
	read(1)
	c := m.add("new 3")
	n.publish(node.EventMessageReceived, c)
	read(1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("followInbox after cancel: %v", err)
	}
	want := []string{"backlog 0", "backlog 1", "backlog 2", "new 0", "new 1", "new 2", "new 3"}
	select {
	case s := <-got:
		texts = append(texts, s)
	default:
	}
	if !slices.Equal(texts, want) {
		t.Errorf("printed %q, want %q", texts, want)
	}
}

func TestDisplayText(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                "plain",
		"a\x1b[31mred":         `a\u001b[31mred`,
		"two\nlines":           "two\n    lines",
		"tab\there":            "tab\there",
		"\u202eevil\u202c":     `\u202eevil\u202c`,
		"bell\a and nul \x00.": `bell\u0007 and nul \u0000.`,
		"ünïcödé":              "ünïcödé",
	} {
		if got := displayText(in); got != want {
			t.Errorf("displayText(%q) = %q, want %q", in, got, want)
		}
	}
}
