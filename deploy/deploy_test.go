package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// promtool returns the path of promtool, or skips the test.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian: apt-get install prometheus); alert rules not checked")
	}
	return p
}

func TestAlertRules(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "prometheus/alerts.yml"},
		{"test", "rules", "prometheus/alerts_test.yml"},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func TestAlertRulesCoverTheIssue(t *testing.T) {
	b, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, alert := range []string{"SessctlStoreFailing", "SessctlCheckpointStale", "SessctlRefusalsSpike", "SessctlWitnessFork"} {
		if !strings.Contains(string(b), "alert: "+alert+"\n") {
			t.Errorf("alerts.yml has no %s rule", alert)
		}
	}
}

func TestDashboardIsGrafanaJSON(t *testing.T) {
	b, err := os.ReadFile("grafana/sessctl.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID, Title string
		Panels     []struct {
			ID      int
			Type    string
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/sessctl.json: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard without uid or title")
	}
	ids := map[int]bool{}
	var quantiles int
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q ignores the instance variable: %s", p.Title, tg.Expr)
			}
			if strings.Contains(tg.Expr, "histogram_quantile(0.99") {
				quantiles++
			}
		}
	}
	if quantiles < 3 {
		t.Errorf("dashboard draws %d p99 latencies, want added, upstream and store at least", quantiles)
	}
}

// TestDashboardQueriesParse has promtool parse each dashboard query (with
// Grafana's variables replaced) as PromQL.
func TestDashboardQueriesParse(t *testing.T) {
	bin := promtool(t)
	b, err := os.ReadFile("grafana/sessctl.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	// promtool check rules parses the expressions of a rules file: make
	// one recording rule per query.
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	r := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*")
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			n++
			q, _ := json.Marshal(r.Replace(tg.Expr))
			rules.WriteString("      - record: dashboard:query_" + strconv.Itoa(n) + "\n        expr: " + string(q) + "\n")
		}
	}
	f := t.TempDir() + "/dashboard.yml"
	if err := os.WriteFile(f, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "check", "rules", f).CombinedOutput()
	if err != nil {
		t.Errorf("dashboard queries do not parse as PromQL: %v\n%s", err, out)
	}
}
