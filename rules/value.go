package rules

import (
	"math"
	"regexp/syntax"
	"unicode/utf8"
)

// This file finds, in a stream's text that may continue, the earliest byte
// that could belong to the value of a match: the part a mask replaces (the
// "secret" group, when a rule has one). Text before it may reach the client
// while a match is still being decided, because whatever the match turns out
// to be, that text stays as it is.

// valueVM is a Pike VM that follows, for every thread, the earliest
// position at which it may have entered the value group. It is reused
// across calls by one stream masker.
type valueVM struct {
	prog     *syntax.Prog
	cur, nxt *valueQueue
}

// valueQueue is a sparse set of program counters with, for each, the
// earliest value start of the threads that reached it (noValue: none
// entered the group).
type valueQueue struct {
	sparse []uint32
	dense  []uint32
	list   []uint32 // the pcs that consume input
	val    []int    // by pc
	stack  []valueItem
}

type valueItem struct {
	pc  uint32
	val int
}

const noValue = math.MaxInt

// wholeMatch, as the opening instruction of the value, makes the whole
// match the value.
const wholeMatch = ^uint32(0)

func newValueVM(prog *syntax.Prog) *valueVM {
	q := func() *valueQueue {
		n := len(prog.Inst)
		return &valueQueue{sparse: make([]uint32, n), dense: make([]uint32, 0, n), val: make([]int, n)}
	}
	return &valueVM{prog: prog, cur: q(), nxt: q()}
}

func (q *valueQueue) clear() {
	q.dense = q.dense[:0]
	q.list = q.list[:0]
}

func (q *valueQueue) has(pc uint32) bool {
	i := q.sparse[pc]
	return int(i) < len(q.dense) && q.dense[i] == pc
}

// add follows the empty transitions from pc under flags, for a thread
// whose value began at val (noValue: not yet), at position pos. A pc
// reached again with an earlier value start is followed again, so that
// every pc holds the earliest value start of all the threads that reach
// it: the answer errs towards holding more. It returns the earliest value
// start of a thread that matched here.
func (q *valueQueue) add(prog *syntax.Prog, pc uint32, val, pos int, open uint32, flags syntax.EmptyOp) (matched int) {
	matched = noValue
	q.stack = append(q.stack[:0], valueItem{pc, val})
	for len(q.stack) > 0 {
		it := q.stack[len(q.stack)-1]
		q.stack = q.stack[:len(q.stack)-1]
		pc, val := it.pc, it.val
		if q.has(pc) {
			if val >= q.val[pc] {
				continue
			}
			q.val[pc] = val
		} else {
			q.sparse[pc] = uint32(len(q.dense))
			q.dense = append(q.dense, pc)
			q.val[pc] = val
			switch prog.Inst[pc].Op {
			case syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
				q.list = append(q.list, pc)
			}
		}
		in := &prog.Inst[pc]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			q.stack = append(q.stack, valueItem{in.Arg, val}, valueItem{in.Out, val})
		case syntax.InstCapture:
			if in.Arg == open && val == noValue {
				val = pos
			}
			q.stack = append(q.stack, valueItem{in.Out, val})
		case syntax.InstNop:
			q.stack = append(q.stack, valueItem{in.Out, val})
		case syntax.InstEmptyWidth:
			if syntax.EmptyOp(in.Arg)&^flags == 0 {
				q.stack = append(q.stack, valueItem{in.Out, val})
			}
		case syntax.InstMatch:
			matched = min(matched, val)
		}
	}
	return matched
}

// valueStart returns the earliest position of text at or after from that
// could lie in the value of a match of prog beginning at a rune boundary
// at or after from: a match that ends within text, or one that more text
// could still complete. The value is the capture group whose opening
// instruction has Arg open, or the whole match if open is wholeMatch.
// It returns len(text) when no such position
// exists. Bytes before from are context only. Matches are considered
// whether or not leftmost-first matching would report them, and threads
// are merged towards the earliest value: the answer may be early, never
// late.
func (v *valueVM) valueStart(text []byte, from int, open uint32) int {
	prog := v.prog
	cur, nxt := v.cur, v.nxt
	cur.clear()
	best := noValue
	prev := rune(-1)
	if from > 0 {
		prev, _ = utf8.DecodeLastRune(text[:from])
	}
	for pos := from; pos < len(text); {
		r, w := utf8.DecodeRune(text[pos:])
		if pos < best {
			val := noValue
			if open == wholeMatch {
				val = pos
			}
			best = min(best, cur.add(prog, uint32(prog.Start), val, pos, open, syntax.EmptyOpContext(prev, r)))
		}
		nflags := endFlags(r)
		if pos+w < len(text) {
			r2, _ := utf8.DecodeRune(text[pos+w:])
			nflags = syntax.EmptyOpContext(r, r2)
		}
		nxt.clear()
		for _, pc := range cur.list {
			in := &prog.Inst[pc]
			if consumes(in, r) {
				best = min(best, nxt.add(prog, in.Out, cur.val[pc], pos+w, open, nflags))
			}
		}
		cur, nxt = nxt, cur
		prev = r
		pos += w
		if best <= pos && len(cur.list) == 0 {
			break
		}
	}
	for _, pc := range cur.list {
		best = min(best, cur.val[pc])
	}
	v.cur, v.nxt = cur, nxt
	return min(best, len(text))
}
