package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessctl/sessctl/internal/admin"
	"github.com/sessctl/sessctl/internal/query"
	"github.com/sessctl/sessctl/store"
)

// addUsageRecords appends exchanges with reported usage and a request
// refused over budget to the test log, an hour after t0.
func addUsageRecords(t testing.TB, l *testLog) {
	t.Helper()
	id := func(repo string) store.Identity {
		return store.Identity{Method: "oidc", Claims: map[string]string{"repository": repo, "workflow": "agent"}}
	}
	for _, r := range []*store.Record{
		{Kind: store.KindExchange, Start: t0.Add(time.Hour), Identity: id("acme/api"), Model: "gpt-4o", Outcome: store.OutcomeForwarded, Method: "POST",
			Usage: &store.Usage{Input: 3000, CachedInput: 1000, Output: 1000, Reasoning: 200, Total: 4000}},
		{Kind: store.KindExchange, Start: t0.Add(90 * time.Minute), Identity: id("acme/web"), Model: "o4-mini", Outcome: store.OutcomeForwarded, Method: "POST",
			Usage: &store.Usage{Input: 300, Output: 21, Total: 321}},
		{Kind: store.KindRefused, Start: t0.Add(2 * time.Hour), Identity: id("acme/api"), Model: "gpt-4o", Outcome: store.OutcomeBudgetExceeded, Method: "POST", Status: 429},
	} {
		if _, err := l.st.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
}

func TestUsageAPI(t *testing.T) {
	s := newTestServer(t)
	addUsageRecords(t, s.log)
	since := t0.Add(-time.Hour).Format(time.RFC3339)
	resp := s.do(t, "GET", "/api/v1/usage?by=repo,model&since="+since, aliceToken, "")
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var l admin.UsageList
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	if len(l.Usage) == 0 || l.Usage[0] != (query.UsageRow{Repo: "acme/api", Model: "gpt-4o", Requests: 3, Refused: 1, Input: 3000, CachedInput: 1000, Output: 1000, Reasoning: 200, Total: 4000}) {
		t.Fatalf("usage rows %+v", l.Usage)
	}
	for _, bad := range []string{"by=colour", "since=yesterday"} {
		if resp := s.do(t, "GET", "/api/v1/usage?"+bad, aliceToken, ""); resp.StatusCode != 400 {
			t.Errorf("%s: status %d", bad, resp.StatusCode)
		}
	}
	if resp := s.do(t, "GET", "/api/v1/usage", "", ""); resp.StatusCode != 401 {
		t.Errorf("without a token: %d", resp.StatusCode)
	}

	// The admin client reads the same rows.
	c, err := admin.NewClient(s.URL, aliceToken, s.Client())
	if err != nil {
		t.Fatal(err)
	}
	rows, err := c.Usage(context.Background(), query.UsageQuery{Since: t0.Add(-time.Hour), By: []string{"repo"}})
	if err != nil || len(rows) < 2 || rows[0].Repo != "acme/api" || rows[0].Total != 4000 {
		t.Fatalf("client usage %+v %v", rows, err)
	}

	resp = s.do(t, "GET", "/api/v1/usage/report?since="+since+"&until="+t0.Add(3*time.Hour).Format(time.RFC3339), aliceToken, "")
	var rep query.UsageReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	var tokens int64
	for _, p := range rep.Series {
		tokens += p.Tokens
	}
	if rep.Step != "1h0m0s" || tokens != 4321 || rep.Totals.Total != 4321 || len(rep.Models) == 0 || rep.Models[0].Model != "gpt-4o" {
		t.Fatalf("report %+v", rep)
	}
}

func TestUsagePage(t *testing.T) {
	s := newTestServer(t)
	addUsageRecords(t, s.log)
	resp := s.do(t, "GET", "/usage?since="+t0.Add(-time.Hour).Format(time.RFC3339), aliceToken, "")
	b, _ := io.ReadAll(resp.Body)
	checkUIHeaders(t, "/usage", resp)
	page := string(b)
	if resp.StatusCode != 200 || !strings.Contains(page, `<td>acme/api</td>`) || !strings.Contains(page, `/static/vendor/chart.umd.min.js`) {
		t.Fatalf("status %d:\n%s", resp.StatusCode, page)
	}
	if code := findInlineCode(page); code != "" {
		t.Errorf("inline code on the usage page: %s", code)
	}
	if resp := s.do(t, "GET", "/usage?since=soon", aliceToken, ""); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad since: %d", resp.StatusCode)
	}
	for _, f := range []string{"/static/vendor/chart.umd.min.js", "/static/usage.js", "/static/vendor/chart.js.LICENSE.md"} {
		if resp := s.do(t, "GET", f, "", ""); resp.StatusCode != 200 {
			t.Errorf("%s: %d", f, resp.StatusCode)
		}
	}
}
