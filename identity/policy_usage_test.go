package identity

import (
	"strings"
	"testing"
	"time"
)

func TestPolicyModelsAndBudget(t *testing.T) {
	ps, err := ParsePolicies([]byte(`
- name: acme-api
  match: {repository: acme/api}
  models: ["gpt-4.1*", gpt-4o-mini]
  budget: {tokens: 2M, per: 24h, by: workflow}
- name: runners
  match: {runner: "ci-*"}
  budget:
    - {requests: 600, per: 1m, by: runner}
    - {tokens: 50K, per: 7d}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps[0].Models) != 2 || len(ps[0].Budget) != 1 || ps[0].Budget[0].Tokens != 2_000_000 || ps[0].Budget[0].By != "workflow" {
		t.Fatalf("policy 0: %+v", ps[0])
	}
	if b := ps[1].Budget; len(b) != 2 || b[0].Requests != 600 || b[0].Per != time.Minute || b[1].Tokens != 50_000 || b[1].Attr() != "repository" {
		t.Fatalf("policy 1: %+v", ps[1].Budget)
	}
	for _, bad := range []struct{ yaml, want string }{
		{`[{name: p, models: ["[bad"]}]`, "bad glob"},
		{`[{name: p, models: [""]}]`, "bad glob"},
		{`[{name: p, budget: {tokens: 2M, per: 24h, by: colour}}]`, "by \"colour\""},
		{`[{name: p, budget: {per: 24h}}]`, "set tokens, requests or both"},
		{`[{name: p, budget: {tokens: lots, per: 24h}}]`, "not a positive count"},
		{`[{name: p, deny: true, models: [gpt-4o]}]`, "deny cannot be combined"},
	} {
		if _, err := ParsePolicies([]byte(bad.yaml)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: err %v, want %q", bad.yaml, err, bad.want)
		}
	}
}
