package usage

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// member is one member of a JSON object, with byte offsets into the
// object's source.
type member struct {
	key string
	// start is where the text before the member begins: just after the
	// previous value, or after the opening brace for the first member.
	start int
	// valStart and valEnd delimit the member's value.
	valStart, valEnd int
	val              json.RawMessage
}

// errNotObject is returned for input that is not one JSON object.
var errNotObject = errors.New("not a JSON object")

// members returns the members of the JSON object src, in order, with
// their offsets, and the offset just after the opening brace. Keys are
// decoded (escapes resolved), as any JSON parser upstream would read them.
func members(src []byte) ([]member, int, error) {
	dec := json.NewDecoder(bytes.NewReader(src))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, 0, errNotObject
	}
	open := int(dec.InputOffset())
	var ms []member
	prev := open
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, 0, errNotObject
		}
		key, ok := tok.(string)
		if !ok {
			return nil, 0, errNotObject
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, 0, errNotObject
		}
		end := int(dec.InputOffset())
		ms = append(ms, member{key: key, start: prev, valStart: end - len(v), valEnd: end, val: v})
		prev = end
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, 0, errNotObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, 0, errNotObject
	}
	return ms, open, nil
}

// lookup returns the member named key, requiring it to be the only member
// whose name equals key ignoring case: some decoders match names without
// regard to case, others take the first or the last of duplicates, and
// sessctl must read what the upstream will. found is false when there is
// no such member.
func lookup(ms []member, key string) (m member, found bool, err error) {
	for _, x := range ms {
		if !equalFold(x.key, key) {
			continue
		}
		if found || x.key != key {
			return member{}, false, errAmbiguous
		}
		m, found = x, true
	}
	return m, found, nil
}

// errAmbiguous reports a member that could be read two ways.
var errAmbiguous = errors.New("ambiguous: several members could be read as this one")

// equalFold is strings.EqualFold: the rule encoding/json uses for names.
func equalFold(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }

// removeMember returns src (an object with members ms, opening brace
// ending at open) without member i, its separating comma and the space
// around it.
func removeMember(src []byte, ms []member, open, i int) []byte {
	out := make([]byte, 0, len(src))
	if i > 0 {
		// Drop ", "key": value" : from the end of the previous value.
		out = append(out, src[:ms[i].start]...)
		return append(out, src[ms[i].valEnd:]...)
	}
	if len(ms) == 1 {
		// The only member: keep the braces.
		end := ms[0].valEnd
		out = append(out, src[:open]...)
		return append(out, src[end:]...)
	}
	// The first of several: drop up to the next member's key.
	out = append(out, src[:open]...)
	rest := src[ms[0].valEnd:]
	j := bytes.IndexByte(rest, ',')
	rest = bytes.TrimLeft(rest[j+1:], " \t\r\n")
	return append(out, rest...)
}

// insertAt returns src with s inserted at offset i.
func insertAt(src []byte, i int, s string) []byte {
	out := make([]byte, 0, len(src)+len(s))
	out = append(out, src[:i]...)
	out = append(out, s...)
	return append(out, src[i:]...)
}

// replaceSpan returns src with src[i:j] replaced by s.
func replaceSpan(src []byte, i, j int, s string) []byte {
	out := make([]byte, 0, len(src)+len(s))
	out = append(out, src[:i]...)
	out = append(out, s...)
	return append(out, src[j:]...)
}
