package usage

import (
	"bytes"
	"errors"

	"github.com/sessctl/sessctl/internal/jsonobj"
)

// member is one member of a JSON object, with byte offsets into the
// object's source (see jsonobj.Member).
type member = jsonobj.Member

// errNotObject is returned for input that is not one JSON object.
var errNotObject = jsonobj.ErrNotObject

// members returns the members of the JSON object src, in order, with
// their offsets, and the offset just after the opening brace. Keys are
// read decoded (escapes resolved), as any JSON parser upstream would read
// them. It reads src in one pass, without copying it.
func members(src []byte) ([]member, int, error) {
	return jsonobj.Members(src, make([]member, 0, 8))
}

// lookup returns the member named key, requiring it to be the only member
// whose name equals key ignoring case: some decoders match names without
// regard to case, others take the first or the last of duplicates, and
// sessctl must read what the upstream will. found is false when there is
// no such member.
func lookup(ms []member, key string) (m member, found bool, err error) {
	for _, x := range ms {
		if !x.Fold(key) {
			continue
		}
		if found || !x.Is(key) {
			return member{}, false, errAmbiguous
		}
		m, found = x, true
	}
	return m, found, nil
}

// errAmbiguous reports a member that could be read two ways.
var errAmbiguous = errors.New("ambiguous: several members could be read as this one")

// removeMember returns src (an object with members ms, opening brace
// ending at open) without member i, its separating comma and the space
// around it.
func removeMember(src []byte, ms []member, open, i int) []byte {
	out := make([]byte, 0, len(src))
	if i > 0 {
		// Drop ", "key": value" : from the end of the previous value.
		out = append(out, src[:ms[i].Start]...)
		return append(out, src[ms[i].ValEnd:]...)
	}
	if len(ms) == 1 {
		// The only member: keep the braces.
		end := ms[0].ValEnd
		out = append(out, src[:open]...)
		return append(out, src[end:]...)
	}
	// The first of several: drop up to the next member's key.
	out = append(out, src[:open]...)
	rest := src[ms[0].ValEnd:]
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
