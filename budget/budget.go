// Package budget caps what an identity may spend through sessctl: tokens
// and/or requests per window, per value of an identity attribute (the
// repository, the workflow, the runner...) that the policy names.
//
// Windows are fixed and aligned to the Unix epoch in UTC (per: 24h is the
// UTC day, per: 1m the minute): a window frees all at once at its end,
// which is what Retry-After tells the runner. A request is admitted while
// its window's spend is below every limit; the tokens of an answer are
// counted when the answer ends, so an answer in progress is never cut and
// the next request is the one refused.
//
// What each key spent is kept by a [Counter]. [Local] counts in memory,
// seeded from the session log (where each record's charges are written in
// its own append transaction, so counters survive restarts); a fleet-wide
// Counter (PostgreSQL, when central_dsn is set) can take its place
// behind the same interface.
package budget

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sessctl/sessctl/internal/duration"
)

// DefaultBy is the attribute a budget is counted by when it names none.
const DefaultBy = "repository"

// Limit is one budget: at most Tokens tokens and/or Requests requests per
// window of length Per, counted separately for each value of the
// identity attribute By.
type Limit struct {
	// Tokens caps the tokens reported in a window (0: no cap).
	Tokens int64
	// Requests caps the requests admitted in a window (0: no cap).
	Requests int64
	// Per is the window length.
	Per time.Duration
	// By is "runner" or a pipeline claim ("repository", "workflow",
	// ...); DefaultBy when empty. Identities without it share one count.
	By string
}

// yamlLimit is a Limit as written in the config.
type yamlLimit struct {
	Tokens   string `yaml:"tokens,omitempty"`
	Requests string `yaml:"requests,omitempty"`
	Per      string `yaml:"per"`
	By       string `yaml:"by,omitempty"`
}

// UnmarshalYAML reads {tokens: 2M, requests: 600, per: 24h, by: workflow}.
func (l *Limit) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return errors.New("budget: want a mapping like {tokens: 2M, per: 24h}")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch k := n.Content[i].Value; k {
		case "tokens", "requests", "per", "by":
		default:
			return fmt.Errorf("budget: unknown key %q (want tokens, requests, per, by)", k)
		}
	}
	var y yamlLimit
	if err := n.Decode(&y); err != nil {
		return err
	}
	var err error
	if l.Tokens, err = ParseCount(y.Tokens); err != nil {
		return fmt.Errorf("budget: tokens: %w", err)
	}
	if l.Requests, err = ParseCount(y.Requests); err != nil {
		return fmt.Errorf("budget: requests: %w", err)
	}
	if y.Per == "" {
		return errors.New("budget: per is required (a window such as 1m, 24h or 7d)")
	}
	if l.Per, err = duration.Parse(y.Per); err != nil {
		return fmt.Errorf("budget: per: %w", err)
	}
	l.By = y.By
	return l.Validate()
}

// MarshalYAML writes the limit back in its config form.
func (l Limit) MarshalYAML() (any, error) {
	y := yamlLimit{Per: l.Per.String(), By: l.By}
	if l.Tokens > 0 {
		y.Tokens = strconv.FormatInt(l.Tokens, 10)
	}
	if l.Requests > 0 {
		y.Requests = strconv.FormatInt(l.Requests, 10)
	}
	return y, nil
}

// Validate checks that the limit caps something over a window of at least
// a second.
func (l Limit) Validate() error {
	if l.Tokens <= 0 && l.Requests <= 0 {
		return errors.New("budget: set tokens, requests or both")
	}
	if l.Per < time.Second || l.Per%time.Second != 0 {
		return fmt.Errorf("budget: per %s: want a whole number of seconds, at least 1s", l.Per)
	}
	if strings.ContainsRune(l.By, 0) {
		return errors.New("budget: by: bad attribute name")
	}
	return nil
}

// Attr returns the attribute the limit is counted by.
func (l Limit) Attr() string {
	if l.By == "" {
		return DefaultBy
	}
	return l.By
}

// Limits is the `budget:` of a policy: one limit, or a list of them.
type Limits []Limit

// UnmarshalYAML accepts a single mapping or a sequence of them.
func (ls *Limits) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		var l Limit
		if err := n.Decode(&l); err != nil {
			return err
		}
		*ls = Limits{l}
		return nil
	}
	var list []Limit
	if err := n.Decode(&list); err != nil {
		return err
	}
	*ls = list
	return nil
}

// ParseCount reads a count: digits with an optional K, M or G suffix
// (thousands, millions, billions: 2M is 2000000). "" is 0.
func ParseCount(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	switch s[len(s)-1] {
	case 'k', 'K':
		mult = 1_000
	case 'm', 'M':
		mult = 1_000_000
	case 'g', 'G':
		mult = 1_000_000_000
	}
	num := s
	if mult > 1 {
		num = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a positive count (like 600, 50K or 2M)", s)
	}
	return n * mult, nil
}

// Window returns the start of the window of length per that holds t.
func Window(t time.Time, per time.Duration) time.Time {
	s := int64(per / time.Second)
	u := t.Unix()
	return time.Unix(u-((u%s)+s)%s, 0).UTC()
}

// Key returns the counter key of limit l of policy for attribute value v:
// "<policy>/<by>=<value>/<per seconds>s". Limits of a policy with the same
// attribute and window share one counter.
func Key(policy string, l Limit, v string) string {
	k := policy + "/" + l.Attr() + "=" + v + "/" + strconv.FormatInt(int64(l.Per/time.Second), 10) + "s"
	return strings.ReplaceAll(k, "\x00", "\uFFFD")
}
