package rules

import (
	"regexp/syntax"
	"unicode"
	"unicode/utf8"
)

// follow is the set of runes that may come right after a literal in a
// match: a cheap test that rejects most false candidates before the
// regular expression runs.
type follow struct {
	ascii    [utf8.RuneSelf]bool
	nonASCII bool // some rune >= U+0080 (or an invalid byte) may follow
}

// allows reports whether text, which follows the literal, may continue a
// match. At the end of the text nothing may follow.
func (f *follow) allows(text []byte) bool {
	if len(text) == 0 {
		return false
	}
	if c := text[0]; c < utf8.RuneSelf {
		return f.ascii[c]
	}
	return f.nonASCII
}

// followOf runs prog over the runes of l from its start (assertions
// assumed to hold) and returns the runes the surviving threads accept next,
// or nil when anything may follow: a thread has matched, or accepts any rune.
func followOf(prog *syntax.Prog, l lit) *follow {
	const all = syntax.EmptyBeginLine | syntax.EmptyEndLine | syntax.EmptyBeginText |
		syntax.EmptyEndText | syntax.EmptyWordBoundary | syntax.EmptyNoWordBoundary
	cur, nxt := newThreads(len(prog.Inst)), newThreads(len(prog.Inst))
	cur.add(prog, uint32(prog.Start), 0, all)
	for _, lr := range l {
		nxt.clear()
		for _, t := range cur.list {
			in := &prog.Inst[t.pc]
			for _, r := range lr.variants() {
				if consumes(in, r) {
					nxt.add(prog, in.Out, 0, all)
					break
				}
			}
		}
		cur, nxt = nxt, cur
	}
	f := &follow{}
	for _, t := range cur.list {
		in := &prog.Inst[t.pc]
		switch in.Op {
		case syntax.InstMatch, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			return nil
		case syntax.InstRune1:
			f.add(in.Rune[0], in.Rune[0])
		case syntax.InstRune:
			if len(in.Rune) == 1 {
				r := in.Rune[0]
				f.add(r, r)
				if syntax.Flags(in.Arg)&syntax.FoldCase != 0 {
					for v := unicode.SimpleFold(r); v != r; v = unicode.SimpleFold(v) {
						f.add(v, v)
					}
				}
				continue
			}
			for i := 0; i+1 < len(in.Rune); i += 2 {
				f.add(in.Rune[i], in.Rune[i+1])
			}
		}
	}
	return f
}

// add adds the runes lo..hi.
func (f *follow) add(lo, hi rune) {
	for r := lo; r <= hi && r < utf8.RuneSelf; r++ {
		f.ascii[r] = true
	}
	if hi >= utf8.RuneSelf {
		f.nonASCII = true
	}
}

// consumes reports whether in consumes r.
func consumes(in *syntax.Inst, r rune) bool {
	switch in.Op {
	case syntax.InstRune1:
		return r == in.Rune[0]
	case syntax.InstRune:
		return in.MatchRune(r)
	case syntax.InstRuneAny:
		return true
	case syntax.InstRuneAnyNotNL:
		return r != '\n'
	}
	return false
}
