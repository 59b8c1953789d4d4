package usage

import (
	"bytes"
	"io"

	"github.com/sessctl/sessctl/store"
)

// Stream reads the usage of a text/event-stream answer on its way to the
// runner. Raw upstream bytes go in through Write; they come out to the
// destination event by event, unchanged, except that with strip set the
// usage that [IncludeUsage] asked for is removed. An event's bytes are
// held only until the blank line that ends it, and an event larger than
// the bound given to NewStream ends the reading: what follows passes
// through unread.
//
// A Stream is not safe for concurrent use.
type Stream struct {
	dst   io.Writer
	strip bool
	max   int
	buf   []byte // an event begins at buf[0]
	out   []byte // what one Write passes on
	data  []byte // an event's data lines joined, when it has several
	usage *store.Usage
	// raw is set once an event exceeded max: the rest passes unread.
	raw bool
}

// NewStream returns a Stream writing to dst. With strip, the final usage
// chunk of a chat completion stream is dropped and "usage": null removed
// from the other chunks. max bounds one event held (at least 4 KiB).
func NewStream(dst io.Writer, strip bool, limit int) *Stream {
	return &Stream{dst: dst, strip: strip, max: max(limit, 4<<10)}
}

// Usage returns the last usage the stream reported so far, or nil.
func (s *Stream) Usage() *store.Usage { return s.usage }

// Write takes raw upstream bytes and writes every event they complete.
func (s *Stream) Write(p []byte) (int, error) {
	if s.raw {
		return s.dst.Write(p)
	}
	s.buf = append(s.buf, p...)
	s.out = s.out[:0]
	off := 0
	for {
		end := eventEnd(s.buf[off:], false)
		if end < 0 {
			break
		}
		s.event(s.buf[off : off+end])
		off += end
	}
	s.buf = s.buf[:copy(s.buf, s.buf[off:])]
	if len(s.buf) > s.max {
		// Too large to hold: stop reading, pass everything on.
		s.out = append(s.out, s.buf...)
		s.buf, s.raw = nil, true
	}
	if len(s.out) > 0 {
		if _, err := s.dst.Write(s.out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Close writes what is left: an unterminated last event.
func (s *Stream) Close() error {
	if len(s.buf) == 0 {
		return nil
	}
	s.out = s.out[:0]
	s.event(s.buf)
	s.buf = nil
	if len(s.out) == 0 {
		return nil
	}
	_, err := s.dst.Write(s.out)
	return err
}

// event reads one whole event and appends the bytes to pass on to out.
// An event's data is read where it lies when it has one data line (the
// case of every chunk of a chat completion stream), not copied.
func (s *Stream) event(ev []byte) {
	var data []byte
	dataLines := 0
	dataAt := [2]int{}
	for off := 0; off < len(ev); {
		l, n := line(ev[off:])
		if v, ok := bytes.CutPrefix(l, []byte("data:")); ok {
			v = bytes.TrimPrefix(v, []byte(" "))
			switch dataLines {
			case 0:
				data = v
			case 1:
				s.data = append(append(append(s.data[:0], data...), '\n'), v...)
				data = s.data
			default:
				s.data = append(append(s.data, '\n'), v...)
				data = s.data
			}
			dataLines++
			dataAt = [2]int{off + len(l) - len(v), off + len(l)}
		}
		off += n
	}
	if len(data) == 0 || data[0] != '{' {
		s.out = append(s.out, ev...)
		return
	}
	if u, ok := FromJSON(data); ok {
		s.usage = u
	}
	if !s.strip || dataLines != 1 {
		s.out = append(s.out, ev...)
		return
	}
	stripped, drop := stripChunk(data)
	switch {
	case drop:
	case len(stripped) == len(data):
		s.out = append(s.out, ev...)
	default:
		s.out = append(s.out, ev[:dataAt[0]]...)
		s.out = append(s.out, stripped...)
		s.out = append(s.out, ev[dataAt[1]:]...)
	}
}

// line returns the first line of b without its end of line, and the
// length with it (CRLF, LF or CR end a line).
func line(b []byte) ([]byte, int) {
	for i, c := range b {
		switch c {
		case '\n':
			return b[:i], i + 1
		case '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				return b[:i], i + 2
			}
			return b[:i], i + 1
		}
	}
	return b, len(b)
}

// eventEnd returns the length of the first whole event in b, blank line
// included, or -1. A CR at the very end may yet be followed by LF, so it
// ends nothing unless final.
func eventEnd(b []byte, final bool) int {
	empty := true // the current line has no bytes yet
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\n', '\r':
			n := 1
			if b[i] == '\r' {
				if i+1 == len(b) && !final {
					return -1
				}
				if i+1 < len(b) && b[i+1] == '\n' {
					n = 2
				}
			}
			if empty {
				return i + n
			}
			empty = true
			i += n - 1
		default:
			empty = false
		}
	}
	return -1
}
