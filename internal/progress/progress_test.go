package progress

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clock is a fake time source that tests move forward.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func lastLine(s string) string           { i := strings.LastIndex(s, "\r"); return s[i+1:] }

func TestLineShowsRateAndETA(t *testing.T) {
	cases := []struct {
		name      string
		total     int64
		steps     []int64 // done after each second
		want      string
		wantFinal string
	}{
		{"known total", 10000, []int64{1000, 2000},
			"verifying: 2,000/10,000 records (20%) 1,000/s, 8s left\x1b[K",
			"verifying: 10,000/10,000 records (100%) 3,333/s, 3s in all\x1b[K\n"},
		{"unknown total", 0, []int64{500, 1500},
			"verifying: 1,500 records 750/s\x1b[K",
			"verifying: 10,000 records 3,333/s\x1b[K\n"},
		{"long ETA", 1_000_000, []int64{100},
			"verifying: 100/1,000,000 records (0%) 100/s, 2h47m left\x1b[K",
			"verifying: 10,000/1,000,000 records (1%) 5,000/s, 3m18s left\x1b[K\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			clk := newClock()
			b := New(&buf, "verifying", c.total, Options{Unit: "records", Force: true, Now: clk.now})
			for _, d := range c.steps {
				clk.advance(time.Second)
				b.Set(d)
			}
			if got := lastLine(buf.String()); got != c.want {
				t.Errorf("line = %q, want %q", got, c.want)
			}
			clk.advance(time.Second)
			b.Set(10000)
			b.Done()
			b.Done()
			if got := lastLine(buf.String()); got != c.wantFinal {
				t.Errorf("final line = %q, want %q", got, c.wantFinal)
			}
		})
	}
}

func TestRedrawsAreThrottled(t *testing.T) {
	var buf bytes.Buffer
	clk := newClock()
	b := New(&buf, "exporting", 0, Options{Force: true, Now: clk.now, Every: time.Second})
	b.Add(1) // quick work draws nothing
	if buf.Len() != 0 {
		t.Fatalf("drew before Every passed: %q", buf.String())
	}
	clk.advance(time.Second)
	for range 1000 {
		b.Add(1)
	}
	if n := strings.Count(buf.String(), "\r"); n != 1 {
		t.Errorf("%d redraws within one interval, want 1", n)
	}
}

func TestQuickWorkLeavesNoLine(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, "x", 10, Options{Force: true})
	b.Set(10)
	b.Done()
	if buf.Len() != 0 {
		t.Errorf("quick work drew %q", buf.String())
	}
}

func TestSilentWhenNotATerminalOrQuiet(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		name string
		b    *Bar
	}{
		{"buffer", New(&bytes.Buffer{}, "x", 10, Options{})},
		{"file", New(f, "x", 10, Options{})},
		{"quiet even when forced", New(f, "x", 10, Options{Quiet: true, Force: true})},
	} {
		clk := newClock()
		c.b.o.Now = clk.now
		clk.advance(time.Hour)
		c.b.Set(5)
		c.b.Done()
		if c.b.Drawing() {
			t.Errorf("%s: Drawing() = true", c.name)
		}
	}
	if fi, _ := f.Stat(); fi.Size() != 0 {
		t.Errorf("wrote %d bytes to a file", fi.Size())
	}
}

func TestWriterCountsLines(t *testing.T) {
	var out, screen bytes.Buffer
	clk := newClock()
	b := New(&screen, "exporting", 3, Options{Unit: "records", Force: true, Now: clk.now})
	w := Writer{W: &out, Bar: b}
	clk.advance(time.Second)
	w.Write([]byte("{\"a\":1}\n{\"b\":"))
	w.Write([]byte("2}\n{\"c\":3}\n"))
	b.Done()
	if out.String() != "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n" {
		t.Errorf("output changed: %q", out.String())
	}
	if got := lastLine(screen.String()); !strings.HasPrefix(got, "exporting: 3/3 records (100%)") {
		t.Errorf("final line %q", got)
	}
}

func TestTasksOneBarEach(t *testing.T) {
	var buf bytes.Buffer
	clk := newClock()
	report := Tasks(&buf, Options{Unit: "records", Force: true, Now: clk.now})
	report("indexing", 0, 100)
	clk.advance(time.Second)
	report("indexing", 50, 100)
	clk.advance(time.Second)
	report("indexing", 100, 100)
	if got := buf.String(); !strings.Contains(got, "indexing: 50/100 records (50%) 50/s, 1s left") ||
		!strings.HasSuffix(got, "indexing: 100/100 records (100%) 50/s, 2s in all\x1b[K\n") {
		t.Errorf("indexing lines %q", got)
	}
	buf.Reset()
	report("pruning", 0, 10) // a new bar, started now
	clk.advance(time.Second)
	report("pruning", 10, 10)
	if got := buf.String(); got != "\rpruning: 10/10 records (100%) 10/s, 1s in all\x1b[K\n" {
		t.Errorf("pruning lines %q", got)
	}
}

func TestTasksResumedWorkRate(t *testing.T) {
	var buf bytes.Buffer
	clk := newClock()
	report := Tasks(&buf, Options{Unit: "records", Force: true, Now: clk.now})
	report("indexing", 9000, 10000) // resumed: 9,000 were done before
	clk.advance(time.Second)
	report("indexing", 9500, 10000)
	if got := lastLine(buf.String()); got != "indexing: 9,500/10,000 records (95%) 500/s, 1s left\x1b[K" {
		t.Errorf("line %q: the rate must count only the work done since the start", got)
	}
}
