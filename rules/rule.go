package rules

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
)

// Action is what a rule does when it fires.
type Action string

// Actions.
const (
	// Mask replaces the matched text before it is forwarded or returned.
	Mask Action = "mask"
	// Block refuses the request, or ends a streamed answer with an error.
	Block Action = "block"
	// Approve holds the request for a human decision.
	Approve Action = "approve"
)

// Scopes name the direction a rule applies to.
const (
	ScopeRequest  = "request"
	ScopeResponse = "response"
)

// Rule is one rule as written in a rules file.
type Rule struct {
	// Name identifies the rule in records, errors and policies.
	Name string
	// Description says what the rule finds; shown by "sessctl rules list".
	Description string
	// Pattern is a Go (RE2) regular expression. If it has a group named
	// "secret", only that group is masked, filtered and recorded; in a
	// streamed answer only text that could belong to it is held back, so
	// that what comes before it (a key name, a URL's host) reaches the
	// client at once.
	Pattern string
	// Action is Mask, Block or Approve.
	Action Action
	// Scope lists where the rule applies: ScopeRequest, ScopeResponse.
	Scope []string
	// Replacement is the text a masked value becomes; "[MASKED:<name>]"
	// by default. It is inserted literally.
	Replacement string
	// Message explains a block or an approval to the runner.
	Message string
	// Entropy, when positive, is the minimum Shannon entropy (bits per
	// byte) a value must have for the rule to fire.
	Entropy float64
	// Allow lists regular expressions; a value matching any of them is
	// not a hit.
	Allow []string
	// Holdback, when positive, is how many bytes of a partial match of
	// this rule a stream may keep (held back, or released and kept as
	// context to match against), instead of StreamOptions.Holdback: set
	// it for secrets longer than the default bound (PEM blocks).
	Holdback int
	// Line is the line of the rule in its file, 0 if unknown.
	Line int
}

type scopeMask uint8

const (
	scopeReq scopeMask = 1 << iota
	scopeResp
)

// compiled is a rule ready to match.
type compiled struct {
	Rule
	scope scopeMask

	re     *regexp.Regexp // the pattern as written
	anchor *regexp.Regexp // ^(?:pattern): a match starting at the text start
	ctx    *regexp.Regexp // ^(?s:.)(?:pattern): one rune of context, then a match
	search *regexp.Regexp // (?s:.)(?:pattern): the next match after a context rune
	allow  []*regexp.Regexp
	secret int // index of the "secret" group, 0 for the whole match

	lits    []lit  // every match begins with one of these; nil: no prefilter
	plits   []plit // lits prepared for the scanner
	maxLen  int    // bytes; -1 when unbounded or when windows cannot be used
	prog    *syntax.Prog
	starts  *startTable // what a match can begin with, by the assertions that hold
	replace []byte
	vms     sync.Pool // *valueVM for prog, shared by the stream maskers
}

// valueVM returns a value VM for the rule's program; give it back to c.vms.
func (c *compiled) valueVM() *valueVM {
	if vm, ok := c.vms.Get().(*valueVM); ok {
		return vm
	}
	return newValueVM(c.prog)
}

// Set is a compiled, ordered ruleset. A Set is immutable and safe for
// concurrent use.
type Set struct {
	rules []*compiled
	req   *matcher
	resp  *matcher

	mu      sync.Mutex
	subsets map[string]*Set // Subset results, by names
}

// maxSubsets bounds the Subset cache of a set.
const maxSubsets = 256

// compile checks and compiles r. Errors do not name the rule: the caller
// adds name and line.
func compile(r Rule) (*compiled, error) {
	switch r.Action {
	case Mask, Block, Approve:
	case "":
		return nil, fmt.Errorf("missing action (mask, block or approve)")
	default:
		return nil, fmt.Errorf("unknown action %q (want mask, block or approve)", r.Action)
	}
	c := &compiled{Rule: r}
	if len(r.Scope) == 0 {
		c.Scope = []string{ScopeRequest, ScopeResponse}
	}
	for _, s := range c.Scope {
		switch s {
		case ScopeRequest:
			c.scope |= scopeReq
		case ScopeResponse:
			c.scope |= scopeResp
		default:
			return nil, fmt.Errorf("unknown scope %q (want request or response)", s)
		}
	}
	if r.Pattern == "" {
		return nil, fmt.Errorf("missing pattern")
	}
	if r.Entropy < 0 || r.Entropy > 8 {
		return nil, fmt.Errorf("entropy %v out of range 0..8", r.Entropy)
	}
	if r.Holdback < 0 {
		return nil, fmt.Errorf("negative holdback %d", r.Holdback)
	}
	tree, err := syntax.Parse(r.Pattern, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("invalid pattern: %w", err)
	}
	if nullable(tree) {
		return nil, fmt.Errorf("pattern %q can match empty text", r.Pattern)
	}
	if c.re, err = regexp.Compile(r.Pattern); err != nil {
		return nil, fmt.Errorf("invalid pattern: %w", err)
	}
	// The wrappers add no capturing group, so group numbers are shared.
	for _, w := range []struct {
		dst    **regexp.Regexp
		prefix string
	}{{&c.anchor, `^(?:`}, {&c.ctx, `^(?s:.)(?:`}, {&c.search, `(?s:.)(?:`}} {
		if *w.dst, err = regexp.Compile(w.prefix + r.Pattern + `)`); err != nil {
			return nil, fmt.Errorf("invalid pattern: %w", err)
		}
	}
	if i := c.re.SubexpIndex("secret"); i > 0 {
		c.secret = i
	}
	for _, a := range r.Allow {
		are, err := regexp.Compile(a)
		if err != nil {
			return nil, fmt.Errorf("invalid allow pattern %q: %w", a, err)
		}
		c.allow = append(c.allow, are)
	}
	if lits, _, ok := prefixes(tree); ok && selective(lits) {
		c.lits = dedupLits(lits)
	}
	c.maxLen = maxBytes(tree)
	if hasEndAssertion(tree) {
		c.maxLen = -1
	}
	if c.prog, err = syntax.Compile(tree.Simplify()); err != nil {
		return nil, fmt.Errorf("invalid pattern: %w", err)
	}
	c.starts = newStartTable(c.prog)
	for _, l := range c.lits {
		c.plits = append(c.plits, prepare(l, c.prog))
	}
	c.Replacement = r.Replacement
	if c.Replacement == "" && r.Action == Mask {
		c.Replacement = "[MASKED:" + r.Name + "]"
	}
	c.replace = []byte(c.Replacement)
	return c, nil
}

// newSet builds the matchers of a set from compiled rules.
func newSet(rules []*compiled) *Set {
	s := &Set{rules: rules}
	s.req = newMatcher(rules, scopeReq)
	s.resp = newMatcher(rules, scopeResp)
	return s
}

// Rules returns the rules of the set, in order.
func (s *Set) Rules() []Rule {
	out := make([]Rule, len(s.rules))
	for i, c := range s.rules {
		out[i] = c.Rule
		out[i].Scope = slices.Clone(c.Scope)
		out[i].Allow = slices.Clone(c.Allow)
	}
	return out
}

// Subset returns a set with only the named rules, in the order of s. Names
// that s does not have are ignored.
func (s *Set) Subset(names []string) *Set {
	key := strings.Join(names, "\x00")
	s.mu.Lock()
	sub, ok := s.subsets[key]
	s.mu.Unlock()
	if ok {
		return sub
	}
	var keep []*compiled
	for _, c := range s.rules {
		if slices.Contains(names, c.Name) {
			keep = append(keep, c)
		}
	}
	sub = newSet(keep)
	s.mu.Lock()
	if s.subsets == nil {
		s.subsets = map[string]*Set{}
	}
	if len(s.subsets) < maxSubsets {
		s.subsets[key] = sub
	}
	s.mu.Unlock()
	return sub
}

// Len returns the number of rules in the set.
func (s *Set) Len() int { return len(s.rules) }
