package claims

import "testing"

func TestFirstAndCaller(t *testing.T) {
	c := map[string]string{"project_path": "acme/api", "user_login": "ann", "empty": ""}
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{[]string{"repository", "project_path"}, "acme/api"},
		{[]string{"empty", "user_login"}, "ann"},
		{[]string{"missing"}, ""},
		{nil, ""},
	} {
		if got := First(c, tc.names...); got != tc.want {
			t.Errorf("First(%v) = %q, want %q", tc.names, got, tc.want)
		}
	}
	for _, tc := range []struct {
		runner, subject string
		claims          map[string]string
		want            string
	}{
		{"ci-1", "sub", c, "ci-1"},
		{"", "sub", c, "ann"},
		{"", "sub", map[string]string{"actor": "bob", "user_login": "ann"}, "bob"},
		{"", "sub", nil, "sub"},
	} {
		if got := Caller(tc.runner, tc.subject, tc.claims); got != tc.want {
			t.Errorf("Caller(%q, %q, %v) = %q, want %q", tc.runner, tc.subject, tc.claims, got, tc.want)
		}
	}
}
