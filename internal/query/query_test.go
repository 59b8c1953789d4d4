package query

import (
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/sessctl/sessctl/store"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", time.Time{}, true},
		{"24h", now.Add(-24 * time.Hour), true},
		{"7d", now.Add(-7 * 24 * time.Hour), true},
		{"90m", now.Add(-90 * time.Minute), true},
		{"2025-05-01T10:00:00Z", time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC), true},
		{"2025-05-01T10:00:00.5+02:00", time.Date(2025, 5, 1, 8, 0, 0, 5e8, time.UTC), true},
		{"-1h", time.Time{}, false},
		{"yesterday", time.Time{}, false},
		{"2025-05-01", time.Time{}, false},
	} {
		got, err := ParseTime(tc.in, now)
		if (err == nil) != tc.ok || !got.Equal(tc.want) {
			t.Errorf("ParseTime(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestQueryValuesRoundTrip(t *testing.T) {
	now := time.Now()
	q := Query{
		Since: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC), Until: time.Date(2025, 2, 2, 3, 4, 5, 0, time.UTC),
		Runner: "ci-1", Repo: "acme/api", Run: "8812", SHA: "abcdef1", Actor: "octocat", Outcome: "blocked",
		Rule: "aws-key", Host: "api.openai.com", Provider: "openai", Kind: "exchange", Session: "s1", Limit: 7, After: "123.4",
	}
	got, err := ParseQuery(q.Values(), now)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Since.Equal(q.Since) || !got.Until.Equal(q.Until) {
		t.Errorf("times %v %v", got.Since, got.Until)
	}
	got.Since, got.Until, q.Since, q.Until = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, q) {
		t.Errorf("round trip: %+v, want %+v", got, q)
	}
	if v := (Query{}).Values(); len(v) != 0 {
		t.Errorf("empty query encodes as %v", v)
	}
}

func TestQueryMatch(t *testing.T) {
	gh := &store.Record{Kind: "exchange", Outcome: "forwarded", Host: "api.openai.com", Provider: "openai", SessionID: "s",
		Identity: store.Identity{Claims: map[string]string{"repository": "acme/api", "run_id": "8812", "sha": "0123456789abcdef", "actor": "octocat"}},
		Rules:    []store.RuleHit{{Name: "a"}, {Name: "b"}}}
	gl := &store.Record{Identity: store.Identity{Claims: map[string]string{"project_path": "grp/proj", "pipeline_id": "77", "user_login": "dev"}}}
	runner := &store.Record{Identity: store.Identity{Runner: "ci-1"}}
	for _, tc := range []struct {
		q    Query
		r    *store.Record
		want bool
	}{
		{Query{}, gh, true},
		{Query{Repo: "acme/api", Run: "8812", SHA: "0123456", Actor: "octocat", Rule: "b", Host: "api.openai.com", Kind: "exchange", Outcome: "forwarded", Session: "s"}, gh, true},
		{Query{Repo: "acme"}, gh, false},
		{Query{Repo: "acme/*"}, gh, false}, // no globs
		{Query{SHA: "0123"}, gh, false},
		{Query{SHA: "0123456789abcdef"}, gh, true},
		{Query{SHA: "0123456789abcdef0"}, gh, false},
		{Query{Rule: "c"}, gh, false},
		{Query{Runner: "ci-1"}, gh, false},
		{Query{Runner: "ci-1"}, runner, true},
		{Query{SHA: "0123456"}, runner, false},
		{Query{Repo: "grp/proj", Run: "77", Actor: "dev"}, gl, true},
		{Query{Session: "x"}, gh, false},
		{Query{Provider: "openai"}, gh, true},
		{Query{Provider: "anthropic"}, gh, false},
		{Query{Provider: "openai"}, runner, false},
	} {
		if got := tc.q.Match(tc.r); got != tc.want {
			t.Errorf("%+v matches %+v: %v, want %v", tc.q, tc.r.Identity, got, tc.want)
		}
	}
}

func FuzzParseQuery(f *testing.F) {
	f.Add("since=24h&repo=acme/api&limit=5&after=1.2")
	f.Add("until=2025-01-01T00:00:00Z&after=x.y")
	f.Add("limit=99999999999999999999")
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		now := time.Unix(1e9, 0)
		q, err := ParseQuery(v, now)
		if err != nil {
			return
		}
		q2, err := ParseQuery(q.Values(), now)
		if err != nil {
			t.Fatalf("re-parsing %v: %v", q.Values(), err)
		}
		if !q2.Since.Equal(q.Since) || !q2.Until.Equal(q.Until) || q2.Repo != q.Repo || q2.Limit != q.Limit || q2.After != q.After {
			t.Fatalf("round trip %+v -> %+v", q, q2)
		}
	})
}
