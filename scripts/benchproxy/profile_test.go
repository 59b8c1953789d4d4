package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFetchProfile fetches a real one-second CPU profile from a server
// that, like sessctl's admin listener, requires a bearer token, and
// renders its top functions with go tool pprof.
func TestFetchProfile(t *testing.T) {
	const token = "admin-token-for-the-test"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		pprof.Profile(w, r)
	}))
	defer srv.Close()
	dir := t.TempDir()
	ctx := context.Background()
	if err := fetchProfile(ctx, srv.URL, "wrong", 1, filepath.Join(dir, "x.pprof")); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: %v", err)
	}
	file := filepath.Join(dir, "cpu.pprof")
	if err := fetchProfile(ctx, srv.URL, token, 1, file); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Size() == 0 {
		t.Fatalf("profile file: %v", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found: pprof -top not checked")
	}
	for _, cum := range []bool{false, true} {
		top, err := pprofTop(goBin, file, cum, 5)
		if err != nil || !strings.Contains(top, "Type: cpu") || !strings.Contains(top, "flat%") {
			t.Errorf("pprof -top (cum %v): %v\n%s", cum, err, top)
		}
	}
}
