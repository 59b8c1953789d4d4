package rules

import (
	"bytes"
	"fmt"
	"io"
)

// SSEMasker masks a text/event-stream body on its way to the client. Raw
// upstream bytes go in through Write; masked events come out to the
// destination whole, followed by a call to flush. Events that carry no
// text that could become a match pass at once and byte for byte; only a
// bounded tail of streamed text is held back (see StreamOptions). Events
// without data, comments, "[DONE]" and data that is not JSON pass
// unchanged unless a rule matches their text.
//
// An SSEMasker is not safe for concurrent use.
type SSEMasker struct {
	em    *EventMasker
	dst   io.Writer
	flush func()
	max   int

	buf       []byte // input not yet handled; an event begins at buf[0]
	pos       int    // bytes of buf already split into lines
	lineStart int    // start of the current line in buf
	out       []byte
	lines     [][]byte // the lines of the event being handled
	named     bool     // the stream names its events ("event:" lines)
	err       error
	closed    bool
}

// NewSSE returns a masker that writes the masked stream to dst and calls
// flush (if not nil) after each batch of events written.
func (s *Set) NewSSE(dst io.Writer, flush func(), opts StreamOptions) *SSEMasker {
	opts = opts.withDefaults()
	return &SSEMasker{em: s.NewEventMasker(opts), dst: dst, flush: flush, max: opts.MaxEvent}
}

// Write takes raw upstream bytes. It returns ErrBlocked once a block rule
// has ended the stream, and an error if an event exceeds
// StreamOptions.MaxEvent or the destination fails.
func (m *SSEMasker) Write(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if m.closed {
		return 0, fmt.Errorf("rules: write to closed SSE masker")
	}
	m.buf = append(m.buf, p...)
	m.events(false)
	if m.err == nil && len(m.buf) > m.max {
		m.err = fmt.Errorf("rules: SSE event larger than %d bytes", m.max)
	}
	if err := m.emit(); err != nil {
		return 0, err
	}
	return len(p), m.err
}

// Close releases the text held back, and handles an unterminated last
// event, at the end of the stream.
func (m *SSEMasker) Close() error {
	if m.closed {
		return nil
	}
	m.closed = true
	if m.err != nil {
		if m.err == ErrBlocked {
			return nil
		}
		return m.err
	}
	m.events(true)
	if len(m.buf) > 0 && m.err == nil {
		m.handle(m.buf)
		m.buf = m.buf[:0]
	}
	if m.err == nil {
		m.write(m.em.flush())
	}
	if err := m.emit(); err != nil {
		return err
	}
	if m.err == ErrBlocked {
		return nil
	}
	return m.err
}

// Result returns the hits and secrets so far. Body is not used.
func (m *SSEMasker) Result() Result { return m.em.Result() }

// Blocked returns the block or approve rule that ended the stream with an
// SSE "error" event, or nil.
func (m *SSEMasker) Blocked() *Rule { return m.em.Blocked() }

// emit writes the pending output and flushes.
func (m *SSEMasker) emit() error {
	if len(m.out) == 0 {
		return nil
	}
	_, err := m.dst.Write(m.out)
	m.out = m.out[:0]
	if err != nil {
		m.err = fmt.Errorf("rules: write SSE: %w", err)
		return m.err
	}
	if m.flush != nil {
		m.flush()
	}
	return nil
}

// events handles every complete event in buf. With final set, a trailing
// CR ends its line.
func (m *SSEMasker) events(final bool) {
	start := 0
	for m.err == nil {
		end, ok := m.next(final)
		if !ok {
			break
		}
		m.handle(m.buf[start:end])
		start = end
	}
	if start > 0 {
		n := copy(m.buf, m.buf[start:])
		m.buf = m.buf[:n]
		m.pos -= start
		m.lineStart -= start
	}
}

// next finds the end of the next event (after its blank line).
func (m *SSEMasker) next(final bool) (int, bool) {
	for {
		i := bytes.IndexAny(m.buf[m.pos:], "\r\n")
		if i < 0 {
			m.pos = len(m.buf)
			return 0, false
		}
		j := m.pos + i
		term := 1
		if m.buf[j] == '\r' {
			if j+1 == len(m.buf) && !final {
				m.pos = j // a LF may follow
				return 0, false
			}
			if j+1 < len(m.buf) && m.buf[j+1] == '\n' {
				term = 2
			}
		}
		blank := j == m.lineStart
		m.pos = j + term
		m.lineStart = m.pos
		if blank {
			return m.pos, true
		}
	}
}

// sseLine is one line of an event.
type sseLine struct {
	field, value []byte
	raw          []byte
}

// splitLines appends the lines of an event to lines, without terminators.
func splitLines(lines [][]byte, ev []byte) [][]byte {
	for len(ev) > 0 {
		i := bytes.IndexAny(ev, "\r\n")
		if i < 0 {
			lines = append(lines, ev)
			break
		}
		lines = append(lines, ev[:i])
		if ev[i] == '\r' && i+1 < len(ev) && ev[i+1] == '\n' {
			i++
		}
		ev = ev[i+1:]
	}
	return lines
}

func parseLine(l []byte) sseLine {
	if len(l) > 0 && l[0] == ':' {
		return sseLine{raw: l}
	}
	field, value, found := bytes.Cut(l, []byte(":"))
	if found && len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	return sseLine{field: field, value: value, raw: l}
}

// handle masks one event (its raw bytes, blank line included).
func (m *SSEMasker) handle(ev []byte) {
	m.lines = splitLines(m.lines[:0], ev)
	lines := m.lines
	var data []byte
	hasData, named := false, false
	for _, l := range lines {
		sl := parseLine(l)
		switch string(sl.field) {
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, sl.value...)
			hasData = true
		case "event":
			named = true
		}
	}
	if named {
		m.named = true
	}
	if !hasData {
		m.out = append(m.out, ev...)
		return
	}
	if string(data) == "[DONE]" {
		m.write(m.em.flush())
		if m.em.blocked == nil {
			m.out = append(m.out, ev...)
		}
		return
	}
	for _, o := range m.em.process(data) {
		switch {
		case o.orig:
			m.out = append(m.out, ev...)
		case o.synth || o.err:
			m.write([]outEvent{o})
		default:
			m.rewrite(lines, o.data)
		}
	}
	if m.em.blocked != nil {
		m.err = ErrBlocked
	}
}

// write appends made-up events.
func (m *SSEMasker) write(outs []outEvent) {
	for _, o := range outs {
		switch {
		case o.err:
			m.out = append(m.out, "event: error\n"...)
		case m.named && o.typ != "":
			m.out = append(m.out, "event: "...)
			m.out = append(m.out, o.typ...)
			m.out = append(m.out, '\n')
		}
		m.out = appendData(m.out, o.data)
		m.out = append(m.out, '\n')
	}
	if m.em.blocked != nil {
		m.err = ErrBlocked
	}
}

// rewrite appends the event lines with the data replaced.
func (m *SSEMasker) rewrite(lines [][]byte, data []byte) {
	done := false
	for _, l := range lines {
		if len(l) == 0 {
			continue // the blank line that ends the event
		}
		if string(parseLine(l).field) == "data" {
			if !done {
				m.out = appendData(m.out, data)
				done = true
			}
			continue
		}
		m.out = append(m.out, l...)
		m.out = append(m.out, '\n')
	}
	m.out = append(m.out, '\n')
}

// appendData appends data as "data:" lines.
func appendData(dst, data []byte) []byte {
	for {
		line, rest, more := bytes.Cut(data, []byte("\n"))
		dst = append(dst, "data: "...)
		dst = append(dst, line...)
		dst = append(dst, '\n')
		if !more {
			return dst
		}
		data = rest
	}
}

// InThinking reports whether the stream was ended because a mask rule
// matched inside an Anthropic thinking block (see EventMasker.InThinking).
func (m *SSEMasker) InThinking() bool { return m.em.InThinking() }
