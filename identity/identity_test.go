package identity

import "testing"

func TestCallerAndClaim(t *testing.T) {
	cases := []struct {
		name string
		id   *Identity
		want string
	}{
		{"nil", nil, ""},
		{"runner wins", &Identity{Runner: "ci-1", Subject: "s", Claims: map[string]string{"actor": "a"}}, "ci-1"},
		{"github actor", &Identity{Subject: "s", Claims: map[string]string{"actor": "octocat", "user_login": "u"}}, "octocat"},
		{"gitlab user_login", &Identity{Subject: "s", Claims: map[string]string{"actor": "", "user_login": "alice"}}, "alice"},
		{"subject last", &Identity{Subject: "repo:acme/docs"}, "repo:acme/docs"},
		{"empty", &Identity{}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.id.Caller(); got != tc.want {
				t.Fatalf("Caller() = %q, want %q", got, tc.want)
			}
		})
	}
	id := &Identity{Claims: map[string]string{"project_path": "group/proj", "repository": ""}}
	if got := id.Claim("repository", "project_path"); got != "group/proj" {
		t.Fatalf("Claim = %q, want the first non-empty (project_path)", got)
	}
	if got := id.Claim("run_id"); got != "" {
		t.Fatalf("Claim of an absent claim = %q", got)
	}
	if got := (*Identity)(nil).Claim("repository"); got != "" {
		t.Fatalf("nil Claim = %q", got)
	}
}
