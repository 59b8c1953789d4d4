package identity

import (
	"os"
	"strings"
	"testing"
)

func TestParsePoliciesExample(t *testing.T) {
	data, err := os.ReadFile("testdata/policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ps, err := ParsePolicies(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 5 {
		t.Fatalf("got %d policies", len(ps))
	}
	if ps[0].Record != RecordMetadata || ps[1].Record != RecordFull || !ps[1].NeedsApproval() || !ps[4].Deny {
		t.Fatalf("policies = %+v", ps)
	}
	if ps[3].Key != "team-a" || len(ps[3].Rules) != 2 {
		t.Fatalf("policy %q = %+v", ps[3].Name, ps[3])
	}

	gh := func(claims ...string) *Identity {
		id := &Identity{Method: MethodOIDC, Issuer: "https://token.actions.githubusercontent.com", Subject: "repo:x", Claims: map[string]string{}}
		for i := 0; i+1 < len(claims); i += 2 {
			id.Claims[claims[i]] = claims[i+1]
		}
		return id
	}
	tests := []struct {
		name string
		id   *Identity
		want string
	}{
		{"docs bot", gh("repository", "acme/docs", "repository_owner", "acme"), "docs-bot"},
		{"prod deploy", gh("repository", "acme/api", "repository_owner", "acme", "environment", "production"), "prod-deploys"},
		{"staging deploy falls through to acme", gh("repository", "acme/api", "repository_owner", "acme", "environment", "staging"), "acme"},
		{"glob does not cross slash", gh("repository", "acme/api/x", "environment", "production"), "default"},
		{"other org", gh("repository", "evil/docs", "repository_owner", "evil"), "default"},
		{"runner by name", &Identity{Method: MethodRunnerToken, Runner: "team-a-builder"}, "team-a-runners"},
		{"other runner", &Identity{Method: MethodRunnerToken, Runner: "builder"}, "default"},
		{"nil identity", nil, "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Match(ps, tt.id)
			if p == nil || p.Name != tt.want {
				t.Fatalf("Match = %+v, want %s", p, tt.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	runner := &Identity{Method: MethodRunnerToken, Runner: "ci-1"}
	oidc := &Identity{Method: MethodSessionToken, Issuer: "https://gitlab.example.com", Subject: "project_path:g/p:ref_type:branch:ref:main",
		Claims: map[string]string{"project_path": "g/p", "ref": "main", "environment": ""}}
	tests := []struct {
		name     string
		policies []Policy
		id       *Identity
		want     string // "" for nil
	}{
		{"no policies", nil, runner, ""},
		{"empty match is catch-all", []Policy{{Name: "all"}}, runner, "all"},
		{"first match wins", []Policy{{Name: "a", Match: map[string]string{"runner": "ci-*"}}, {Name: "b"}}, runner, "a"},
		{"all entries must match", []Policy{{Name: "a", Match: map[string]string{"runner": "ci-*", "method": "oidc"}}}, runner, ""},
		{"star needs the attribute", []Policy{{Name: "a", Match: map[string]string{"runner": "*"}}}, oidc, ""},
		{"empty claim is absent", []Policy{{Name: "a", Match: map[string]string{"environment": "*"}}}, oidc, ""},
		{"method", []Policy{{Name: "a", Match: map[string]string{"method": "session_token"}}}, oidc, "a"},
		{"issuer and subject", []Policy{{Name: "a", Match: map[string]string{"issuer": "https://gitlab.*", "subject": "project_path:g/p:*"}}}, oidc, "a"},
		{"claim", []Policy{{Name: "x", Match: map[string]string{"project_path": "g/q"}}, {Name: "a", Match: map[string]string{"project_path": "g/[op]"}}}, oidc, "a"},
		{"bad glob never matches", []Policy{{Name: "a", Match: map[string]string{"runner": "["}}}, runner, ""},
		{"exact", []Policy{{Name: "a", Match: map[string]string{"runner": "ci-1"}}}, runner, "a"},
		{"case sensitive", []Policy{{Name: "a", Match: map[string]string{"runner": "CI-1"}}}, runner, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Match(tt.policies, tt.id)
			got := ""
			if p != nil {
				got = p.Name
			}
			if got != tt.want {
				t.Fatalf("Match = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParsePoliciesErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"unknown record", "- {name: p1, record: none}", `policy "p1": unknown record mode "none"`},
		{"unknown approve", "- {name: p1, approve: sometimes}", `policy "p1": unknown approve mode`},
		{"missing name", "- {deny: true}", "policy #1: missing name"},
		{"duplicate", "- {name: a}\n- {name: a}", `policy "a": duplicate name`},
		{"unknown attribute", "- {name: a, match: {repo: acme/x}}", `policy "a": unknown match attribute "repo"`},
		{"bad glob", "- {name: a, match: {repository: '[acme'}}", `policy "a": match repository: bad glob`},
		{"deny with approve", "- {name: a, deny: true, approve: always}", `policy "a": deny cannot be combined`},
		{"empty rule", "- {name: a, rules: ['']}", `policy "a": empty rule name`},
		{"unknown key", "- {name: a, recrod: metadata}", "field recrod not found"},
		{"not a list", "name: a", "parse policies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePolicies([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if ps, err := ParsePolicies(nil); err != nil || len(ps) != 0 {
		t.Fatalf("empty: %v %v", ps, err)
	}
}

func TestPolicyDefaults(t *testing.T) {
	var nilPolicy *Policy
	if nilPolicy.RecordMode() != RecordFull || nilPolicy.NeedsApproval() {
		t.Fatal("nil policy must record in full without approval")
	}
	p := &Policy{Name: "m", Record: RecordMetadata}
	if p.RecordMode() != RecordMetadata {
		t.Fatal(p.RecordMode())
	}
}

func FuzzParsePolicies(f *testing.F) {
	if data, err := os.ReadFile("testdata/policies.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("- {name: a, match: {runner: '*'}}"))
	f.Add([]byte("- {name: a, match: {repository: '['}}"))
	id := &Identity{Method: MethodOIDC, Runner: "r", Claims: map[string]string{"repository": "acme/x", "environment": "production"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := ParsePolicies(data)
		if err != nil {
			return
		}
		if err := ValidatePolicies(ps); err != nil {
			t.Fatalf("parsed policies do not validate: %v", err)
		}
		if p := Match(ps, id); p != nil && p.RecordMode() != RecordFull && p.RecordMode() != RecordMetadata {
			t.Fatalf("record mode %q", p.RecordMode())
		}
	})
}
