package web

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sessctl/sessctl/config"
	"github.com/sessctl/sessctl/identity"
	"github.com/sessctl/sessctl/store"
)

// Query selects sessions. The CLI (sessctl sessions ls) and the API
// (GET /api/v1/sessions) share it so that both accept the same filters with
// the same meaning. Zero fields match everything.
type Query struct {
	// Since and Until bound the record's start time; Until is exclusive.
	Since, Until time.Time
	// Runner is the runner name of a static runner token.
	Runner string
	// Repo, Run, SHA and Actor match the verified pipeline claims
	// repository (or GitLab project_path), run_id (or pipeline_id), sha and
	// actor (or user_login).
	Repo, Run, SHA, Actor string
	// Outcome is one of the store.Outcome* values.
	Outcome string
	// Rule is the name of a rule that fired on the exchange.
	Rule string
	// Host is the upstream host.
	Host string
	// Kind is the record kind (exchange, refused, approval, ...).
	Kind string
	// Session is a session id; all records sharing it match.
	Session string
	// Limit bounds the number of records returned; 0 means no limit.
	Limit int
	// After is a paging cursor (see [Cursor]): only records strictly older
	// than it, in list order, match.
	After string
}

// Query parameter names, shared by the API and the CLI's live mode.
var queryParams = []string{"since", "until", "runner", "repo", "run", "sha", "actor", "outcome", "rule", "host", "kind", "session", "limit", "after"}

// ParseTime reads a time filter: an RFC 3339 time, or a duration back from
// now ("90m", "24h", "7d"). The empty string is the zero time.
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration (like 24h or 7d) nor an RFC 3339 time", s)
	}
	return now.Add(-d), nil
}

// ParseQuery reads a Query from URL query parameters (the names of
// [Query.Values]). Relative times are taken back from now.
func ParseQuery(v url.Values, now time.Time) (Query, error) {
	var q Query
	var err error
	if q.Since, err = ParseTime(v.Get("since"), now); err != nil {
		return Query{}, fmt.Errorf("since: %w", err)
	}
	if q.Until, err = ParseTime(v.Get("until"), now); err != nil {
		return Query{}, fmt.Errorf("until: %w", err)
	}
	q.Runner, q.Repo, q.Run = v.Get("runner"), v.Get("repo"), v.Get("run")
	q.SHA, q.Actor, q.Outcome = v.Get("sha"), v.Get("actor"), v.Get("outcome")
	q.Rule, q.Host, q.Kind = v.Get("rule"), v.Get("host"), v.Get("kind")
	q.Session, q.After = v.Get("session"), v.Get("after")
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 0 {
			return Query{}, fmt.Errorf("limit: %q is not a non-negative integer", s)
		}
	}
	if q.After != "" {
		if _, _, err := parseCursor(q.After); err != nil {
			return Query{}, err
		}
	}
	return q, nil
}

// Values encodes q as URL query parameters that [ParseQuery] reads back.
// Times are written in RFC 3339 with nanoseconds.
func (q Query) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.Format(time.RFC3339Nano))
	}
	set("runner", q.Runner)
	set("repo", q.Repo)
	set("run", q.Run)
	set("sha", q.SHA)
	set("actor", q.Actor)
	set("outcome", q.Outcome)
	set("rule", q.Rule)
	set("host", q.Host)
	set("kind", q.Kind)
	set("session", q.Session)
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	set("after", q.After)
	return v
}

// claimOf returns the first non-empty claim among names.
func claimOf(id *store.Identity, names ...string) string {
	return (&identity.Identity{Claims: id.Claims}).Claim(names...)
}

// filter is q as a store filter, without the paging cursor and the limit
// (which Find applies).
func (q *Query) filter() store.Filter {
	return store.Filter{
		Since: q.Since, Until: q.Until,
		Runner: q.Runner, Repo: q.Repo, Run: q.Run, SHA: q.SHA, Actor: q.Actor,
		Outcome: q.Outcome, Rule: q.Rule, Host: q.Host, Kind: q.Kind, Session: q.Session,
	}
}

// Match reports whether r passes every filter of q except the time bounds,
// the limit and the cursor (which [Find] applies while walking). A SHA
// filter accepts the full commit hash or an abbreviation of at least 7
// hex digits.
func (q *Query) Match(r *store.Record) bool {
	f := q.filter()
	return f.Match(r)
}

// Cursor returns the paging cursor that continues a listing after r: pass
// it as Query.After to get the records that follow r in list order
// (newest first).
func Cursor(r *store.Record) string {
	return strconv.FormatInt(r.Start.UnixNano(), 10) + "." + strconv.FormatUint(r.Seq, 10)
}

func parseCursor(s string) (time.Time, uint64, error) {
	ns, seq, ok := strings.Cut(s, ".")
	n, err1 := strconv.ParseInt(ns, 10, 64)
	sq, err2 := strconv.ParseUint(seq, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return time.Time{}, 0, fmt.Errorf("after: %q is not a paging cursor", s)
	}
	return time.Unix(0, n), sq, nil
}

// errStop ends a store walk early.
var errStop = errors.New("stop")

// Find calls fn with each record that matches q, newest first, up to
// q.Limit records. It returns the cursor of the last record passed to fn if
// the limit cut the listing short (so more may follow), else "".
//
// Every filter goes to the store, which answers from its indexes (claims,
// runner, outcome, rule, host, kind, session; see store.Filter): a
// selective filter reads about as many records as it returns, however
// large the log.
func Find(src SessionSource, q Query, fn func(*store.Record) error) (next string, err error) {
	f := q.filter()
	var curTime time.Time
	var curSeq uint64
	if q.After != "" {
		if curTime, curSeq, err = parseCursor(q.After); err != nil {
			return "", err
		}
		// Include the cursor's instant: records that share it but come
		// later in list order (smaller seq) are still to be shown.
		if u := curTime.Add(time.Nanosecond); f.Until.IsZero() || u.Before(f.Until) {
			f.Until = u
		}
	}
	n := 0
	var last *store.Record
	err = src.List(f, func(r *store.Record) error {
		if q.After != "" && r.Start.Equal(curTime) && r.Seq >= curSeq {
			return nil
		}
		if !q.Match(r) {
			return nil
		}
		if q.Limit > 0 && n == q.Limit {
			return errStop // one more exists
		}
		if err := fn(r); err != nil {
			return err
		}
		n++
		last = r
		return nil
	})
	if errors.Is(err, errStop) {
		return Cursor(last), nil
	}
	if err != nil {
		return "", err
	}
	return "", nil
}
