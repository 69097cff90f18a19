package node

import (
	"context"
	"log/slog"
	"reflect"
	"slices"
	"sync"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/gologshim"
	"go.uber.org/zap/zapcore"
)

// libp2p's logs.
//
// go-libp2p logs through package-level slog loggers (gologshim) and the DHT
// through package-level go-log (zap) loggers; neither knows which host a
// line is about. The bridge below is therefore process-global, the one
// piece of package-level mutable state in this package: the first New in a
// process points gologshim at go-log's slog bridge and replaces go-log's
// primary output (stderr) with logSink, which hands each record to the
// loggers of the nodes that are open at that moment. With several nodes in
// one process each node's logger sees the libp2p logs of all of them
// (once per distinct handler); a process that ran no node keeps libp2p's
// default stderr output.
//
// Verbosity is go-log's: error unless the GOLOG_LOG_LEVEL environment
// variable says otherwise (for example GOLOG_LOG_LEVEL=warn,dht=debug);
// each node's handler then filters by its own level.

var (
	bridgeOnce sync.Once
	logs       = &logSink{}
)

// installLogBridge routes libp2p's logs to logs. It runs once per process.
func installLogBridge() {
	bridgeOnce.Do(func() {
		gologshim.SetDefaultHandler(golog.SlogHandler())
		golog.SetPrimaryCore(sinkCore{sink: logs})
	})
}

// logSink is the set of open nodes' handlers.
type logSink struct {
	mu      sync.RWMutex
	entries []sinkEntry
}

type sinkEntry struct {
	owner any          // the node, to remove the entry on Close
	base  slog.Handler // the node's handler, to deliver once per distinct one
	h     slog.Handler // base with the attributes that mark libp2p's lines
}

// add registers owner's logger; remove unregisters it.
func (s *logSink) add(owner any, l *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	base := l.Handler()
	s.entries = append(s.entries, sinkEntry{owner: owner, base: base, h: base.WithAttrs([]slog.Attr{slog.String("component", "libp2p")})})
}

func (s *logSink) remove(owner any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries = slices.DeleteFunc(s.entries, func(e sinkEntry) bool { return e.owner == owner })
}

func (s *logSink) enabled(l slog.Level) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, e := range s.entries {
		if e.h.Enabled(context.Background(), l) {
			return true
		}
	}
	return false
}

func (s *logSink) handle(r slog.Record) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i, e := range s.entries {
		if seenHandler(s.entries[:i], e.base) || !e.h.Enabled(context.Background(), r.Level) {
			continue
		}
		_ = e.h.Handle(context.Background(), r.Clone())
	}
}

// seenHandler reports whether an earlier entry has the same base handler
// (compared only where the handler's type allows ==).
func seenHandler(earlier []sinkEntry, h slog.Handler) bool {
	if !reflect.TypeOf(h).Comparable() {
		return false
	}
	for _, e := range earlier {
		if reflect.TypeOf(e.base) == reflect.TypeOf(h) && e.base == h {
			return true
		}
	}
	return false
}

// sinkCore is a zap core that turns go-log's entries into slog records for
// logSink.
type sinkCore struct {
	sink   *logSink
	fields []zapcore.Field
}

func (c sinkCore) Enabled(l zapcore.Level) bool { return c.sink.enabled(zapToSlog(l)) }

func (c sinkCore) With(fields []zapcore.Field) zapcore.Core {
	return sinkCore{sink: c.sink, fields: append(slices.Clip(c.fields), fields...)}
}

func (c sinkCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c sinkCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	r := slog.NewRecord(e.Time, zapToSlog(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		r.AddAttrs(slog.Any(k, enc.Fields[k]))
	}
	c.sink.handle(r)
	return nil
}

func (c sinkCore) Sync() error { return nil }

func zapToSlog(l zapcore.Level) slog.Level {
	switch {
	case l >= zapcore.ErrorLevel:
		return slog.LevelError
	case l >= zapcore.WarnLevel:
		return slog.LevelWarn
	case l >= zapcore.InfoLevel:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}
