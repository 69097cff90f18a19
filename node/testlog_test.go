package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// groupLogs keeps the group engine's log records (debug level included)
// of a test's nodes and prints them if the test fails: a flake of a group
// test seen once, on a loaded machine, can then be read afterwards.
// Records of other packages (libp2p's among them) are not kept.
type groupLogs struct {
	mu  sync.Mutex
	buf bytes.Buffer
	n   int // nodes named so far
}

// maxGroupLogs bounds what groupLogs keeps: past it the older half goes.
const maxGroupLogs = 4 << 20

// newGroupLogs starts keeping the records of t's nodes; each node gets
// its Logger from logger.
func newGroupLogs(t *testing.T) *groupLogs {
	l := &groupLogs{}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Logf("the group logs of the test's nodes:\n%s", l.buf.String())
	})
	return l
}

// logger returns the Logger of the next node, its records marked n1, n2, ...
func (l *groupLogs) logger() *slog.Logger {
	l.mu.Lock()
	l.n++
	name := fmt.Sprintf("n%d", l.n)
	l.mu.Unlock()
	return slog.New(&groupLogHandler{l: l, name: name})
}

type groupLogHandler struct {
	l     *groupLogs
	name  string
	attrs []slog.Attr
}

func (h *groupLogHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *groupLogHandler) Handle(_ context.Context, r slog.Record) error {
	if !strings.HasPrefix(r.Message, "group") {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s %s", r.Time.Format(time.TimeOnly+".000"), h.name, r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	b.WriteByte('\n')
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	if h.l.buf.Len()+b.Len() > maxGroupLogs {
		rest := bytes.Clone(h.l.buf.Bytes()[h.l.buf.Len()/2:])
		h.l.buf.Reset()
		h.l.buf.WriteString("[older records dropped]\n")
		h.l.buf.Write(rest)
	}
	h.l.buf.WriteString(b.String())
	return nil
}

func (h *groupLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &groupLogHandler{l: h.l, name: h.name, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], as...)}
}

func (h *groupLogHandler) WithGroup(string) slog.Handler { return h }

// TestGroupLogsKept: the records a group test keeps are the group
// engine's, marked by node, and the older half goes past the bound.
func TestGroupLogsKept(t *testing.T) {
	l := &groupLogs{}
	a, b := l.logger(), l.logger()
	a.Info("group: appended", "seq", 3)
	b.With("x", 1).Debug("group: fetched", "entries", 2)
	a.Info("libp2p: dial")
	got := l.buf.String()
	for _, want := range []string{"n1 INFO group: appended seq=3\n", "n2 DEBUG group: fetched x=1 entries=2\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("kept %q, want a line %q", got, want)
		}
	}
	if strings.Contains(got, "libp2p") {
		t.Errorf("kept a record of another package: %q", got)
	}
	big := strings.Repeat("y", 1<<10)
	for range 2 * maxGroupLogs >> 10 {
		a.Info("group: big", "v", big)
	}
	if l.buf.Len() > maxGroupLogs {
		t.Errorf("kept %d bytes, bound %d", l.buf.Len(), maxGroupLogs)
	}
}
