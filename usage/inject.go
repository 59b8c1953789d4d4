package usage

import (
	"bytes"
	"strings"

	"github.com/sessctl/sessctl/internal/jsonobj"
)

// StreamsChat reports whether a request to path with this body asks for a
// streamed chat (or legacy text) completion: the answers whose usage is
// reported only on request.
func StreamsChat(path string, body []byte) bool {
	if !strings.HasSuffix(path, "/chat/completions") && !strings.HasSuffix(path, "/completions") {
		return false
	}
	ms, _, err := members(body)
	if err != nil {
		return false
	}
	m, found, err := lookup(ms, "stream")
	return err == nil && found && string(m.Value) == "true"
}

// IncludeUsage returns a streamed completion request that asks for usage
// (stream_options.include_usage: true), and whether it had to change the
// body for that: when it did, the runner did not ask for usage and the
// answer's usage must be stripped (see [NewStream]). A body that already
// asks, or whose stream_options cannot be read for certain, is returned
// unchanged with false.
func IncludeUsage(body []byte) ([]byte, bool) {
	ms, open, err := members(body)
	if err != nil {
		return body, false
	}
	so, found, err := lookup(ms, "stream_options")
	if err != nil {
		return body, false
	}
	const member = `"stream_options":{"include_usage":true}`
	if !found {
		sep := ","
		if len(ms) == 0 {
			sep = ""
		}
		return insertAt(body, open, member+sep), true
	}
	if string(so.Value) == "null" {
		return replaceSpan(body, so.ValStart, so.ValEnd, `{"include_usage":true}`), true
	}
	inner, iopen, err := members(so.Value)
	if err != nil {
		return body, false
	}
	iu, found, err := lookup(inner, "include_usage")
	switch {
	case err != nil:
		return body, false
	case !found:
		sep := ","
		if len(inner) == 0 {
			sep = ""
		}
		return insertAt(body, so.ValStart+iopen, `"include_usage":true`+sep), true
	case string(iu.Value) == "true":
		return body, false
	case string(iu.Value) == "false" || string(iu.Value) == "null":
		return replaceSpan(body, so.ValStart+iu.ValStart, so.ValStart+iu.ValEnd, "true"), true
	}
	return body, false
}

// stripChunk removes from a chat completion chunk what include_usage
// adds: it reports drop for the usage chunk itself (non-null "usage" and
// empty "choices"), and otherwise returns the chunk without a top-level
// "usage": null member.
func stripChunk(data []byte) (out []byte, drop bool) {
	if !bytes.Contains(data, []byte(`"usage"`)) {
		return data, false
	}
	// OpenAI puts "usage": null last. In valid JSON, a suffix
	// `,"usage":null}` is a member of the top-level object (the last "}"
	// closes it, and no string can hold the unescaped quotes), so it is
	// cut without decoding, when it is the only "usage" in the chunk.
	const tail = `,"usage":null}`
	if t := bytes.TrimRight(data, " \t\r\n"); bytes.HasSuffix(t, []byte(tail)) &&
		bytes.Count(data, []byte(`"usage"`)) == 1 && jsonobj.Valid(data) {
		out := make([]byte, 0, len(data))
		out = append(out, t[:len(t)-len(tail)]...)
		out = append(out, '}')
		return append(out, data[len(t):]...), false
	}
	ms, open, err := members(data)
	if err != nil {
		return data, false
	}
	for i, m := range ms {
		if !m.Is("usage") {
			continue
		}
		if string(m.Value) == "null" {
			return removeMember(data, ms, open, i), false
		}
		if c, found, err := lookup(ms, "choices"); err == nil && found && isEmptyArray(c.Value) {
			return nil, true
		}
		return data, false
	}
	return data, false
}

func isEmptyArray(v []byte) bool {
	v = bytes.TrimSpace(v)
	return len(v) >= 2 && v[0] == '[' && len(bytes.TrimSpace(v[1:len(v)-1])) == 0 && v[len(v)-1] == ']'
}
