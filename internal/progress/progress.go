// Package progress draws a one-line report of long work (verifying a large
// log, building its indexes, exporting, pruning) on a terminal: what is
// done, of how much, the rate and the time left. It draws nothing when its
// writer is not a terminal or when asked to be quiet, so that scripts,
// pipes and CI logs see only the command's real output.
package progress

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Options configure a Bar.
type Options struct {
	// Quiet draws nothing (the commands' --quiet).
	Quiet bool
	// Unit names what is counted ("records"); default "items".
	Unit string
	// Every is the shortest time between two redraws (default 200ms).
	Every time.Duration
	// Force draws even when the writer is not a terminal (tests).
	Force bool
	// Now returns the current time; time.Now if nil (tests).
	Now func() time.Time
}

// Bar reports the progress of one piece of work. Its methods are safe for
// concurrent use; a Bar that does not draw costs a mutex per call.
type Bar struct {
	w     io.Writer
	label string
	o     Options
	draw  bool

	mu     sync.Mutex
	total  int64
	done   int64
	base   int64 // done when the bar started (work resumed part way)
	start  time.Time
	last   time.Time
	drawn  bool  // a line is on screen (Done ends it)
	shown  int64 // done as last drawn
	closed bool
}

// New returns a Bar for work of total items (0 if unknown) that draws on w
// only if w is a terminal and opts.Quiet is not set.
func New(w io.Writer, label string, total int64, opts Options) *Bar {
	if opts.Unit == "" {
		opts.Unit = "items"
	}
	if opts.Every <= 0 {
		opts.Every = 200 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &Bar{w: w, label: label, o: opts, total: total, draw: !opts.Quiet && (opts.Force || IsTerminal(w))}
	b.start = opts.Now()
	return b
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// Drawing reports whether the bar draws at all.
func (b *Bar) Drawing() bool { return b.draw }

// SetTotal changes the amount of work (when it becomes known).
func (b *Bar) SetTotal(total int64) {
	b.mu.Lock()
	b.total = total
	b.mu.Unlock()
}

// Set reports that done items are finished.
func (b *Bar) Set(done int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = done
	b.redraw(false)
}

// Add reports n more finished items.
func (b *Bar) Add(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	b.redraw(false)
}

// Done draws the final state and ends the line, if anything was drawn.
// Later calls do nothing.
func (b *Bar) Done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	if b.drawn {
		if b.shown != b.done {
			b.redraw(true)
		}
		io.WriteString(b.w, "\n")
	}
	b.closed = true
}

// redraw writes the line if it is due (or forced); b.mu is held.
func (b *Bar) redraw(force bool) {
	if !b.draw || b.closed {
		return
	}
	now := b.o.Now()
	if !force && b.drawn && now.Sub(b.last) < b.o.Every {
		return
	}
	// The first line waits a moment too: quick work draws nothing.
	if !force && !b.drawn && now.Sub(b.start) < b.o.Every {
		return
	}
	b.last, b.drawn, b.shown = now, true, b.done
	// \r returns to the line's start, \x1b[K clears what a longer line
	// left behind.
	io.WriteString(b.w, "\r"+b.line(now)+"\x1b[K")
}

// line is the report: "verifying: 12,000/50,000 records (24%) 3,000/s, 13s left".
func (b *Bar) line(now time.Time) string {
	var s strings.Builder
	s.WriteString(b.label)
	s.WriteString(": ")
	s.WriteString(group(b.done))
	if b.total > 0 {
		s.WriteString("/" + group(b.total))
	}
	s.WriteString(" " + b.o.Unit)
	if b.total > 0 {
		fmt.Fprintf(&s, " (%d%%)", min(100, b.done*100/b.total))
	}
	elapsed := now.Sub(b.start)
	if elapsed <= 0 || b.done <= b.base {
		return s.String()
	}
	rate := float64(b.done-b.base) / elapsed.Seconds()
	s.WriteString(" " + group(int64(rate+0.5)) + "/s")
	if b.total > b.done && rate > 0 {
		left := time.Duration(float64(b.total-b.done) / rate * float64(time.Second))
		s.WriteString(", " + eta(left) + " left")
	} else if b.total > 0 {
		s.WriteString(", " + eta(elapsed) + " in all")
	}
	return s.String()
}

// group writes n with thousands separators.
func group(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// eta rounds a duration for people: 45s, 3m10s, 2h05m.
func eta(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second))
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	d = d.Round(time.Minute)
	return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

// Writer counts the lines written through it to w as finished items: an
// export's JSON lines, one a record.
type Writer struct {
	W   io.Writer
	Bar *Bar
}

// Write implements io.Writer.
func (pw Writer) Write(p []byte) (int, error) {
	n, err := pw.W.Write(p)
	if lines := bytes.Count(p[:n], []byte{'\n'}); lines > 0 {
		pw.Bar.Add(int64(lines))
	}
	return n, err
}

// Tasks returns a progress callback for work that reports itself by task
// name (the store's index builds and prunes): one bar per task, labelled
// with its name, ended when done reaches total.
func Tasks(w io.Writer, opts Options) func(task string, done, total uint64) {
	var mu sync.Mutex
	bars := map[string]*Bar{}
	return func(task string, done, total uint64) {
		mu.Lock()
		defer mu.Unlock()
		b := bars[task]
		if b == nil {
			b = New(w, task, int64(total), opts)
			b.done, b.base = int64(done), int64(done)
			bars[task] = b
		}
		b.SetTotal(int64(total))
		b.Set(int64(done))
		if done >= total {
			b.Done()
			delete(bars, task)
		}
	}
}
