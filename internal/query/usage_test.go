package query

import (
	"context"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/sessctl/sessctl/store"
)

func usageStore(t *testing.T) *store.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := store.Open(path, store.Options{SigningKeyFile: path + ".key", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	day := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	gh := func(repo, wf, actor string) store.Identity {
		return store.Identity{Method: "oidc", Claims: map[string]string{"repository": repo, "workflow": wf, "actor": actor}}
	}
	for _, r := range []*store.Record{
		{Kind: store.KindExchange, Start: day, Identity: gh("acme/api", "ci", "ann"), Model: "gpt-4o", Usage: &store.Usage{Input: 10, Output: 5, Total: 15}},
		{Kind: store.KindExchange, Start: day.Add(24 * time.Hour), Identity: gh("acme/api", "nightly", "bob"), Model: "gpt-4o", Usage: &store.Usage{Input: 100, CachedInput: 50, Output: 20, Reasoning: 8, Total: 120}},
		{Kind: store.KindExchange, Start: day.Add(24 * time.Hour), Identity: store.Identity{Method: "runner_token", Runner: "ci-1"}, Model: "o4-mini", Usage: &store.Usage{Input: 1, Output: 1, Total: 2}},
		{Kind: store.KindRefused, Start: day.Add(25 * time.Hour), Identity: gh("acme/api", "nightly", "bob"), Model: "gpt-4o", Method: "POST", Outcome: store.OutcomeBudgetExceeded},
		{Kind: store.KindRefused, Start: day.Add(25 * time.Hour), Identity: gh("acme/api", "ci", "ann"), Model: "o1-pro", Method: "POST", Outcome: store.OutcomeBlocked,
			Rules: []store.RuleHit{{Name: "aws-key", Action: "block", Scope: "request", Count: 1}}},
		{Kind: store.KindConnect, Start: day.Add(25 * time.Hour), Host: "api.openai.com"},
	} {
		if _, err := st.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func TestUsage(t *testing.T) {
	st := usageStore(t)
	since := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		q    UsageQuery
		want []UsageRow
	}{
		{"totals", UsageQuery{Since: since}, []UsageRow{{Requests: 3, Refused: 2, Input: 111, CachedInput: 50, Output: 26, Reasoning: 8, Total: 137}}},
		{"by repo and day", UsageQuery{Since: since, By: []string{"repo", "day"}}, []UsageRow{
			{Repo: "acme/api", Day: "2026-12-02", Requests: 1, Refused: 2, Input: 100, CachedInput: 50, Output: 20, Reasoning: 8, Total: 120},
			{Repo: "acme/api", Day: "2026-12-01", Requests: 1, Input: 10, Output: 5, Total: 15},
			{Repo: "-", Day: "2026-12-02", Requests: 1, Input: 1, Output: 1, Total: 2},
		}},
		{"by workflow, one repository", UsageQuery{Since: since, By: []string{"workflow"}, Repo: "acme/api"}, []UsageRow{
			{Workflow: "nightly", Requests: 1, Refused: 1, Input: 100, CachedInput: 50, Output: 20, Reasoning: 8, Total: 120},
			{Workflow: "ci", Requests: 1, Refused: 1, Input: 10, Output: 5, Total: 15},
		}},
		{"by runner and model, since the second day", UsageQuery{Since: since.Add(36 * time.Hour), By: []string{"runner", "model"}, Model: "o4-mini"}, []UsageRow{
			{Runner: "ci-1", Model: "o4-mini", Requests: 1, Input: 1, Output: 1, Total: 2},
		}},
		{"by actor", UsageQuery{Since: since, By: []string{"actor"}, Actor: "ann"}, []UsageRow{{Actor: "ann", Requests: 1, Refused: 1, Input: 10, Output: 5, Total: 15}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The query survives its URL form, as the admin API gets it.
			q, err := ParseUsageQuery(tt.q.Values(), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			got, err := Usage(st, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("row %d: %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
	if _, err := ParseUsageQuery(url.Values{"by": {"repo,colour"}}, time.Now()); err == nil {
		t.Error("unknown dimension accepted")
	}
}

func TestReport(t *testing.T) {
	st := usageStore(t)
	since := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	rep, err := Report(st, since, since.Add(7*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Step != "24h0m0s" || len(rep.Series) != 8 {
		t.Fatalf("step %s, %d points", rep.Step, len(rep.Series))
	}
	if p := rep.Series[3]; p.Requests != 1 || p.Tokens != 15 {
		t.Errorf("Dec 1: %+v", p)
	}
	if p := rep.Series[4]; p.Requests != 2 || p.Refused != 2 || p.Tokens != 122 {
		t.Errorf("Dec 2: %+v", p)
	}
	if len(rep.Repos) != 2 || rep.Repos[0].Repo != "acme/api" || rep.Models[0].Model != "gpt-4o" {
		t.Errorf("tops %+v %+v", rep.Repos, rep.Models)
	}
	if len(rep.Blocks) != 2 || rep.Blocks[0] != (RuleBlocked{"(budget)", 1}) || rep.Blocks[1] != (RuleBlocked{"aws-key", 1}) {
		t.Errorf("blocks %+v", rep.Blocks)
	}
	if _, err := Report(st, since, since.Add(-time.Hour)); err == nil {
		t.Error("a reversed range was accepted")
	}
	if _, err := Report(st, time.Time{}, since); err == nil {
		t.Error("an unbounded range was charted")
	}
}
