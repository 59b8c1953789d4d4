package web

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sessctl/sessctl/tiles"
)

// TestLogEndpoint: /log/ serves the tiles handler with /log stripped,
// behind the admin token unless LogPublic.
func TestLogEndpoint(t *testing.T) {
	for _, public := range []bool{false, true} {
		s := newTestServer(t, func(o *Options) {
			o.Log = tiles.Handler(o.Sessions.(tiles.Source), quietLogger())
			o.LogPublic = public
		})
		for _, tc := range []struct {
			path, token string
			code        int
		}{
			{"/log/checkpoint", "", map[bool]int{false: http.StatusUnauthorized, true: http.StatusOK}[public]},
			{"/log/checkpoint", "wrong", map[bool]int{false: http.StatusUnauthorized, true: http.StatusOK}[public]},
			{"/log/checkpoint", aliceToken, http.StatusOK},
			{"/log/tile/0/000.p/1", aliceToken, http.StatusOK},
			{"/log/tile/0/999", aliceToken, http.StatusNotFound},
		} {
			resp := s.do(t, "GET", tc.path, tc.token, "")
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code {
				t.Errorf("public=%v %s token %q: %d, want %d", public, tc.path, tc.token, resp.StatusCode, tc.code)
			}
			if tc.code == http.StatusOK && tc.path == "/log/checkpoint" && !strings.Contains(string(body), "\n— ") {
				t.Errorf("checkpoint: %q", body)
			}
		}
		if resp := s.do(t, "POST", "/log/checkpoint", aliceToken, ""); resp.StatusCode == http.StatusOK {
			t.Errorf("POST /log/checkpoint: %d", resp.StatusCode)
		}
	}
}
