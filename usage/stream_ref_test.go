package usage

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/sessctl/sessctl/store"
)

// oldStream is Stream as it was written before it stopped copying each
// event's data and building each stripped event anew: the output Stream
// must agree with, byte for byte.
type oldStream struct {
	dst   io.Writer
	strip bool
	max   int
	buf   []byte // an event begins at buf[0]
	out   []byte // what one Write passes on
	usage *store.Usage
	// raw is set once an event exceeded max: the rest passes unread.
	raw bool
}

func newOldStream(dst io.Writer, strip bool, limit int) *oldStream {
	return &oldStream{dst: dst, strip: strip, max: max(limit, 4<<10)}
}

// Usage returns the last usage the stream reported so far, or nil.
func (s *oldStream) Usage() *store.Usage { return s.usage }

// Write takes raw upstream bytes and writes every event they complete.
func (s *oldStream) Write(p []byte) (int, error) {
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
		s.out = append(s.out, s.event(s.buf[off:off+end])...)
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
func (s *oldStream) Close() error {
	if len(s.buf) == 0 {
		return nil
	}
	out := s.event(s.buf)
	s.buf = nil
	if len(out) == 0 {
		return nil
	}
	_, err := s.dst.Write(out)
	return err
}

// event reads one whole event and returns the bytes to pass on.
func (s *oldStream) event(ev []byte) []byte {
	var data []byte
	dataLines := 0
	dataAt := [2]int{}
	for off := 0; off < len(ev); {
		l, n := line(ev[off:])
		if v, ok := bytes.CutPrefix(l, []byte("data:")); ok {
			v = bytes.TrimPrefix(v, []byte(" "))
			if dataLines > 0 {
				data = append(data, '\n')
			}
			data = append(data, v...)
			dataLines++
			dataAt = [2]int{off + len(l) - len(v), off + len(l)}
		}
		off += n
	}
	if len(data) == 0 || data[0] != '{' {
		return ev
	}
	if u, ok := FromJSON(data); ok {
		s.usage = u
	}
	if !s.strip || dataLines != 1 {
		return ev
	}
	stripped, drop := stripChunk(data)
	if drop {
		return nil
	}
	if len(stripped) == len(data) {
		return ev
	}
	return replaceSpan(ev, dataAt[0], dataAt[1], string(stripped))
}

// agreeStream feeds in to a Stream and an oldStream in writes of at most
// step bytes and fails t if their outputs or usage differ.
func agreeStream(t *testing.T, in []byte, strip bool, step int) {
	t.Helper()
	step = max(step, 1)
	var got, want bytes.Buffer
	s, o := NewStream(&got, strip, 4096), newOldStream(&want, strip, 4096)
	for p := in; len(p) > 0; {
		n := min(len(p), step)
		s.Write(p[:n])
		o.Write(p[:n])
		p = p[n:]
	}
	s.Close()
	o.Close()
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("strip=%v step=%d: Stream wrote\n%q\nthe old Stream\n%q", strip, step, got.Bytes(), want.Bytes())
	}
	if gu, wu := s.Usage(), o.Usage(); (gu == nil) != (wu == nil) || (gu != nil && *gu != *wu) {
		t.Fatalf("usage %+v, old Stream %+v", gu, wu)
	}
}

func TestStreamAgreesWithOld(t *testing.T) {
	var sb strings.Builder
	for i := range 5 {
		sb.WriteString("data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"w" + strings.Repeat("x", i) + "\"}}],\"usage\":null}\n\n")
	}
	sb.WriteString("data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":5,\"total_tokens\":14}}\n\ndata: [DONE]\n\n")
	ins := []string{
		sb.String(),
		"event: x\r\ndata: {\"usage\":null,\"a\":1}\r\n\r\n",
		"data: {\"a\":1,\n" + "data: \"usage\":null}\n\n",
		"data: {\"usage\": null , \"choices\":[1]}\n\ndata: {\"choices\": [ ], \"usage\":{\"total_tokens\":1}}\n\n",
		": comment\n\ndata:{\"usage\":null}\n\n",
		"data: " + strings.Repeat("y", 5000) + "\n\ndata: {\"usage\":null}\n\n",
		"data: {\"usage\":null}",
	}
	for _, in := range ins {
		for _, strip := range []bool{false, true} {
			for _, step := range []int{1, 7, 180, len(in)} {
				agreeStream(t, []byte(in), strip, step)
			}
		}
	}
}

func FuzzStreamAgreesWithOld(f *testing.F) {
	f.Add([]byte("data: {\"usage\":null,\"a\":1}\n\n"), true, 5)
	f.Add([]byte("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\r\n\r\n"), true, 3)
	f.Fuzz(func(t *testing.T, in []byte, strip bool, step int) {
		agreeStream(t, in, strip, step%64)
	})
}

// BenchmarkStreamOld is BenchmarkStream on oldStream, for comparison.
func BenchmarkStreamOld(b *testing.B) {
	var sb strings.Builder
	chunk := "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word \"},\"finish_reason\":null}],\"usage\":null}\n\n"
	for i := 0; i < 500; i++ {
		sb.WriteString(chunk)
	}
	sb.WriteString("data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":500,\"total_tokens\":509}}\n\ndata: [DONE]\n\n")
	in := []byte(sb.String())
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s := newOldStream(io.Discard, true, 1<<20)
		for p := in; len(p) > 0; {
			n := min(len(p), 180)
			s.Write(p[:n])
			p = p[n:]
		}
		s.Close()
		if s.Usage() == nil {
			b.Fatal("no usage")
		}
	}
}
