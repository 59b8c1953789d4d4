package rules

import (
	_ "embed"
	"fmt"
	"sync"
)

//go:embed default.yaml
var defaultYAML []byte

var defaultSet = sync.OnceValue(func() *Set {
	s, err := Parse(defaultYAML)
	if err != nil {
		panic(fmt.Sprintf("rules: the embedded default ruleset is invalid: %v", err))
	}
	return s
})

// Default returns the shipped ruleset, which masks common secrets in both
// directions: AWS keys, GitHub, GitLab, OpenAI, Anthropic, Slack, Stripe,
// Google, npm and PyPI tokens, Slack webhooks, PEM private keys and JWTs.
func Default() *Set { return defaultSet() }

// DefaultYAML returns the source of the shipped ruleset, a starting point
// for a rules file.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }
