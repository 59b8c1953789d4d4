package identity

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAuthenticateRunnerToken(t *testing.T) {
	tok, err := NewRunnerToken()
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(context.Background(), Config{Runners: []Runner{
		{Name: "ci-1", TokenSHA256: HashToken(tok)},
		{Name: "ci-2", Token: "a-clear-runner-token-of-decent-length"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		credential string
		runner     string
		err        error
	}{
		{"hashed token", tok, "ci-1", nil},
		{"surrounding space", "  " + tok + "\t", "ci-1", nil},
		{"clear token", "a-clear-runner-token-of-decent-length", "ci-2", nil},
		{"empty", "", "", ErrNoCredential},
		{"blank", "   ", "", ErrNoCredential},
		{"unknown", "sct_unknown", "", ErrUnknownToken},
		{"prefix of a token", tok[:len(tok)-1], "", ErrUnknownToken},
		{"the hash itself", HashToken(tok), "", ErrUnknownToken},
		{"too long", strings.Repeat("x", maxCredentialLen+1), "", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := a.Authenticate(context.Background(), tt.credential)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				var ae *AuthError
				if !errors.As(err, &ae) || ae.Reason == "" {
					t.Fatalf("err = %#v, want *AuthError with a reason", err)
				}
				if strings.TrimSpace(tt.credential) != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.credential)) {
					t.Fatalf("error %q contains the credential", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Method != MethodRunnerToken || id.Runner != tt.runner {
				t.Fatalf("identity = %+v, want runner %s", id, tt.runner)
			}
			if id.TokenHash != HashToken(strings.TrimSpace(tt.credential)) {
				t.Fatalf("TokenHash = %s", id.TokenHash)
			}
			if got := id.String(); got != "runner "+tt.runner {
				t.Fatalf("String() = %q", got)
			}
		})
	}
}

func TestAuthErrorReasons(t *testing.T) {
	a, err := New(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Authenticate(context.Background(), "sct_nope")
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Reason != "unknown runner token" || err.Error() != "identity: unknown runner token" {
		t.Fatalf("err = %v", err)
	}
	_, err = a.Authenticate(context.Background(), "")
	if !errors.As(err, &ae) || ae.Reason != "missing credential" {
		t.Fatalf("err = %v", err)
	}
}

func TestNewRejectsBadRunners(t *testing.T) {
	h := HashToken("sct_some-token-value-long-enough")
	tests := []struct {
		name    string
		runners []Runner
		want    string
	}{
		{"no name", []Runner{{TokenSHA256: h}}, "missing name"},
		{"duplicate name", []Runner{{Name: "a", TokenSHA256: h}, {Name: "a", Token: "another-token-long-enough"}}, "duplicate name"},
		{"both", []Runner{{Name: "a", TokenSHA256: h, Token: "x"}}, "not both"},
		{"neither", []Runner{{Name: "a"}}, "missing token_sha256"},
		{"short hash", []Runner{{Name: "a", TokenSHA256: h[:10]}}, "64 hex digits"},
		{"not hex", []Runner{{Name: "a", TokenSHA256: strings.Repeat("z", 64)}}, "64 hex digits"},
		{"same token", []Runner{{Name: "a", TokenSHA256: h}, {Name: "b", Token: "sct_some-token-value-long-enough"}}, "same token"},
		{"spaces", []Runner{{Name: "a", Token: " tok-with-space-around "}}, "space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), Config{Runners: tt.runners})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			for _, r := range tt.runners {
				if r.Token != "" && strings.Contains(err.Error(), r.Token) {
					t.Fatalf("error %q leaks a token", err)
				}
			}
		})
	}
}

func TestNewRunnerToken(t *testing.T) {
	a, err := NewRunnerToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewRunnerToken()
	if a == b || !strings.HasPrefix(a, RunnerTokenPrefix) || len(a) != len(RunnerTokenPrefix)+43 {
		t.Fatalf("tokens %q %q", a, b)
	}
	if strings.ContainsAny(a, "+/=.") {
		t.Fatalf("token %q is not unpadded base64url", a)
	}
}

func TestParseCredential(t *testing.T) {
	tests := []struct{ header, want string }{
		{"Bearer sct_abc", "sct_abc"},
		{"bearer   sct_abc  ", "sct_abc"},
		{"Basic dXNlcjpzY3RfcGFzcw==", "sct_pass"}, // user:sct_pass
		{"Basic c2N0X3VzZXI6", "sct_user"},         // sct_user:
		{"Basic c2N0X3VzZXI=", "sct_user"},         // sct_user
		{"Basic !!!", ""},
		{"Token abc", ""},
		{"Bearer", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := ParseCredential(tt.header); got != tt.want {
			t.Errorf("ParseCredential(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
}

func TestAddRunner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "runners.yaml")
	h1, h2 := HashToken("sct_one-one-one-one-one"), HashToken("sct_two-two-two-two-two")
	if err := AddRunner(path, Runner{Name: "ci-1", TokenSHA256: h1}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want 0600", st.Mode().Perm())
	}
	if err := AddRunner(path, Runner{Name: "ci-2", TokenSHA256: h2}); err != nil {
		t.Fatal(err)
	}
	got, err := LoadRunnersFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != (Runner{Name: "ci-1", TokenSHA256: h1}) || got[1] != (Runner{Name: "ci-2", TokenSHA256: h2}) {
		t.Fatalf("runners = %+v", got)
	}
	if err := AddRunner(path, Runner{Name: "ci-1", TokenSHA256: HashToken("sct_three-three-three")}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("duplicate name: err = %v", err)
	}
	if err := AddRunner(path, Runner{Name: "ci-3", Token: "sct_clear-clear-clear"}); err == nil {
		t.Fatal("clear token written")
	}
}

func TestAddRunnerKeepsComments(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runners.yaml")
	src, err := os.ReadFile("testdata/runners.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := AddRunner(path, Runner{Name: "new", TokenSHA256: HashToken("sct_new-new-new-new-new")}); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "# the build farm") {
		t.Fatalf("comment lost:\n%s", out)
	}
	rs, err := LoadRunnersFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 || rs[2].Name != "new" {
		t.Fatalf("runners = %+v", rs)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want 0600", st.Mode().Perm())
	}
}

func TestLoadRunnersFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, wantErr string
		n                      int
	}{
		{"empty", "", "", 0},
		{"null list", "runners:\n", "", 0},
		{"two", "runners:\n  - {name: a, token_sha256: " + HashToken("x") + "}\n  - {name: b, token: clear-token-long-enough}\n", "", 2},
		{"unknown key", "runner:\n  - {name: a}\n", "field runner not found", 0},
		{"bad entry", "runners:\n  - {name: a}\n", "missing token_sha256", 0},
		{"not yaml", "runners: [", "parse runners file", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yaml")
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			rs, err := LoadRunnersFile(p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(rs) != tt.n {
				t.Fatalf("got %d runners, err %v; want %d", len(rs), err, tt.n)
			}
		})
	}
	if rs, err := LoadRunnersFile(filepath.Join(dir, "missing.yaml")); err != nil || rs != nil {
		t.Fatalf("missing file: %v %v", rs, err)
	}
}

func BenchmarkAuthenticateRunner(b *testing.B) {
	var runners []Runner
	var last string
	for i := range 100 {
		tok, _ := NewRunnerToken()
		runners = append(runners, Runner{Name: "r" + string(rune('a'+i%26)) + strings.Repeat("x", i), TokenSHA256: HashToken(tok)})
		last = tok
	}
	a, err := New(context.Background(), Config{Runners: runners})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		if _, err := a.Authenticate(ctx, last); err != nil {
			b.Fatal(err)
		}
	}
}
