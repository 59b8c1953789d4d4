package rules

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"testing"
)

// diffPatterns exercise the prefilter, the windows, the context rune, the
// fallback scanner and the liveness VM against plain regexp results.
var diffPatterns = []string{
	`abc`,
	`\babc\b`,
	`ab+c`,
	`(?i)abk`,
	`(?i)ks`,
	`a(?:bc|bd)e*`,
	`(?m)^ab`,
	`(?m)ab$`,
	`ab$`,
	`\Aab`,
	`x[ab]{2,5}y`,
	`ab.{0,3}c`,
	`(?s)ab.*?cd`,
	`[ab]c`,
	`\d{2}-\d`,
	`(?P<secret>ab)c`,
	`ab(?P<secret>c+)?d`,
	`abc(?:de)?`,
	`(?U)ab+`,
	`ab|ba`,
	`ak\b`,
	`\Bbc`,
	`ab[^x]*x`,
	`(?:ab|cd)e`,
	`\bab[ck]{1,}`,
	`a\nb`,
	`(?i)ſka`,
	`é+b`,
	`k\s*[:=]\s*(?P<secret>[a-c1]{3,5})`,
	`(?i)sk(?P<secret>[ab]{2})\b`,
	`x(?P<secret>[ab]+)y?`,
	`(?:ab|a(?P<secret>b)c)d`,
	`e(?P<secret>[a-e]{2}(?:-[a-e]+)*)`,
}

func randText(r *rand.Rand, n int) []byte {
	runes := []string{"a", "b", "c", "d", "e", "k", "x", "K", " ", "-", "\n", "1", "é", "\xff", "ſ", "K", "s", "="}
	var b strings.Builder
	for range n {
		b.WriteString(runes[r.IntN(len(runes))])
	}
	return []byte(b.String())
}

func mustSet(t testing.TB, rules ...Rule) *Set {
	t.Helper()
	var cs []*compiled
	for _, r := range rules {
		c, err := compile(r)
		if err != nil {
			t.Fatalf("compile %q: %v", r.Pattern, err)
		}
		cs = append(cs, c)
	}
	return newSet(cs)
}

// naive finds the hits of c in text with regexp alone.
func naive(c *compiled, text []byte) [][2]int {
	var out [][2]int
	for _, loc := range c.re.FindAllSubmatchIndex(text, -1) {
		s, e := loc[0], loc[1]
		if c.secret > 0 {
			s, e = loc[2*c.secret], loc[2*c.secret+1]
			if s < 0 {
				continue
			}
		}
		if s == e || !c.keep(text[s:e]) {
			continue
		}
		out = append(out, [2]int{s, e})
	}
	return out
}

func TestScanMatchesRegexp(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, p := range diffPatterns {
		s := mustSet(t, Rule{Name: "r", Pattern: p, Action: Mask})
		m := s.req
		c := m.rules[0]
		for iter := range 400 {
			// Several segments, each an independent text.
			var buf []byte
			var segs []seg
			var texts [][]byte
			for range 1 + r.IntN(3) {
				txt := randText(r, r.IntN(40))
				if iter%7 == 0 {
					txt = []byte(strings.Repeat("ab", r.IntN(20)) + "c" + string(txt))
				}
				segs = append(segs, seg{start: len(buf), end: len(buf) + len(txt), from: len(buf)})
				buf = append(buf, txt...)
				texts = append(texts, txt)
			}
			hits := m.find(buf, segs)
			var got, want [][2]int
			for _, h := range hits {
				got = append(got, [2]int{h.start, h.end})
			}
			for i, txt := range texts {
				for _, w := range naive(c, txt) {
					want = append(want, [2]int{w[0] + segs[i].start, w[1] + segs[i].start})
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("pattern %q, segments %q: got %v, want %v (lits %d, maxLen %d)", p, texts, got, want, len(c.lits), c.maxLen)
			}
		}
	}
}

// TestScanBudget checks that a text that makes windowed tries expensive
// falls back to one linear pass, with the same result.
func TestScanBudget(t *testing.T) {
	s := mustSet(t, Rule{Name: "r", Pattern: `ab[^z]*z`, Action: Mask})
	text := []byte(strings.Repeat("ab", 50000))
	text = append(text, 'z')
	hits := s.req.find(text, []seg{{0, len(text), 0}})
	if len(hits) != 1 || hits[0].start != 0 || hits[0].end != len(text) {
		t.Fatalf("hits = %v", hits)
	}
}

// TestStreamStepsMatchWhole splits random texts at every position into two
// pieces, and at random into many, and checks that the released text equals
// the text masked whole, for every pattern.
func TestStreamStepsMatchWhole(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, p := range diffPatterns {
		s := mustSet(t, Rule{Name: "r", Pattern: p, Action: Mask, Replacement: "#"})
		for range 150 {
			text := randText(r, r.IntN(30))
			if r.IntN(4) == 0 {
				text = append([]byte("abc ab"), text...)
			}
			want := string(maskWhole(s, text))
			for cut := 0; cut <= len(text); cut++ {
				checkReleased(t, streamSteps(s, [][]byte{text[:cut], text[cut:]}), want, fmt.Sprintf("pattern %q text %q split at %d", p, text, cut))
			}
			var pieces [][]byte
			for rest := text; len(rest) > 0; {
				n := min(len(rest), 1+r.IntN(4))
				pieces = append(pieces, rest[:n])
				rest = rest[n:]
			}
			checkReleased(t, streamSteps(s, pieces), want, fmt.Sprintf("pattern %q pieces %q", p, pieces))
		}
	}
}

// TestStreamStepsMatchWholeMany does the same with several overlapping
// rules at once, whose masks merge.
func TestStreamStepsMatchWholeMany(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for range 60 {
		var rules []Rule
		for i := range 3 {
			rules = append(rules, Rule{Name: fmt.Sprint("r", i), Pattern: diffPatterns[r.IntN(len(diffPatterns))], Action: Mask, Replacement: fmt.Sprint("<", i, ">")})
		}
		s := mustSet(t, rules...)
		for range 30 {
			text := randText(r, r.IntN(30))
			want := string(maskWhole(s, text))
			for cut := 0; cut <= len(text); cut++ {
				checkReleased(t, streamSteps(s, [][]byte{text[:cut], text[cut:]}), want, fmt.Sprintf("rules %v text %q split at %d", rules, text, cut))
			}
		}
	}
}

func maskWhole(s *Set, text []byte) []byte {
	hits := s.resp.find(text, []seg{{0, len(text), 0}})
	return applyMasks(nil, text, hits, s.resp)
}

func streamPieces(s *Set, pieces [][]byte) string {
	steps := streamSteps(s, pieces)
	return steps[len(steps)-1]
}

// streamSteps streams pieces through one text stream of an event masker
// and returns the text released after each piece, and at the end: each
// one a prefix of the next.
func streamSteps(s *Set, pieces [][]byte) []string {
	em := s.NewEventMasker(StreamOptions{Holdback: 1 << 20})
	st := &textStream{key: "k"}
	var out []byte
	var steps []string
	for _, p := range pieces {
		out = append(out, em.step(st, p, false)...)
		steps = append(steps, string(out))
	}
	return append(steps, string(append(out, em.step(st, nil, true)...)))
}

// checkReleased fails the test unless the text released after every step
// is a prefix of want, the text masked whole: nothing that the whole text
// masks was released before its match was decided.
func checkReleased(t *testing.T, steps []string, want, what string) {
	t.Helper()
	for i, got := range steps {
		if !strings.HasPrefix(want, got) {
			t.Fatalf("%s: after piece %d released %q, not a prefix of %q", what, i, got, want)
		}
	}
	if steps[len(steps)-1] != want {
		t.Fatalf("%s: released %q, want %q", what, steps[len(steps)-1], want)
	}
}

// TestLiveStart compares the liveness VM with brute force: a thread started
// at p is alive at the end of text when some continuation makes the pattern
// match from p through the end, or when a match from p ends exactly there.
func TestLiveStart(t *testing.T) {
	tails := []string{"", "a", "b", "c", "d", "e", "x", "z", " ", "\n", "k", "1", "é", "bc", "cd", "de", "ab", "xy", "by"}
	r := rand.New(rand.NewPCG(5, 6))
	for _, p := range diffPatterns {
		if strings.Contains(p, `\B`) || strings.Contains(p, `$`) {
			continue // brute force with short tails cannot decide these
		}
		tree, err := syntax.Parse(p, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		prog, err := syntax.Compile(tree.Simplify())
		if err != nil {
			t.Fatal(err)
		}
		anch := regexp.MustCompile(`^(?:` + p + `)`)
		for range 200 {
			text := randText(r, r.IntN(12))
			got := liveStart(prog, text, 0, false)
			// Every start that brute force proves alive must be >= got
			// (got is the earliest), and got itself must be plausible.
			for q := 0; q < len(text); q++ {
				alive := false
				for _, tail := range tails {
					ext := append(append([]byte(nil), text...), tail...)
					if q > 0 && !utf8Boundary(text, q) {
						continue
					}
					if loc := anch.FindIndex(ext[q:]); loc != nil && q+loc[1] >= len(text) && tail != "" {
						alive = true
					}
				}
				if alive && (got < 0 || got > q) && !strings.Contains(p, `\b`) && !strings.Contains(p, `^`) && !strings.Contains(p, `\A`) {
					t.Fatalf("pattern %q text %q: liveStart = %d, but a match from %d can reach past the end", p, text, got, q)
				}
			}
		}
	}
}

func utf8Boundary(b []byte, i int) bool {
	return i == 0 || i == len(b) || b[i]&0xC0 != 0x80
}

func TestPrefixes(t *testing.T) {
	tests := []struct {
		pattern string
		want    []string // nil: no prefilter
	}{
		{`abc`, []string{"abc"}},
		{`\b(?:AKIA|ASIA)[A-Z]{16}`, []string{"AKIA", "ASIA"}},
		{`gh[pousr]_x`, []string{"ghp_x", "gho_x", "ghu_x", "ghs_x", "ghr_x"}},
		{`sk-(?:proj-)?[a-z]+`, []string{"sk-proj-", "sk-"}},
		{`(?i)drop\s+table`, []string{"DROP\t", "DROP\n", "DROP\f", "DROP\r", "DROP "}},
		{`[a-z]+foo`, nil},
		{`ab`, nil},
		{`a*bcd`, nil},
		{`(?:abc)+d`, []string{"abc"}},
		{`x{2}yz`, nil},
		{`abc|.x`, nil},
	}
	for _, tt := range tests {
		c, err := compile(Rule{Name: "r", Pattern: tt.pattern, Action: Mask})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range c.lits {
			var b strings.Builder
			for _, lr := range l {
				b.WriteRune(lr.r)
			}
			got = append(got, b.String())
		}
		slices.Sort(got)
		want := slices.Clone(tt.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%q: literals %q, want %q", tt.pattern, got, want)
		}
	}
}

func TestMaxBytes(t *testing.T) {
	tests := []struct {
		pattern string
		want    int
	}{
		{`abc`, 3},
		{`a{2,5}`, 5},
		{`[a-z]{3}x?`, 4},
		{`é`, 2},
		{`.`, 4},
		{`a+`, -1},
		{`(?i)k`, 4},
		{`ab|cde`, 3},
		{`\bab\b`, 2},
	}
	for _, tt := range tests {
		tree, err := syntax.Parse(tt.pattern, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		if got := maxBytes(tree); got != tt.want {
			t.Errorf("maxBytes(%q) = %d, want %d", tt.pattern, got, tt.want)
		}
	}
}

func ExampleSet_Request() {
	s, err := Parse([]byte(`
rules:
  - name: ticket
    pattern: 'TICKET-[0-9]{4}'
    action: mask
`))
	if err != nil {
		panic(err)
	}
	res := s.Request([]byte(`{"input":"see TICKET-1234"}`))
	fmt.Println(string(res.Body))
	// Output: {"input":"see [MASKED:ticket]"}
}
