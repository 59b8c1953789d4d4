// Package jsonobj reads the top-level members of a JSON object in one
// pass over its bytes: where each member's name and value lie, with every
// value checked against the JSON grammar as encoding/json checks it, but
// nothing decoded and nothing copied.
//
// It is what the request path uses to find one member ("model",
// "stream", "usage") in a body without decoding the whole body.
package jsonobj

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// ErrNotObject is returned for input that is not one JSON object
// (optionally surrounded by white space).
var ErrNotObject = errors.New("not a JSON object")

// maxDepth is how deeply one member's value may nest arrays and objects:
// encoding/json's limit for one value.
const maxDepth = 10000

// Member is one member of an object, as offsets into the object's source.
type Member struct {
	// Start is where the text before the member begins: just after the
	// previous member's value, or just after the opening brace.
	Start int
	// Key is the member's name as written, between its quotes (escapes
	// not resolved).
	Key []byte
	// ValStart and ValEnd delimit the value (without surrounding space).
	ValStart, ValEnd int
	// Value is the value's source text, src[ValStart:ValEnd].
	Value []byte
	// plain: Key has no escape and is valid UTF-8, so it is its own
	// decoding.
	plain bool
}

// Name returns the member's name decoded, as encoding/json decodes it
// (escapes resolved, invalid UTF-8 replaced by U+FFFD).
func (m Member) Name() string {
	if m.plain {
		return string(m.Key)
	}
	var s string
	q := make([]byte, 0, len(m.Key)+2)
	q = append(append(append(q, '"'), m.Key...), '"')
	if json.Unmarshal(q, &s) != nil {
		// Not reached: the key was checked when it was scanned.
		return string(m.Key)
	}
	return s
}

// Is reports whether the member's decoded name is name.
func (m Member) Is(name string) bool {
	if m.plain {
		return string(m.Key) == name
	}
	return m.Name() == name
}

// Fold reports whether the member's decoded name equals name under
// Unicode case folding (bytes.EqualFold), the rule by which encoding/json
// matches a name to a struct field.
func (m Member) Fold(name string) bool {
	if m.plain {
		return bytes.EqualFold(m.Key, []byte(name))
	}
	return bytes.EqualFold([]byte(m.Name()), []byte(name))
}

// Members returns the members of the JSON object src in order, appended
// to dst[:0], and the offset just after the opening brace. Each value may
// nest up to 10000 levels, as a value read with a json.Decoder. Values are
// sub-slices of src.
func Members(src []byte, dst []Member) ([]Member, int, error) {
	p := scanner{s: src}
	ms := dst[:0]
	p.space()
	if !p.byte('{') {
		return nil, 0, ErrNotObject
	}
	open := p.i
	prev := open
	p.space()
	if !p.byte('}') {
		for {
			if p.i >= len(p.s) || p.s[p.i] != '"' {
				return nil, 0, ErrNotObject
			}
			ks := p.i + 1
			esc, ok := p.str()
			if !ok {
				return nil, 0, ErrNotObject
			}
			key := src[ks : p.i-1]
			p.space()
			if !p.byte(':') {
				return nil, 0, ErrNotObject
			}
			p.space()
			vs := p.i
			if !p.value(0) {
				return nil, 0, ErrNotObject
			}
			ms = append(ms, Member{Start: prev, Key: key, ValStart: vs, ValEnd: p.i, Value: src[vs:p.i], plain: !esc && utf8.Valid(key)})
			prev = p.i
			p.space()
			if p.byte(',') {
				p.space()
				continue
			}
			if p.byte('}') {
				break
			}
			return nil, 0, ErrNotObject
		}
	}
	p.space()
	if p.i != len(p.s) {
		return nil, 0, ErrNotObject
	}
	return ms, open, nil
}

// Valid reports whether src is one JSON value (optionally surrounded by
// white space) nesting at most 10000 levels.
func Valid(src []byte) bool {
	p := scanner{s: src}
	p.space()
	if !p.value(0) {
		return false
	}
	p.space()
	return p.i == len(p.s)
}

// scanner walks JSON text; each method advances i past what it accepts
// and reports false at the first byte the grammar does not allow.
type scanner struct {
	s []byte
	i int
}

func (p *scanner) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte consumes c if it is next.
func (p *scanner) byte(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// value accepts one value; depth is the nesting of the enclosing value.
func (p *scanner) value(depth int) bool {
	if p.i >= len(p.s) {
		return false
	}
	switch c := p.s[p.i]; {
	case c == '"':
		_, ok := p.str()
		return ok
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return false
}

func (p *scanner) literal(lit string) bool {
	if len(p.s)-p.i >= len(lit) && string(p.s[p.i:p.i+len(lit)]) == lit {
		p.i += len(lit)
		return true
	}
	return false
}

func (p *scanner) object(depth int) bool {
	if depth > maxDepth {
		return false
	}
	p.i++ // {
	p.space()
	if p.byte('}') {
		return true
	}
	for {
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return false
		}
		if _, ok := p.str(); !ok {
			return false
		}
		p.space()
		if !p.byte(':') {
			return false
		}
		p.space()
		if !p.value(depth) {
			return false
		}
		p.space()
		if p.byte(',') {
			p.space()
			continue
		}
		return p.byte('}')
	}
}

func (p *scanner) array(depth int) bool {
	if depth > maxDepth {
		return false
	}
	p.i++ // [
	p.space()
	if p.byte(']') {
		return true
	}
	for {
		if !p.value(depth) {
			return false
		}
		p.space()
		if p.byte(',') {
			p.space()
			continue
		}
		return p.byte(']')
	}
}

// str accepts a string starting at its opening quote, and reports whether
// it holds an escape.
func (p *scanner) str() (escaped, ok bool) {
	p.i++ // "
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return escaped, true
		case c == '\\':
			escaped = true
			p.i++
			if p.i >= len(p.s) {
				return escaped, false
			}
			switch p.s[p.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i++
			case 'u':
				if len(p.s)-p.i < 5 {
					return escaped, false
				}
				for _, h := range p.s[p.i+1 : p.i+5] {
					if !isHex(h) {
						return escaped, false
					}
				}
				p.i += 5
			default:
				return escaped, false
			}
		case c < 0x20:
			return escaped, false
		default:
			p.i++
		}
	}
	return escaped, false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (p *scanner) number() bool {
	p.byte('-')
	switch {
	case p.byte('0'):
	case p.i < len(p.s) && p.s[p.i] >= '1' && p.s[p.i] <= '9':
		p.digits()
	default:
		return false
	}
	if p.byte('.') {
		if !p.digits() {
			return false
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if !p.byte('+') {
			p.byte('-')
		}
		if !p.digits() {
			return false
		}
	}
	return true
}

// digits accepts one or more decimal digits.
func (p *scanner) digits() bool {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}
