// Package claims holds the two look-ups every view of an identity needs —
// the first non-empty claim among several names, and who the caller is —
// so that the live identity (package identity) and the recorded one
// (package store) answer them the same way.
package claims

// First returns the first non-empty value in claims among names (say
// "repository", "project_path" for GitHub's and GitLab's repository), or "".
func First(claims map[string]string, names ...string) string {
	for _, n := range names {
		if v := claims[n]; v != "" {
			return v
		}
	}
	return ""
}

// Caller names who made a request: the runner for a runner token, else
// the CI actor claim, else the OIDC subject.
func Caller(runner, subject string, claims map[string]string) string {
	if runner != "" {
		return runner
	}
	if v := First(claims, "actor", "user_login"); v != "" {
		return v
	}
	return subject
}
