package rules

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	s, err := Parse([]byte(`
rules:
  - name: aws-access-key
    pattern: '\b(?:AKIA|ASIA)[A-Z2-7]{16}\b'
    action: mask
    scope: [request, response]
    replacement: '[MASKED:aws-access-key]'
  - name: destructive-sql
    pattern: '(?i)\bdrop\s+table\b'
    action: block
    scope: [request]
    message: destructive SQL in a prompt
  - name: prod-deploy
    description: deploys need a human
    pattern: 'deploy to prod'
    action: approve
    scope: request
    entropy: 0
    allow: ['staging']
    holdback: 1024
`))
	if err != nil {
		t.Fatal(err)
	}
	rs := s.Rules()
	if len(rs) != 3 {
		t.Fatalf("%d rules", len(rs))
	}
	if rs[1].Name != "destructive-sql" || rs[1].Action != Block || !slices.Equal(rs[1].Scope, []string{"request"}) || rs[1].Message != "destructive SQL in a prompt" || rs[1].Line != 8 {
		t.Errorf("rule 2 = %+v", rs[1])
	}
	if rs[2].Holdback != 1024 || !slices.Equal(rs[2].Allow, []string{"staging"}) || !slices.Equal(rs[2].Scope, []string{"request"}) {
		t.Errorf("rule 3 = %+v", rs[2])
	}
	// Rules returns copies.
	rs[0].Scope[0] = "changed"
	if s.Rules()[0].Scope[0] != "request" {
		t.Error("Rules exposes the set's slices")
	}
	res := s.Request([]byte(`{"input":"please DROP  TABLE users"}`))
	if res.Block == nil || res.Block.Name != "destructive-sql" {
		t.Errorf("Block = %v", res.Block)
	}
	if res := s.Response([]byte(`drop table x`)); res.Block != nil {
		t.Errorf("request-only rule fired on a response: %v", res.Hits)
	}
	if res := s.Request([]byte(`deploy to prod`)); res.Approve == nil || res.Approve.Name != "prod-deploy" || res.Block != nil {
		t.Errorf("Approve = %v, Block = %v", res.Approve, res.Block)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, src := range []string{"", "rules:\n", "rules: []\n", "# nothing\n"} {
		s, err := Parse([]byte(src))
		if err != nil {
			t.Errorf("%q: %v", src, err)
			continue
		}
		if s.Len() != 0 {
			t.Errorf("%q: %d rules", src, s.Len())
		}
		if res := s.Request([]byte("AKIAIOSFODNN7EXAMPLE")); string(res.Body) != "AKIAIOSFODNN7EXAMPLE" || len(res.Hits) != 0 {
			t.Errorf("%q: empty set changed the body", src)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		line int
		rule string
		msg  string
	}{
		{"bad regex", "rules:\n  - name: a\n    pattern: 'a(b'\n    action: mask\n", 2, `"a"`, "invalid pattern"},
		{"unknown action", "rules:\n  - name: ok\n    pattern: x\n    action: mask\n  - name: b\n    pattern: x\n    action: redact\n", 5, `"b"`, `unknown action "redact"`},
		{"missing action", "rules:\n  - name: b\n    pattern: x\n", 2, `"b"`, "missing action"},
		{"missing name", "rules:\n  - name: a\n    pattern: x\n    action: mask\n  - pattern: y\n    action: mask\n", 5, "#2", "missing name"},
		{"duplicate name", "rules:\n  - name: a\n    pattern: x\n    action: mask\n  - name: a\n    pattern: y\n    action: mask\n", 5, `"a"`, "duplicate name (first at line 2)"},
		{"bad scope", "rules:\n  - name: s\n    pattern: x\n    action: mask\n    scope: [request, answer]\n", 2, `"s"`, `unknown scope "answer"`},
		{"missing pattern", "rules:\n  - name: p\n    action: mask\n", 2, `"p"`, "missing pattern"},
		{"empty match", "rules:\n  - name: e\n    pattern: 'x*'\n    action: mask\n", 2, `"e"`, "can match empty text"},
		{"unknown field", "rules:\n  - name: u\n    pattern: x\n    action: mask\n    colour: red\n", 5, `"u"`, `unknown field "colour"`},
		{"bad allow", "rules:\n  - name: al\n    pattern: x\n    action: mask\n    allow: ['(']\n", 2, `"al"`, "invalid allow pattern"},
		{"bad entropy", "rules:\n  - name: en\n    pattern: x\n    action: mask\n    entropy: lots\n", 5, `"en"`, "entropy"},
		{"entropy range", "rules:\n  - name: en\n    pattern: x\n    action: mask\n    entropy: 9\n", 2, `"en"`, "out of range"},
		{"bad name", "rules:\n  - name: 'a b'\n    pattern: x\n    action: mask\n", 2, `"a b"`, "name"},
		{"field twice", "rules:\n  - name: t\n    pattern: x\n    pattern: y\n    action: mask\n", 4, `"t"`, "pattern: given twice"},
		{"not a list", "rules: 3\n", 1, "", "want a list"},
		{"unknown key", "rule:\n  - name: a\n", 1, "", `unknown key "rule"`},
		{"rule not a mapping", "rules:\n  - x\n", 2, "#1", "want a mapping"},
		{"pattern not a string", "rules:\n  - name: n\n    pattern: [a]\n    action: mask\n", 3, `"n"`, "want a string"},
		{"yaml syntax", "rules:\n  - name: a\n   pattern: x\n", 0, "", "yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src))
			if err == nil {
				t.Fatal("no error")
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if pe.Line != tt.line || pe.Rule != tt.rule || !strings.Contains(pe.Msg, tt.msg) {
				t.Errorf("error %q: line %d rule %s msg %q; want line %d rule %s msg containing %q", err, pe.Line, pe.Rule, pe.Msg, tt.line, tt.rule, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), "rules: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(good, []byte("rules:\n  - name: t\n    pattern: 'TICKET-[0-9]+'\n    action: mask\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(s.Response([]byte("TICKET-12")).Body); got != "[MASKED:t]" {
		t.Errorf("masked %q", got)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - name: t\n    pattern: '('\n    action: mask\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), `line 2: rule "t"`) {
		t.Errorf("Load(bad) = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v", err)
	}
	// The shipped testdata file parses.
	if _, err := Load("testdata/rules.yaml"); err != nil {
		t.Error(err)
	}
}

func TestSubset(t *testing.T) {
	s := Default()
	sub := s.Subset([]string{"jwt", "github-token", "no-such-rule"})
	var names []string
	for _, r := range sub.Rules() {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"github-token", "jwt"}) {
		t.Fatalf("subset = %v", names)
	}
	text := []byte("AKIA" + "IOSFODNN7EXAMPLE gh" + "p_" + alnum36)
	res := sub.Request(text)
	if got := string(res.Body); got != "AKIAIOSFODNN7EXAMPLE [MASKED:github-token]" {
		t.Errorf("subset masked %q", got)
	}
	if s.Subset([]string{"jwt", "github-token", "no-such-rule"}) != sub {
		t.Error("Subset did not reuse its result")
	}
	done := make(chan *Set)
	for range 4 {
		go func() { done <- s.Subset([]string{"npm-token"}) }()
	}
	for range 4 {
		if x := <-done; x.Len() != 1 {
			t.Errorf("concurrent Subset: %d rules", x.Len())
		}
	}
	if empty := s.Subset(nil); empty.Len() != 0 || string(empty.Request(text).Body) != string(text) {
		t.Error("empty subset masks")
	}
}

func TestSecretHMAC(t *testing.T) {
	// RFC 4231 test case 2.
	got := SecretHMAC([]byte("Jefe"), []byte("what do ya want for nothing?"))
	if want := "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"; got != want {
		t.Errorf("SecretHMAC = %s, want %s", got, want)
	}
}
