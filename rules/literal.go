package rules

import (
	"regexp/syntax"
	"unicode"
	"unicode/utf8"
)

// This file analyses a rule's parsed regular expression to find the literal
// strings every match must begin with. The scanner looks for those literals
// in one pass over the text and runs the regular expression only where one
// occurs, which is what makes the default ruleset fast on large prompts.

const (
	maxLits      = 64 // literal alternatives kept per rule
	maxLitRunes  = 32 // runes kept per literal
	maxClassLits = 10 // a character class with at most this many runes is expanded
	minLitRunes  = 3  // shorter literals are not selective enough to prefilter
	goodLitRunes = 8  // literals this long are selective enough: stop extending
)

// litRune is one rune of a literal; fold means it matches any rune of its
// simple case-folding orbit, as (?i) does.
type litRune struct {
	r    rune
	fold bool
}

// lit is a literal prefix: a sequence of runes, each exact or case-folded.
type lit []litRune

// prefixes returns a set of literals such that every string matched by re
// begins with one of them. exact reports that re matches exactly the strings
// of the set (so a concatenation may extend them); ok is false when no useful
// set exists.
func prefixes(re *syntax.Regexp) (set []lit, exact, ok bool) {
	fold := re.Flags&syntax.FoldCase != 0
	switch re.Op {
	case syntax.OpNoMatch:
		return nil, true, true
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine,
		syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return []lit{{}}, true, true
	case syntax.OpLiteral:
		l := make(lit, len(re.Rune))
		for i, r := range re.Rune {
			l[i] = litRune{r: r, fold: fold && hasFold(r)}
		}
		return []lit{l}, true, true
	case syntax.OpCharClass:
		var n int
		for i := 0; i+1 < len(re.Rune); i += 2 {
			n += int(re.Rune[i+1]-re.Rune[i]) + 1
			if n > maxClassLits {
				return nil, false, false
			}
		}
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				set = append(set, lit{{r: r}})
			}
		}
		return set, true, true
	case syntax.OpCapture:
		return prefixes(re.Sub[0])
	case syntax.OpConcat:
		acc := []lit{{}}
		for _, sub := range re.Sub {
			s, e, ok := prefixes(sub)
			if !ok {
				return acc, false, true
			}
			next, full := cross(acc, s)
			if !full {
				return acc, false, true
			}
			acc = next
			if !e || minRunes(acc) >= goodLitRunes {
				return acc, false, true
			}
		}
		return acc, true, true
	case syntax.OpAlternate:
		exact = true
		for _, sub := range re.Sub {
			s, e, ok := prefixes(sub)
			if !ok {
				return nil, false, false
			}
			exact = exact && e
			set = append(set, s...)
			if len(set) > maxLits {
				return nil, false, false
			}
		}
		return set, exact, true
	case syntax.OpQuest:
		s, e, ok := prefixes(re.Sub[0])
		if !ok {
			return []lit{{}}, false, true
		}
		if len(s)+1 > maxLits {
			return []lit{{}}, false, true
		}
		return append(s, lit{}), e, true
	case syntax.OpStar:
		return []lit{{}}, false, true
	case syntax.OpPlus:
		s, _, ok := prefixes(re.Sub[0])
		return s, false, ok
	case syntax.OpRepeat:
		s, e, ok := prefixes(re.Sub[0])
		switch {
		case re.Min == 0 && re.Max == 1:
			if !ok || len(s)+1 > maxLits {
				return []lit{{}}, false, true
			}
			return append(s, lit{}), e, true
		case re.Min == 0:
			return []lit{{}}, false, true
		}
		return s, e && re.Min == 1 && re.Max == 1, ok
	}
	return nil, false, false
}

// cross returns every concatenation of a literal of a with one of b. full is
// false when the product would be too large or too long, in which case the
// caller keeps a, whose literals are still valid prefixes.
func cross(a, b []lit) (out []lit, full bool) {
	if len(a)*len(b) > maxLits {
		return nil, false
	}
	for _, x := range a {
		for _, y := range b {
			if len(x)+len(y) > maxLitRunes {
				return nil, false
			}
			l := make(lit, 0, len(x)+len(y))
			out = append(out, append(append(l, x...), y...))
		}
	}
	return out, true
}

// selective reports whether set can drive the prefilter: non-empty and every
// literal at least minLitRunes long.
func selective(set []lit) bool {
	if len(set) == 0 {
		return false
	}
	for _, l := range set {
		if len(l) < minLitRunes {
			return false
		}
	}
	return true
}

func minRunes(set []lit) int {
	n := maxLitRunes
	for _, l := range set {
		n = min(n, len(l))
	}
	return n
}

// dedupLits removes repeated literals, keeping the first of each.
func dedupLits(set []lit) []lit {
	seen := make(map[string]bool, len(set))
	out := set[:0]
	for _, l := range set {
		k := litKey(l)
		if !seen[k] {
			seen[k] = true
			out = append(out, l)
		}
	}
	return out
}

func litKey(l lit) string {
	b := make([]byte, 0, len(l)*2)
	for _, lr := range l {
		if lr.fold {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = utf8.AppendRune(b, lr.r)
	}
	return string(b)
}

// hasFold reports whether r has other runes in its case-folding orbit.
func hasFold(r rune) bool {
	return unicode.SimpleFold(r) != r
}

// variants returns the runes lr matches.
func (lr litRune) variants() []rune {
	v := []rune{lr.r}
	if lr.fold {
		for f := unicode.SimpleFold(lr.r); f != lr.r; f = unicode.SimpleFold(f) {
			v = append(v, f)
		}
	}
	return v
}

// plit is a literal prepared for matching: its bytes when it has no
// case-folded rune, else the runes each position accepts.
type plit struct {
	exact  []byte
	alts   [][]rune
	follow *follow // runes that may come next; nil: any
}

func prepare(l lit, prog *syntax.Prog) plit {
	p := plit{follow: followOf(prog, l)}
	fold := false
	for _, lr := range l {
		fold = fold || lr.fold
	}
	if !fold {
		for _, lr := range l {
			p.exact = utf8.AppendRune(p.exact, lr.r)
		}
		return p
	}
	p.alts = make([][]rune, len(l))
	for i, lr := range l {
		p.alts[i] = lr.variants()
	}
	return p
}

// at reports whether text begins with the literal (full, with its length
// n in text), or whether all of text is a proper prefix of it, possibly
// ending inside a rune (partial).
func (p *plit) at(text []byte) (n int, full, partial bool) {
	if p.exact != nil {
		if len(text) >= len(p.exact) {
			return len(p.exact), string(text[:len(p.exact)]) == string(p.exact), false
		}
		return 0, false, string(text) == string(p.exact[:len(text)])
	}
	i := 0
	for _, alts := range p.alts {
		if i == len(text) {
			return 0, false, true
		}
		r, w := rune(text[i]), 1
		if r >= utf8.RuneSelf {
			r, w = utf8.DecodeRune(text[i:])
			if r == utf8.RuneError && w <= 1 && !utf8.FullRune(text[i:]) {
				// A rune cut at the end of the text: it may still complete.
				return 0, false, true
			}
		}
		ok := false
		for _, a := range alts {
			if a == r {
				ok = true
				break
			}
		}
		if !ok {
			return 0, false, false
		}
		i += w
	}
	return i, true, false
}

// triKeys returns the three-byte keys under which text beginning with l
// can be found: the first three bytes of every variant of its first three
// runes (l has at least minLitRunes runes).
func triKeys(l lit) []uint32 {
	var keys []uint32
	seen := map[uint32]bool{}
	var buf [3 * utf8.UTFMax]byte
	for _, r0 := range l[0].variants() {
		for _, r1 := range l[1].variants() {
			for _, r2 := range l[2].variants() {
				n := utf8.EncodeRune(buf[:], r0)
				n += utf8.EncodeRune(buf[n:], r1)
				utf8.EncodeRune(buf[n:], r2)
				k := uint32(buf[0])<<16 | uint32(buf[1])<<8 | uint32(buf[2])
				if !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
			}
		}
	}
	return keys
}

// maxBytes returns an upper bound on the length in bytes of any match of re,
// or -1 when matches can be arbitrarily long.
func maxBytes(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpNoMatch, syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine,
		syntax.OpBeginText, syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return 0
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			if re.Flags&syntax.FoldCase != 0 {
				n += utf8.UTFMax
			} else {
				n += utf8.RuneLen(r)
			}
		}
		return n
	case syntax.OpCharClass:
		hi := rune(0)
		for i := 1; i < len(re.Rune); i += 2 {
			hi = max(hi, re.Rune[i])
		}
		// Invalid bytes match as U+FFFD, one byte each; valid runes take
		// at most as many bytes as the highest rune of the class.
		switch {
		case hi >= 0x10000:
			return 4
		case hi >= 0x800:
			return 3
		case hi >= 0x80:
			return 2
		}
		return 1
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return utf8.UTFMax
	case syntax.OpCapture:
		return maxBytes(re.Sub[0])
	case syntax.OpQuest:
		return maxBytes(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus:
		if maxBytes(re.Sub[0]) == 0 {
			return 0
		}
		return -1
	case syntax.OpRepeat:
		m := maxBytes(re.Sub[0])
		if m == 0 {
			return 0
		}
		if m < 0 || re.Max < 0 {
			return -1
		}
		return m * re.Max
	case syntax.OpConcat:
		n := 0
		for _, sub := range re.Sub {
			m := maxBytes(sub)
			if m < 0 {
				return -1
			}
			n += m
		}
		return n
	case syntax.OpAlternate:
		n := 0
		for _, sub := range re.Sub {
			m := maxBytes(sub)
			if m < 0 {
				return -1
			}
			n = max(n, m)
		}
		return n
	}
	return -1
}

// nullable reports whether re can match the empty string (assertions
// assumed to hold).
func nullable(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine,
		syntax.OpBeginText, syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary,
		syntax.OpStar, syntax.OpQuest:
		return true
	case syntax.OpCapture, syntax.OpPlus:
		return nullable(re.Sub[0])
	case syntax.OpRepeat:
		return re.Min == 0 || nullable(re.Sub[0])
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			if !nullable(sub) {
				return false
			}
		}
		return true
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			if nullable(sub) {
				return true
			}
		}
		return false
	}
	return false
}

// hasEndAssertion reports whether re contains $, \z or a multi-line $: such a
// pattern cannot be run on a window that stops before the end of the text.
func hasEndAssertion(re *syntax.Regexp) bool {
	if re.Op == syntax.OpEndText || re.Op == syntax.OpEndLine {
		return true
	}
	for _, sub := range re.Sub {
		if hasEndAssertion(sub) {
			return true
		}
	}
	return false
}
