package proxy

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestErrLogCountsRepeats(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	var e errLog
	full := errors.New("write sessions.db: no space left on device")
	for range 5000 {
		e.log(l, "cannot record exchange", full, "session", "x")
	}
	e.log(l, "cannot record exchange", errors.New("other"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[1], "repeated") || !strings.Contains(lines[1], "repeats=4999") {
		t.Fatalf("count line %q", lines[1])
	}
}
