package web

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/sessctl/sessctl/internal/admin"
	"github.com/sessctl/sessctl/store"
)

// TestHealthzHidesPathsUnlessAuthenticated: a store failure names its
// file; /healthz says what is wrong to anyone, and where only to an admin.
func TestHealthzHidesPathsUnlessAuthenticated(t *testing.T) {
	const path = "/var/lib/sessctl/secret-place/sessions.db"
	fail := fmt.Errorf("store: append to %s: %w", path, &fs.PathError{Op: "write", Path: path, Err: syscall.ENOSPC})
	warn := fmt.Errorf("store: %s: free space 120 MB is within 2x the 100 MB reserve", path)
	var healthErr error
	s := newTestServer(t, func(o *Options) {
		o.Health = func() error { return healthErr }
		o.Warnings = func() []error { return []error{warn} }
	})
	tests := []struct {
		name, token string
		broken      bool
		status      int
		wantPath    bool
		want        string
	}{
		{"open, anonymous", "", false, 200, false, "authenticate for details"},
		{"open, admin", aliceToken, false, 200, true, "within 2x"},
		{"closed, anonymous", "", true, 503, false, "session log unavailable: no space left on device"},
		{"closed, admin", aliceToken, true, 503, true, "no space left on device"},
		{"closed, wrong token", "sct_admin_mallory_000000000000", true, 503, false, "no space left on device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			healthErr = nil
			if tt.broken {
				healthErr = fail
			}
			resp := s.do(t, "GET", "/healthz", tt.token, "")
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body := string(b)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if got := strings.Contains(body, "secret-place"); got != tt.wantPath {
				t.Fatalf("path shown = %v, want %v: %s", got, tt.wantPath, body)
			}
			if !strings.Contains(body, tt.want) || !strings.Contains(body, `"warnings"`) {
				t.Fatalf("body %s lacks %q or the warning", body, tt.want)
			}
		})
	}
}

// TestAPIPageSizeIsBounded: however large the limit asked for, one page
// holds at most admin.MaxPageSize records and a cursor to the rest.
func TestAPIPageSizeIsBounded(t *testing.T) {
	s := newTestServer(t)
	for i := 0; i < admin.MaxPageSize+5; i++ {
		r := store.Record{Kind: store.KindRefused, Host: "api.openai.com", Outcome: store.OutcomeUnauthenticated, Reason: "flood"}
		if _, err := s.log.st.Append(context.Background(), &r); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	after := ""
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("paging does not end")
		}
		path := "/api/v1/sessions?limit=10000000"
		if after != "" {
			path += "&after=" + after
		}
		resp := s.do(t, "GET", path, aliceToken, "")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		l := decodeJSON[admin.SessionList](t, resp)
		if len(l.Sessions) > admin.MaxPageSize {
			t.Fatalf("one page holds %d records, more than %d", len(l.Sessions), admin.MaxPageSize)
		}
		total += len(l.Sessions)
		if l.Next == "" {
			break
		}
		if len(l.Sessions) != admin.MaxPageSize {
			t.Fatalf("a short page (%d) with a cursor", len(l.Sessions))
		}
		after = l.Next
	}
	if want := len(s.log.seq) + admin.MaxPageSize + 5; total < want {
		t.Fatalf("paged %d records, want at least %d", total, want)
	}
}
