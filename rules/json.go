package rules

import (
	"bytes"
	"encoding/binary"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds a small JSON reader that keeps byte offsets, so that the
// maskers can rewrite only the strings they change and pass every other byte
// through as it came.

const maxDepth = 10000

// jkind is the kind of a JSON value.
type jkind uint8

const (
	jString jkind = iota + 1
	jNumber
	jLiteral // true, false, null
	jObject
	jArray
)

// jnode is a parsed JSON value with its span in the source. For objects,
// keys[i] is the key of elems[i].
type jnode struct {
	kind       jkind
	start, end int
	keys       []jnode
	elems      []jnode
}

// jparser reads one JSON value. With tree set it builds jnodes; it always
// records the span of every string (keys included) in strs.
type jparser struct {
	src  []byte
	pos  int
	tree bool
	strs []span
	bad  bool
	// The members of the objects and arrays being read wait in stack;
	// each object or array, once read, moves its own into nodes, where
	// its keys and elems slices point.
	stack []jnode
	nodes []jnode
}

// jscratch keeps the buffers of a parse for the next one: a parse with it
// allocates nothing once they have grown, and makes the tree of the
// previous parse with it invalid.
type jscratch struct {
	stack, nodes []jnode
	strs         []span
}

// parse is parseJSON with the buffers of sc.
func (sc *jscratch) parse(src []byte) (jnode, []span, bool) {
	p := &jparser{src: src, tree: true, strs: sc.strs[:0], stack: sc.stack[:0], nodes: sc.nodes[:0]}
	n, ok := p.parse()
	sc.strs, sc.stack, sc.nodes = p.strs, p.stack, p.nodes
	if !ok {
		return jnode{}, nil, false
	}
	return n, p.strs, true
}

// members moves the elements pushed on the stack since mark into nodes
// and returns them.
func (p *jparser) members(mark int) []jnode {
	n := len(p.stack) - mark
	base := len(p.nodes)
	p.nodes = append(p.nodes, p.stack[mark:]...)
	p.stack = p.stack[:mark]
	return p.nodes[base : base+n : base+n]
}

// pairs moves the keys and values pushed on the stack since mark, in
// turn, into nodes and returns them.
func (p *jparser) pairs(mark int) (keys, elems []jnode) {
	n := (len(p.stack) - mark) / 2
	base := len(p.nodes)
	for i := mark; i < len(p.stack); i += 2 {
		p.nodes = append(p.nodes, p.stack[i])
	}
	for i := mark + 1; i < len(p.stack); i += 2 {
		p.nodes = append(p.nodes, p.stack[i])
	}
	p.stack = p.stack[:mark]
	return p.nodes[base : base+n : base+n], p.nodes[base+n : base+2*n : base+2*n]
}

// span is a string token: src[start:end] includes the quotes; esc reports a
// backslash inside.
type span struct {
	start, end int
	esc        bool
	key        bool
}

// scanJSON validates src as one JSON value and returns the spans of all its
// strings, in order.
func scanJSON(src []byte) ([]span, bool) {
	p := &jparser{src: src}
	p.ws()
	p.value(0)
	p.ws()
	if p.bad || p.pos != len(src) {
		return nil, false
	}
	return p.strs, true
}

// parseJSON parses src as one JSON value into a tree.
func parseJSON(src []byte) (jnode, []span, bool) {
	p := &jparser{src: src, tree: true}
	n, ok := p.parse()
	if !ok {
		return jnode{}, nil, false
	}
	return n, p.strs, true
}

func (p *jparser) parse() (jnode, bool) {
	p.ws()
	n := p.value(0)
	p.ws()
	return n, !p.bad && p.pos == len(p.src)
}

func (p *jparser) ws() {
	for p.pos < len(p.src) {
		switch p.src[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jparser) fail() jnode {
	p.bad = true
	return jnode{}
}

func (p *jparser) value(depth int) jnode {
	if p.bad || p.pos >= len(p.src) || depth > maxDepth {
		return p.fail()
	}
	switch c := p.src[p.pos]; {
	case c == '"':
		return p.str(false)
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == 't':
		return p.word("true")
	case c == 'f':
		return p.word("false")
	case c == 'n':
		return p.word("null")
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	}
	return p.fail()
}

func (p *jparser) word(w string) jnode {
	start := p.pos
	if len(p.src)-p.pos < len(w) || string(p.src[p.pos:p.pos+len(w)]) != w {
		return p.fail()
	}
	p.pos += len(w)
	return jnode{kind: jLiteral, start: start, end: p.pos}
}

func (p *jparser) digits() int {
	n := 0
	for p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '9' {
		p.pos++
		n++
	}
	return n
}

func (p *jparser) number() jnode {
	start := p.pos
	if p.src[p.pos] == '-' {
		p.pos++
	}
	if p.pos < len(p.src) && p.src[p.pos] == '0' {
		p.pos++
	} else if p.digits() == 0 {
		return p.fail()
	}
	if p.pos < len(p.src) && p.src[p.pos] == '.' {
		p.pos++
		if p.digits() == 0 {
			return p.fail()
		}
	}
	if p.pos < len(p.src) && (p.src[p.pos] == 'e' || p.src[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.src) && (p.src[p.pos] == '+' || p.src[p.pos] == '-') {
			p.pos++
		}
		if p.digits() == 0 {
			return p.fail()
		}
	}
	return jnode{kind: jNumber, start: start, end: p.pos}
}

// str reads a string token; p.src[p.pos] is the opening quote.
func (p *jparser) str(key bool) jnode {
	start := p.pos
	i := p.pos + 1
	esc := false
	for {
		// Skip plain bytes quickly: eight at a time, then one by one.
		for i+8 <= len(p.src) && !stopIn8(binary.LittleEndian.Uint64(p.src[i:])) {
			i += 8
		}
		for i < len(p.src) && !strStop[p.src[i]] {
			i++
		}
		if i >= len(p.src) {
			return p.fail()
		}
		c := p.src[i]
		if c == '"' {
			break
		}
		if c < 0x20 {
			return p.fail()
		}
		// A backslash escape.
		esc = true
		if i+1 >= len(p.src) {
			return p.fail()
		}
		switch p.src[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			if i+6 > len(p.src) {
				return p.fail()
			}
			for _, h := range p.src[i+2 : i+6] {
				if unhex(h) < 0 {
					return p.fail()
				}
			}
			i += 6
		default:
			return p.fail()
		}
	}
	p.pos = i + 1
	p.strs = append(p.strs, span{start: start, end: p.pos, esc: esc, key: key})
	return jnode{kind: jString, start: start, end: p.pos}
}

func (p *jparser) object(depth int) jnode {
	n := jnode{kind: jObject, start: p.pos}
	p.pos++
	p.ws()
	if p.pos < len(p.src) && p.src[p.pos] == '}' {
		p.pos++
		n.end = p.pos
		return n
	}
	mark := len(p.stack)
	for {
		p.ws()
		if p.pos >= len(p.src) || p.src[p.pos] != '"' {
			return p.fail()
		}
		k := p.str(true)
		p.ws()
		if p.bad || p.pos >= len(p.src) || p.src[p.pos] != ':' {
			return p.fail()
		}
		p.pos++
		p.ws()
		v := p.value(depth + 1)
		if p.bad {
			return jnode{}
		}
		if p.tree {
			p.stack = append(p.stack, k, v)
		}
		if !p.more('}') {
			if p.bad {
				return jnode{}
			}
			n.end = p.pos
			if p.tree {
				n.keys, n.elems = p.pairs(mark)
			}
			return n
		}
	}
}

func (p *jparser) array(depth int) jnode {
	n := jnode{kind: jArray, start: p.pos}
	p.pos++
	p.ws()
	if p.pos < len(p.src) && p.src[p.pos] == ']' {
		p.pos++
		n.end = p.pos
		return n
	}
	mark := len(p.stack)
	for {
		p.ws()
		v := p.value(depth + 1)
		if p.bad {
			return jnode{}
		}
		if p.tree {
			p.stack = append(p.stack, v)
		}
		if !p.more(']') {
			if p.bad {
				return jnode{}
			}
			n.end = p.pos
			if p.tree {
				n.elems = p.members(mark)
			}
			return n
		}
	}
}

// more reads the separator after a member or element: ',' means more
// follow (true); the closing byte ends the object or array (false, with
// p.pos past it); anything else fails the parse (false, p.bad set).
func (p *jparser) more(closing byte) bool {
	p.ws()
	switch {
	case p.pos >= len(p.src):
		p.fail()
	case p.src[p.pos] == ',':
		p.pos++
		return true
	case p.src[p.pos] == closing:
		p.pos++
	default:
		p.fail()
	}
	return false
}

func unhex(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// appendUnquote appends the decoded content of the valid JSON string token
// tok (quotes included) to dst. Invalid UTF-8 is kept as is; lone
// surrogates become U+FFFD, as encoding/json does.
func appendUnquote(dst, tok []byte) []byte {
	s := tok[1 : len(tok)-1]
	for len(s) > 0 {
		i := bytes.IndexByte(s, '\\')
		if i < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		r, n := unescape(s[i:])
		dst = utf8.AppendRune(dst, r)
		s = s[i+n:]
	}
	return dst
}

// unescape decodes the escape at the start of s (valid JSON) and returns
// the rune and the escape's length.
func unescape(s []byte) (rune, int) {
	switch s[1] {
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'u':
		r := hex4(s[2:6])
		if !utf16.IsSurrogate(r) {
			return r, 6
		}
		if len(s) >= 12 && s[6] == '\\' && s[7] == 'u' {
			if r2 := utf16.DecodeRune(r, hex4(s[8:12])); r2 != utf8.RuneError {
				return r2, 12
			}
		}
		return utf8.RuneError, 6
	}
	return rune(s[1]), 2 // '"', '\\', '/'
}

func hex4(b []byte) rune {
	return unhex(b[0])<<12 | unhex(b[1])<<8 | unhex(b[2])<<4 | unhex(b[3])
}

// appendQuote appends s as a JSON string token. Invalid UTF-8 becomes
// U+FFFD; U+2028 and U+2029 are escaped, as encoding/json does.
func appendQuote(dst, s []byte) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, s)
	return append(dst, '"')
}

// stopIn8 reports whether the eight bytes of v may hold a quote, a
// backslash or a control byte (it may say yes when they do not).
func stopIn8(v uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	zero := func(x uint64) uint64 { return (x - lo) & ^x & hi }
	return ((v-lo*0x20)&^v&hi)|zero(v^(lo*'"'))|zero(v^(lo*'\\')) != 0
}

// strStop marks the bytes that end a run of plain bytes in a JSON string.
var strStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// plain marks the ASCII bytes that stand for themselves in a JSON string.
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendEscaped appends s as the content of a JSON string token.
func appendEscaped(dst, s []byte) []byte {
	const hexDigits = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, w := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && w == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += w
			start = i
			continue
		}
		i += w
	}
	return append(dst, s[start:]...)
}

// get returns the value of key in object n of src, or nil.
func (n *jnode) get(src []byte, key string) *jnode {
	if n == nil || n.kind != jObject {
		return nil
	}
	for i := range n.keys {
		if n.keys[i].is(src, key) {
			return &n.elems[i]
		}
	}
	return nil
}

// is reports whether n is a string node with value s.
func (n *jnode) is(src []byte, s string) bool {
	if n == nil || n.kind != jString {
		return false
	}
	tok := src[n.start+1 : n.end-1]
	if bytes.IndexByte(tok, '\\') < 0 {
		return string(tok) == s
	}
	return n.text(src) == s
}

// text returns the decoded value of a string node ("" for other kinds).
func (n *jnode) text(src []byte) string {
	if n == nil || n.kind != jString {
		return ""
	}
	tok := src[n.start:n.end]
	for _, c := range tok[1 : len(tok)-1] {
		if c == '\\' {
			return string(appendUnquote(nil, tok))
		}
	}
	return string(tok[1 : len(tok)-1])
}

// raw returns the source bytes of n.
func (n *jnode) raw(src []byte) []byte {
	if n == nil {
		return nil
	}
	return src[n.start:n.end]
}

// isString reports whether n is a string node.
func (n *jnode) isString() bool { return n != nil && n.kind == jString }
