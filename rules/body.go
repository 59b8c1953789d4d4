package rules

import (
	"bytes"
	"sort"
	"unicode/utf8"
)

// Hit says that a rule fired, where, and how many times.
type Hit struct {
	Rule   string
	Action Action
	Scope  string // ScopeRequest or ScopeResponse
	Count  int
}

// Result is the outcome of applying a set to a body or a stream.
type Result struct {
	// Body is the masked body: the input itself when nothing was masked,
	// valid JSON when the input was. Content-Length is the caller's job.
	Body []byte
	// Hits lists the rules that fired, in rule order.
	Hits []Hit
	// Block is the first block rule (in rule order) that fired, if any.
	Block *Rule
	// Approve is the first approve rule (in rule order) that fired, if any.
	Approve *Rule
	// Secrets are the distinct raw values that were masked. The caller
	// may keep an HMAC of each (see SecretHMAC), never the values.
	Secrets [][]byte
	// InThinking is set when Block is a mask rule that matched inside an
	// Anthropic thinking block, which is signed and so never edited: the
	// answer must be refused instead (see ResponseIn).
	InThinking bool
}

// tally accumulates what fired during one body or one stream.
type tally struct {
	m       *matcher
	scope   string
	counts  []int
	peaks   []int // highest count seen in one repeated text (streams)
	secrets [][]byte
	seen    map[string]bool
}

func newTally(m *matcher, scope string) *tally {
	return &tally{m: m, scope: scope, counts: make([]int, len(m.rules)), peaks: make([]int, len(m.rules))}
}

// add counts hits in text (hit offsets relative to text) into counts.
func (t *tally) add(counts []int, text []byte, hits []hit) {
	for _, h := range hits {
		counts[h.rule]++
		if t.m.rules[h.rule].Action != Mask {
			continue
		}
		v := text[h.start:h.end]
		if t.seen == nil {
			t.seen = map[string]bool{}
		}
		if !t.seen[string(v)] {
			t.seen[string(v)] = true
			t.secrets = append(t.secrets, append([]byte(nil), v...))
		}
	}
}

// firstFired returns the first rule in order with action a that fired.
func (t *tally) firstFired(a Action) *compiled {
	for r, c := range t.m.rules {
		if c.Action == a && (t.counts[r] > 0 || t.peaks[r] > 0) {
			return c
		}
	}
	return nil
}

func (t *tally) result() Result {
	var res Result
	for r, c := range t.m.rules {
		if n := max(t.counts[r], t.peaks[r]); n > 0 {
			res.Hits = append(res.Hits, Hit{Rule: c.Name, Action: c.Action, Scope: t.scope, Count: n})
		}
	}
	if c := t.firstFired(Block); c != nil {
		res.Block = c.public()
	}
	if c := t.firstFired(Approve); c != nil {
		res.Approve = c.public()
	}
	res.Secrets = t.secrets
	return res
}

// public returns a copy of the rule as written.
func (c *compiled) public() *Rule {
	r := c.Rule
	r.Scope = append([]string(nil), c.Scope...)
	r.Allow = append([]string(nil), c.Allow...)
	return &r
}

// maskSpan is a span of text to replace.
type maskSpan struct {
	start, end int
	repl       []byte
}

// maskSpans returns the spans to replace for the mask hits, sorted by
// start (hits are). Overlapping masks merge into one span, replaced by the
// replacement of the earliest.
func maskSpans(hits []hit, m *matcher) []maskSpan {
	var out []maskSpan
	for i := 0; i < len(hits); {
		h := hits[i]
		c := m.rules[h.rule]
		if c.Action != Mask {
			i++
			continue
		}
		end := h.end
		j := i + 1
		for ; j < len(hits) && hits[j].start < end; j++ {
			if m.rules[hits[j].rule].Action == Mask {
				end = max(end, hits[j].end)
			}
		}
		out = append(out, maskSpan{start: h.start, end: end, repl: c.replace})
		i = j
	}
	return out
}

// applyMasks appends text to dst with the mask hits (sorted by start,
// relative to text) replaced.
func applyMasks(dst, text []byte, hits []hit, m *matcher) []byte {
	pos := 0
	for _, sp := range maskSpans(hits, m) {
		dst = append(dst, text[pos:sp.start]...)
		dst = append(dst, sp.repl...)
		pos = sp.end
	}
	return append(dst, text[pos:]...)
}

// applyMasksJSON is applyMasks for text that is itself JSON text (tool
// arguments streamed as raw JSON): a replacement is escaped as the content
// of a JSON string, and a masked span never splits an escape sequence (it
// grows over the whole sequence), so that masked JSON text stays valid
// JSON wherever a secret lies inside a string.
func applyMasksJSON(dst, text []byte, hits []hit, m *matcher) []byte {
	pos := 0
	for _, sp := range maskSpans(hits, m) {
		start, end := max(sp.start, pos), sp.end
		if start >= end {
			continue
		}
		// A span that starts just after an escaping backslash takes it.
		if start > pos && oddBackslashesBefore(text, start) {
			start--
		}
		// A span that ends in an escaping backslash takes the escape.
		if oddBackslashesBefore(text, end) && end < len(text) {
			n := 1
			if text[end] == 'u' {
				n = 5
			}
			end = min(len(text), end+n)
		}
		dst = append(dst, text[pos:start]...)
		dst = appendEscaped(dst, sp.repl)
		pos = end
	}
	return append(dst, text[pos:]...)
}

// oddBackslashesBefore reports whether text[:i] ends in an odd run of
// backslashes: the byte at i is escaped.
func oddBackslashesBefore(text []byte, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && text[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// hasMask reports whether any hit masks.
func hasMask(hits []hit, m *matcher) bool {
	for _, h := range hits {
		if m.rules[h.rule].Action == Mask {
			return true
		}
	}
	return false
}

// Request applies the request rules to a request body. A JSON body has
// every string (keys included: messages, tool outputs, instructions, the
// Responses API input, ...) scanned as decoded text, and the masked strings
// re-encoded; the rest of the body is kept byte for byte. Any other body
// is scanned, and masked, as text.
func (s *Set) Request(body []byte) Result {
	return s.body(s.req, ScopeRequest, body)
}

// Response applies the response rules to a non-streaming response body, as
// Request does for requests.
func (s *Set) Response(body []byte) Result {
	return s.body(s.resp, ScopeResponse, body)
}

func (s *Set) body(m *matcher, scope string, body []byte) Result {
	t := newTally(m, scope)
	out := maskBody(m, t, t.counts, body, nil)
	if scope == ScopeResponse && len(t.secrets) > 0 && bytes.Contains(out, []byte(`"logprobs"`)) {
		// Log probabilities would give the masked tokens away.
		if root, _, ok := parseJSON(out); ok {
			out = applyEdits(out, dropEdits(logprobNodes(out, &root, nil)))
		}
	}
	res := t.result()
	res.Body = out
	return res
}

// maskBody masks a JSON or text body, counting into counts. skip lists
// string spans (by start offset) to leave alone. It returns body itself
// when nothing changes.
func maskBody(m *matcher, t *tally, counts []int, body []byte, skip map[int]bool) []byte {
	if len(m.rules) == 0 {
		return body
	}
	spans, ok := scanJSON(body)
	if !ok {
		hits := m.find(body, []seg{{0, len(body), 0}})
		t.add(counts, body, hits)
		if !hasMask(hits, m) {
			return body
		}
		return applyMasks(make([]byte, 0, len(body)+len(body)/8), body, hits, m)
	}
	return maskStrings(m, t, counts, body, spans, skip)
}

// maskStrings scans the given JSON string spans of src as decoded texts and
// returns src with the masked ones re-encoded (src itself if none).
func maskStrings(m *matcher, t *tally, counts []int, src []byte, spans []span, skip map[int]bool) []byte {
	return applyEdits(src, maskEdits(m, t, counts, src, spans, skip))
}

// edit replaces src[start:end] with repl.
type edit struct {
	start, end int
	repl       []byte
}

// applyEdits returns src with the edits (sorted, disjoint) applied; src
// itself when there are none.
func applyEdits(src []byte, edits []edit) []byte {
	if len(edits) == 0 {
		return src
	}
	n := len(src)
	for _, e := range edits {
		n += len(e.repl) - (e.end - e.start)
	}
	out := make([]byte, 0, n)
	pos := 0
	for _, e := range edits {
		out = append(out, src[pos:e.start]...)
		out = append(out, e.repl...)
		pos = e.end
	}
	return append(out, src[pos:]...)
}

// maskEdits scans the JSON string spans of src (but those whose start is in
// skip) as decoded texts and returns the edits that mask them.
func maskEdits(m *matcher, t *tally, counts []int, src []byte, spans []span, skip map[int]bool) []edit {
	if len(skip) > 0 {
		kept := make([]span, 0, len(spans))
		for _, sp := range spans {
			if !skip[sp.start] {
				kept = append(kept, sp)
			}
		}
		spans = kept
	}
	if len(spans) == 0 || len(m.rules) == 0 {
		return nil
	}
	buf := make([]byte, 0, len(src))
	segs := make([]seg, len(spans))
	for i, sp := range spans {
		st := len(buf)
		if sp.esc {
			buf = appendUnquote(buf, src[sp.start:sp.end])
		} else {
			buf = append(buf, src[sp.start+1:sp.end-1]...)
		}
		segs[i] = seg{start: st, end: len(buf), from: st}
	}
	hits := m.find(buf, segs)
	if len(hits) == 0 {
		return nil
	}
	t.add(counts, buf, hits)
	var edits []edit
	for i := 0; i < len(hits); {
		si := sort.Search(len(segs), func(k int) bool { return segs[k].end > hits[i].start })
		sg := segs[si]
		j := i
		for j < len(hits) && hits[j].start < sg.end {
			j++
		}
		local := make([]hit, j-i)
		for k, h := range hits[i:j] {
			h.start -= sg.start
			h.end -= sg.start
			h.mstart -= sg.start
			h.mend -= sg.start
			local[k] = h
		}
		i = j
		ms := maskSpans(local, m)
		if len(ms) == 0 {
			continue
		}
		// Replace only the masked bytes of the token, so that the rest
		// keeps its escapes as they came.
		sp := spans[si]
		tok := src[sp.start:sp.end]
		offs := make([]int, 0, 2*len(ms))
		for _, x := range ms {
			offs = append(offs, x.start, x.end)
		}
		raw, ok := rawOffsets(tok, offs)
		if !ok {
			edits = append(edits, edit{start: sp.start, end: sp.end,
				repl: appendQuote(nil, applyMasks(nil, buf[sg.start:sg.end], local, m))})
			continue
		}
		for k, x := range ms {
			edits = append(edits, edit{start: sp.start + raw[2*k], end: sp.start + raw[2*k+1],
				repl: appendEscaped(nil, x.repl)})
		}
	}
	return edits
}

// rawOffsets maps offsets (ascending) in the decoded content of the valid
// JSON string token tok to offsets in tok. ok is false if one falls inside
// the decoding of an escape.
func rawOffsets(tok []byte, offs []int) ([]int, bool) {
	out := make([]int, len(offs))
	i, d := 1, 0 // raw and decoded positions
	for k, off := range offs {
		for d < off {
			if j := bytes.IndexByte(tok[i:len(tok)-1], '\\'); j != 0 {
				// Plain bytes up to the next escape (or the end).
				if j < 0 {
					j = len(tok) - 1 - i
				}
				n := min(j, off-d)
				if n == 0 {
					return nil, false // off is past the end
				}
				i += n
				d += n
				continue
			}
			r, n := unescape(tok[i:])
			i += n
			d += utf8.RuneLen(r)
			if d > off {
				return nil, false
			}
		}
		out[k] = i
	}
	return out, true
}

// lastRune returns the last rune of b as bytes (empty if b is).
func lastRune(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	_, w := utf8.DecodeLastRune(b)
	return append([]byte(nil), b[len(b)-w:]...)
}

// ResponseIn is Response for an answer in dialect d. In an Anthropic
// message, thinking blocks are signed and must not be edited: when a mask
// rule matches in a thinking block's text, Block is that rule and
// InThinking is set, so that the caller refuses the answer (Body is still
// the masked answer, for the record). Signatures and redacted thinking
// are the provider's opaque data, not the model's text: they are not
// scanned.
func (s *Set) ResponseIn(body []byte, d Dialect) Result {
	if d != DialectAnthropic {
		return s.Response(body)
	}
	root, spans, ok := parseJSON(body)
	if !ok || root.kind != jObject || len(s.resp.rules) == 0 {
		return s.Response(body)
	}
	content := root.get(body, "content")
	skip := map[int]bool{}
	for _, n := range anthropicOpaque(body, content, nil) {
		skip[n.start] = true
	}
	var thinking *compiled
	if content != nil && content.kind == jArray {
		for i := range content.elems {
			b := &content.elems[i]
			th := b.get(body, "thinking")
			if b.get(body, "type").text(body) != "thinking" || !th.isString() {
				continue
			}
			text := appendUnquote(nil, th.raw(body))
			hits := s.resp.find(text, []seg{{start: 0, end: len(text), from: 0}})
			for _, h := range hits {
				if c := s.resp.rules[h.rule]; thinking == nil && c.Action == Mask {
					thinking = c
				}
			}
		}
	}
	t := newTally(s.resp, ScopeResponse)
	res := t.resultWith(applyEdits(body, maskEdits(s.resp, t, t.counts, body, spans, skip)))
	if thinking != nil && res.Block == nil {
		res.Block, res.InThinking = thinking.public(), true
	}
	return res
}

// resultWith is result with Body set.
func (t *tally) resultWith(body []byte) Result {
	res := t.result()
	res.Body = body
	return res
}
