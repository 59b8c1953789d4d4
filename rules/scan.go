package rules

import (
	"io"
	"math"
	"slices"
	"sync"
	"unicode/utf8"
)

// matcher holds the rules of one scope and the literal tables that drive the
// prefilter.
type matcher struct {
	rules    []*compiled
	pairBits [1 << 16 / 64]uint64      // two-byte prefixes of the three-byte keys
	triSet   [1 << triBits / 64]uint64 // hashed three-byte keys that may begin a literal
	tris     triTable
	first    [256][]litRef // literals by first byte, for partial literals at a stream's end
	maxLit   int           // longest literal, in bytes (upper bound)
	fallback []int         // rules scanned without prefilter
	states   sync.Pool     // *[]ruleState, one per rule, for scans
}

type litRef struct {
	rule int
	lit  *plit
}

func newMatcher(all []*compiled, scope scopeMask) *matcher {
	m := &matcher{}
	byKey := map[uint32][]litRef{}
	for _, c := range all {
		if c.scope&scope == 0 {
			continue
		}
		ri := len(m.rules)
		m.rules = append(m.rules, c)
		if c.lits == nil {
			m.fallback = append(m.fallback, ri)
			continue
		}
		for li, l := range c.lits {
			ref := litRef{rule: ri, lit: &c.plits[li]}
			for _, k := range triKeys(l) {
				h := triHash(k)
				m.triSet[h>>6] |= 1 << (h & 63)
				pk := k >> 8
				m.pairBits[pk>>6] |= 1 << (pk & 63)
				byKey[k] = append(byKey[k], ref)
			}
			var b [utf8.UTFMax]byte
			seen := map[byte]bool{}
			for _, r := range l[0].variants() {
				utf8.EncodeRune(b[:], r)
				if !seen[b[0]] {
					seen[b[0]] = true
					m.first[b[0]] = append(m.first[b[0]], ref)
				}
			}
			m.maxLit = max(m.maxLit, len(l)*utf8.UTFMax)
		}
	}
	m.tris = newTriTable(byKey)
	return m
}

const triBits = 16

// triHash hashes a three-byte key to triBits bits.
func triHash(k uint32) uint32 { return k * 0x9E3779B1 >> (32 - triBits) }

// triTable maps three-byte keys to the literals that begin with them: an
// open-addressing table, cheaper than a map in the scanner's inner loop.
type triTable struct {
	mask uint32
	keys []uint32
	refs [][]litRef // nil: empty slot
}

func newTriTable(byKey map[uint32][]litRef) triTable {
	n := 16
	for n < 4*len(byKey) {
		n *= 2
	}
	t := triTable{mask: uint32(n - 1), keys: make([]uint32, n), refs: make([][]litRef, n)}
	for k, refs := range byKey {
		h := t.slot(k)
		for t.refs[h] != nil {
			h = (h + 1) & t.mask
		}
		t.keys[h], t.refs[h] = k, refs
	}
	return t
}

func (t *triTable) slot(k uint32) uint32 { return triHash(k) & t.mask }

func (t *triTable) get(k uint32) []litRef {
	if t.refs == nil {
		return nil
	}
	for h := t.slot(k); t.refs[h] != nil; h = (h + 1) & t.mask {
		if t.keys[h] == k {
			return t.refs[h]
		}
	}
	return nil
}

// seg is one independent text inside a scan buffer: buf[start:end], where
// matches may start only at or after from (bytes before it are context).
type seg struct {
	start, end, from int
}

// hit is one match of one rule: the masked span and the whole match.
type hit struct {
	rule         int // index in matcher.rules
	start, end   int // the value (the "secret" group, or the match)
	mstart, mend int // the whole match
}

// scan is the state of one pass of a matcher over a buffer.
type scan struct {
	m      *matcher
	buf    []byte
	stream bool
	bound  func(*compiled) int // stream holdback per rule

	st       []ruleState
	stp      *[]ruleState // st, from and back to m.states
	hits     []hit
	filtered []hit // stream: matches whose value a filter dropped
	live     int   // stream: earliest start of a possible match not yet complete
	rd       runeReader
}

// ruleState is the progress of one rule in a scan.
type ruleState struct {
	next   int  // no further match may start before this
	last   int  // last position tried
	budget int  // bytes of windowed matching left
	over   bool // out of budget: scanned with the regular expression alone
	done   bool // stream: a partial match is live; later matches are moot
	liveAt int  // stream: earliest start of a partial match of this rule, -1
}

// find runs the rules of m over the segments of buf and returns the
// matches, sorted by the start of their values.
func (m *matcher) find(buf []byte, segs []seg) []hit {
	if len(m.rules) == 0 {
		return nil
	}
	s := m.run(buf, segs, false, nil)
	s.release()
	return s.hits
}

// release gives the scan's rule states back for another scan; s.st is
// not used after it.
func (s *scan) release() {
	if s.stp != nil {
		s.m.states.Put(s.stp)
		s.st, s.stp = nil, nil
	}
}

// findStream runs the rules of m over buf[sg.start:sg.end], a stream's text
// that may continue after sg.end. In the scan it returns, live is the
// earliest position where a match could still begin or grow (-1 if none),
// and st[r].liveAt that of rule r; hits and filtered hold every match found
// (the latter, those whose value a filter dropped): those that start
// before live are the ones more text cannot change. bound gives each rule's
// holdback: a partial match that began further back is not live.
func (m *matcher) findStream(buf []byte, sg seg, bound func(*compiled) int) *scan {
	if len(m.rules) == 0 {
		return &scan{live: -1}
	}
	return m.run(buf, []seg{sg}, true, bound)
}

func (m *matcher) run(buf []byte, segs []seg, stream bool, bound func(*compiled) int) *scan {
	s := &scan{m: m, buf: buf, stream: stream, bound: bound, live: -1}
	if p, ok := m.states.Get().(*[]ruleState); ok {
		s.stp = p
	} else {
		st := make([]ruleState, len(m.rules))
		s.stp = &st
	}
	s.st = *s.stp
	for i := range s.st {
		s.st[i] = ruleState{last: -1, budget: 8*len(buf) + 1<<16, liveAt: -1}
	}
	if m.tris.refs != nil {
		s.prefiltered(segs)
	}
	for _, ri := range m.fallback {
		s.full(ri, segs)
	}
	for ri := range s.st {
		if s.st[ri].over {
			s.hits = slices.DeleteFunc(s.hits, func(h hit) bool { return h.rule == ri })
			s.filtered = slices.DeleteFunc(s.filtered, func(h hit) bool { return h.rule == ri })
			s.full(ri, segs)
		}
	}
	if stream {
		s.partials(segs[0])
	}
	slices.SortFunc(s.hits, func(a, b hit) int {
		if a.start != b.start {
			return a.start - b.start
		}
		return a.rule - b.rule
	})
	return s
}

// prefiltered looks for the literals of every rule in one pass and tries the
// rule where one begins.
func (s *scan) prefiltered(segs []seg) {
	buf, m := s.buf, s.m
	si := 0
	pairs, tris := &m.pairBits, &m.triSet
	for i := 0; i+2 < len(buf); i++ {
		pk := uint32(buf[i])<<8 | uint32(buf[i+1])
		if pairs[pk>>6]&(1<<(pk&63)) == 0 {
			continue
		}
		k := pk<<8 | uint32(buf[i+2])
		if h := triHash(k); tris[h>>6]&(1<<(h&63)) == 0 {
			continue
		}
		for si < len(segs) && segs[si].end <= i {
			si++
		}
		if si == len(segs) {
			return
		}
		sg := segs[si]
		if i < sg.start || i < sg.from {
			continue
		}
		for _, ref := range m.tris.get(k) {
			r := ref.rule
			if st := &s.st[r]; st.over || st.done || i < st.next || i == st.last {
				continue
			}
			n, full, _ := ref.lit.at(buf[i:sg.end])
			if !full {
				continue
			}
			// What follows the literal must be able to continue a match,
			// unless a stream's text ends here and may go on.
			if f := ref.lit.follow; f != nil && !f.allows(buf[i+n:sg.end]) && !(s.stream && i+n == sg.end) {
				continue
			}
			s.try(r, i, sg)
		}
	}
}

// try runs rule r anchored at p, where one of its literals begins.
func (s *scan) try(r, p int, sg seg) {
	c := s.m.rules[r]
	s.st[r].last = p
	ws, re := p, c.anchor
	if p > sg.start {
		ws, re = p-1, c.ctx
	}
	var loc []int
	if c.maxLen >= 0 && p+c.maxLen+utf8.UTFMax <= sg.end || c.maxLen >= 0 && !s.stream {
		we := min(sg.end, p+c.maxLen+utf8.UTFMax)
		s.st[r].budget -= we - ws
		loc = re.FindSubmatchIndex(s.buf[ws:we])
	} else {
		s.rd = runeReader{b: s.buf, i: ws, end: sg.end}
		loc = re.FindReaderSubmatchIndex(&s.rd)
		s.st[r].budget -= s.rd.i - ws
		// The regexp package reads up to two runes ahead, so reaching the
		// end of the text does not prove that a match from p could still
		// grow: ask the liveness VM.
		if s.stream && s.rd.eof && p >= sg.end-s.bound(c) &&
			liveStart(c.prog, s.buf[ws:sg.end], p-ws, true) >= 0 {
			// The match could still start here and grow: hold from p.
			s.setLive(r, p)
			s.st[r].done = true
			return
		}
	}
	if s.st[r].budget < 0 {
		s.st[r].over = true
		return
	}
	if loc == nil {
		return
	}
	s.record(r, p, ws, loc)
}

// record adds the match loc (relative to base) of rule r that starts at
// mstart, unless its value is filtered out.
func (s *scan) record(r, mstart, base int, loc []int) {
	c := s.m.rules[r]
	mend := base + loc[1]
	s.st[r].next = mend
	start, end := mstart, mend
	if c.secret > 0 {
		if loc[2*c.secret] < 0 {
			return
		}
		start, end = base+loc[2*c.secret], base+loc[2*c.secret+1]
	}
	if start == end || !c.keep(s.buf[start:end]) {
		if s.stream {
			s.filtered = append(s.filtered, hit{rule: r, start: start, end: end, mstart: mstart, mend: mend})
		}
		return
	}
	s.hits = append(s.hits, hit{rule: r, start: start, end: end, mstart: mstart, mend: mend})
}

// full finds every match of rule r with the regular expression alone.
func (s *scan) full(r int, segs []seg) {
	c := s.m.rules[r]
	for _, sg := range segs {
		pos := max(sg.start, sg.from)
		for pos < sg.end {
			var loc []int
			base, mstart := pos, 0
			if pos == sg.start {
				loc = c.re.FindSubmatchIndex(s.buf[pos:sg.end])
				if loc == nil {
					break
				}
				mstart = base + loc[0]
			} else {
				base = pos - 1
				loc = c.search.FindSubmatchIndex(s.buf[base:sg.end])
				if loc == nil {
					break
				}
				_, w := utf8.DecodeRune(s.buf[base+loc[0] : sg.end])
				mstart = base + loc[0] + w
			}
			s.record(r, mstart, base, loc)
			pos = base + loc[1]
		}
	}
	if s.stream {
		sg := segs[0]
		from := max(sg.from, sg.end-s.bound(c))
		if p := liveStart(c.prog, s.buf[sg.start:sg.end], from-sg.start, false); p >= 0 {
			s.setLive(r, sg.start+p)
		}
	}
}

// partials marks as live, for each rule, the first of its literals cut by
// the end of a stream's text.
func (s *scan) partials(sg seg) {
	from := max(sg.from, sg.end-s.m.maxLit)
	for p := from; p < sg.end; p++ {
		for _, ref := range s.m.first[s.buf[p]] {
			c, st := s.m.rules[ref.rule], &s.st[ref.rule]
			if st.over || st.liveAt >= 0 && st.liveAt <= p || p < sg.end-s.bound(c) {
				continue
			}
			if _, _, partial := ref.lit.at(s.buf[p:sg.end]); partial && s.canStart(c, sg, p) {
				s.setLive(ref.rule, p)
			}
		}
	}
}

// canStart reports whether a match of c could begin at p, judged by the
// rune there and the one before it: a pattern that begins with \b cannot
// start between two word characters, nor one that begins with ^ past the
// start of the text (of a line, with (?m)). A rune cut by the end of the text (or an
// invalid byte) could still be anything: it may start a match.
func (s *scan) canStart(c *compiled, sg seg, p int) bool {
	r, w := utf8.DecodeRune(s.buf[p:sg.end])
	if r == utf8.RuneError && w <= 1 {
		return true
	}
	prev := rune(-1)
	if p > sg.start {
		prev, _ = utf8.DecodeLastRune(s.buf[sg.start:p])
	}
	return c.starts.canStart(c.prog, prev, r)
}

// setLive notes that a match of rule r may begin at p and grow.
func (s *scan) setLive(r, p int) {
	if st := &s.st[r]; st.liveAt < 0 || p < st.liveAt {
		st.liveAt = p
	}
	if s.live < 0 || p < s.live {
		s.live = p
	}
}

// keep applies the entropy and allow filters to a value.
func (c *compiled) keep(v []byte) bool {
	if c.Entropy > 0 && entropy(v) < c.Entropy {
		return false
	}
	for _, a := range c.allow {
		if a.Match(v) {
			return false
		}
	}
	return true
}

// entropy returns the Shannon entropy of b in bits per byte.
func entropy(b []byte) float64 {
	if len(b) == 0 {
		return 0
	}
	var counts [256]int
	for _, c := range b {
		counts[c]++
	}
	var h float64
	n := float64(len(b))
	for _, k := range counts {
		if k > 0 {
			p := float64(k) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}

// runeReader reads runes from b[i:end] and notes whether the reader asked
// for more: a regular expression that reads to the end of a stream's text
// may still match differently once more text arrives.
type runeReader struct {
	b      []byte
	i, end int
	eof    bool
}

func (r *runeReader) ReadRune() (rune, int, error) {
	if r.i >= r.end {
		r.eof = true
		return 0, 0, io.EOF
	}
	c, w := utf8.DecodeRune(r.b[r.i:r.end])
	r.i += w
	return c, w, nil
}
