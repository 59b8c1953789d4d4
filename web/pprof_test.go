package web

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestProfilesNeedAdminToken checks that the runtime profiles are served
// only to an admin: they name functions, goroutine stacks and the
// command line.
func TestProfilesNeedAdminToken(t *testing.T) {
	s := newTestServer(t)
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/debug/pprof/", "", http.StatusUnauthorized},
		{"/debug/pprof/goroutine?debug=1", "", http.StatusUnauthorized},
		{"/debug/pprof/cmdline", "wrong", http.StatusUnauthorized},
		{"/debug/pprof/goroutine?debug=1", aliceToken, http.StatusOK},
		{"/debug/pprof/heap?debug=1", bobToken, http.StatusOK},
	} {
		resp := s.do(t, "GET", tc.path, tc.token, "")
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s (token %q): %d, want %d", tc.path, tc.token, resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusOK && !strings.Contains(string(body), "goroutine") && !strings.Contains(string(body), "heap profile") {
			t.Errorf("GET %s: not a profile: %.200s", tc.path, body)
		}
	}
}
