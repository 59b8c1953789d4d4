package rules

import (
	"regexp/syntax"
	"testing"
)

// TestStartTable checks that a pattern's leading assertions decide, from
// the rune before a position and the rune at it, whether a match can
// start there.
func TestStartTable(t *testing.T) {
	const bot = -1 // no rune before: the start of the text
	tests := []struct {
		pattern string
		prev, r rune
		want    bool
	}{
		{`\beyJ`, 'h', 'e', false}, // " The": mid-word
		{`\beyJ`, ' ', 'e', true},
		{`\beyJ`, '"', 'e', true},
		{`\beyJ`, bot, 'e', true},
		{`\beyJ`, '_', 'e', false}, // _ is a word character
		{`\beyJ`, 'é', 'e', true},  // \b is ASCII: é is not a word character
		{`\beyJ`, ' ', 'x', false}, // not the first rune
		{`\b(?:sk|rk)_`, '9', 'r', false},
		{`(?i)\bsk-`, ' ', 'S', true},
		{`\Bing`, 'k', 'i', true},
		{`\Bing`, ' ', 'i', false},
		{`\Bing`, bot, 'i', false},
		{`^key`, bot, 'k', true},
		{`^key`, '\n', 'k', false},
		{`(?m)^key`, '\n', 'k', true},
		{`(?m)^key`, ' ', 'k', false},
		{`\Akey`, ' ', 'k', false},
		{`(?:\bab|xab)`, 'w', 'a', false},
		{`(?:\bab|xab)`, 'w', 'x', true},
		{`x?\bab`, 'w', 'x', true},
		{`secret`, 'e', 's', true}, // no assertion: anywhere
	}
	for _, tt := range tests {
		re, err := syntax.Parse(tt.pattern, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		prog, err := syntax.Compile(re.Simplify())
		if err != nil {
			t.Fatal(err)
		}
		if got := newStartTable(prog).canStart(prog, tt.prev, tt.r); got != tt.want {
			t.Errorf("%q after %q, at %q: canStart = %v, want %v", tt.pattern, tt.prev, tt.r, got, tt.want)
		}
	}
}
