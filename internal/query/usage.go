package query

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sessctl/sessctl/store"
)

// UsageDims are the dimensions usage can be totalled by, in the order
// they are printed.
var UsageDims = []string{"repo", "workflow", "runner", "actor", "model", "day"}

// UsageQuery selects the records whose usage is totalled and how they are
// grouped: `sessctl usage` and GET /api/v1/usage share it.
type UsageQuery struct {
	// Since and Until bound the records' start time; Until is exclusive.
	Since, Until time.Time
	// By lists the dimensions (UsageDims) rows are grouped by; none gives
	// one row of totals.
	By []string
	// Repo, Workflow, Runner, Actor and Model, when set, keep only the
	// records with that value (as the dimensions of the same names read
	// it).
	Repo, Workflow, Runner, Actor, Model string
}

// usageFilters are the URL parameter names of UsageQuery's filters, in
// UsageDims order.
var usageFilters = []string{"repo", "workflow", "runner", "actor", "model"}

// filterValue returns q's field for filter name (one of usageFilters).
func (q *UsageQuery) filterValue(name string) *string {
	switch name {
	case "repo":
		return &q.Repo
	case "workflow":
		return &q.Workflow
	case "runner":
		return &q.Runner
	case "actor":
		return &q.Actor
	case "model":
		return &q.Model
	}
	return nil
}

// match reports whether r passes q's filters.
func (q *UsageQuery) match(r *store.Record) bool {
	for _, f := range usageFilters {
		if want := *q.filterValue(f); want != "" && dimValue(r, f) != want {
			return false
		}
	}
	return true
}

// ParseUsageQuery reads a UsageQuery from URL query parameters: since,
// until (as for sessions) and by (comma-separated dimensions).
func ParseUsageQuery(v url.Values, now time.Time) (UsageQuery, error) {
	var q UsageQuery
	var err error
	if q.Since, err = ParseTime(v.Get("since"), now); err != nil {
		return UsageQuery{}, fmt.Errorf("since: %w", err)
	}
	if q.Until, err = ParseTime(v.Get("until"), now); err != nil {
		return UsageQuery{}, fmt.Errorf("until: %w", err)
	}
	if q.By, err = ParseDims(v.Get("by")); err != nil {
		return UsageQuery{}, err
	}
	for _, f := range usageFilters {
		*q.filterValue(f) = v.Get(f)
	}
	return q, nil
}

// ParseDims reads a comma-separated list of UsageDims ("repository" is
// accepted for "repo").
func ParseDims(s string) ([]string, error) {
	var dims []string
	for _, d := range strings.Split(s, ",") {
		d = strings.TrimSpace(strings.ToLower(d))
		if d == "" {
			continue
		}
		if d == "repository" {
			d = "repo"
		}
		if !slices.Contains(UsageDims, d) {
			return nil, fmt.Errorf("by: unknown dimension %q (want %s)", d, strings.Join(UsageDims, ", "))
		}
		if !slices.Contains(dims, d) {
			dims = append(dims, d)
		}
	}
	return dims, nil
}

// Values encodes q as URL query parameters.
func (q UsageQuery) Values() url.Values {
	v := url.Values{}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.Format(time.RFC3339Nano))
	}
	if len(q.By) > 0 {
		v.Set("by", strings.Join(q.By, ","))
	}
	for _, f := range usageFilters {
		if s := *q.filterValue(f); s != "" {
			v.Set(f, s)
		}
	}
	return v
}

// UsageRow is the totals of one group. The dimension fields not grouped
// by are empty; a grouped field the records lack is "-".
type UsageRow struct {
	Repo     string `json:"repo,omitempty"`
	Workflow string `json:"workflow,omitempty"`
	Runner   string `json:"runner,omitempty"`
	Actor    string `json:"actor,omitempty"`
	Model    string `json:"model,omitempty"`
	Day      string `json:"day,omitempty"`
	// Requests counts the exchanges (forwarded or not); Refused the
	// requests sessctl refused before forwarding (denied, over budget,
	// blocked by a rule...).
	Requests int64 `json:"requests"`
	Refused  int64 `json:"refused"`
	// The token counts as the upstreams reported them, summed.
	Input       int64 `json:"input_tokens"`
	CachedInput int64 `json:"cached_input_tokens"`
	Output      int64 `json:"output_tokens"`
	Reasoning   int64 `json:"reasoning_tokens"`
	Total       int64 `json:"total_tokens"`
}

// Dim returns the row's value for dimension d.
func (r *UsageRow) Dim(d string) string {
	switch d {
	case "repo":
		return r.Repo
	case "workflow":
		return r.Workflow
	case "runner":
		return r.Runner
	case "actor":
		return r.Actor
	case "model":
		return r.Model
	case "day":
		return r.Day
	}
	return ""
}

func (r *UsageRow) setDim(d, v string) {
	if v == "" {
		v = "-"
	}
	switch d {
	case "repo":
		r.Repo = v
	case "workflow":
		r.Workflow = v
	case "runner":
		r.Runner = v
	case "actor":
		r.Actor = v
	case "model":
		r.Model = v
	case "day":
		r.Day = v
	}
}

// add counts one record in the row.
func (r *UsageRow) add(rec *store.Record) {
	if rec.Kind == store.KindRefused {
		r.Refused++
	} else {
		r.Requests++
	}
	if u := rec.Usage; u != nil {
		r.Input += u.Input
		r.CachedInput += u.CachedInput
		r.Output += u.Output
		r.Reasoning += u.Reasoning
		r.Total += u.Total
	}
}

// countsForUsage reports whether a record is a request of a runner:
// exchanges and refused requests, not the log's own records.
func countsForUsage(r *store.Record) bool {
	return r.Kind == store.KindExchange || (r.Kind == store.KindRefused && r.Method != "" && r.Method != "CONNECT")
}

// dimValue returns a record's value for a dimension.
func dimValue(r *store.Record, d string) string {
	id := &r.Identity
	switch d {
	case "repo":
		return id.Claim("repository", "project_path")
	case "workflow":
		return id.Claim("workflow", "pipeline_slug")
	case "runner":
		return id.Runner
	case "actor":
		return id.Claim("actor", "user_login")
	case "model":
		return r.Model
	case "day":
		return r.Start.UTC().Format("2006-01-02")
	}
	return ""
}

// Usage totals the usage of the records q selects, one row per group,
// sorted by total tokens (then requests) descending, then by the
// dimensions. It reads the records of the time range through the store's
// time index.
func Usage(src Source, q UsageQuery) ([]UsageRow, error) {
	groups := map[string]*UsageRow{}
	// Repository, runner and actor are indexed in the store.
	f := store.Filter{Since: q.Since, Until: q.Until, Repo: q.Repo, Runner: q.Runner, Actor: q.Actor}
	err := src.List(f, func(r *store.Record) error {
		if !countsForUsage(r) || !q.match(r) {
			return nil
		}
		var key strings.Builder
		for _, d := range q.By {
			key.WriteString(dimValue(r, d))
			key.WriteByte(0)
		}
		row := groups[key.String()]
		if row == nil {
			row = &UsageRow{}
			for _, d := range q.By {
				row.setDim(d, dimValue(r, d))
			}
			groups[key.String()] = row
		}
		row.add(r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sortedRows(groups, func(a, b UsageRow) int {
		for _, d := range q.By {
			if c := cmp.Compare(a.Dim(d), b.Dim(d)); c != 0 {
				return c
			}
		}
		return 0
	}), nil
}

// UsageReport is what the Usage page draws: requests and tokens over
// time, the top repositories and models, and the requests each rule
// blocked.
type UsageReport struct {
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Step is the width of a Series bucket: an hour for ranges up to two
	// days, else a day.
	Step   string        `json:"step"`
	Series []UsagePoint  `json:"series"`
	Repos  []UsageRow    `json:"top_repos"`
	Models []UsageRow    `json:"top_models"`
	Blocks []RuleBlocked `json:"blocks_by_rule"`
	Totals UsageRow      `json:"totals"`
}

// UsagePoint is one bucket of the time series.
type UsagePoint struct {
	T        time.Time `json:"t"`
	Requests int64     `json:"requests"`
	Refused  int64     `json:"refused"`
	Tokens   int64     `json:"tokens"`
}

// RuleBlocked counts the requests or answers a rule blocked.
type RuleBlocked struct {
	Rule  string `json:"rule"`
	Count int64  `json:"count"`
}

// topN is how many repositories and models the report lists.
const topN = 10

// Report builds the Usage page's report for [since, until) in one pass.
func Report(src Source, since, until time.Time) (*UsageReport, error) {
	if since.IsZero() || !until.After(since) {
		return nil, fmt.Errorf("usage report: %s to %s is not a range to chart", since.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	step := 24 * time.Hour
	if until.Sub(since) <= 48*time.Hour {
		step = time.Hour
	}
	rep := &UsageReport{Since: since, Until: until, Step: step.String()}
	n := int(until.Sub(since.Truncate(step))/step) + 1
	if n < 1 || n > 10000 {
		return nil, fmt.Errorf("usage report: %s to %s is not a range to chart", since, until)
	}
	start := since.Truncate(step)
	rep.Series = make([]UsagePoint, n)
	for i := range rep.Series {
		rep.Series[i].T = start.Add(time.Duration(i) * step)
	}
	repos, models, blocks := map[string]*UsageRow{}, map[string]*UsageRow{}, map[string]int64{}
	err := src.List(store.Filter{Since: since, Until: until}, func(r *store.Record) error {
		if !countsForUsage(r) {
			return nil
		}
		if i := int(r.Start.Sub(start) / step); i >= 0 && i < n {
			p := &rep.Series[i]
			if r.Kind == store.KindRefused {
				p.Refused++
			} else {
				p.Requests++
			}
			p.Tokens += r.Usage.Tokens()
		}
		rep.Totals.add(r)
		for _, g := range []struct {
			m   map[string]*UsageRow
			dim string
		}{{repos, "repo"}, {models, "model"}} {
			v := dimValue(r, g.dim)
			row := g.m[v]
			if row == nil {
				row = &UsageRow{}
				row.setDim(g.dim, v)
				g.m[v] = row
			}
			row.add(r)
		}
		if r.Outcome == store.OutcomeBlocked || r.Outcome == store.OutcomeBudgetExceeded || r.Outcome == store.OutcomeDenied {
			name := ""
			for _, h := range r.Rules {
				if h.Action == "block" {
					name = h.Name
					break
				}
			}
			if name == "" && r.Outcome == store.OutcomeBudgetExceeded {
				name = "(budget)"
			}
			if name == "" && r.Outcome == store.OutcomeDenied {
				name = "(policy)"
			}
			if name != "" {
				blocks[name]++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep.Repos, rep.Models = top(repos), top(models)
	for k, v := range blocks {
		rep.Blocks = append(rep.Blocks, RuleBlocked{k, v})
	}
	slices.SortFunc(rep.Blocks, func(a, b RuleBlocked) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Rule, b.Rule)
	})
	return rep, nil
}

// top returns the topN rows by tokens, then requests.
func top(m map[string]*UsageRow) []UsageRow {
	rows := sortedRows(m, func(a, b UsageRow) int {
		return cmp.Compare(a.Repo+a.Model, b.Repo+b.Model)
	})
	return rows[:min(len(rows), topN)]
}

// sortedRows returns the rows of m, most tokens first, then most requests
// (refused ones included), then as tie orders them.
func sortedRows(m map[string]*UsageRow, tie func(a, b UsageRow) int) []UsageRow {
	rows := make([]UsageRow, 0, len(m))
	for _, r := range m {
		rows = append(rows, *r)
	}
	slices.SortFunc(rows, func(a, b UsageRow) int {
		if c := cmp.Compare(b.Total, a.Total); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Requests+b.Refused, a.Requests+a.Refused); c != 0 {
			return c
		}
		return tie(a, b)
	})
	return rows
}
