package command

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessctl/sessctl/internal/query"
	"github.com/sessctl/sessctl/store"
)

// usageLog writes a log with exchanges of two repositories and models.
func usageLog(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sessions.db")
	st, err := store.Open(path, store.Options{SigningKeyFile: path + ".key", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	recs := []*store.Record{
		{Kind: store.KindExchange, Outcome: store.OutcomeForwarded, Model: "gpt-4o", Start: now.Add(-time.Hour),
			Identity: store.Identity{Claims: map[string]string{"repository": "acme/api", "workflow": "ci"}},
			Usage:    &store.Usage{Input: 100, CachedInput: 20, Output: 50, Reasoning: 10, Total: 150}},
		{Kind: store.KindExchange, Outcome: store.OutcomeForwarded, Model: "gpt-4o", Start: now.Add(-2 * time.Hour),
			Identity: store.Identity{Claims: map[string]string{"repository": "acme/api", "workflow": "ci"}},
			Usage:    &store.Usage{Input: 10, Output: 5, Total: 15}},
		{Kind: store.KindExchange, Outcome: store.OutcomeForwarded, Model: "o4-mini", Start: now.Add(-time.Hour),
			Identity: store.Identity{Claims: map[string]string{"repository": "acme/web"}},
			Usage:    &store.Usage{Input: 1, Output: 2, Total: 3}},
		{Kind: store.KindRefused, Outcome: store.OutcomeBudgetExceeded, Model: "gpt-4o", Method: "POST", Start: now.Add(-time.Hour),
			Identity: store.Identity{Claims: map[string]string{"repository": "acme/api", "workflow": "ci"}}},
		// Older than a week: outside --since 7d.
		{Kind: store.KindExchange, Outcome: store.OutcomeForwarded, Model: "gpt-4o", Start: now.Add(-8 * 24 * time.Hour),
			Identity: store.Identity{Claims: map[string]string{"repository": "acme/api"}},
			Usage:    &store.Usage{Input: 1000, Output: 1000, Total: 2000}},
	}
	for _, r := range recs {
		if _, err := st.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func runUsage(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errs bytes.Buffer
	app := New()
	app.Writer = &out
	code := runApp(context.Background(), app, append([]string{"sessctl", "usage"}, args...), &errs)
	return out.String() + errs.String(), code
}

func TestUsageCommand(t *testing.T) {
	db := usageLog(t)
	out, code := runUsage(t, "--db", db, "--by", "repo,model", "--since", "7d", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	var rows []query.UsageRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := []query.UsageRow{
		{Repo: "acme/api", Model: "gpt-4o", Requests: 2, Refused: 1, Input: 110, CachedInput: 20, Output: 55, Reasoning: 10, Total: 165},
		{Repo: "acme/web", Model: "o4-mini", Requests: 1, Input: 1, Output: 2, Total: 3},
	}
	if len(rows) != len(want) || rows[0] != want[0] || rows[1] != want[1] {
		t.Fatalf("rows %+v, want %+v", rows, want)
	}

	out, code = runUsage(t, "--db", db, "--by", "repo", "--since", "7d", "--csv")
	wantCSV := "repo,requests,refused,input_tokens,cached_input_tokens,output_tokens,reasoning_tokens,total_tokens\n" +
		"acme/api,2,1,110,20,55,10,165\nacme/web,1,0,1,0,2,0,3\n"
	if code != 0 || out != wantCSV {
		t.Fatalf("csv: exit %d:\n%s\nwant\n%s", code, out, wantCSV)
	}

	out, code = runUsage(t, "--db", db, "--repo", "acme/web", "--json")
	if code != 0 || !strings.Contains(out, `"total_tokens": 3`) || !strings.Contains(out, `"requests": 1,`) {
		t.Fatalf("--repo acme/web: exit %d:\n%s", code, out)
	}

	out, code = runUsage(t, "--db", db)
	if code != 0 || !strings.Contains(out, "TOTAL") || !strings.Contains(out, "2168") {
		t.Fatalf("table of all time: exit %d:\n%s", code, out)
	}

	for _, bad := range [][]string{{"--by", "colour"}, {"--since", "last tuesday"}, {"--json", "--csv"}} {
		if out, code := runUsage(t, append([]string{"--db", db}, bad...)...); code != 2 {
			t.Errorf("%v: exit %d: %s", bad, code, out)
		}
	}
	if out, code := runUsage(t, "--db", filepath.Join(t.TempDir(), "missing.db")); code != 2 || !strings.Contains(out, "missing.db") {
		t.Errorf("missing database: exit %d: %s", code, out)
	}
}
