package rules

import (
	"regexp/syntax"
	"unicode/utf8"
)

// liveStart runs prog as a Pike VM over text, starting a thread at every
// rune boundary at or after from (only at from, if single), and returns the earliest start of a thread
// still alive at the end of text: a match that more text could complete or
// change. It returns -1 when none is. Bytes before from are context only.
//
// The regexp package cannot answer this question, and the stream masker
// needs it for rules without a literal prefix.
func liveStart(prog *syntax.Prog, text []byte, from int, single bool) int {
	cur, nxt := newThreads(len(prog.Inst)), newThreads(len(prog.Inst))
	prev := rune(-1)
	pos := 0
	for pos < len(text) {
		r, w := utf8.DecodeRune(text[pos:])
		if pos == from || pos > from && !single {
			cur.add(prog, uint32(prog.Start), pos, syntax.EmptyOpContext(prev, r))
		}
		nflags := endFlags(r)
		if pos+w < len(text) {
			r2, _ := utf8.DecodeRune(text[pos+w:])
			nflags = syntax.EmptyOpContext(r, r2)
		}
		nxt.clear()
		for _, t := range cur.list {
			in := &prog.Inst[t.pc]
			if consumes(in, r) {
				nxt.add(prog, in.Out, t.start, nflags)
			}
		}
		cur, nxt = nxt, cur
		prev = r
		pos += w
	}
	best := -1
	for _, t := range cur.list {
		if best < 0 || t.start < best {
			best = t.start
		}
	}
	return best
}

// endFlags are the assertions that may hold at the end of a text that has
// not ended yet: what follows is unknown, so every one after prev may.
func endFlags(prev rune) syntax.EmptyOp {
	return syntax.EmptyOpContext(prev, -1) | syntax.EmptyWordBoundary | syntax.EmptyNoWordBoundary
}

type thread struct {
	pc    uint32
	start int
}

// threads is a sparse set of program counters, with the threads that wait on
// input (or have matched) in priority order.
type threads struct {
	sparse []uint32
	dense  []uint32
	list   []thread
	stack  []uint32
}

func newThreads(n int) *threads {
	return &threads{sparse: make([]uint32, n), dense: make([]uint32, 0, n)}
}

func (q *threads) clear() {
	q.dense = q.dense[:0]
	q.list = q.list[:0]
}

func (q *threads) has(pc uint32) bool {
	i := q.sparse[pc]
	return int(i) < len(q.dense) && q.dense[i] == pc
}

// add follows the empty transitions from pc under flags and keeps the
// threads that consume input or match. A pc already present keeps its
// earlier (older) start.
func (q *threads) add(prog *syntax.Prog, pc uint32, start int, flags syntax.EmptyOp) {
	q.stack = append(q.stack[:0], pc)
	for len(q.stack) > 0 {
		pc := q.stack[len(q.stack)-1]
		q.stack = q.stack[:len(q.stack)-1]
		if q.has(pc) {
			continue
		}
		q.sparse[pc] = uint32(len(q.dense))
		q.dense = append(q.dense, pc)
		in := &prog.Inst[pc]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			// Push Arg first so that Out is followed first.
			q.stack = append(q.stack, in.Arg, in.Out)
		case syntax.InstCapture, syntax.InstNop:
			q.stack = append(q.stack, in.Out)
		case syntax.InstEmptyWidth:
			if syntax.EmptyOp(in.Arg)&^flags == 0 {
				q.stack = append(q.stack, in.Out)
			}
		case syntax.InstMatch, syntax.InstRune, syntax.InstRune1,
			syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			q.list = append(q.list, thread{pc: pc, start: start})
		}
	}
}

// startTable lists, for every combination of the empty-width assertions
// (syntax.EmptyOp) that may hold at a position, the instructions of a
// program that a match starting there can run first: those that consume
// the first rune, or a match. A pattern beginning with \b, \B, ^ or \A has
// none under the combinations its assertion rules out.
type startTable [1 << 6][]uint32

func newStartTable(prog *syntax.Prog) *startTable {
	var t startTable
	q := newThreads(len(prog.Inst))
	for f := range t {
		q.clear()
		q.add(prog, uint32(prog.Start), 0, syntax.EmptyOp(f))
		for _, th := range q.list {
			t[f] = append(t[f], th.pc)
		}
	}
	return &t
}

// canStart reports whether a match of prog can begin with rune r after
// rune prev (-1: at the start of the text). Only the first rune is
// considered: a true answer says nothing of what follows it.
func (t *startTable) canStart(prog *syntax.Prog, prev, r rune) bool {
	for _, pc := range t[syntax.EmptyOpContext(prev, r)] {
		in := &prog.Inst[pc]
		if in.Op == syntax.InstMatch || consumes(in, r) {
			return true
		}
	}
	return false
}
