package rules

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrBlocked is returned by the stream maskers once a block (or approve)
// rule has fired in an answer: the stream has been ended with an error
// event and nothing more will be written.
var ErrBlocked = errors.New("rules: answer blocked by a rule")

// StreamOptions tune the stream maskers.
type StreamOptions struct {
	// Holdback bounds how long a partial match may be, in bytes, and
	// still be followed, per text stream (rules may raise it for
	// themselves with Rule.Holdback): of its text, what could belong to
	// the masked value is held back, the rest is released and kept as
	// context. Default 256.
	Holdback int
	// MaxEvent bounds the size of one SSE event. Default 16 MiB.
	MaxEvent int
	// Dialect is the format of the stream's events (default OpenAI's).
	Dialect Dialect
}

// Dialect names a format of streamed JSON events: which members carry
// text that arrives in pieces, which events end a text, and how the error
// event that ends a blocked answer is shaped.
type Dialect uint8

// Dialects.
const (
	// DialectOpenAI is OpenAI's: chat completion chunks and Responses API
	// events (also Azure OpenAI's).
	DialectOpenAI Dialect = iota
	// DialectAnthropic is Anthropic's Messages stream: content_block_delta
	// events carry text, tool input JSON and thinking, per content block.
	DialectAnthropic
)

// DefaultHoldback is the stream masker's held-back tail when
// StreamOptions.Holdback is zero; config.Default's stream_holdback is it.
const DefaultHoldback = 256

const defaultMaxEvent = 16 << 20

func (o StreamOptions) withDefaults() StreamOptions {
	if o.Holdback <= 0 {
		o.Holdback = DefaultHoldback
	}
	if o.MaxEvent <= 0 {
		o.MaxEvent = defaultMaxEvent
	}
	return o
}

// TerminalEvents returns the types of the events that end an answer of
// OpenAI's Responses API, streamed (SSE) or over a WebSocket: it has
// completed, failed or stopped incomplete, or an error event ended it.
// The stream maskers end every text stream on one, and the proxy completes
// a WebSocket answer's record on one.
func TerminalEvents() []string {
	return []string{"response.completed", "response.failed", "response.incomplete", "error"}
}

// IsTerminalEvent reports whether an event of type typ ends an answer
// (see TerminalEvents).
func IsTerminalEvent(typ string) bool {
	return slices.Contains(TerminalEvents(), typ)
}

// EventMasker masks a stream of JSON events (the data of SSE events, or
// WebSocket messages) of one answer. Text that arrives in pieces (chat
// completion deltas, Responses API *.delta events) is masked across pieces:
// the tail that could still become the masked value of a match is held
// back, and released in a later event; text before it that a match may
// still begin with (the name before a "secret" group) is released and kept
// as context. Every other string of every event is masked as a whole text.
// An EventMasker is not safe for concurrent use.
type EventMasker struct {
	m       *matcher
	opts    StreamOptions
	t       *tally
	streams []*textStream
	blocked *compiled
	scratch jscratch // the JSON parser's buffers, for the next event
	touched bool     // text of this answer has been held back or masked
	// inThinking: blocked is a mask rule that matched inside a thinking
	// block, which must not be edited (its signature covers it).
	inThinking bool
}

type streamKind uint8

const (
	chatText streamKind = iota + 1
	chatTool
	respText
	antText     // Anthropic: a text block's text_delta
	antJSON     // Anthropic: a tool_use block's input_json_delta (JSON text)
	antThinking // Anthropic: a thinking block's thinking_delta
)

// isJSONText reports whether the stream's text is JSON text itself (tool
// arguments): masks in it keep it valid JSON.
func (k streamKind) isJSONText() bool { return k == chatTool || k == antJSON }

// textStream is one text that arrives in pieces.
type textStream struct {
	key    string
	kind   streamKind
	choice int    // chat: choice index; Anthropic: content block index
	tool   int    // chat: tool call index
	field  string // chat, Anthropic: delta field
	itemID string // responses: item id
	ctx    []byte // released text kept as context for matching
	from   int    // offset in ctx where an undecided match may begin
	held   []byte // text not released yet
	tmpl   []byte // the last event that carried this stream
}

// outEvent is an event to emit.
type outEvent struct {
	data  []byte
	orig  bool   // the input event, unchanged
	synth bool   // made up to release held text
	typ   string // type of a synthesized event, if it has one
	err   bool   // the error event that ends a blocked stream
}

// NewEventMasker returns a masker for the events of one answer, using the
// response rules of s.
func (s *Set) NewEventMasker(opts StreamOptions) *EventMasker {
	return &EventMasker{m: s.resp, opts: opts.withDefaults(), t: newTally(s.resp, ScopeResponse)}
}

// Event masks one JSON event and returns the events to emit now: usually
// the event itself, possibly with a shortened delta; before an event that
// ends a text, an extra delta event that releases the text held back. An
// event that is not JSON is masked as text. Once a block or approve rule
// fires, Event returns the events to emit, ending with an error event, and
// ErrBlocked; later calls return nothing and ErrBlocked.
func (m *EventMasker) Event(ev []byte) ([][]byte, error) {
	if m.blocked != nil {
		return nil, ErrBlocked
	}
	outs := m.process(ev)
	data := make([][]byte, len(outs))
	for i, o := range outs {
		data[i] = o.data
	}
	if m.blocked != nil {
		return data, ErrBlocked
	}
	return data, nil
}

// Flush releases all text held back, as delta events, at the end of the
// answer.
func (m *EventMasker) Flush() [][]byte {
	var data [][]byte
	for _, o := range m.flush() {
		data = append(data, o.data)
	}
	return data
}

// Result returns the hits and secrets so far. Body is not used.
func (m *EventMasker) Result() Result { return m.t.result() }

// InThinking reports whether the answer was ended because a mask rule
// matched inside an Anthropic thinking block: such a block is signed, so
// sessctl never edits it, and ends the answer with an error event instead.
func (m *EventMasker) InThinking() bool { return m.inThinking }

// Blocked returns the block or approve rule that ended the answer, or nil.
func (m *EventMasker) Blocked() *Rule {
	if m.blocked == nil {
		return nil
	}
	return m.blocked.public()
}

func (m *EventMasker) bound(c *compiled) int { return max(m.opts.Holdback, c.Holdback) }

// flush finishes every stream.
func (m *EventMasker) flush() []outEvent {
	if m.blocked != nil {
		return nil
	}
	var outs []outEvent
	for len(m.streams) > 0 && m.blocked == nil {
		st := m.streams[0]
		outs = append(outs, m.finish(st)...)
	}
	if m.blocked != nil {
		outs = append(outs, outEvent{data: m.errorEvent(), err: true})
	}
	return outs
}

// deltaField is a piece of a text stream inside an event.
type deltaField struct {
	node *jnode
	st   textStream // identity of the stream (key and kind fields)
}

// process masks one event.
func (m *EventMasker) process(ev []byte) []outEvent {
	if m.blocked != nil {
		return nil
	}
	root, strs, ok := m.scratch.parse(ev)
	if !ok {
		out := maskBody(m.m, m.t, m.t.counts, ev, nil)
		if m.checkFired(m.t.counts) {
			return []outEvent{{data: m.errorEvent(), err: true}}
		}
		return []outEvent{{data: out, orig: len(out) == len(ev) && (len(ev) == 0 || &out[0] == &ev[0])}}
	}
	var (
		deltas []deltaField
		ends   []func(*textStream) bool
		repeat bool
		opaque []*jnode
	)
	if m.opts.Dialect == DialectAnthropic {
		deltas, ends, opaque = classifyAnthropic(ev, &root)
	} else {
		deltas, ends, repeat = classify(ev, &root)
	}

	var outs []outEvent
	has := func(st *textStream) bool {
		return slices.ContainsFunc(deltas, func(d deltaField) bool { return d.st.key == st.key })
	}
	ended := func(st *textStream) bool {
		return slices.ContainsFunc(ends, func(f func(*textStream) bool) bool { return f(st) })
	}
	// Streams that end here without a piece in this event: release their
	// tail first.
	var streams []*textStream
	if len(ends) > 0 {
		streams = slices.Clone(m.streams)
	}
	for _, st := range streams {
		if ended(st) && !has(st) {
			outs = append(outs, m.finish(st)...)
			if m.blocked != nil {
				return append(outs, outEvent{data: m.errorEvent(), err: true})
			}
		}
	}
	// The pieces of text streams.
	var edits []edit
	var open []*textStream
	skip := make(map[int]bool, len(deltas)+len(opaque))
	for _, n := range opaque {
		skip[n.start] = true
	}
	for _, d := range deltas {
		skip[d.node.start] = true
		st := m.stream(d.st)
		piece := appendUnquote(nil, d.node.raw(ev))
		final := ended(st)
		out := m.step(st, piece, final)
		if m.blocked != nil {
			return append(outs, outEvent{data: m.errorEvent(), err: true})
		}
		if final {
			m.remove(st)
		} else {
			open = append(open, st)
		}
		if string(out) != string(piece) {
			m.touched = true
			edits = append(edits, edit{start: d.node.start, end: d.node.end, repl: appendQuote(nil, out)})
		}
	}
	// Once text has been held back or masked, log probabilities would
	// give its tokens away: they go.
	var lps []*jnode
	if m.touched {
		lps = logprobNodes(ev, &root, nil)
		for _, sp := range strs {
			if inside(lps, sp.start) {
				skip[sp.start] = true
			}
		}
	}
	// Every other string, as a whole text.
	counts := m.t.counts
	if repeat {
		counts = make([]int, len(m.m.rules))
	}
	wholeEdits := maskEdits(m.m, m.t, counts, ev, strs, skip)
	if repeat {
		for r, n := range counts {
			m.t.peaks[r] = max(m.t.peaks[r], n)
		}
	}
	if m.checkFired(counts) {
		return append(outs, outEvent{data: m.errorEvent(), err: true})
	}
	if len(wholeEdits) > 0 && !m.touched {
		m.touched = true
		lps = logprobNodes(ev, &root, nil)
		wholeEdits = slices.DeleteFunc(wholeEdits, func(e edit) bool { return inside(lps, e.start) })
	}
	edits = append(edits, wholeEdits...)
	edits = append(edits, dropEdits(lps)...)
	slices.SortFunc(edits, func(a, b edit) int { return a.start - b.start })
	data := applyEdits(ev, edits)
	for _, st := range open {
		st.tmpl = data
	}
	return append(outs, outEvent{data: data, orig: len(edits) == 0})
}

// logprobNodes appends to out the non-empty values of members named
// "logprobs" or "top_logprobs" under n.
func logprobNodes(src []byte, n *jnode, out []*jnode) []*jnode {
	for i := range n.elems {
		v := &n.elems[i]
		if n.kind == jObject && (n.keys[i].is(src, "logprobs") || n.keys[i].is(src, "top_logprobs")) &&
			(v.kind == jArray || v.kind == jObject) && len(v.elems) > 0 {
			out = append(out, v)
			continue
		}
		if v.kind == jArray || v.kind == jObject {
			out = logprobNodes(src, v, out)
		}
	}
	return out
}

// inside reports whether offset p lies within one of the nodes.
func inside(nodes []*jnode, p int) bool {
	for _, n := range nodes {
		if n.start <= p && p < n.end {
			return true
		}
	}
	return false
}

// dropEdits empties the nodes: [] for arrays, null for objects.
func dropEdits(nodes []*jnode) []edit {
	var edits []edit
	for _, n := range nodes {
		repl := []byte("[]")
		if n.kind == jObject {
			repl = []byte("null")
		}
		edits = append(edits, edit{start: n.start, end: n.end, repl: repl})
	}
	return edits
}

// checkFired records the first block or approve rule with a count.
func (m *EventMasker) checkFired(counts []int) bool {
	for r, c := range m.m.rules {
		if c.Action != Mask && counts[r] > 0 {
			m.blocked = c
			return true
		}
	}
	return false
}

// stream returns the open stream with id's key, or opens it.
func (m *EventMasker) stream(id textStream) *textStream {
	for _, st := range m.streams {
		if st.key == id.key {
			return st
		}
	}
	st := id
	m.streams = append(m.streams, &st)
	return &st
}

func (m *EventMasker) remove(st *textStream) {
	m.streams = slices.DeleteFunc(m.streams, func(x *textStream) bool { return x == st })
}

// finish releases the rest of st in a synthesized event and closes st.
func (m *EventMasker) finish(st *textStream) []outEvent {
	m.remove(st)
	out := m.step(st, nil, true)
	if m.blocked != nil || len(out) == 0 || st.tmpl == nil {
		return nil
	}
	data, typ := synthesize(st, out)
	if data == nil {
		return nil
	}
	return []outEvent{{data: data, synth: true, typ: typ}}
}

// step adds a piece to st and returns the masked text that can be released.
// With final set, the text is complete and all of it is released.
//
// A stream keeps two positions in its text. Matches that begin before the
// first are decided; text from it on may still begin a match, and is kept
// (released or not) as context for the next piece. Text from the second on
// is held back: it could belong to the value of a match still undecided
// (the "secret" group, or the whole match of a rule without one). The key
// name before a secret, or the host of a webhook URL, thus reaches the
// client at once, and the secret that may follow it is still masked,
// matched against the text already released.
func (m *EventMasker) step(st *textStream, piece []byte, final bool) []byte {
	buf := make([]byte, 0, len(st.ctx)+len(st.held)+len(piece))
	buf = append(append(append(buf, st.ctx...), st.held...), piece...)
	from, rel := st.from, len(st.ctx)
	var hits []hit
	keep, release := len(buf), len(buf)
	if final {
		hits = m.m.find(buf, []seg{{start: 0, end: len(buf), from: from}})
	} else {
		// A rune cut in two (never in JSON text, but possible in raw
		// pieces) waits for its other part.
		end := len(buf) - partialRune(buf[rel:])
		sc := m.m.findStream(buf[:end], seg{start: 0, end: end, from: from}, m.bound)
		keep, release = m.hold(st, sc, end, from, rel)
		sc.release()
		hits = slices.DeleteFunc(sc.hits, func(h hit) bool { return h.mstart >= keep })
	}
	for _, h := range hits {
		// A thinking block is signed: a mask in it would break the
		// signature, so a mask rule there ends the answer like a block.
		if mask := m.m.rules[h.rule].Action == Mask; !mask || st.kind == antThinking {
			m.t.counts[h.rule]++
			if m.blocked == nil {
				m.blocked = m.m.rules[h.rule]
				m.inThinking = mask
			}
		}
	}
	if m.blocked != nil {
		return nil
	}
	// hold never releases text a value may take, so a value starts at or
	// after rel; were it not so, what is left of it is masked.
	hits = slices.DeleteFunc(hits, func(h hit) bool { return h.end <= rel })
	for i := range hits {
		h := &hits[i]
		h.start = max(h.start, rel) - rel
		h.end -= rel
		h.mstart -= rel
		h.mend -= rel
	}
	text := buf[rel:release]
	m.t.add(m.t.counts, text, hits)
	var out []byte
	if st.kind.isJSONText() {
		out = applyMasksJSON(nil, text, hits, m.m)
	} else {
		out = applyMasks(nil, text, hits, m.m)
	}
	ctx := keep
	if keep > 0 {
		_, w := utf8.DecodeLastRune(buf[:keep])
		ctx -= w
	}
	st.ctx = append(st.ctx[:0], buf[ctx:release]...)
	st.from = keep - ctx
	st.held = append(st.held[:0], buf[release:]...)
	return out
}

// hold decides, after the scan sc of a stream's text buf[:end] (matches may
// begin at from, text before rel has been released), from where matches
// are still undecided (keep) and from where text is held back (release).
func (m *EventMasker) hold(st *textStream, sc *scan, end, from, rel int) (keep, release int) {
	buf := sc.buf
	keep = end
	if sc.live >= 0 {
		keep = sc.live
	}
	for keep > from && keep < end && !utf8.RuneStart(buf[keep]) {
		keep--
	}
	// A match decided before keep that reaches past it is found again with
	// the next piece: keep moves back to its start. That includes matches
	// that filters drop, which still hide the matches they overlap.
	for moved := true; moved; {
		moved = false
		for _, list := range [2][]hit{sc.hits, sc.filtered} {
			for _, h := range list {
				if h.mstart < keep && keep < h.mend {
					keep, moved = h.mstart, true
				}
			}
		}
	}
	release = end
	switch {
	case st.kind.isJSONText():
		// A mask in JSON text grows over the escapes at its edges: hold
		// whole matches there.
		release = keep
	case keep < end:
		// A match found again later: its value waits.
		for _, h := range sc.hits {
			if h.mstart >= keep {
				release = min(release, h.start)
			}
		}
		// A partial match of a rule whose value is the whole match.
		for r, c := range m.m.rules {
			if c.secret == 0 && sc.st[r].liveAt >= 0 {
				release = min(release, sc.st[r].liveAt)
			}
		}
		// The earliest text any match from keep on may take as its value,
		// by the rule's program alone: for rules with a value group, and
		// for matches that outgrew their rule's holdback while another
		// rule's partial match keeps them in view.
		for _, c := range m.m.rules {
			if release == keep {
				break
			}
			open := wholeMatch
			if c.secret > 0 {
				open = uint32(2 * c.secret)
			}
			vm := c.valueVM()
			release = min(release, vm.valueStart(buf[:end], keep, open))
			c.vms.Put(vm)
		}
	}
	release = max(release, rel)
	for release > rel && release < end && !utf8.RuneStart(buf[release]) {
		release--
	}
	return keep, release
}

// partialRune returns the length of an incomplete UTF-8 sequence at the
// end of b that more bytes could complete, or 0.
func partialRune(b []byte) int {
	for i := 1; i < utf8.UTFMax && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < utf8.RuneSelf {
			return 0
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(b[len(b)-i:]) {
				return 0
			}
			return i
		}
	}
	return 0
}

// classify finds the text pieces in an event, the streams the event ends,
// and whether the event repeats text already streamed.
func classify(src []byte, root *jnode) (deltas []deltaField, ends []func(*textStream) bool, repeat bool) {
	if root.kind != jObject {
		return nil, nil, false
	}
	if ch := root.get(src, "choices"); ch != nil && ch.kind == jArray {
		for pos := range ch.elems {
			c := &ch.elems[pos]
			idx := intOr(src, c.get(src, "index"), pos)
			if d := c.get(src, "delta"); d != nil && d.kind == jObject {
				for i := range d.keys {
					name, v := d.keys[i].text(src), &d.elems[i]
					switch {
					case name == "tool_calls" && v.kind == jArray:
						for tp := range v.elems {
							tc := &v.elems[tp]
							t := intOr(src, tc.get(src, "index"), tp)
							if a := tc.get(src, "function").get(src, "arguments"); a.isString() {
								deltas = append(deltas, deltaField{node: a, st: textStream{
									key: "c|" + strconv.Itoa(idx) + "|t|" + strconv.Itoa(t), kind: chatTool, choice: idx, tool: t,
								}})
							}
							// A new tool call ends the others of this choice.
							ends = append(ends, func(st *textStream) bool {
								return st.kind == chatTool && st.choice == idx && st.tool != t
							})
						}
					case v.isString() && name != "role":
						deltas = append(deltas, deltaField{node: v, st: textStream{
							key: "c|" + strconv.Itoa(idx) + "|f|" + name, kind: chatText, choice: idx, field: name,
						}})
					}
				}
			}
			if fr := c.get(src, "finish_reason"); fr.isString() {
				ends = append(ends, func(st *textStream) bool {
					return (st.kind == chatText || st.kind == chatTool) && st.choice == idx
				})
			}
		}
		return deltas, ends, false
	}
	typ := root.get(src, "type").text(src)
	switch {
	case strings.HasSuffix(typ, ".delta") && root.get(src, "delta").isString() && !strings.HasSuffix(typ, "audio.delta"):
		id := root.get(src, "item_id").text(src)
		key := "r|" + strings.TrimSuffix(typ, ".delta") + "|" + id + "|" +
			string(root.get(src, "output_index").raw(src)) + "|" +
			string(root.get(src, "content_index").raw(src)) + "|" +
			string(root.get(src, "summary_index").raw(src))
		deltas = append(deltas, deltaField{node: root.get(src, "delta"), st: textStream{key: key, kind: respText, itemID: id}})
	case IsTerminalEvent(typ):
		// The answer ends: every text stream ends with it. All but an
		// error repeat the answer's text whole.
		ends = append(ends, func(*textStream) bool { return true })
		repeat = typ != "error"
	case strings.HasSuffix(typ, ".done"):
		repeat = true
		id := root.get(src, "item_id").text(src)
		if id == "" {
			id = root.get(src, "item").get(src, "id").text(src)
		}
		prefix := strings.TrimSuffix(typ, ".done")
		ends = append(ends, func(st *textStream) bool {
			if st.kind != respText {
				return false
			}
			if id != "" {
				return st.itemID == id
			}
			return strings.HasPrefix(st.key, "r|"+prefix+"|")
		})
	}
	return deltas, ends, repeat
}

// intOr returns the integer value of n, or def.
func intOr(src []byte, n *jnode, def int) int {
	if n == nil || n.kind != jNumber {
		return def
	}
	v, err := strconv.Atoi(string(n.raw(src)))
	if err != nil {
		return def
	}
	return v
}

// synthesize builds a delta event that carries text for st, from the last
// event that carried st. It returns the event and its type, if any.
func synthesize(st *textStream, text []byte) ([]byte, string) {
	src := st.tmpl
	root, _, ok := parseJSON(src)
	if !ok || root.kind != jObject {
		return nil, ""
	}
	if st.kind == antText || st.kind == antJSON || st.kind == antThinking || st.kind == respText {
		// Anthropic carries the text in a field of "delta"; the Responses
		// API carries it as "delta" itself.
		d := root.get(src, "delta")
		if st.kind != respText {
			d = d.get(src, st.field)
		}
		if !d.isString() {
			return nil, ""
		}
		out := append([]byte(nil), src[:d.start]...)
		out = appendQuote(out, text)
		out = append(out, src[d.end:]...)
		return out, root.get(src, "type").text(src)
	}
	// A chat completion chunk with one choice and one field.
	out := []byte{'{'}
	for i := range root.keys {
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, root.keys[i].raw(src)...)
		out = append(out, ':')
		switch root.keys[i].text(src) {
		case "choices":
			out = append(out, `[{"index":`...)
			out = strconv.AppendInt(out, int64(st.choice), 10)
			out = append(out, `,"delta":{`...)
			if st.kind == chatTool {
				out = append(out, `"tool_calls":[{"index":`...)
				out = strconv.AppendInt(out, int64(st.tool), 10)
				out = append(out, `,"function":{"arguments":`...)
				out = appendQuote(out, text)
				out = append(out, `}}]`...)
			} else {
				out = appendQuote(out, []byte(st.field))
				out = append(out, ':')
				out = appendQuote(out, text)
			}
			out = append(out, `},"finish_reason":null}]`...)
		case "usage":
			out = append(out, "null"...)
		default:
			out = append(out, root.elems[i].raw(src)...)
		}
	}
	return append(out, '}'), ""
}

// errorEvent is the error event that ends this blocked answer, in the
// stream's dialect.
func (m *EventMasker) errorEvent() []byte {
	if m.opts.Dialect == DialectAnthropic {
		return anthropicErrorEvent(m.blocked, m.inThinking)
	}
	return errorEvent(m.blocked)
}

// blockMessage is the message of the error event that ends a blocked
// answer.
func blockMessage(c *compiled, inThinking bool) string {
	msg := "sessctl: answer blocked by rule " + strconv.Quote(c.Name)
	switch {
	case inThinking:
		msg = "sessctl: rule " + strconv.Quote(c.Name) + " matched inside a thinking block, which sessctl does not edit (it is signed): the answer is ended"
	case c.Action == Approve:
		msg = "sessctl: answer requires approval under rule " + strconv.Quote(c.Name) + ", which a stream cannot wait for"
	}
	if c.Message != "" {
		msg += ": " + c.Message
	}
	return msg
}

// anthropicErrorEvent is the data of the error event that ends a blocked
// Anthropic Messages stream: {"type":"error","error":{"type","message"}},
// which the Anthropic SDKs and Claude Code raise as an API error.
func anthropicErrorEvent(c *compiled, inThinking bool) []byte {
	out := []byte(`{"type":"error","error":{"type":"permission_error","message":`)
	out = appendQuote(out, []byte(blockMessage(c, inThinking)))
	out = append(out, `,"sessctl_code":`...)
	out = appendQuote(out, []byte(c.Name))
	return append(out, `}}`...)
}

// errorEvent is the JSON of the error event that ends a blocked answer. It
// has the shape the OpenAI SDKs raise on (an "error" object) and that of a
// Responses API error event (type, code, message, param).
func errorEvent(c *compiled) []byte {
	msg := blockMessage(c, false)
	out := []byte(`{"type":"error","error":{"message":`)
	out = appendQuote(out, []byte(msg))
	out = append(out, `,"type":"sessctl_policy_violation","param":null,"code":`...)
	out = appendQuote(out, []byte(c.Name))
	out = append(out, `},"code":`...)
	out = appendQuote(out, []byte(c.Name))
	out = append(out, `,"message":`...)
	out = appendQuote(out, []byte(msg))
	return append(out, `,"param":null}`...)
}

// classifyAnthropic finds the text pieces in an event of an Anthropic
// Messages stream, and the streams it ends. Each content block's deltas
// are one text: text_delta's text, input_json_delta's partial_json (the
// tool input's JSON text), thinking_delta's thinking. A block ends at its
// content_block_stop (or a new start at its index), and every block at
// message_delta, message_stop or an error event. Signatures
// (signature_delta, a thinking block's signature) and redacted thinking
// are opaque data from the provider, not the model's text: they are not
// scanned, so that they are never edited.
func classifyAnthropic(src []byte, root *jnode) (deltas []deltaField, ends []func(*textStream) bool, opaque []*jnode) {
	if root.kind != jObject {
		return nil, nil, nil
	}
	typ := root.get(src, "type").text(src)
	idx := intOr(src, root.get(src, "index"), 0)
	endBlock := func(st *textStream) bool {
		return (st.kind == antText || st.kind == antJSON || st.kind == antThinking) && st.choice == idx
	}
	switch typ {
	case "content_block_delta":
		d := root.get(src, "delta")
		var kind streamKind
		var field string
		switch d.get(src, "type").text(src) {
		case "text_delta":
			kind, field = antText, "text"
		case "input_json_delta":
			kind, field = antJSON, "partial_json"
		case "thinking_delta":
			kind, field = antThinking, "thinking"
		case "signature_delta":
			if s := d.get(src, "signature"); s.isString() {
				opaque = append(opaque, s)
			}
		case "citations_delta":
			// A citation repeats text of a document sent in the prompt:
			// scanned whole, like any string.
		}
		if v := d.get(src, field); kind != 0 && v.isString() {
			deltas = append(deltas, deltaField{node: v, st: textStream{
				key: "a|" + strconv.Itoa(idx), kind: kind, choice: idx, field: field,
			}})
		}
	case "content_block_start":
		ends = append(ends, endBlock)
		cb := root.get(src, "content_block")
		for _, name := range []string{"signature", "data"} {
			if s := cb.get(src, name); s.isString() {
				opaque = append(opaque, s)
			}
		}
	case "content_block_stop":
		ends = append(ends, endBlock)
	case "message_delta", "message_stop", "error":
		ends = append(ends, func(*textStream) bool { return true })
	case "message_start":
		// A message_start may carry content already (a continued
		// prefill): signatures in it are opaque too.
		opaque = anthropicOpaque(src, root.get(src, "message").get(src, "content"), opaque)
	}
	return deltas, ends, opaque
}

// anthropicOpaque appends the signatures and redacted-thinking data of
// the content blocks in the array content.
func anthropicOpaque(src []byte, content *jnode, out []*jnode) []*jnode {
	if content == nil || content.kind != jArray {
		return out
	}
	for i := range content.elems {
		b := &content.elems[i]
		for _, name := range []string{"signature", "data"} {
			if s := b.get(src, name); s.isString() {
				out = append(out, s)
			}
		}
	}
	return out
}
