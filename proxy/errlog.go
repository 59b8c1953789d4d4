package proxy

import (
	"log/slog"
	"sync"
	"time"
)

// errRepeatWindow is how long identical errors are counted rather than
// logged again.
const errRepeatWindow = time.Minute

// errLog logs an error once and counts its identical repeats: a failing
// disk or a flood does not turn the log into thousands of equal lines.
// The count is logged when another error comes, or with the next
// occurrence after errRepeatWindow.
type errLog struct {
	mu    sync.Mutex
	key   string
	msg   string
	err   string
	n     int
	since time.Time
}

// log logs msg with err and args, unless the same msg and err were logged
// within errRepeatWindow; then it only counts it.
func (e *errLog) log(l *slog.Logger, msg string, err error, args ...any) {
	text := err.Error()
	key := msg + "\x00" + text
	now := time.Now()
	e.mu.Lock()
	if key == e.key && now.Sub(e.since) < errRepeatWindow {
		e.n++
		e.mu.Unlock()
		return
	}
	prevMsg, prevErr, prevN := e.msg, e.err, e.n
	e.key, e.msg, e.err, e.n, e.since = key, msg, text, 0, now
	e.mu.Unlock()
	if prevN > 0 {
		l.Error(prevMsg+" (repeated)", "err", prevErr, "repeats", prevN)
	}
	l.Error(msg, append([]any{"err", err}, args...)...)
}
