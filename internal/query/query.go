// Package query is the session query service shared by the CLI (reading a
// log file) and the admin API (serving a running log): the filters of
// `sessctl sessions ls` and GET /api/v1/sessions with the same meaning,
// paging cursors, and the detail of one record with its session.
package query

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sessctl/sessctl/internal/duration"
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
	// Provider is the API the exchange spoke: openai, anthropic or
	// azure-openai.
	Provider string
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

// params are the URL query parameter names of a Query.
var params = []string{"since", "until", "runner", "repo", "run", "sha", "actor", "outcome", "rule", "host", "provider", "kind", "session", "limit", "after"}

// HasFilter reports whether the URL query parameters v set a filter
// (any parameter of a Query but the limit and the paging cursor).
func HasFilter(v url.Values) bool {
	for _, k := range params {
		if k != "limit" && k != "after" && v.Get(k) != "" {
			return true
		}
	}
	return false
}

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
	d, err := duration.Parse(s)
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
	q.Provider = v.Get("provider")
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
	set("provider", q.Provider)
	set("kind", q.Kind)
	set("session", q.Session)
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	set("after", q.After)
	return v
}

// filter is q as a store filter, without the paging cursor and the limit
// (which Find applies).
func (q *Query) filter() store.Filter {
	return store.Filter{
		Since: q.Since, Until: q.Until,
		Runner: q.Runner, Repo: q.Repo, Run: q.Run, SHA: q.SHA, Actor: q.Actor,
		Outcome: store.Outcome(q.Outcome), Rule: q.Rule, Host: q.Host, Provider: q.Provider, Kind: store.Kind(q.Kind), Session: q.Session,
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

// Source is the read side of a session log; *store.Store and
// *store.Reader implement it.
type Source interface {
	// Get returns the record named by id (session id or sequence number)
	// with its request and response bodies.
	Get(id string) (*store.Record, []byte, []byte, error)
	// List calls fn for each record matching f, newest first.
	List(f store.Filter, fn func(*store.Record) error) error
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
func Find(src Source, q Query, fn func(*store.Record) error) (next string, err error) {
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

// SessionDetail is one record with its bodies: the body of
// GET /api/v1/sessions/{id} and of `sessctl sessions show --json`.
type SessionDetail struct {
	*store.Record
	// Prompt and Answer are the stored (masked) bodies, null when not
	// recorded or pruned.
	Prompt *string `json:"prompt"`
	Answer *string `json:"answer"`
	// Related are the other records of the same session (approval
	// decisions, the exchange an approval belongs to), oldest first.
	Related []*store.Record `json:"related,omitempty"`
	// Verified tells whether the record is in the signed log, when that
	// could be checked; VerifyError says why it could not.
	Verified    *bool  `json:"verified,omitempty"`
	VerifyError string `json:"verify_error,omitempty"`
}

// relatedWindow is how far around a record Detail looks for the other
// records of its session (approval records are written while the request
// is held, within the approval timeout).
const relatedWindow = 15 * time.Minute

// Detail returns the record id (session id or sequence number) with its
// bodies and the other records of its session. verify may be nil.
func Detail(src Source, id string, verify func(uint64) (bool, error)) (*SessionDetail, error) {
	rec, req, resp, err := src.Get(id)
	if err != nil {
		return nil, err
	}
	d := &SessionDetail{Record: rec, Prompt: strPtr(req), Answer: strPtr(resp)}
	if rec.SessionID != "" {
		q := Query{Session: rec.SessionID, Since: rec.Start.Add(-relatedWindow), Until: rec.End.Add(relatedWindow), Limit: 100}
		var rel []*store.Record
		if _, err := Find(src, q, func(r *store.Record) error {
			if r.Seq != rec.Seq {
				rel = append(rel, r)
			}
			return nil
		}); err != nil {
			return nil, err
		}
		for i, j := 0, len(rel)-1; i < j; i, j = i+1, j-1 {
			rel[i], rel[j] = rel[j], rel[i]
		}
		d.Related = rel
	}
	// verify checks this process's own log; a record read from a fleet's
	// central copy (Origin set) is checked by `sessctl verify --central`.
	if verify != nil && rec.Origin == "" {
		ok, err := verify(rec.Seq)
		d.Verified = &ok
		if err != nil {
			d.VerifyError = err.Error()
		}
	}
	return d, nil
}

func strPtr(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

// Prover makes inclusion proofs; *store.Store and *store.Reader implement
// it.
type Prover interface {
	Prove(seq uint64) ([]byte, error)
}

// ProofVerifier returns a function for [Detail] (and the admin handler's
// Options.Verify) that proves record seq
// against the newest signed checkpoint and checks the proof with pubkey
// (the log's note verifier key; "" trusts the key the proof names, which
// shows consistency but not who signed).
func ProofVerifier(p Prover, pubkey string) func(seq uint64) (bool, error) {
	return func(seq uint64) (bool, error) {
		b, err := p.Prove(seq)
		if err != nil {
			return false, err
		}
		if _, err := store.VerifyProof(b, pubkey); err != nil {
			return false, err
		}
		return true, nil
	}
}

// RecordRef names r for a Source's Get: its sequence number in its own log, or
// "SEQ@ORIGIN" for a record read from a fleet's central copy.
func RecordRef(r *store.Record) string {
	if r.Origin != "" {
		return strconv.FormatUint(r.Seq, 10) + "@" + r.Origin
	}
	return strconv.FormatUint(r.Seq, 10)
}
