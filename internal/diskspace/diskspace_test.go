package diskspace

import (
	"errors"
	"strings"
	"testing"
)

// The thresholds are set around the real free space of the test's
// temporary directory, measured with statfs.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	free := New(dir, 0).Free()
	if free == 0 {
		t.Skip("no free space measured on this system")
	}
	tests := []struct {
		name      string
		reserve   uint64
		low, warn bool
	}{
		{"plenty", free / 8, false, false},
		{"near", free/2 + free/8, false, true},
		{"below", free + 1<<40, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := New(dir, tt.reserve)
			if w.Low() != tt.low || w.Warn() != tt.warn {
				t.Fatalf("free %d, reserve %d: low %v warn %v", w.Free(), tt.reserve, w.Low(), w.Warn())
			}
			ws := w.Warnings()
			if !tt.warn {
				if len(ws) != 0 {
					t.Fatalf("warnings %v", ws)
				}
				return
			}
			var wn *Warning
			if len(ws) != 1 || !errors.As(ws[0], &wn) || wn.BelowReserve != tt.low {
				t.Fatalf("warnings %v", ws)
			}
			if !strings.Contains(wn.Error(), dir) || strings.Contains(wn.Public(), dir) {
				t.Fatalf("Error %q should name the path, Public %q not", wn.Error(), wn.Public())
			}
		})
	}
}

func TestWatchUnmeasurable(t *testing.T) {
	w := New("/nonexistent/sessctl-test", 1<<20)
	if w.Low() || w.Warn() {
		t.Fatal("an unmeasurable volume counted as low")
	}
	if ws := w.Warnings(); len(ws) != 1 || !strings.Contains(ws[0].Error(), "nonexistent") {
		t.Fatalf("warnings %v", ws)
	}
}
