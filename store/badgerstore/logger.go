package badgerstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// badgerLogger routes badger's messages to a slog.Logger. Badger's info
// messages (table counts and the like at every open) go out at debug
// level, its debug messages (several per write batch) below that.
type badgerLogger struct{ l *slog.Logger }

const levelTrace = slog.LevelDebug - 4

func (l badgerLogger) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !l.l.Enabled(ctx, level) {
		return
	}
	l.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "badger")
}

func (l badgerLogger) Errorf(f string, a ...any)   { l.log(slog.LevelError, f, a) }
func (l badgerLogger) Warningf(f string, a ...any) { l.log(slog.LevelWarn, f, a) }
func (l badgerLogger) Infof(f string, a ...any)    { l.log(slog.LevelDebug, f, a) }
func (l badgerLogger) Debugf(f string, a ...any)   { l.log(levelTrace, f, a) }
